//! Small text helpers shared by the processor, the admin page and the `lockbench` binary:
//! folder-safe slugs and HTML escaping. Pure functions; nothing here reads files, opens
//! connections or knows about batches.

/// Lowercase ASCII letters and digits; every other run of characters becomes a single
/// '-', with no leading or trailing '-'.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_dash = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    out
}

/// Escapes `&`, `<`, `>`, `"` and `'` so the text is safe in HTML bodies and attributes.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_collapses_runs_and_trims() {
        assert_eq!(slug("../../Ada  Lovelace!"), "ada-lovelace");
        assert_eq!(slug("WAL, busy_timeout=5s"), "wal-busy-timeout-5s");
        assert_eq!(slug("///"), "");
        assert_eq!(slug("é1"), "1");
    }

    #[test]
    fn html_escape_covers_quotes() {
        assert_eq!(
            html_escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
