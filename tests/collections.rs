//! GET /v1/customers against a real slapd with a few hundred generated customers: many
//! random combinations of sort, filters, q, page and per_page compared with a reference
//! computed here from the known data, plus the edge cases of SPEC section 6 and the
//! freshness rules (the gateway's own writes in the very next list, an admin's soon).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use stoney_slapd::{ldif_line, SlapdOptions};

const RESELLERS: [u64; 3] = [4100001, 4100002, 4100003];
const FIRST: u64 = 6000001;
const N: u64 = 300;
const ADMIN_LOGIN: (&str, &str) = ("provider@test.example", "provider-pw");
const RESELLER_LOGIN: (&str, &str) = ("r2@test.example", "r2-pw");

/// What the test knows of each customer it wrote.
#[derive(Debug, Clone)]
struct Model {
    id: u64,
    reseller: u64,
    company: bool,
    active: bool,
    name: String,
    given: String,
    surname: String,
    country: Option<String>,
    postal: Option<String>,
    locality: Option<String>,
    mail: Option<String>,
    external: Option<String>,
    shipping_country: Option<String>,
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const GIVEN: &[&str] = &["Zoë", "Jürg", "Anna", "anna", "Émile", "Eva", "Lukas", "Käthi", "Noah", "Ørjan", "Ida"];
const SURNAMES: &[&str] = &["Müller", "Meier", "Schmid", "Keller", "Weber", "Huber", "Brunner", "Gerber", "Baumann"];
const COMPANIES: &[&str] = &[
    "Alpha AG",
    "Ärzte Zentrum",
    "Azur AG",
    "beta GmbH",
    "Café Crème Sàrl",
    "Delta AG",
    "Zeta Systems",
    "Gamma & Söhne",
];
const PLACES: &[(&str, &str, &str)] = &[
    ("CH", "3011", "Bern"),
    ("CH", "8001", "Zürich"),
    ("CH", "1201", "Genève"),
    ("DE", "10115", "Berlin"),
    ("DE", "80331", "München"),
    ("AT", "1010", "Wien"),
    ("FR", "75001", "Paris"),
    ("US", "10001", "New York"),
];

fn generate() -> (Vec<Model>, String) {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut ldif = String::new();
    ldif.push_str(&format!(
        "dn: uid=6999001,ou=people,dc=stoney-cloud,dc=org\nobjectClass: top\nobjectClass: sstPerson\nuid: 6999001\n\
         givenName: P\nsn: Provider\nmail: {}\npreferredLanguage: en\nsstTimeZoneOffset: +0000\nuserPassword: {}\n\
         sstBelongsToUID: 1\nsstIsActive: TRUE\n\n",
        ADMIN_LOGIN.0, ADMIN_LOGIN.1
    ));
    ldif.push_str(&format!(
        "dn: uid=6999002,ou=people,dc=stoney-cloud,dc=org\nobjectClass: top\nobjectClass: sstPerson\nuid: 6999002\n\
         givenName: R\nsn: Reseller\nmail: {}\npreferredLanguage: en\nsstTimeZoneOffset: +0000\nuserPassword: {}\n\
         sstBelongsToResellerUID: {}\nsstIsActive: TRUE\n\n",
        RESELLER_LOGIN.0, RESELLER_LOGIN.1, RESELLERS[1]
    ));
    for r in RESELLERS {
        ldif.push_str(&format!(
            "dn: uid={r},ou=reseller,dc=stoney-cloud,dc=org\nobjectClass: top\nobjectClass: sstReseller\n\
             uid: {r}\nsstBelongsToResellerUID: {r}\nsstIsCompany: TRUE\no: Reseller {r}\n\n\
             dn: ou=customers,uid={r},ou=reseller,dc=stoney-cloud,dc=org\nobjectClass: top\n\
             objectClass: organizationalUnit\nou: customers\n\n"
        ));
    }
    let mut models = Vec::new();
    for i in 0..N {
        let id = FIRST + i;
        let reseller = *rng.pick(&RESELLERS);
        let company = rng.below(2) == 0;
        let active = rng.below(5) != 0;
        let given = rng.pick(GIVEN).to_string();
        let surname = rng.pick(SURNAMES).to_string();
        let name = if company { rng.pick(COMPANIES).to_string() } else { format!("{given} {surname}") };
        // A few customers written by an admin without a billing address.
        let billing = i % 37 != 5;
        let (c, pc, l) = *rng.pick(PLACES);
        let external = (rng.below(3) == 0).then(|| format!("EXT-{:04}", rng.below(10_000)));
        let shipping_country = (rng.below(4) == 0).then(|| rng.pick(PLACES).0.to_string());
        let dn = format!("uid={id},ou=customers,uid={reseller},ou=reseller,dc=stoney-cloud,dc=org");
        ldif.push_str(&format!(
            "dn: {dn}\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\nuid: {id}\n\
             sstIsCompany: {}\nsstIsActive: {}\nsstBelongsToResellerUID: {reseller}\n",
            if company { "TRUE" } else { "FALSE" },
            if active { "TRUE" } else { "FALSE" }
        ));
        if company {
            ldif.push_str(&ldif_line("o", &name));
        } else {
            ldif.push_str(&ldif_line("givenName", &given));
            ldif.push_str(&ldif_line("sn", &surname));
        }
        if let Some(e) = &external {
            ldif.push_str(&ldif_line("sstExternalID", e));
        }
        ldif.push('\n');
        let mail = format!("{}.{}@example.com", i, surname.len());
        let mut address = |ou: &str, c: &str, pc: &str, l: &str| {
            ldif.push_str(&format!(
                "dn: ou={ou},{dn}\nobjectClass: top\nobjectClass: organizationalUnit\nobjectClass: sstAddress\n\
                 ou: {ou}\nsstGender: f\nc: {c}\npostalCode: {pc}\npreferredLanguage: de-CH\nmail: {mail}\n\
                 postalAddress: Hauptgasse {i}\n"
            ));
            ldif.push_str(&ldif_line("givenName", &given));
            ldif.push_str(&ldif_line("sn", &surname));
            ldif.push_str(&ldif_line("l", l));
            if c == "US" {
                ldif.push_str("st: NY\n");
            }
            ldif.push('\n');
        };
        if billing {
            address("address", c, pc, l);
        }
        if let Some(sc) = &shipping_country {
            let (_, spc, sl) = PLACES.iter().find(|p| p.0 == sc).copied().unwrap();
            address("shipping", sc, spc, sl);
        }
        models.push(Model {
            id,
            reseller,
            company,
            active,
            name,
            given,
            surname,
            country: billing.then(|| c.to_string()),
            postal: billing.then(|| pc.to_string()),
            locality: billing.then(|| l.to_string()),
            mail: billing.then_some(mail),
            external,
            shipping_country,
        });
    }
    (models, ldif)
}

async fn spawn() -> (TestApp, Vec<Model>) {
    let (models, ldif) = generate();
    let mut app = spawn_app_with(SlapdOptions { extra_ldif: vec![ldif], ..Default::default() }, |_| {}).await;
    app.user = (ADMIN_LOGIN.0.into(), ADMIN_LOGIN.1.into());
    (app, models)
}

// ---- the reference ---------------------------------------------------------------------

/// The collation the contract promises: case and the diacritics used here do not count.
fn fold(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            'ä' | 'Ä' | 'à' | 'À' => out.push('a'),
            'ö' | 'Ö' => out.push('o'),
            'ü' | 'Ü' => out.push('u'),
            'é' | 'É' | 'è' | 'ë' | 'ê' => out.push('e'),
            'ç' => out.push('c'),
            'ø' | 'Ø' => out.push('o'),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Int(u64),
    Bool(bool),
    Text(String),
}

fn key(m: &Model, field: &str) -> Option<Key> {
    match field {
        "id" => Some(Key::Int(m.id)),
        "belongsToResellerID" => Some(Key::Int(m.reseller)),
        "isCompany" => Some(Key::Bool(m.company)),
        "isActive" => Some(Key::Bool(m.active)),
        "customerName" => Some(Key::Text(fold(&m.name))),
        "countryCode" => m.country.as_deref().map(|v| Key::Text(fold(v))),
        "postalCode" => m.postal.as_deref().map(|v| Key::Text(fold(v))),
        "localityName" => m.locality.as_deref().map(|v| Key::Text(fold(v))),
        other => panic!("no key {other}"),
    }
}

const SORTABLE: &[&str] = &[
    "id",
    "isCompany",
    "isActive",
    "customerName",
    "belongsToResellerID",
    "countryCode",
    "postalCode",
    "localityName",
];

#[derive(Debug, Clone)]
enum F {
    Country(&'static str),
    Active(bool),
    Company(bool),
    LocalityPrefix(&'static str),
    Reseller(u64),
    HasShipping,
    NameContains(&'static str),
}

impl F {
    fn param(&self) -> (String, String) {
        match self {
            F::Country(c) => ("countryCode".into(), c.to_lowercase()),
            F::Active(b) => ("isActive".into(), b.to_string()),
            F::Company(b) => ("isCompany".into(), b.to_string().to_uppercase()),
            F::LocalityPrefix(p) => ("billingAddress.localityName".into(), format!("{p}*")),
            F::Reseller(r) => ("belongsToResellerID".into(), r.to_string()),
            F::HasShipping => ("shippingAddress.countryCode".into(), "*".into()),
            F::NameContains(s) => ("customerName".into(), format!("*{s}*")),
        }
    }

    fn matches(&self, m: &Model) -> bool {
        match self {
            F::Country(c) => m.country.as_deref() == Some(c),
            F::Active(b) => m.active == *b,
            F::Company(b) => m.company == *b,
            F::LocalityPrefix(p) => {
                m.locality.as_deref().is_some_and(|l| l.to_lowercase().starts_with(&p.to_lowercase()))
            }
            F::Reseller(r) => m.reseller == *r,
            F::HasShipping => m.shipping_country.is_some(),
            F::NameContains(s) => m.name.to_lowercase().contains(&s.to_lowercase()),
        }
    }
}

fn q_matches(m: &Model, q: &str) -> bool {
    let q = q.to_lowercase();
    let mut fields = vec![m.id.to_string(), m.name.clone()];
    fields.extend(m.external.clone());
    if m.mail.is_some() {
        fields.extend([m.given.clone(), m.surname.clone(), format!("Hauptgasse {}", m.id - FIRST)]);
        fields.extend(m.mail.clone());
        fields.extend(m.postal.clone());
        fields.extend(m.locality.clone());
    }
    fields.iter().any(|f| f.to_lowercase().contains(&q))
}

struct Case {
    sort: Vec<(&'static str, bool)>,
    filters: Vec<F>,
    q: Option<&'static str>,
    per_page: Option<u64>,
    page: Option<u64>,
}

impl Case {
    fn query(&self) -> String {
        let mut parts = Vec::new();
        if !self.sort.is_empty() {
            let s: Vec<String> = self.sort.iter().map(|(f, d)| format!("{}{f}", if *d { "-" } else { "" })).collect();
            parts.push(format!("sort={}", s.join(",")));
        }
        for f in &self.filters {
            let (k, v) = f.param();
            parts.push(format!("{k}={}", urlencode(&v)));
        }
        if let Some(q) = self.q {
            parts.push(format!("q={}", urlencode(q)));
        }
        if let Some(n) = self.per_page {
            parts.push(format!("per_page={n}"));
        }
        if let Some(p) = self.page {
            parts.push(format!("page={p}"));
        }
        parts.join("&")
    }

    /// Every matching customer in the promised order.
    fn expected(&self, models: &[Model], visible: impl Fn(&Model) -> bool) -> Vec<u64> {
        let mut hits: Vec<&Model> = models
            .iter()
            .filter(|m| visible(m))
            .filter(|m| self.filters.iter().all(|f| f.matches(m)))
            .filter(|m| self.q.is_none_or(|q| q_matches(m, q)))
            .collect();
        hits.sort_by(|a, b| {
            for (field, desc) in &self.sort {
                let (ka, kb) = (key(a, field), key(b, field));
                let o = match (ka, kb) {
                    (Some(x), Some(y)) => {
                        let o = x.partial_cmp(&y).unwrap();
                        if *desc {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                };
                if o.is_ne() {
                    return o;
                }
            }
            a.id.cmp(&b.id)
        });
        hits.into_iter().map(|m| m.id).collect()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn links(res: &reqwest::Response) -> Vec<(String, u64)> {
    let header = res.headers().get("link").expect("a Link header").to_str().unwrap().to_string();
    header
        .split(", ")
        .map(|l| {
            let (url, rel) = l.split_once(">; rel=").unwrap();
            let page = url.rsplit_once("page=").unwrap().1.parse().unwrap();
            (rel.trim_matches('"').to_string(), page)
        })
        .collect()
}

struct Got {
    total: u64,
    ids: Vec<u64>,
    links: Vec<(String, u64)>,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn fetch(app: &TestApp, user: (&str, &str), query: &str) -> Got {
    let res = app.req_as(user, Method::GET, &format!("/v1/customers?{query}")).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    let total = res.headers()["x-total-count"].to_str().unwrap().parse().unwrap();
    let links = links(&res);
    let headers = res.headers().clone();
    let body: Value = res.json().await.unwrap();
    let ids = body.as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect();
    Got { total, ids, links, headers, body }
}

fn expected_links(page: u64, per_page: u64, total: u64) -> Vec<(String, u64)> {
    let last = total.div_ceil(per_page).max(1);
    let mut out = vec![("first".to_string(), 1)];
    if page > 1 {
        out.push(("prev".into(), (page - 1).min(last)));
    }
    if page < last {
        out.push(("next".into(), page + 1));
    }
    out.push(("last".into(), last));
    out
}

const COUNTRY_FILTERS: [&str; 4] = ["CH", "DE", "AT", "US"];
const LOCALITY_PREFIXES: [&str; 5] = ["b", "Z", "ne", "mü", "Gen"];
const NAME_PARTS: [&str; 4] = ["ag", "Mül", "anna", "é"];

fn random_case(rng: &mut Rng) -> Case {
    let mut sort = Vec::new();
    for _ in 0..rng.below(3) {
        let f = *rng.pick(SORTABLE);
        if !sort.iter().any(|(x, _)| *x == f) {
            sort.push((f, rng.below(2) == 0));
        }
    }
    let mut filters = Vec::new();
    for _ in 0..rng.below(3) {
        filters.push(match rng.below(7) {
            0 => F::Country(COUNTRY_FILTERS[rng.below(4) as usize]),
            1 => F::Active(rng.below(2) == 0),
            2 => F::Company(rng.below(2) == 0),
            3 => F::LocalityPrefix(LOCALITY_PREFIXES[rng.below(5) as usize]),
            4 => F::Reseller(*rng.pick(&RESELLERS)),
            5 => F::HasShipping,
            _ => F::NameContains(NAME_PARTS[rng.below(4) as usize]),
        });
    }
    let q = (rng.below(4) == 0).then(|| *rng.pick(&["müll", "bern", "ext-", "6000", "EXAMPLE", "gasse 1", "zür"]));
    let per_page = (rng.below(4) != 0).then(|| 1 + rng.below(130));
    let page = (rng.below(3) != 0).then(|| 1 + rng.below(12));
    Case { sort, filters, q, per_page, page }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_queries_match_the_reference() {
    let (app, models) = spawn().await;
    let mut rng = Rng(42);
    for round in 0..160 {
        let case = random_case(&mut rng);
        // Every fifth query as reseller 2's user: only its customers.
        let as_reseller = round % 5 == 4;
        let user = if as_reseller { RESELLER_LOGIN } else { ADMIN_LOGIN };
        let visible = |m: &Model| !as_reseller || m.reseller == RESELLERS[1];
        let query = case.query();
        let all = case.expected(&models, visible);
        let per_page = case.per_page.unwrap_or(30).min(100);
        let page = case.page.unwrap_or(1);
        let from = ((page - 1) * per_page) as usize;
        let want: Vec<u64> = all.iter().skip(from).take(per_page as usize).copied().collect();
        let got = fetch(&app, user, &query).await;
        assert_eq!(got.total, all.len() as u64, "total of {query}");
        assert_eq!(got.ids, want, "page of {query}");
        assert_eq!(got.links, expected_links(page, per_page, got.total), "links of {query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_all_pages_yields_each_customer_once_in_order() {
    let (app, models) = spawn().await;
    // Sort keys with long runs of equal values, so page boundaries fall inside runs.
    for (sort, per_page) in [("countryCode", 7), ("-isActive,localityName", 11), ("isCompany", 13), ("-postalCode", 50)]
    {
        let case = Case {
            sort: sort.split(',').map(|s| (s.trim_start_matches('-'), s.starts_with('-'))).collect(),
            filters: vec![],
            q: None,
            per_page: None,
            page: None,
        };
        let want = case.expected(&models, |_| true);
        let mut got = Vec::new();
        let mut page = 1;
        loop {
            let page_got = fetch(&app, ADMIN_LOGIN, &format!("sort={sort}&per_page={per_page}&page={page}")).await;
            assert_eq!(page_got.total, N);
            got.extend(page_got.ids);
            match page_got.links.iter().find(|(rel, _)| rel == "next") {
                Some((_, next)) => page = *next,
                None => break,
            }
        }
        assert_eq!(got.len() as u64, N, "{sort}");
        assert_eq!(got.iter().collect::<HashSet<_>>().len() as u64, N, "no customer twice ({sort})");
        assert_eq!(got, want, "order of {sort}");
    }
}

#[tokio::test]
async fn edge_cases_of_paging() {
    let (app, _) = spawn().await;
    // Empty result: no items, one page.
    let got = fetch(&app, ADMIN_LOGIN, "countryCode=JP").await;
    assert_eq!((got.total, got.ids.len()), (0, 0));
    assert_eq!(got.links, expected_links(1, 30, 0));
    assert_eq!(got.headers["content-type"], "application/json; charset=UTF-8");
    // A page past the end: an empty array with the same headers.
    let got = fetch(&app, ADMIN_LOGIN, "page=99&per_page=10").await;
    assert_eq!((got.total, got.ids.len()), (N, 0));
    assert_eq!(got.links, vec![("first".into(), 1), ("prev".into(), 30), ("last".into(), 30)]);
    // per_page above 100 is clamped, and the links say so.
    let res = app.req_as(ADMIN_LOGIN, Method::GET, "/v1/customers?per_page=1000").send().await.unwrap();
    assert!(res.headers()["link"].to_str().unwrap().contains("per_page=100&page=3>; rel=\"last\""));
    let items: Value = res.json().await.unwrap();
    assert_eq!(items.as_array().unwrap().len(), 100);
    // Links are absolute and keep the other parameters.
    let res = app
        .req_as(ADMIN_LOGIN, Method::GET, "/v1/customers?q=m%C3%BCll&sort=-customerName&isActive=true&per_page=2")
        .send()
        .await
        .unwrap();
    let link = res.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!(
            "<{}/v1/customers?q=m%C3%BCll&sort=-customerName&isActive=true&per_page=2&page=1>; rel=\"first\"",
            app.base
        )),
        "{link}"
    );
    // Items carry exactly the collection fields.
    let items = fetch(&app, ADMIN_LOGIN, "per_page=1").await.body;
    let mut keys: Vec<&str> = items[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "belongsToResellerID",
            "countryCode",
            "customerName",
            "id",
            "isActive",
            "isCompany",
            "localityName",
            "location",
            "postalCode"
        ]
    );
}

#[tokio::test]
async fn bad_queries_are_refused_with_the_error_body() {
    let (app, _) = spawn().await;
    for (query, status, fields) in [
        ("page=0", 422, vec!["page"]),
        ("page=abc&per_page=-1", 422, vec!["page", "per_page"]),
        ("per_page=0", 422, vec!["per_page"]),
        ("sort=mail", 422, vec!["sort"]),
        ("sort=customerName,nope", 422, vec!["sort"]),
        ("color=red", 422, vec!["color"]),
        ("billingAddress.nope=x", 422, vec!["billingAddress.nope"]),
        ("isActive=perhaps", 422, vec!["isActive"]),
        ("q=ab", 422, vec!["q"]),
        ("q=%ZZ", 400, vec![]),
        ("q=%C3%28abc", 400, vec![]),
    ] {
        let res = app.req_as(ADMIN_LOGIN, Method::GET, &format!("/v1/customers?{query}")).send().await.unwrap();
        assert_eq!(res.status(), status, "{query}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["status"], status, "{query}");
        let got: Vec<&str> =
            body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(got, fields, "{query}");
    }
}

#[tokio::test]
async fn filter_metacharacters_never_widen_a_result() {
    let (app, _) = spawn().await;
    for query in [
        "customerName=*)(uid=*",
        "customerName=%2A%29%28%7C%28uid%3D%2A",
        "localityName=Bern)(objectClass=*",
        "q=*)(|(uid=*",
        "q=%5C00%5C2a",
        "billingAddress.mail=*)(mail=*",
        "externalID=EXT-*)(sstExternalID=*",
    ] {
        let got = fetch(&app, ADMIN_LOGIN, query).await;
        assert_eq!((got.total, got.ids.len()), (0, 0), "{query}");
    }
    // As a reseller, even an all-matching filter stays inside the own subtree.
    let star = fetch(&app, RESELLER_LOGIN, "customerName=*").await.total;
    let all = fetch(&app, RESELLER_LOGIN, "").await.total;
    assert_eq!(star, all);
    assert!(all < N);
}

#[tokio::test]
async fn the_gateways_own_writes_are_in_the_very_next_list() {
    let (app, _) = spawn().await;
    let mut body = company("Freshly Written AG");
    body["belongsToResellerID"] = json!(RESELLERS[0]);
    for round in 0..5 {
        body["customerName"] = json!(format!("Freshly Written {round} AG"));
        let id = app.create(&body).await;
        let got = fetch(&app, ADMIN_LOGIN, &format!("customerName=Freshly%20Written%20{round}%20AG")).await;
        assert_eq!((got.total, got.ids), (1, vec![id]), "round {round}");
        let path = format!("/v1/customers/{id}");
        let res = app.send_json(Method::PATCH, &path, &json!({"billingAddress": {"localityName": "Aarau"}})).await;
        assert_eq!(res.status(), 200);
        let got = fetch(&app, ADMIN_LOGIN, &format!("localityName=Aarau&customerName=Freshly*{round}*")).await;
        assert_eq!(got.ids, vec![id]);
        let res = app.send_json(Method::PATCH, &path, &json!({"belongsToResellerID": RESELLERS[1]})).await;
        assert_eq!(res.status(), 200);
        assert_eq!(fetch(&app, RESELLER_LOGIN, &format!("id={id}")).await.ids, vec![id], "in reseller 2's list");
        assert_eq!(app.req(Method::DELETE, &path).send().await.unwrap().status(), 200);
        assert_eq!(fetch(&app, ADMIN_LOGIN, &format!("id={id}")).await.total, 0, "deleted");
    }
}

#[tokio::test]
async fn changes_by_an_admin_with_ldap_tools_show_within_a_second() {
    let (app, _) = spawn().await;
    let found = app.ldapsearch("ou=reseller,dc=stoney-cloud,dc=org", &format!("(uid={FIRST})"), &["dn"]);
    let real_dn = found.lines().find_map(|l| l.strip_prefix("dn: ")).expect("the customer's DN").to_string();
    let out = app.ldapmodify(&format!(
        "dn: ou=address,{real_dn}\nchangetype: modify\nreplace: l\nl: Adminhausen\n\n\
         dn: {real_dn}\nchangetype: modify\nreplace: sstIsActive\nsstIsActive: FALSE\n"
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    loop {
        if fetch(&app, ADMIN_LOGIN, "localityName=adminhausen&isActive=false").await.ids == vec![FIRST] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "not visible after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An entry deleted by an admin leaves the list too.
    let out = app.ldapmodify(&format!("dn: ou=address,{real_dn}\nchangetype: delete\n"));
    assert!(out.status.success());
    assert!(fetch(&app, ADMIN_LOGIN, "localityName=adminhausen").await.ids.is_empty());
    let got = fetch(&app, ADMIN_LOGIN, &format!("id={FIRST}")).await;
    assert_eq!(got.ids, vec![FIRST], "the customer stays, without a billing address");
    assert!(got.body[0].get("localityName").is_none());
}

#[tokio::test]
async fn after_a_directory_restart_the_index_resumes_and_catches_up() {
    let (mut app, models) = spawn().await;
    let victim = models.iter().find(|m| m.mail.is_some() && m.shipping_country.is_none()).unwrap().id;
    let changed = models.iter().find(|m| m.mail.is_some() && m.id != victim).unwrap().id;
    let dn_of = |app: &TestApp, id: u64| {
        let out = app.ldapsearch("ou=reseller,dc=stoney-cloud,dc=org", &format!("(uid={id})"), &["dn"]);
        out.lines().find_map(|l| l.strip_prefix("dn: ")).expect("a DN").to_string()
    };
    let (victim_dn, changed_dn) = (dn_of(&app, victim), dn_of(&app, changed));

    app.slapd.stop();
    let res = app.req(Method::GET, "/v1/customers").send().await.unwrap();
    assert_eq!(res.status(), 503, "no list while the directory is down");
    assert!(res.headers().contains_key("retry-after"));
    app.slapd.restart().expect("slapd starts again");
    // Changes right after the restart, most likely before the gateway has reconnected:
    // they reach it in the resumed refresh (the session log did not survive the restart).
    let out = app.ldapmodify(&format!(
        "dn: ou=address,{victim_dn}\nchangetype: delete\n\ndn: {victim_dn}\nchangetype: delete\n\n\
         dn: ou=address,{changed_dn}\nchangetype: modify\nreplace: l\nl: Neustadt\n"
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let started = Instant::now();
    let got = loop {
        let res = app.req(Method::GET, &format!("/v1/customers?id={victim}")).send().await.unwrap();
        if res.status() == 200 {
            break res.headers()["x-total-count"].to_str().unwrap().to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "lists answer again: {}", res.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got, "0", "the customer deleted meanwhile is gone");
    assert_eq!(fetch(&app, ADMIN_LOGIN, "localityName=Neustadt").await.ids, vec![changed]);
    assert_eq!(fetch(&app, ADMIN_LOGIN, "per_page=1").await.total, N - 1);
}
