//! The query of a collection (SPEC section 6): `page`, `per_page`, `sort`, `q` and
//! attribute filters, parsed from the raw query string and checked against the table.
//! Every problem is reported at once; nothing here reaches LDAP.

use super::resource::ResourceDef;
use super::row::{Column, Pattern};
use super::Problem;

/// A checked list query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// 1-based.
    pub page: u64,
    /// Clamped to the configured maximum.
    pub per_page: u64,
    /// Sort keys, most significant first; ties are broken by id ascending.
    pub sort: Vec<SortBy>,
    /// All must match.
    pub filters: Vec<Filter>,
    /// Lower-cased text for the full-text search.
    pub q: Option<String>,
    /// The parameters as given, except `page`, with `per_page` as applied: what the
    /// `Link` URLs keep.
    pub params: Vec<(String, String)>,
    /// Whether the answer counts every match (`X-Total-Count`); without, the page is
    /// found and its total is only what was seen on the way.
    pub count: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SortBy {
    pub column: Column,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: Column,
    pub pattern: Pattern,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// The query string itself is broken (bad percent-encoding, not UTF-8): 400.
    Malformed(String),
    /// Parameters that are not allowed or not valid: 422.
    Invalid(Vec<Problem>),
}

/// Page sizes: the default and the largest allowed (larger ones are clamped).
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default_per_page: u64,
    pub max_per_page: u64,
}

const MAX_QUERY_PARAMS: usize = 64;
const MAX_PAGE: u64 = 1_000_000_000;
const MIN_Q: usize = 3;
const MAX_Q: usize = 256;

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes one `application/x-www-form-urlencoded` component strictly.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = bytes.get(i + 1).copied().and_then(hex);
                let l = bytes.get(i + 2).copied().and_then(hex);
                match (h, l) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(format!("bad percent-encoding in {s:?}")),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

/// Encodes a component for a URL of ours (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits a raw query string into decoded pairs.
pub fn pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode(k)?, decode(v)?));
        if out.len() > MAX_QUERY_PARAMS {
            return Err(format!("more than {MAX_QUERY_PARAMS} query parameters"));
        }
    }
    Ok(out)
}

/// The columns `sort=` accepts: the sortable fields of the collection item.
pub fn sort_columns(def: &'static ResourceDef) -> &'static [Column] {
    &def.columns().sort
}

/// A sort column by its item name.
pub fn sort_column(def: &'static ResourceDef, name: &str) -> Option<Column> {
    sort_columns(def).iter().find(|c| c.field.name == name).copied()
}

fn positive(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|n| *n >= 1)
}

