//! Aligned text: `Label:  value` lines and columns, as `kubectl describe` prints them.

/// `text` as it may reach a terminal: line breaks stay, and every other control character (a
/// terminal escape sequence starts with one) or bidirectional formatting character becomes a
/// space. Condition messages, Events, names in Twilio and Secret metadata are written by
/// Twilio or by tenants; what the plugin prints of them must not steer the reader's terminal.
pub fn terminal_safe(text: &str) -> String {
    text.split('\n').map(twilio_operator_api::text::printable).collect::<Vec<_>>().join("\n")
}

/// Width of the labels of [`field`] lines, colon included.
const LABEL_WIDTH: usize = 18;

/// Appends `  Label:          value`.
pub fn field(out: &mut String, label: &str, value: &str) {
    out.push_str(&format!("  {:<LABEL_WIDTH$}{value}\n", format!("{label}:")));
}

/// Rows as columns two spaces apart (the last column unpadded), each line indented.
pub fn table(rows: &[Vec<String>], indent: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = " ".repeat(indent);
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_fields_line_up() {
        let rows = vec![
            vec!["TYPE".to_string(), "STATUS".into(), "MESSAGE".into()],
            vec!["Ready".into(), "True".into(), "ok".into()],
        ];
        assert_eq!(table(&rows, 2), "  TYPE   STATUS  MESSAGE\n  Ready  True    ok\n");
        let mut out = String::new();
        field(&mut out, "SID", "SK1");
        assert_eq!(out, "  SID:              SK1\n");
    }

    #[test]
    fn what_reaches_the_terminal_carries_no_escape_sequence() {
        let hostile = "Ready\n  msg: \u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}txt\n";
        let safe = terminal_safe(hostile);
        assert_eq!(safe, "Ready\n  msg:  ]0;owned  [2J 31m txt\n");
        assert!(!safe.chars().any(|c| c.is_control() && c != '\n'));
    }
}
