//! Documents ↔ entries of a resource, by walking its definition (`resource.rs`) and
//! tables (`table.rs`).

use std::collections::BTreeMap;

use ldap3::Mod;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::resource::{CustomerOf, Owner, ResourceDef, Tenant};
use super::table::{self, Field, Kind, Part, ADDRESS_CLASSES, PERSON_NAME_ATTRS};
use super::values;
use super::Problem;
use crate::directory::{layout, Entry};

/// Attribute values of one entry, by canonical attribute name (single-valued here).
pub type Attrs = BTreeMap<&'static str, String>;

/// A resource as stored: its root entry and its fixed child entries.
#[derive(Debug, Clone)]
pub struct Stored {
    pub def: &'static ResourceDef,
    pub id: u64,
    /// The parent of the DN (0 for a resource without one).
    pub parent: u64,
    /// The reseller the DN gives it to: its parent (customers) or itself (resellers).
    pub reseller: u64,
    pub root: Entry,
    pub billing: Option<Entry>,
    pub shipping: Option<Entry>,
}

impl Stored {
    /// Sorts the entries of a read of a root and its children.
    pub fn from_entries(def: &'static ResourceDef, base: &str, mut entries: Vec<Entry>) -> Option<Stored> {
        entries.sort_by_key(|e| layout::depth(&e.dn));
        let mut it = entries.into_iter();
        let root = it.next()?;
        if !root.has_object_class(def.structural) {
            return None;
        }
        let at = def.place(&root.dn, base).filter(|p| p.part == Part::Root)?;
        let reseller = match def.tenant {
            Tenant::Parent => at.parent,
            Tenant::Own => at.id,
            Tenant::Attr => 0,
        };
        let depth = layout::depth(&root.dn);
        let mut billing = None;
        let mut shipping = None;
        for e in it {
            if layout::depth(&e.dn) != depth + 1 {
                continue;
            }
            match def.place(&e.dn, base).map(|p| p.part) {
                Some(Part::Billing) => billing = Some(e),
                Some(Part::Shipping) => shipping = Some(e),
                _ => {}
            }
        }
        Some(Stored { def, id: at.id, parent: at.parent, reseller, root, billing, shipping })
    }

    pub fn entry(&self, part: Part) -> Option<&Entry> {
        match part {
            Part::Root => Some(&self.root),
            Part::Billing => self.billing.as_ref(),
            Part::Shipping => self.shipping.as_ref(),
        }
    }

    /// Whom it belongs to (see [`owner`]).
    pub fn owner(&self) -> Owner {
        owner(self.def, self.id, self.parent, &self.root)
    }

    pub fn is_company(&self) -> bool {
        self.root.first("sstiscompany").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"))
    }

    /// A strong validator over the change sequence numbers of every entry of the customer,
    /// so a change to any of them (through the gateway or by an admin) changes it.
    pub fn etag(&self) -> String {
        let mut h = Sha256::new();
        for (label, e) in [("c", Some(&self.root)), ("b", self.billing.as_ref()), ("s", self.shipping.as_ref())] {
            if let Some(e) = e {
                h.update(label.as_bytes());
                h.update(e.dn.to_ascii_lowercase().as_bytes());
                h.update(e.first("entrycsn").unwrap_or_default().as_bytes());
                h.update(b"\n");
            }
        }
        format!("\"{}\"", &hex::encode(h.finalize())[..32])
    }

    /// The assertion that holds while an entry is unchanged since it was read.
    pub fn unchanged(entry: &Entry) -> Option<String> {
        entry.first("entrycsn").map(|csn| format!("(entryCSN={})", crate::directory::escape::filter_value(csn)))
    }

    /// The same for a rename of the root entry. The unique overlay checks a rename's
    /// uid with an internal search of the whole directory that inherits the assertion,
    /// and slapd tests it on that search's base entry; so the filter also holds for
    /// entries of other classes, and the root entry must still be unchanged.
    pub fn unchanged_root(&self) -> Option<String> {
        Self::unchanged(&self.root).map(|f| format!("(|{f}(!(objectClass={})))", self.def.structural))
    }
}

/// The attribute that repeats a customer's reseller on its entry.
pub const RESELLER_ATTR: &str = "sstbelongstoreselleruid";

/// A customer's tenant: the reseller of its DN when its `sstBelongsToResellerUID` values
/// (if any) all name that reseller, else none. A move changes the DN first and the
/// attribute in the transaction after it, so a customer on its way belongs to nobody.
pub fn tenant(dn_reseller: u64, attr_values: &[String]) -> Option<u64> {
    attr_values.iter().all(|v| v.trim().parse::<u64>() == Ok(dn_reseller)).then_some(dn_reseller)
}