/// Parses and checks a list query.
pub fn parse(def: &'static ResourceDef, raw: Option<&str>, limits: PageLimits) -> Result<ListQuery, QueryError> {
    let given = pairs(raw.unwrap_or_default()).map_err(QueryError::Malformed)?;
    let mut problems = Vec::new();
    let mut page = 1;
    let mut per_page = limits.default_per_page;
    let mut sort = Vec::new();
    let mut filters = Vec::new();
    let mut q = None;
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in &given {
        let special = matches!(key.as_str(), "page" | "per_page" | "sort" | "q");
        if special && seen.contains(&key.as_str()) {
            problems.push(Problem::new(key.clone(), "is given more than once"));
            continue;
        }
        seen.push(key);
        match key.as_str() {
            "page" => match positive(value) {
                Some(p) if p <= MAX_PAGE => page = p,
                _ => problems.push(Problem::new("page", format!("must be an integer from 1 to {MAX_PAGE}"))),
            },
            "per_page" => match positive(value) {
                Some(n) => per_page = n.min(limits.max_per_page),
                None => problems.push(Problem::new("per_page", "must be an integer of at least 1")),
            },
            "sort" => {
                for part in value.split(',') {
                    let (name, descending) = match part.strip_prefix('-') {
                        Some(rest) => (rest, true),
                        None => (part, false),
                    };
                    match sort_column(def, name) {
                        Some(column) if sort.iter().any(|s: &SortBy| s.column == column) => {
                            problems.push(Problem::new("sort", format!("sorts by {name:?} twice")))
                        }
                        Some(column) => sort.push(SortBy { column, descending }),
                        None => problems.push(Problem::new(
                            "sort",
                            format!("cannot sort by {part:?}; sortable: {}", sortable_names(def).join(", ")),
                        )),
                    }
                }
            }
            "q" => {
                let text = value.trim();
                let n = text.chars().count();
                if !(MIN_Q..=MAX_Q).contains(&n) {
                    problems.push(Problem::new("q", format!("must be {MIN_Q} to {MAX_Q} characters")));
                } else if text.chars().any(char::is_control) {
                    problems.push(Problem::new("q", "must not contain control characters"));
                } else {
                    q = Some(text.to_lowercase());
                }
            }
            name => match def.column(name) {
                Some(column) if column.field.filterable => match Pattern::parse(column.kind(), value) {
                    Ok(pattern) => filters.push(Filter { column, pattern }),
                    Err(msg) => problems.push(Problem::new(name, msg)),
                },
                _ => problems.push(Problem::new(name, "unknown query parameter")),
            },
        }
    }
    if !problems.is_empty() {
        return Err(QueryError::Invalid(problems));
    }
    let params = given
        .into_iter()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| if k == "per_page" { (k, per_page.to_string()) } else { (k, v) })
        .collect();
    Ok(ListQuery { page, per_page, sort, filters, q, params, count: true })
}

