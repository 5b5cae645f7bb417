//! Value types of the mapping: each parses a JSON value into the string written to LDAP
//! (or says why it cannot), and turns an LDAP value back into JSON.

use serde_json::Value;

use super::table::Kind;

/// ISO 3166-1 alpha-2 codes (officially assigned).
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TU TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub fn is_country(code: &str) -> bool {
    code.len() == 2 && code != "TU" && COUNTRIES.split(' ').any(|c| c == code)
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Checks plain text: 1..=max characters, no control characters; white space around it
/// is not kept.
pub fn text(s: &str, max: usize) -> Result<String, String> {
    let s = s.trim();
    let n = s.chars().count();
    if n == 0 || s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if n > max {
        return Err(format!("must be at most {max} characters"));
    }
    if has_control(s) {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_string())
}

fn mail(s: &str) -> Result<String, String> {
    let bad = || Err("must be a valid e-mail address (ASCII, like name@example.com)".to_string());
    if s.len() > 254 || !s.is_ascii() || has_control(s) || s.contains(char::is_whitespace) {
        return bad();
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return bad();
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(s.to_string())
    } else {
        bad()
    }
}

fn phone(s: &str) -> Result<String, String> {
    // Printable String (RFC 4517): letters, digits, space and '()+,-./:?
    let printable = |c: char| c.is_ascii_alphanumeric() || " '()+,-./:?".contains(c);
    if s.is_empty() || s.len() > 32 || !s.chars().all(printable) || !s.chars().any(|c| c.is_ascii_digit()) {
        return Err("must be a phone number of up to 32 characters: digits, spaces and + ( ) - . /".into());
    }
    Ok(s.to_string())
}

fn url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    let ok = s.len() <= 256
        && s.is_ascii()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"{}|\\^`".contains(c))
        && host.is_some_and(|h| !h.is_empty() && !h.starts_with(':') && !h.contains('@'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("must be an absolute http or https URL of at most 256 characters".into())
    }
}

fn language(s: &str) -> Result<String, String> {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or_default();
    let ok = (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
        && s.len() <= 35;
    if ok {
        Ok(s.to_string())
    } else {
        Err("must be a language tag like en-GB".into())
    }
}

/// Lines joined by `$`, with `\` and `$` inside a line escaped (RFC 4517 Postal Address).
pub fn postal_to_ldap(s: &str) -> Result<String, String> {
    let s = s.replace("\r\n", "\n");
    if s.chars().count() > 1024 {
        return Err("must be at most 1024 characters".into());
    }
    let mut lines = Vec::new();
    for line in s.split('\n') {
        if line.trim().is_empty() {
            return Err("must not be empty or contain empty lines".into());
        }
        if has_control(line) {
            return Err("must not contain control characters other than line breaks".into());
        }
        lines.push(line.replace('\\', "\\5C").replace('$', "\\24"));
    }
    Ok(lines.join("$"))
}

pub fn postal_from_ldap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push('\n'),
            '\\' => {
                let hex: String = chars.clone().take(2).collect();
                match hex.to_ascii_uppercase().as_str() {
                    "24" => out.push('$'),
                    "5C" => out.push('\\'),
                    _ => {
                        out.push('\\');
                        continue;
                    }
                }
                chars.next();
                chars.next();
            }
            c => out.push(c),
        }
    }
    out
}

