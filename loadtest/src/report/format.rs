//! How every report, comparison and sweep writes numbers and cells: counts with thousands
//! separators, milliseconds, sizes, and Markdown-safe text. Formatting only; decides nothing.

// Number formatting.

/// A count with thousands separators: 1,284.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as milliseconds with one decimal.
pub(crate) fn ms(us: u64) -> String {
    fixed(us as f64 / 1000.0, 1)
}

/// A float with `decimals` decimals and thousands separators; "n/a" if not finite.
pub(crate) fn fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let int = int.parse::<u64>().map(count).unwrap_or_else(|_| int.into());
    let sign = if x < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// A gate's limit or value: whole numbers as counts, others with up to four decimals, and
/// below 1 at least two significant digits (an error rate of 1 in 25,000 is 0.00004, not
/// 0), trailing zeros dropped. For display only: gates compare the exact value.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let decimals = match x.abs() {
        a if a == a.trunc() => 0,
        a if a >= 100.0 => 1,
        a if a >= 1.0 => 2,
        a => ((-a.log10()).floor() as usize + 2).clamp(4, 12),
    };
    let s = fixed(x, decimals);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

pub(crate) fn gib(bytes: u64) -> String {
    fixed(bytes as f64 / (1u64 << 30) as f64, 1)
}

pub(crate) fn mib(bytes: u64) -> String {
    fixed(bytes as f64 / (1u64 << 20) as f64, 1)
}

// Markdown escaping.

/// Free text on one line: newlines folded, `<` and `&` as entities so a viewer that renders
/// HTML shows them instead of running them.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '\r' => {}
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text in a table cell: as [`text`], with `|` escaped.
pub(crate) fn cell(s: &str) -> String {
    text(s).replace('|', "\\|")
}

/// Text inside a code span: backticks would end it.
pub(crate) fn code(s: &str) -> String {
    s.replace('`', "'").replace(['\r', '\n'], " ")
}

pub(crate) fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Text for HTML element content and attribute values: the one escaping function, shared
/// with the server's admin page.
pub(crate) use lockbench_server::text::html_escape as esc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_a_person_writes_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_284), "1,284");
        assert_eq!(count(12_345_678), "12,345,678");
        assert_eq!(ms(4_210_700), "4,210.7");
        assert_eq!(ms(49), "0.0");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(5000.0), "5,000");
        assert_eq!(num(0.05), "0.05");
        assert_eq!(num(1.0 / 25_000.0), "0.00004");
        assert_eq!(num(0.000001), "0.000001");
        assert_eq!(num(0.0123456), "0.0123");
        assert_eq!(num(4391.25), "4,391.2");
        assert_eq!(num(-2.5), "-2.5");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(fixed(-0.01, 1), "0.0");
    }
}