/// Whom an element belongs to, by its root entry: the reseller it is committed to (the
/// one of its DN while every `sstBelongsToResellerUID` value names it too, or for a
/// resource placed by attribute the one value all of them name), and the customer
/// whose users see it.
pub fn owner(def: &ResourceDef, id: u64, parent: u64, root: &Entry) -> Owner {
    let attr = root.values(RESELLER_ATTR);
    let tenant = match def.tenant {
        Tenant::Parent => tenant(parent, attr),
        Tenant::Own => tenant(id, attr),
        Tenant::Attr => single_number(attr),
    };
    let customer = match def.customer_of {
        CustomerOf::Itself => Some(id),
        CustomerOf::Attr(a) => single_number(root.values(a)),
        CustomerOf::Nobody => None,
    };
    Owner { tenant, customer }
}

/// The number every value names, if there is at least one and they agree.
fn single_number(values: &[String]) -> Option<u64> {
    let first: u64 = values.first()?.trim().parse().ok()?;
    values.iter().all(|v| v.trim().parse::<u64>() == Ok(first)).then_some(first)
}

/// The name a resource is shown with: `o` for companies, "givenName sn" for persons.
pub fn display_name(root: &Entry, billing: Option<&Entry>, is_company: bool) -> Option<String> {
    display_name_by(is_company, |a| root.first(a), |a| billing.and_then(|b| b.first(a)))
}

/// The same rule over any source of attribute values (canonical names): the root
/// entry's, and the billing entry's for a person whose entry lacks the names.
pub fn display_name_by<'a>(
    is_company: bool,
    customer: impl Fn(&str) -> Option<&'a str>,
    billing: impl Fn(&str) -> Option<&'a str>,
) -> Option<String> {
    if is_company {
        return customer("o").map(str::to_string);
    }
    let pick = |get: &dyn Fn(&str) -> Option<&'a str>| match (get(PERSON_NAME_ATTRS.0), get(PERSON_NAME_ATTRS.1)) {
        (Some(g), Some(s)) => Some(format!("{g} {s}")),
        _ => None,
    };
    pick(&customer).or_else(|| pick(&billing))
}

fn scalar_json(f: &Field, entry: &Entry) -> Option<Value> {
    entry.first(f.attr).and_then(|v| values::from_ldap(f.kind, v)).or_else(|| f.default.map(Value::Bool))
}

fn object_json(fields: &[Field], entry: &Entry) -> Value {
    let mut m = Map::new();
    for f in fields {
        if let Some(v) = scalar_json(f, entry) {
            m.insert(f.name.to_string(), v);
        }
    }
    Value::Object(m)
}

/// The full JSON document of a stored resource (GET element).
pub fn to_json(s: &Stored, public_url: &str) -> Value {
    let mut m = Map::new();
    let is_company = s.is_company();
    for f in s.def.fields {
        let v = match f.kind {
            Kind::Id => Some(Value::from(s.id)),
            Kind::ParentRef => Some(Value::from(s.parent)),
            Kind::Link(template) => Some(Value::String(s.def.link(public_url, s.id, template))),
            Kind::DisplayName => display_name(&s.root, s.billing.as_ref(), is_company).map(Value::String),
            Kind::Object(fields) => s.entry(f.part).map(|e| object_json(fields, e)),
            Kind::List(inner) => {
                let all: Vec<Value> =
                    s.root.values(f.attr).iter().filter_map(|v| values::from_ldap(*inner, v)).collect();
                (!all.is_empty()).then_some(Value::Array(all))
            }
            _ => scalar_json(f, &s.root),
        };
        if let Some(v) = v {
            m.insert(f.name.to_string(), v);
        }
    }
    Value::Object(m)
}

/// What a valid document asks to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The parent the document names (0 for a resource without one).
    pub parent: u64,
    pub root: Attrs,
    pub billing: Attrs,
    pub shipping: Option<Attrs>,
    /// Attributes a merge patch leaves as stored: fields it did not touch whose stored
    /// values do not pass validation (written by hand).
    pub kept: Vec<(Part, &'static str)>,
    /// The values of list fields (absent: none).
    pub lists: Vec<(Part, &'static str, Vec<String>)>,
    /// A password given on create (see `Kind::Secret`): set after the entry exists.
    pub secret: Option<String>,
}

impl Desired {
    /// The values a list field asks for.
    pub fn list(&self, part: Part, attr: &str) -> &[String] {
        self.lists.iter().find(|(p, a, _)| *p == part && *a == attr).map(|(_, _, v)| v.as_slice()).unwrap_or(&[])
    }

    pub fn keeps(&self, part: Part, attr: &str) -> bool {
        self.kept.iter().any(|(p, a)| *p == part && *a == attr)
    }

    pub fn part(&self, part: Part) -> Option<&Attrs> {
        match part {
            Part::Root => Some(&self.root),
            Part::Billing => Some(&self.billing),
            Part::Shipping => self.shipping.as_ref(),
        }
    }
}

/// How a document is checked: a create, a full replace of an existing customer (whose
/// current document read-only fields are compared with), or the result of a merge patch
/// on it (where a field the patch did not touch is not refused for its stored value).
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    Create,
    Replace { current: &'a Value },
    Patch { current: &'a Value, patch: &'a Value },
}

impl<'a> Mode<'a> {
    fn current(&self) -> Option<&'a Value> {
        match *self {
            Mode::Create => None,
            Mode::Replace { current } | Mode::Patch { current, .. } => Some(current),
        }
    }
}

