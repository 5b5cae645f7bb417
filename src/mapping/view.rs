//! A view: another JSON shape over the same resource. Each field of a view names where
//! its value lives in the resource's own document (a dotted path such as
//! `billingAddress.localityName`), so a facade with other field names and nesting (the
//! subscriptions API's `address.postalPlace`) reads and writes the very same entries
//! through the one mapping, and reports problems in its own names.

use serde_json::{Map, Value};

use super::resource::ResourceDef;
use super::Problem;

/// One field of a view: a value at a path of the resource's document, or an object of
/// further view fields.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Path(&'static str),
    /// A value at a path, converted on its way in and out.
    Conv(&'static str, Conv),
    Object(&'static [ViewField]),
}

/// How a view shows a value of the resource's document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// A boolean as one of two words: `(false, true)`, such as `("PERSON", "COMPANY")`.
    Words(&'static str, &'static str),
    /// Text shown in upper case and stored in lower case (a language `DE`, stored `de`).
    UpperCase,
}

impl Conv {
    fn show(self, v: &Value) -> Option<Value> {
        match self {
            Conv::Words(no, yes) => v.as_bool().map(|b| Value::from(if b { yes } else { no })),
            Conv::UpperCase => v.as_str().map(|s| Value::from(s.to_uppercase())),
        }
    }

