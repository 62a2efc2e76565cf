//! Text that users, tenants or Twilio wrote, made fit for a condition, an Event, a log line or
//! a terminal.

/// `text` cut to at most `max` characters (and "..."), so that a huge input a user wrote does
/// not make a huge condition message, Event or log line.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// `text` with every control character (C0, DEL, C1: terminal escape sequences start with
/// one) and every bidirectional formatting character replaced by a space, so that what Twilio or
/// a tenant wrote cannot steer the terminal of whoever reads a condition, an Event or the
/// plugin's output.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() || is_bidi_control(c) { ' ' } else { c }).collect()
}

/// Unicode's explicit directional formatting characters (what "Trojan Source" misuses).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_keeps_no_control_or_bidi_character() {
        let hostile = "bad\u{1b}[31mred\u{1b}]0;title\u{7}\u{9b}2J\ttab\nline\u{202E}gnp.exe\u{7f}";
        let clean = printable(hostile);
        assert!(!clean.chars().any(|c| c.is_control() || is_bidi_control(c)), "{clean:?}");
        assert_eq!(clean, "bad [31mred ]0;title  2J tab line gnp.exe ");
        assert_eq!(printable("Key SK1 délivré"), "Key SK1 délivré");
    }
}