/// Whether a merge patch sets the field at a dotted path (or the object holding it).
pub fn touches(patch: &Value, path: &str) -> bool {
    let mut at = patch;
    for key in path.split('.') {
        match at {
            Value::Object(m) => match m.get(key) {
                Some(v) => at = v,
                None => return false,
            },
            _ => return true,
        }
    }
    true
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Fills in or drops what is composed of other fields of an object (`composed_of`):
/// the composed field follows its parts when a write gives or changes them; when a
/// write changes it alone, the parts no longer describe it and are dropped.
fn compose(fields: &'static [Field], prefix: &str, obj: &mut Map<String, Value>, changed: &dyn Fn(&str) -> bool) {
    for f in fields {
        let Some(parts) = f.composed_of else { continue };
        let text = |obj: &Map<String, Value>, n: &str| {
            obj.get(n).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
        };
        let given: Vec<Option<String>> = parts.iter().map(|p| text(obj, p)).collect();
        if given.iter().all(Option::is_none) {
            continue;
        }
        let part = |i: usize| given.get(i).and_then(|v| v.as_deref());
        let composed = values::street_lines(part(0), part(1), part(2), part(3));
        let parts_changed = parts.iter().any(|p| changed(&format!("{prefix}{p}")));
        let own = obj.get(f.name).filter(|v| !v.is_null());
        if parts_changed || own.is_none() {
            obj.insert(f.name.to_string(), Value::String(composed));
        } else if changed(&format!("{prefix}{}", f.name)) && own.and_then(Value::as_str) != Some(composed.as_str()) {
            for p in parts {
                obj.remove(*p);
            }
        }
    }
}

fn check_object(
    fields: &'static [Field],
    prefix: &str,
    obj: &Map<String, Value>,
    problems: &mut Vec<Problem>,
    changed: &dyn Fn(&str) -> bool,
) -> Attrs {
    let mut out = Attrs::new();
    let mut composed;
    let obj = if fields.iter().any(|f| f.composed_of.is_some()) {
        composed = obj.clone();
        compose(fields, prefix, &mut composed, changed);
        &composed
    } else {
        obj
    };
    for key in obj.keys() {
        if table::field(fields, key).is_none() {
            problems.push(Problem::new(format!("{prefix}{key}"), "unknown attribute"));
        }
    }
    for f in fields {
        let path = format!("{prefix}{}", f.name);
        match present(obj.get(f.name)) {
            Some(v) => match values::to_ldap(f.kind, v) {
                Ok(s) => {
                    out.insert(f.attr, s);
                }
                Err(msg) => problems.push(Problem::new(path, msg)),
            },
            None => {
                let conditional = f.required_if.is_some_and(|(other, vals)| {
                    obj.get(other).and_then(Value::as_str).is_some_and(|x| vals.contains(&x))
                });
                if f.required || conditional {
                    let why = match f.required_if {
                        Some((other, vals)) if conditional => {
                            format!("is required when {other} is {}", vals.join(" or "))
                        }
                        _ => "is required".to_string(),
                    };
                    problems.push(Problem::new(path, why));
                }
            }
        }
    }
    out
}

/// Validates a whole document against the table and says what it asks to store; every
/// problem is reported at once.
pub fn parse(def: &'static ResourceDef, doc: &Value, mode: Mode<'_>) -> Result<Desired, Vec<Problem>> {
    let Some(obj) = doc.as_object() else {
        return Err(vec![Problem::new("", "the body must be a JSON object")]);
    };
    let mut problems = Vec::new();
    for key in obj.keys() {
        if table::field(def.fields, key).is_none() {
            problems.push(Problem::new(key.clone(), "unknown attribute"));
        }
    }
    let mut root = Attrs::new();
    let mut billing = None;
    let mut shipping = None;
    let mut parent = None;
    let mut name: Option<String> = None;
    let mut lists = Vec::new();
    let mut secret = None;
    // Whether the write sets or changes a field (by dotted path): every given field of
    // a create, what a replace changes, what a merge patch touches.
    let changed = |path: &str| -> bool {
        let at = |d: &Value| path.split('.').try_fold(d, |v, k| v.get(k)).filter(|v| !v.is_null()).cloned();
        match mode {
            Mode::Create => at(doc).is_some(),
            Mode::Replace { current } => at(doc) != at(current),
            Mode::Patch { patch, .. } => touches(patch, path),
        }
    };
    for f in def.fields {
        let given = present(obj.get(f.name));
        if f.read_only {
            if let Some(v) = given {
                match mode.current() {
                    None => problems.push(Problem::new(f.name, "is read-only and set by the server")),
                    Some(current) if current.get(f.name) != Some(v) => {
                        problems.push(Problem::new(f.name, "is read-only: it may only be given with its current value"))
                    }
                    Some(_) => {}
                }
            }
            continue;
        }
        if f.create_only {
            // Set once: on create, or while the element has none; then only repeated.
            if let Some(current) = mode.current().and_then(|c| present(c.get(f.name))) {
                if given != Some(current) {
                    problems.push(Problem::new(f.name, "is set once: it may only be given with its current value"));
                    continue;
                }
            }
        }
        match (f.kind, given) {
            (Kind::Object(fields), Some(Value::Object(o))) => {
                let attrs = check_object(fields, &format!("{}.", f.name), o, &mut problems, &changed);
                match f.part {
                    Part::Billing => billing = Some(attrs),
                    _ => shipping = Some(attrs),
                }
            }
            (Kind::Object(_), Some(_)) => problems.push(Problem::new(f.name, "must be an object")),
            (Kind::DisplayName, Some(v)) => match values::to_ldap(f.kind, v) {
                Ok(s) => name = Some(s),
                Err(msg) => problems.push(Problem::new(f.name, msg)),
            },
            (Kind::DisplayName, None) => {}
            (Kind::Qualified(_), _) => {}
            (Kind::Secret, Some(v)) => match (mode, values::secret(v)) {
                (Mode::Create, Ok(p)) => secret = Some(p),
                (Mode::Create, Err(msg)) => problems.push(Problem::new(f.name, msg)),
                _ => problems
                    .push(Problem::new(f.name, "is write-only and set on create; change it with POST …/password")),
            },
            (Kind::Secret, None) => {
                if f.required && matches!(mode, Mode::Create) {
                    problems.push(Problem::new(f.name, "is required"));
                }
            }
            (Kind::List(inner), Some(v)) => match values::list_to_ldap(*inner, v) {
                Ok(vals) if vals.is_empty() && f.required => problems.push(Problem::new(f.name, "is required")),
                Ok(vals) => lists.push((Part::Root, f.attr, vals)),
                Err(ps) => problems.extend(ps.into_iter().map(|(i, msg)| match i {
                    usize::MAX => Problem::new(f.name, msg),
                    i => Problem::new(format!("{}[{i}]", f.name), msg),
                })),
            },
            (_, Some(v)) => match values::to_ldap(f.kind, v) {
                Ok(s) => {
                    if f.kind == Kind::ParentRef {
                        parent = s.parse().ok();
                    }
                    root.insert(f.attr, s);
                }
                Err(msg) => problems.push(Problem::new(f.name, msg)),
            },
            (_, None) => {
                if let Some(d) = f.default {
                    root.insert(f.attr, if d { "TRUE" } else { "FALSE" }.to_string());
                } else if let Some(t) = f.default_text {
                    root.insert(f.attr, t.to_string());
                } else if f.required {
                    problems.push(Problem::new(f.name, "is required"));
                }
            }
        }
    }

    // Values qualified by the parent (unique per parent).
    for f in def.fields {
        if let Kind::Qualified(of) = f.kind {
            if let Some(v) = table::field(def.fields, of).and_then(|o| root.get(o.attr)) {
                let v = format!("{}/{v}", parent.unwrap_or_default());
                root.insert(f.attr, v);
            }
        }
    }

    // The display name: `o` for a company; for a person, the billing holder's names.
    let name_field = def.name_field().map(|f| f.name).unwrap_or("name");
    let is_company = root.get("sstiscompany").map(String::as_str).filter(|_| def.name_field().is_some());
    match is_company {
        Some("TRUE") => match name {
            Some(n) => {
                root.insert("o", n);
            }
            None => problems.push(Problem::new(name_field, "is required for a company")),
        },
        Some(_) => {
            if let Some(b) = &billing {
                if let (Some(g), Some(s)) = (b.get(PERSON_NAME_ATTRS.0), b.get(PERSON_NAME_ATTRS.1)) {
                    let full = format!("{g} {s}");
                    // A replace may repeat the name GET showed (an admin may have edited
                    // the billing names since): it follows the billing names all the same.
                    let shown = mode.current().and_then(|c| c.get(name_field)).and_then(Value::as_str);
                    if name.as_ref().is_some_and(|n| *n != full && Some(n.as_str()) != shown) {
                        problems.push(Problem::new(
                            name_field,
                            format!(
                                "of a private {} must be the billing address's givenName and surname: \"{full}\"",
                                def.singular
                            ),
                        ));
                    }
                    root.insert(PERSON_NAME_ATTRS.0, g.clone());
                    root.insert(PERSON_NAME_ATTRS.1, s.clone());
                }
            }
        }
        None => {}
    }

    let mut kept = Vec::new();
    if let Mode::Patch { patch, .. } = mode {
        let (touched, untouched): (Vec<Problem>, Vec<Problem>) =
            problems.into_iter().partition(|p| touches(patch, &p.field));
        problems = touched;
        for p in untouched {
            let Some((part, f)) = table::resolve(def, &p.field) else {
                problems.push(p);
                continue;
            };
            kept.push((part, f.attr));
            if part == Part::Billing && [PERSON_NAME_ATTRS.0, PERSON_NAME_ATTRS.1].contains(&f.attr) {
                kept.extend([(Part::Root, PERSON_NAME_ATTRS.0), (Part::Root, PERSON_NAME_ATTRS.1)]);
            }
        }
    }
    if problems.is_empty() {
        Ok(Desired {
            parent: parent.unwrap_or_default(),
            root,
            billing: billing.unwrap_or_default(),
            shipping,
            kept,
            lists,
            secret,
        })
    } else {
        Err(problems)
    }
}

/// Every attribute the gateway manages on an entry of this part; others are left alone.
pub fn managed(def: &ResourceDef, part: Part) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = match part {
        Part::Root => def
            .fields
            .iter()
            .filter(|f| f.is_read() && !f.read_only)
            .map(|f| f.attr)
            .chain([PERSON_NAME_ATTRS.0, PERSON_NAME_ATTRS.1])
            .collect(),
        Part::Billing | Part::Shipping => table::part_fields(def, part).iter().map(|f| f.attr).collect(),
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// The attributes of a new entry of this part.
pub fn new_entry(def: &ResourceDef, part: Part, id: u64, d: &Desired) -> Vec<(String, Vec<String>)> {
    let attrs = d.part(part).cloned().unwrap_or_default();
    let classes = match part {
        Part::Root => def.classes,
        _ => ADDRESS_CLASSES,
    };
    let mut class_values: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
    for c in needed_classes(def, part, |attr| attrs.contains_key(attr) || !d.list(part, attr).is_empty()) {
        if !class_values.iter().any(|v| v.eq_ignore_ascii_case(c)) {
            class_values.push(c.to_string());
        }
    }
    let mut out = vec![("objectClass".to_string(), class_values)];
    match part.ou() {
        None => {
            out.push(("uid".into(), vec![id.to_string()]));
            out.extend(def.own_id_attrs.iter().map(|a| (a.to_string(), vec![id.to_string()])));
        }
        Some(ou) => out.push(("ou".into(), vec![ou.to_string()])),
    }
    if part == Part::Root {
        // The schema may require a password before one is set: a hash no password has.
        out.extend(
            def.fields
                .iter()
                .filter(|f| f.kind == Kind::Secret)
                .map(|f| (f.attr.to_string(), vec![unusable_password()])),
        );
    }
    out.extend(attrs.iter().map(|(a, v)| (a.to_string(), vec![v.clone()])));
    out.extend(
        d.lists.iter().filter(|(p, _, v)| *p == part && !v.is_empty()).map(|(_, a, v)| (a.to_string(), v.clone())),
    );
    out
}

/// A salted SHA-1 hash of random bytes in the `{SSHA}` form: no password matches it, so
/// the entry cannot be logged in to until a password is set.
pub fn unusable_password() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 28];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Without randomness, a scheme no server knows: still no password matches.
        return "{NONE}unusable".to_string();
    }
    format!("{{SSHA}}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The auxiliary classes that fields of a part need for the attributes `written` says
/// are given (`Field::class`).
fn needed_classes(def: &ResourceDef, part: Part, written: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let fields = if part == Part::Root { def.fields } else { table::part_fields(def, part) };
    let mut out: Vec<&'static str> = fields.iter().filter(|f| written(f.attr)).filter_map(|f| f.class).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The auxiliary class an entry of this part needs for the attributes the gateway writes.
pub fn auxiliary_class(def: &ResourceDef, part: Part) -> &'static str {
    let classes = match part {
        Part::Root => def.classes,
        _ => ADDRESS_CLASSES,
    };
    let structural = if part == Part::Root { def.structural } else { "organizationalUnit" };
    classes.iter().copied().find(|c| *c != "top" && *c != structural).unwrap_or("top")
}

/// The modifications that turn an entry into the desired state, touching only the
/// attributes the mapping manages and `keep` does not name. A field shows an attribute's
/// first value: a write that keeps it changes nothing, one that changes it replaces that
/// value and keeps the others (an admin's second `mail`, say), and removing the field
/// removes every value. An entry written by hand without the part's auxiliary class
/// gets it with the first change.
pub fn diff(def: &ResourceDef, part: Part, current: &Entry, d: &Desired) -> Vec<Mod<String>> {
    let empty = Attrs::new();
    let desired = d.part(part).unwrap_or(&empty);
    let fields = if part == Part::Root { def.fields } else { table::part_fields(def, part) };
    let mut mods = Vec::new();
    for attr in managed(def, part) {
        if d.keeps(part, attr) {
            continue;
        }
        let now = current.values(attr);
        if fields.iter().any(|f| f.attr == attr && f.is_list()) {
            // A list is a set: written whole when it differs.
            let want = d.list(part, attr);
            let fold =
                |v: &[String]| -> std::collections::BTreeSet<String> { v.iter().map(|s| s.to_lowercase()).collect() };
            if fold(want) != fold(now) {
                mods.push(if want.is_empty() {
                    Mod::Delete(attr.to_string(), Default::default())
                } else {
                    Mod::Replace(attr.to_string(), want.iter().cloned().collect())
                });
            }
            continue;
        }
        match desired.get(attr) {
            Some(v) if now.first() == Some(v) => {}
            Some(v) => {
                mods.push(Mod::Replace(attr.to_string(), [v.clone()].into()));
                let others: std::collections::HashSet<String> =
                    now.iter().skip(1).filter(|o| o.to_lowercase() != v.to_lowercase()).cloned().collect();
                if !others.is_empty() {
                    mods.push(Mod::Add(attr.to_string(), others));
                }
            }
            None if !now.is_empty() => mods.push(Mod::Delete(attr.to_string(), Default::default())),
            None => {}
        }
    }
    let class = auxiliary_class(def, part);
    let mut missing: Vec<&'static str> = Vec::new();
    if !mods.is_empty() && !current.has_object_class(class) {
        missing.push(class);
    }
    let written = |attr: &str| {
        mods.iter().any(|m| matches!(m, Mod::Replace(a, v) | Mod::Add(a, v) if a == attr && !v.is_empty()))
    };
    for c in needed_classes(def, part, written) {
        if !current.has_object_class(c) && !missing.contains(&c) {
            missing.push(c);
        }
    }
    if !missing.is_empty() {
        mods.insert(0, Mod::Add("objectClass".to_string(), missing.iter().map(|c| c.to_string()).collect()));
    }
    mods
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::resources::CUSTOMERS;
    use serde_json::json;

    fn address() -> Value {
        json!({"gender": "f", "givenName": "Zoë", "surname": "Müller", "postalAddress": "Hauptgasse 1",
               "countryCode": "CH", "postalCode": "3011", "localityName": "Bern",
               "preferredLanguage": "de-CH", "mail": "zoe@example.com"})
    }

    #[test]
    fn a_company_needs_a_name_and_stores_it_in_o() {
        let doc = json!({"isCompany": true, "customerName": "ACME AG", "belongsToResellerID": 4000001, "billingAddress": address()});
        let d = parse(&CUSTOMERS, &doc, Mode::Create).unwrap();
        assert_eq!(d.root.get("o").unwrap(), "ACME AG");
        assert_eq!(d.root.get("sstisactive").unwrap(), "TRUE");
        assert_eq!(d.parent, 4000001);
        let doc = json!({"isCompany": true, "belongsToResellerID": 4000001, "billingAddress": address()});
        let e = parse(&CUSTOMERS, &doc, Mode::Create).unwrap_err();
        assert_eq!(e[0].field, "customerName");
    }

    #[test]
    fn a_private_customer_takes_the_billing_names() {
        let doc = json!({"isCompany": false, "belongsToResellerID": 4000001, "billingAddress": address()});
        let d = parse(&CUSTOMERS, &doc, Mode::Create).unwrap();
        assert_eq!(d.root.get("givenname").unwrap(), "Zoë");
        assert!(!d.root.contains_key("o"));
        let doc = json!({"isCompany": false, "customerName": "Someone Else", "belongsToResellerID": 4000001, "billingAddress": address()});
        assert_eq!(parse(&CUSTOMERS, &doc, Mode::Create).unwrap_err()[0].field, "customerName");
        let doc = json!({"isCompany": false, "customerName": "Zoë Müller", "belongsToResellerID": 4000001, "billingAddress": address()});
        assert!(parse(&CUSTOMERS, &doc, Mode::Create).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut a = address();
        a["countryCode"] = json!("US");
        a["mail"] = json!("nope");
        a["extra"] = json!(1);
        let doc = json!({"isCompany": "yes", "id": 5, "foo": 1, "belongsToResellerID": 4000001, "billingAddress": a});
        let fields: Vec<String> =
            parse(&CUSTOMERS, &doc, Mode::Create).unwrap_err().into_iter().map(|p| p.field).collect();
        for f in [
            "foo",
            "id",
            "isCompany",
            "billingAddress.extra",
            "billingAddress.stateOrProvinceName",
            "billingAddress.mail",
        ] {
            assert!(fields.contains(&f.to_string()), "{f} missing in {fields:?}");
        }
    }

    #[test]
    fn read_only_fields_may_repeat_their_current_value() {
        let current = json!({"id": 5000001, "location": "http://x/v1/customers/5000001"});
        let doc = json!({"id": 5000001, "location": "http://x/v1/customers/5000001", "isCompany": true, "customerName": "A",
                         "belongsToResellerID": 4000001, "billingAddress": address()});
        assert!(parse(&CUSTOMERS, &doc, Mode::Replace { current: &current }).is_ok());
        let mut doc2 = doc.clone();
        doc2["id"] = json!(5000002);
        assert_eq!(parse(&CUSTOMERS, &doc2, Mode::Replace { current: &current }).unwrap_err()[0].field, "id");
    }

    /// What a write asks of the billing entry, with the attributes it leaves as stored.
    fn billing(want: Attrs, kept: &[&'static str]) -> Desired {
        Desired {
            parent: 0,
            root: Attrs::new(),
            billing: want,
            shipping: None,
            kept: kept.iter().map(|a| (Part::Billing, *a)).collect(),
            lists: Vec::new(),
            secret: None,
        }
    }

    #[test]
    fn diff_replaces_changed_and_deletes_removed_attributes_only() {
        let mut e = Entry::default();
        e.attrs.insert("l".into(), vec!["Bern".into()]);
        e.attrs.insert("telephonenumber".into(), vec!["+41 1".into()]);
        e.attrs.insert("description".into(), vec!["admin note".into()]);
        let mut want = Attrs::new();
        want.insert("l", "Thun".into());
        e.attrs.insert("objectclass".into(), vec!["organizationalUnit".into(), "sstAddress".into()]);
        let mods = diff(&CUSTOMERS, Part::Billing, &e, &billing(want.clone(), &[]));
        assert!(mods.contains(&Mod::Replace("l".into(), ["Thun".to_string()].into())));
        assert!(mods.contains(&Mod::Delete("telephonenumber".into(), Default::default())));
        assert_eq!(mods.len(), 2, "description is not managed and stays");
        assert!(diff(&CUSTOMERS, Part::Billing, &e, &billing(want, &["l", "telephonenumber"])).is_empty());
    }

    #[test]
    fn diff_keeps_other_values_and_adds_a_missing_auxiliary_class() {
        let mut e = Entry::default();
        e.attrs.insert("mail".into(), vec!["a@x.ch".into(), "b@x.ch".into(), "C@x.ch".into()]);
        e.attrs.insert("objectclass".into(), vec!["organizationalUnit".into()]);
        let others: Vec<&'static str> =
            managed(&CUSTOMERS, Part::Billing).into_iter().filter(|a| *a != "mail").collect();
        let mut want = Attrs::new();
        want.insert("mail", "a@x.ch".into());
        assert!(diff(&CUSTOMERS, Part::Billing, &e, &billing(want.clone(), &others)).is_empty(), "unchanged");
        want.insert("mail", "c@x.ch".into());
        let mods = diff(&CUSTOMERS, Part::Billing, &e, &billing(want, &others));
        assert_eq!(mods[0], Mod::Add("objectClass".into(), ["sstAddress".to_string()].into()));
        assert_eq!(mods[1], Mod::Replace("mail".into(), ["c@x.ch".to_string()].into()));
        assert_eq!(mods[2], Mod::Add("mail".into(), ["b@x.ch".to_string()].into()));
        assert_eq!(mods.len(), 3);
    }

    /// A resource with a list field, as people will have (`employeeOfID`).
    static TAGGED: ResourceDef = ResourceDef {
        name: "tagged",
        singular: "tagged",
        schema: "Tagged",
        structural: "sstCustomer",
        classes: &["top", "sstCustomer", "sstRelationship"],
        dn: &[super::super::resource::Rdn::Id, super::super::resource::Rdn::Fixed("ou", "tagged")],
        parent: None,
        children: &[],
        fields: &[
            Field::new("id", "uid", Kind::Id).read_only(),
            Field::new("isCompany", "sstiscompany", Kind::Bool).required(),
            Field::new("memberOf", "sstbelongstouid", Kind::List(&Kind::Id)).filterable(),
        ],
        own_id_attrs: &[],
        tenant: Tenant::Own,
        customer_of: super::super::resource::CustomerOf::Nobody,
        related: &[],
        logins: false,
        read_subtree: true,
        create_by: &[],
        delete_by: &[],
        delete_blocked_by: None,
        columns: std::sync::OnceLock::new(),
    };

    #[test]
    fn a_list_field_is_an_array_of_checked_values_written_as_a_set() {
        let d = parse(&TAGGED, &json!({"isCompany": true, "memberOf": [7, 9, 7]}), Mode::Create).unwrap();
        assert_eq!(d.list(Part::Root, "sstbelongstouid"), ["7", "9"], "a value given twice is one");
        let e = parse(&TAGGED, &json!({"isCompany": true, "memberOf": [7, "x"]}), Mode::Create).unwrap_err();
        assert_eq!(e[0].field, "memberOf[1]");
        let e = parse(&TAGGED, &json!({"isCompany": true, "memberOf": 7}), Mode::Create).unwrap_err();
        assert_eq!(e[0].field, "memberOf");
        let entry = new_entry(&TAGGED, Part::Root, 5, &d);
        assert!(entry.contains(&("sstbelongstouid".to_string(), vec!["7".to_string(), "9".to_string()])), "{entry:?}");
        let mut stored = Entry::default();
        stored.attrs.insert("objectclass".into(), vec!["sstCustomer".into(), "sstRelationship".into()]);
        stored.attrs.insert("sstiscompany".into(), vec!["TRUE".into()]);
        stored.attrs.insert("sstbelongstouid".into(), vec!["9".into(), "7".into()]);
        assert!(diff(&TAGGED, Part::Root, &stored, &d).is_empty(), "the same set in another order");
        let d = parse(&TAGGED, &json!({"isCompany": true, "memberOf": [9]}), Mode::Create).unwrap();
        assert_eq!(
            diff(&TAGGED, Part::Root, &stored, &d),
            [Mod::Replace("sstbelongstouid".into(), ["9".to_string()].into())]
        );
        let d = parse(&TAGGED, &json!({"isCompany": true}), Mode::Create).unwrap();
        assert_eq!(diff(&TAGGED, Part::Root, &stored, &d), [Mod::Delete("sstbelongstouid".into(), Default::default())]);
        stored.dn = "uid=5,ou=tagged,dc=x".into();
        let s = Stored::from_entries(&TAGGED, "dc=x", vec![stored]).unwrap();
        assert_eq!(to_json(&s, "http://gw")["memberOf"], json!([9, 7]));
        // Filters match any value.
        let col = TAGGED.column("memberOf").unwrap();
        let pattern = super::super::row::Pattern::parse(col.kind(), "7").unwrap();
        assert!(pattern.matches(col.kind(), Some("7"), &mut String::new()));
    }

    #[test]
    fn a_patch_keeps_bad_stored_values_of_fields_it_does_not_touch() {
        let mut a = address();
        a["gender"] = json!("x");
        let current = json!({"id": 1, "isCompany": true, "customerName": "A", "belongsToResellerID": 4000001, "billingAddress": a});
        let patch = json!({"billingAddress": {"localityName": "Thun"}});
        let mut merged = current.clone();
        super::super::patch::merge(&mut merged, &patch);
        let d = parse(&CUSTOMERS, &merged, Mode::Patch { current: &current, patch: &patch }).unwrap();
        assert!(d.keeps(Part::Billing, "sstgender"));
        assert_eq!(d.billing.get("l").unwrap(), "Thun");
        let patch = json!({"billingAddress": {"gender": "y"}});
        let mut merged = current.clone();
        super::super::patch::merge(&mut merged, &patch);
        let e = parse(&CUSTOMERS, &merged, Mode::Patch { current: &current, patch: &patch }).unwrap_err();
        assert_eq!(e[0].field, "billingAddress.gender");
        assert!(parse(&CUSTOMERS, &current, Mode::Replace { current: &current }).is_err());
        assert!(touches(&json!({"a": null}), "a.b") && !touches(&json!({"a": {}}), "a.b"));
    }
}