    fn store(self, v: &Value) -> Result<Value, String> {
        match (self, v) {
            (_, Value::Null) => Ok(Value::Null),
            (Conv::Words(no, _), Value::String(s)) if s.eq_ignore_ascii_case(no) => Ok(Value::Bool(false)),
            (Conv::Words(_, yes), Value::String(s)) if s.eq_ignore_ascii_case(yes) => Ok(Value::Bool(true)),
            (Conv::Words(no, yes), _) => Err(format!("must be {no} or {yes}")),
            (Conv::UpperCase, Value::String(s)) => Ok(Value::from(s.to_lowercase())),
            (Conv::UpperCase, _) => Err("must be a string".into()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ViewField {
    pub name: &'static str,
    pub shape: Shape,
    /// The most characters the view accepts (stricter than the resource's own limit).
    pub max: Option<usize>,
}

impl ViewField {
    pub const fn path(name: &'static str, path: &'static str) -> ViewField {
        ViewField { name, shape: Shape::Path(path), max: None }
    }
    pub const fn conv(name: &'static str, path: &'static str, conv: Conv) -> ViewField {
        ViewField { name, shape: Shape::Conv(path, conv), max: None }
    }
    pub const fn object(name: &'static str, fields: &'static [ViewField]) -> ViewField {
        ViewField { name, shape: Shape::Object(fields), max: None }
    }
    pub const fn max(mut self, n: usize) -> ViewField {
        self.max = Some(n);
        self
    }
}

#[derive(Debug)]
pub struct View {
    pub def: &'static ResourceDef,
    pub fields: &'static [ViewField],
    /// An empty string stands for no value (webshops send `""` for what they do not have).
    pub empty_is_none: bool,
    /// Paths of the document that no field shows, with the path of the field that
    /// answers for their problems (`customerName`, which a company's `companyName`
    /// sets, with `billingAddress.organizationName`).
    pub aliases: &'static [(&'static str, &'static str)],
}

fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |at, key| at.get(key))
}

fn set(doc: &mut Value, path: &str, value: Value) {
    let mut at = doc;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let m = at.as_object_mut().expect("an object");
        if keys.peek().is_none() {
            m.insert(key.to_string(), value);
            return;
        }
        at = m.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
}

impl View {
    /// The view of a resource document (what GET answers in this view); fields without
    /// a value are left out, and so are objects left empty.
    pub fn render(&self, doc: &Value) -> Value {
        fn walk(fields: &[ViewField], doc: &Value) -> Map<String, Value> {
            let mut out = Map::new();
            for f in fields {
                match f.shape {
                    Shape::Path(p) => {
                        if let Some(v) = get(doc, p).filter(|v| !v.is_null()) {
                            out.insert(f.name.to_string(), v.clone());
                        }
                    }
                    Shape::Conv(p, conv) => {
                        if let Some(v) = get(doc, p).and_then(|v| conv.show(v)) {
                            out.insert(f.name.to_string(), v);
                        }
                    }
                    Shape::Object(sub) => {
                        let m = walk(sub, doc);
                        if !m.is_empty() {
                            out.insert(f.name.to_string(), Value::Object(m));
                        }
                    }
                }
            }
            out
        }
        Value::Object(walk(self.fields, doc))
    }

    /// The resource document a view document stands for: each value put where its field
    /// says (a `null` too, so merge patches keep their meaning). Names the view does not
    /// have are problems, in the view's terms.
    pub fn to_document(&self, view_doc: &Value) -> Result<Value, Vec<Problem>> {
        self.translate(view_doc, false)
    }

    /// The same for a document that stands for every field of the view: a field it
    /// leaves out is removed (`null`), and fields the view does not show stay as they
    /// are (a merge patch of the resource).
    pub fn to_replacement(&self, view_doc: &Value) -> Result<Value, Vec<Problem>> {
        self.translate(view_doc, true)
    }

    fn translate(&self, view_doc: &Value, whole: bool) -> Result<Value, Vec<Problem>> {
        struct Walk<'a> {
            view: &'a View,
            whole: bool,
            out: Value,
            problems: Vec<Problem>,
        }
        impl Walk<'_> {
            fn clear(&mut self, fields: &[ViewField]) {
                for f in fields {
                    match f.shape {
                        Shape::Path(p) | Shape::Conv(p, _) => set(&mut self.out, p, Value::Null),
                        Shape::Object(sub) => self.clear(sub),
                    }
                }
            }
            fn walk(&mut self, fields: &[ViewField], at: &Value, prefix: &str) {
                let Some(obj) = at.as_object() else {
                    self.problems.push(Problem::new(prefix.trim_end_matches('.'), "must be an object"));
                    return;
                };
                for key in obj.keys() {
                    if !fields.iter().any(|f| f.name == key) {
                        self.problems.push(Problem::new(format!("{prefix}{key}"), "unknown attribute"));
                    }
                }
                for f in fields {
                    let name = format!("{prefix}{}", f.name);
                    let value = match obj.get(f.name) {
                        Some(Value::String(s)) if s.is_empty() && self.view.empty_is_none => Some(&Value::Null),
                        Some(v) => Some(v),
                        None if self.whole => Some(&Value::Null),
                        None => None,
                    };
                    let Some(value) = value else { continue };
                    if let (Some(max), Some(s)) = (f.max, value.as_str()) {
                        if s.chars().count() > max {
                            self.problems.push(Problem::new(name, format!("must be at most {max} characters")));
                            continue;
                        }
                    }
                    match f.shape {
                        Shape::Path(p) => set(&mut self.out, p, value.clone()),
                        Shape::Conv(p, conv) => match conv.store(value) {
                            Ok(v) => set(&mut self.out, p, v),
                            Err(msg) => self.problems.push(Problem::new(name, msg)),
                        },
                        // Removing the object removes each of its values.
                        Shape::Object(sub) if value.is_null() => self.clear(sub),
                        Shape::Object(sub) => self.walk(sub, value, &format!("{name}.")),
                    }
                }
            }
        }
        let mut w = Walk { view: self, whole, out: Value::Object(Map::new()), problems: Vec::new() };
        w.walk(self.fields, view_doc, "");
        let (out, problems) = (w.out, w.problems);
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// The view's name for a path of the resource's document (how a problem the mapping
    /// found is reported); the path itself where the view does not show it.
    pub fn name_of(&self, path: &str) -> String {
        fn walk(fields: &[ViewField], path: &str, prefix: &str) -> Option<String> {
            fields.iter().find_map(|f| match f.shape {
                Shape::Path(p) | Shape::Conv(p, _) if p == path => Some(format!("{prefix}{}", f.name)),
                Shape::Path(_) | Shape::Conv(..) => None,
                Shape::Object(sub) => walk(sub, path, &format!("{prefix}{}.", f.name)),
            })
        }
        let path = self.aliases.iter().find(|(p, _)| *p == path).map(|(_, name)| *name).unwrap_or(path);
        walk(self.fields, path, "").unwrap_or_else(|| path.to_string())
    }

    /// The mapping's problems, named as the view names them.
    pub fn problems(&self, problems: Vec<Problem>) -> Vec<Problem> {
        problems.into_iter().map(|p| Problem { field: self.name_of(&p.field), ..p }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::document::{self, Mode};
    use crate::mapping::resources::CUSTOMERS;
    use serde_json::json;

    /// A merchant's shape of a customer, as the subscriptions API names it.
    static MERCHANT: View = View {
        def: &CUSTOMERS,
        empty_is_none: false,
        aliases: &[],
        fields: &[
            ViewField::path("companyName", "customerName"),
            ViewField::path("firstName", "billingAddress.givenName"),
            ViewField::path("lastName", "billingAddress.surname"),
            ViewField::path("email", "billingAddress.mail"),
            ViewField::object(
                "address",
                &[
                    ViewField::path("street", "billingAddress.postalAddress"),
                    ViewField::path("postalCode", "billingAddress.postalCode"),
                    ViewField::path("postalPlace", "billingAddress.localityName"),
                    ViewField::path("countryCode", "billingAddress.countryCode"),
                ],
            ),
        ],
    };

    #[test]
    fn a_view_renders_and_reads_back_the_same_document() {
        let doc = json!({"id": 5, "isCompany": true, "customerName": "ACME AG", "belongsToResellerID": 4000001,
            "billingAddress": {"givenName": "Zoë", "surname": "Müller", "mail": "zoe@example.com", "postalAddress": "Gasse 1",
                "postalCode": "3011", "localityName": "Bern", "countryCode": "CH", "gender": "f", "preferredLanguage": "de-CH"}});
        let view = MERCHANT.render(&doc);
        assert_eq!(
            view,
            json!({"companyName": "ACME AG", "firstName": "Zoë", "lastName": "Müller", "email": "zoe@example.com",
                "address": {"street": "Gasse 1", "postalCode": "3011", "postalPlace": "Bern", "countryCode": "CH"}})
        );
        let back = MERCHANT.to_document(&view).unwrap();
        assert_eq!(back["billingAddress"]["localityName"], "Bern");
        assert_eq!(back["customerName"], "ACME AG");
        assert_eq!(MERCHANT.render(&back), view, "the view's fields go where they came from");
    }

    #[test]
    fn problems_speak_the_views_names() {
        let e = MERCHANT.to_document(&json!({"nickname": "x", "address": {"planet": "Mars"}})).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["nickname", "address.planet"]);
        assert_eq!(MERCHANT.to_document(&json!({"address": 5})).unwrap_err()[0].field, "address");
        // What the mapping refuses comes back in the view's terms.
        let mut doc = MERCHANT.to_document(&json!({"email": "nope", "address": {"postalPlace": "Bern"}})).unwrap();
        doc["isCompany"] = json!(true);
        doc["belongsToResellerID"] = json!(4000001);
        let problems = MERCHANT.problems(document::parse(&CUSTOMERS, &doc, Mode::Create).unwrap_err());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"email"), "{fields:?}");
        assert!(fields.contains(&"companyName"), "{fields:?}");
        assert!(fields.contains(&"billingAddress.gender"), "not in the view: the model's name, {fields:?}");
        // A null object in a merge patch removes the values it holds.
        let patch = MERCHANT.to_document(&json!({"address": null})).unwrap();
        assert_eq!(patch["billingAddress"]["postalCode"], Value::Null);
    }
}