fn sortable_names(def: &'static ResourceDef) -> Vec<&'static str> {
    sort_columns(def).iter().map(|c| c.field.name).collect()
}

impl ListQuery {
    /// The URL of another page of the same query.
    pub fn page_url(&self, base: &str, page: u64) -> String {
        let mut url = format!("{base}?");
        for (k, v) in &self.params {
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
            url.push('&');
        }
        url.push_str(&format!("page={page}"));
        url
    }

    /// The `Link` header (RFC 8288) for a result of `total` items.
    pub fn links(&self, base: &str, total: u64) -> String {
        let last = total.div_ceil(self.per_page).max(1);
        let mut links = vec![format!("<{}>; rel=\"first\"", self.page_url(base, 1))];
        if self.page > 1 {
            links.push(format!("<{}>; rel=\"prev\"", self.page_url(base, (self.page - 1).min(last))));
        }
        if self.page < last {
            links.push(format!("<{}>; rel=\"next\"", self.page_url(base, self.page + 1)));
        }
        links.push(format!("<{}>; rel=\"last\"", self.page_url(base, last)));
        links.join(", ")
    }

    /// Index of the first item of the page in the whole result.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::resources::CUSTOMERS;

    const LIMITS: PageLimits = PageLimits { default_per_page: 30, max_per_page: 100 };

    fn ok(raw: &str) -> ListQuery {
        parse(&CUSTOMERS, Some(raw), LIMITS).unwrap()
    }

    fn problems(raw: &str) -> Vec<String> {
        match parse(&CUSTOMERS, Some(raw), LIMITS) {
            Err(QueryError::Invalid(p)) => p.into_iter().map(|p| p.field).collect(),
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_clamping() {
        let q = ok("");
        assert_eq!((q.page, q.per_page, q.sort.len(), q.filters.len(), q.q), (1, 30, 0, 0, None));
        let q = ok("per_page=500&page=3");
        assert_eq!((q.page, q.per_page), (3, 100));
        assert_eq!(q.offset(), 200);
    }

    #[test]
    fn bad_page_values_are_reported() {
        for bad in
            ["page=0", "page=-1", "page=x", "page=1.5", "page=", "per_page=0", "per_page=abc", "page=99999999999999"]
        {
            assert_eq!(problems(bad).len(), 1, "{bad}");
        }
        assert_eq!(problems("page=0&per_page=0&nope=1&sort=zzz"), ["page", "per_page", "nope", "sort"]);
        assert_eq!(problems("page=1&page=2"), ["page"]);
    }

    #[test]
    fn sort_keys_are_collection_fields() {
        let q = ok("sort=customerName,-localityName");
        assert_eq!(q.sort.len(), 2);
        assert_eq!((q.sort[0].column.field.name, q.sort[0].descending), ("customerName", false));
        assert_eq!((q.sort[1].column.field.name, q.sort[1].descending), ("localityName", true));
        for bad in ["sort=location", "sort=mail", "sort=", "sort=id,id", "sort=--id", "sort=id,"] {
            assert_eq!(problems(bad), ["sort"], "{bad}");
        }
    }

    #[test]
    fn filters_use_element_dotted_and_shorthand_names() {
        let q = ok("isActive=true&billingAddress.localityName=Bern*&countryCode=CH&shippingAddress.countryCode=*");
        let names: Vec<_> = q.filters.iter().map(|f| (f.column.part, f.column.field.name)).collect();
        use crate::mapping::Part::*;
        assert_eq!(
            names,
            [(Root, "isActive"), (Billing, "localityName"), (Billing, "countryCode"), (Shipping, "countryCode")]
        );
        assert_eq!(
            problems("isActive=maybe&location=x&billingAddress=x&id=abc"),
            ["isActive", "location", "billingAddress", "id"]
        );
    }

    #[test]
    fn q_needs_three_characters() {
        assert_eq!(ok("q=Bern").q.as_deref(), Some("bern"));
        assert_eq!(ok("q=%C3%9Cberall").q.as_deref(), Some("überall"));
        assert_eq!(problems("q=ab"), ["q"]);
        assert_eq!(problems("q=%20ab%20"), ["q"]);
    }

    #[test]
    fn broken_query_strings_are_malformed() {
        assert!(matches!(parse(&CUSTOMERS, Some("q=%zz"), LIMITS), Err(QueryError::Malformed(_))));
        assert!(matches!(parse(&CUSTOMERS, Some("q=%ff%fe"), LIMITS), Err(QueryError::Malformed(_))));
        assert!(matches!(parse(&CUSTOMERS, Some("q=%4"), LIMITS), Err(QueryError::Malformed(_))));
    }

    #[test]
    fn links_keep_the_other_parameters() {
        let q = ok("sort=-customerName&q=m%C3%BCller&page=2&per_page=10&countryCode=CH");
        let links = q.links("http://gw/v1/customers", 35);
        assert_eq!(
            links,
            "<http://gw/v1/customers?sort=-customerName&q=m%C3%BCller&per_page=10&countryCode=CH&page=1>; rel=\"first\", \
             <http://gw/v1/customers?sort=-customerName&q=m%C3%BCller&per_page=10&countryCode=CH&page=1>; rel=\"prev\", \
             <http://gw/v1/customers?sort=-customerName&q=m%C3%BCller&per_page=10&countryCode=CH&page=3>; rel=\"next\", \
             <http://gw/v1/customers?sort=-customerName&q=m%C3%BCller&per_page=10&countryCode=CH&page=4>; rel=\"last\""
        );
        // Past the end: prev points at the last page, no next; an empty result has one page.
        let q = ok("page=9&per_page=100");
        assert_eq!(
            q.links("http://gw/x", 0),
            "<http://gw/x?per_page=100&page=1>; rel=\"first\", <http://gw/x?per_page=100&page=1>; rel=\"prev\", \
             <http://gw/x?per_page=100&page=1>; rel=\"last\""
        );
        // The clamped page size is what the links carry.
        assert!(ok("per_page=1000").links("http://gw/x", 500).contains("per_page=100&page=5>; rel=\"last\""));
    }
}