/// Parses a JSON array of a list kind into its LDAP values, each checked by the inner
/// kind; every problem comes with the index of its element.
pub fn list_to_ldap(inner: Kind, v: &Value) -> Result<Vec<String>, Vec<(usize, String)>> {
    let Some(items) = v.as_array() else { return Err(vec![(usize::MAX, "must be an array".into())]) };
    let mut out: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match to_ldap(inner, item) {
            // A set: a value given twice is one value.
            Ok(s) if out.iter().any(|o| o.to_lowercase() == s.to_lowercase()) => {}
            Ok(s) => out.push(s),
            Err(msg) => problems.push((i, msg)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A time zone offset: `UTC`, optionally followed by `+HH`, `-HH`, `+HHMM` or `+HH:MM`
/// (or the offset alone), at most 8 characters as the schema allows.
fn time_zone(s: &str) -> Result<String, String> {
    let bad = || "must be an offset from UTC such as UTC+01, UTC-05:30 or +0100 (at most 8 characters)".to_string();
    let offset = s.strip_prefix("UTC").unwrap_or(s);
    if s.len() > 8 || (offset.is_empty() && s != "UTC") {
        return Err(bad());
    }
    if offset.is_empty() {
        return Ok(s.to_string());
    }
    let (sign, rest) = offset.split_at(1);
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let colon_ok = !rest.contains(':') || (rest.len() == 5 && rest.as_bytes()[2] == b':');
    let valid = matches!(sign, "+" | "-")
        && colon_ok
        && matches!(digits.len(), 2 | 4)
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits[..2].parse::<u32>().is_ok_and(|h| h <= 14)
        && (digits.len() == 2 || digits[2..].parse::<u32>().is_ok_and(|m| m < 60));
    if valid {
        Ok(s.to_string())
    } else {
        Err(bad())
    }
}

/// A calendar date `YYYY-MM-DD` that exists.
fn date(s: &str) -> Result<String, String> {
    let bad = || "must be a date YYYY-MM-DD".to_string();
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else { return Err(bad()) };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || !s.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return Err(bad());
    }
    let (y, m, d): (u32, u32, u32) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if y < 1 || d < 1 || d > days {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// The postal address lines of a street address: `c/o <care of>` if there is one, then
/// street, number and addition (`Bergnaum Mountains 1a`).
pub fn street_lines(
    care_of: Option<&str>,
    street: Option<&str>,
    number: Option<&str>,
    addition: Option<&str>,
) -> String {
    let mut lines = Vec::new();
    if let Some(c) = care_of.filter(|c| !c.is_empty()) {
        lines.push(format!("c/o {c}"));
    }
    let mut line = street.unwrap_or_default().to_string();
    let house = format!("{}{}", number.unwrap_or_default(), addition.unwrap_or_default());
    if !house.is_empty() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&house);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

/// A password to set: 8 to 128 characters, no control characters.
pub fn secret(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    let n = s.chars().count();
    if !(8..=128).contains(&n) {
        return Err("must be 8 to 128 characters".into());
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_string())
}

/// Parses a JSON value of a scalar kind into its LDAP form.
pub fn to_ldap(kind: Kind, v: &Value) -> Result<String, String> {
    let as_str = || v.as_str().ok_or_else(|| "must be a string".to_string());
    match kind {
        Kind::Bool => v
            .as_bool()
            .map(|b| if b { "TRUE" } else { "FALSE" }.to_string())
            .ok_or_else(|| "must be true or false".into()),
        Kind::Id | Kind::ParentRef | Kind::Ref(_) => match v.as_u64() {
            Some(n) if n > 0 && n < 1 << 53 => Ok(n.to_string()),
            _ => Err("must be a positive integer".into()),
        },
        Kind::Text { max } => text(as_str()?, max),
        Kind::DisplayName => text(as_str()?, 64),
        Kind::Gender => match as_str()? {
            g @ ("f" | "m" | "n") => Ok(g.to_string()),
            _ => Err("must be one of f, m, n".into()),
        },
        Kind::Country => {
            let c = as_str()?;
            if is_country(c) {
                Ok(c.to_string())
            } else {
                Err("must be an ISO 3166-1 alpha-2 country code in upper case, like CH".into())
            }
        }
        Kind::Language => language(as_str()?),
        Kind::Mail => mail(as_str()?),
        Kind::Phone => phone(as_str()?),
        Kind::Url => url(as_str()?),
        Kind::Postal => postal_to_ldap(as_str()?),
        Kind::TimeZone => time_zone(as_str()?),
        Kind::Date => date(as_str()?),
        Kind::Object(_) | Kind::Link(_) | Kind::List(_) | Kind::Secret | Kind::Qualified(_) => {
            Err("is not writable".into())
        }
    }
}

/// Turns an LDAP value of a scalar kind into JSON; `None` when the value cannot be shown
/// as that kind (an admin wrote something the API cannot represent).
pub fn from_ldap(kind: Kind, s: &str) -> Option<Value> {
    match kind {
        Kind::Bool => match s.to_ascii_uppercase().as_str() {
            "TRUE" => Some(Value::Bool(true)),
            "FALSE" => Some(Value::Bool(false)),
            _ => None,
        },
        Kind::Id | Kind::ParentRef | Kind::Ref(_) => s.trim().parse::<u64>().ok().map(Value::from),
        Kind::Gender => Some(Value::String(s.to_ascii_lowercase())),
        Kind::Country => Some(Value::String(s.to_ascii_uppercase())),
        Kind::Postal => Some(Value::String(postal_from_ldap(s))),
        Kind::List(inner) => from_ldap(*inner, s),
        Kind::Object(_) | Kind::Link(_) | Kind::Secret | Kind::Qualified(_) => None,
        _ => Some(Value::String(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn postal_address_round_trips_dollar_and_backslash() {
        for s in ["Main St 1", "c/o A$B\\C\nLine 2", "$$\\\\", "a\\24b"] {
            let l = postal_to_ldap(s).unwrap();
            assert_eq!(postal_from_ldap(&l), s, "{l}");
        }
        assert_eq!(postal_to_ldap("a$b\nc").unwrap(), "a\\24b$c");
        assert!(postal_to_ldap("a\n\nb").is_err());
        assert!(postal_to_ldap("a\u{7}").is_err());
    }

    #[test]
    fn mail_is_ascii_and_well_formed() {
        assert!(mail("name.surname@example.com").is_ok());
        assert!(mail("a+b@sub.example.ch").is_ok());
        for bad in ["", "x", "a@b", "ä@example.com", "a b@example.com", "a@exa mple.com", "a@-x.com", "a..b@x.com"] {
            assert!(mail(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn countries_are_iso_alpha2_upper_case() {
        assert!(is_country("CH") && is_country("US"));
        assert!(!is_country("ch") && !is_country("XX") && !is_country("CHE"));
    }

    #[test]
    fn scalars_parse_by_kind() {
        assert_eq!(to_ldap(Kind::Bool, &json!(true)).unwrap(), "TRUE");
        assert!(to_ldap(Kind::Bool, &json!("true")).is_err());
        assert!(to_ldap(Kind::Id, &json!(-1)).is_err());
        assert!(to_ldap(Kind::Id, &json!(1e30)).is_err());
        assert!(to_ldap(Kind::Gender, &json!("x")).is_err());
        assert!(to_ldap(Kind::Text { max: 3 }, &json!("abcd")).is_err());
        assert!(to_ldap(Kind::Text { max: 3 }, &json!("äöü")).is_ok());
        assert!(to_ldap(Kind::Text { max: 9 }, &json!("a\u{0}b")).is_err());
        assert!(to_ldap(Kind::Url, &json!("ftp://x")).is_err());
        assert!(to_ldap(Kind::Url, &json!("https://www.example.com/")).is_ok());
        assert!(to_ldap(Kind::Language, &json!("en-GB")).is_ok());
        assert!(to_ldap(Kind::Language, &json!("english")).is_err());
        assert!(to_ldap(Kind::Phone, &json!("+41 31 123 45 67")).is_ok());
        assert!(to_ldap(Kind::Phone, &json!("call me")).is_err());
        for ok in ["UTC+01", "UTC", "+0100", "-05:30", "UTC-0530", "UTC+14"] {
            assert!(to_ldap(Kind::TimeZone, &json!(ok)).is_ok(), "{ok}");
        }
        for bad in ["UTC+1", "CET", "UTC+15", "+01:0", "UTC+01:00", "utc+01", "+01-00", ""] {
            assert!(to_ldap(Kind::TimeZone, &json!(bad)).is_err(), "{bad}");
        }
        for ok in ["1984-11-11", "2000-02-29", "2024-12-31"] {
            assert!(to_ldap(Kind::Date, &json!(ok)).is_ok(), "{ok}");
        }
        for bad in ["1984-13-01", "1900-02-29", "84-11-11", "1984-11-31", "1984/11/11", "+984-11-11"] {
            assert!(to_ldap(Kind::Date, &json!(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            street_lines(Some("Anna Meier"), Some("Hauptgasse"), Some("1"), Some("a")),
            "c/o Anna Meier\nHauptgasse 1a"
        );
        assert_eq!(street_lines(Some(""), Some("Hauptgasse"), None, None), "Hauptgasse");
        assert!(secret(&json!("short")).is_err());
        assert!(secret(&json!("long enough")).is_ok());
        assert!(secret(&json!("tab\there!")).is_err());
    }
}
