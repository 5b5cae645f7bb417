//! Escaping of every value that reaches an LDAP filter (RFC 4515) or a DN (RFC 4514).

use std::fmt::Write;

/// Escapes a value for use inside a filter assertion: `*`, `(`, `)`, `\`, NUL and every
/// non-ASCII or control byte become `\xx`, so no input can change the filter's shape.
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || (b.is_ascii_graphic() && !b"*()\\".contains(&b)) || b == b' ' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\{b:02x}");
        }
    }
    out
}

/// Escapes a value with `*` kept as the substring wildcard: each `*`-separated piece is
/// escaped on its own. Returns `None` when the value has no `*` (an equality match).
pub fn filter_pattern(value: &str) -> Option<String> {
    if !value.contains('*') {
        return None;
    }
    let mut out = String::new();
    let mut last_star = false;
    for (i, piece) in value.split('*').enumerate() {
        if i > 0 && !last_star {
            out.push('*');
        }
        last_star = piece.is_empty() && i > 0;
        out.push_str(&filter_value(piece));
    }
    Some(out)
}

/// Escapes an attribute value for use in an RDN (RFC 4514 section 2.4).
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let n = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == n => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_metacharacters_are_escaped() {
        assert_eq!(filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(filter_value("a\\b"), "a\\5cb");
        assert_eq!(filter_value("x\0y"), "x\\00y");
        assert_eq!(filter_value("Zürich"), "Z\\c3\\bcrich");
    }

    #[test]
    fn wildcard_pieces_are_escaped_but_stars_kept() {
        assert_eq!(filter_pattern("Bern").as_deref(), None);
        assert_eq!(filter_pattern("B*n").as_deref(), Some("B*n"));
        assert_eq!(filter_pattern("*(x)*").as_deref(), Some("*\\28x\\29*"));
        assert_eq!(filter_pattern("a**b").as_deref(), Some("a*b"));
    }

    #[test]
    fn dn_specials_are_escaped() {
        assert_eq!(dn_value("a,b=c+d"), "a\\,b\\=c\\+d");
        assert_eq!(dn_value(" x "), "\\ x\\ ");
        assert_eq!(dn_value("#1"), "\\#1");
        assert_eq!(dn_value("5000001)(uid=*"), "5000001)(uid\\=*");
    }
}
