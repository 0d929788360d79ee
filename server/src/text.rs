//! Small text helpers shared by the processor, the admin page and the `lockbench` binary:
//! folder-safe slugs, HTML escaping, and text made safe for the server's log. Pure
//! functions; nothing here reads files, opens connections or knows about batches.

use std::borrow::Cow;
use std::fmt;

/// The phrase the server's log holds exactly once per counted lock error
/// (`storage::stats::LOCK_LOG_PHRASE`).
const LOCK_PHRASE: &str = "database is locked";

/// Text from outside the server (a file name, a QR code's payload, an error message that
/// quotes a path) made safe to log: every "database is locked", in any case, becomes
/// "database-is-locked", so that the only log lines with the phrase are the lock-error
/// lines the runner counts.
pub fn log_safe(text: &str) -> Cow<'_, str> {
    // ASCII lowercasing keeps byte offsets, so matches in the copy are matches in `text`.
    let lower = text.to_ascii_lowercase();
    if !lower.contains(LOCK_PHRASE) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(at) = lower[from..].find(LOCK_PHRASE) {
        let at = from + at;
        out.push_str(&text[from..at]);
        out.push_str(&text[at..at + LOCK_PHRASE.len()].replace(' ', "-"));
        from = at + LOCK_PHRASE.len();
    }
    out.push_str(&text[from..]);
    Cow::Owned(out)
}

/// Displays a value through [`log_safe`]: `warn!(error = %LogSafe(&e), ...)`.
pub struct LogSafe<T>(pub T);

impl<T: fmt::Display> fmt::Display for LogSafe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&log_safe(&self.0.to_string()))
    }
}

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

    #[test]
    fn log_safe_text_never_holds_the_lock_phrase() {
        assert_eq!(log_safe("IMG_0001.jpg"), "IMG_0001.jpg");
        assert!(matches!(log_safe("plain"), Cow::Borrowed(_)));
        assert_eq!(
            log_safe("é Database Is Locked.jpg and database is locked"),
            "é Database-Is-Locked.jpg and database-is-locked"
        );
        assert_eq!(
            LogSafe("copying database is locked.png: gone").to_string(),
            "copying database-is-locked.png: gone"
        );
    }
}
