//! A resource as the collection sees it: the mapped values of its entries kept compactly,
//! the collection item built from them, and the value semantics of lists (matching of
//! filter patterns, collation for sorting, the text `q=` searches), all by the tables.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::document;
use super::resource::ResourceDef;
use super::table::{self, Field, Kind, Part, PERSON_NAME_ATTRS};
use super::values;
use crate::directory::Entry;

type Layout = Vec<(&'static str, Option<Kind>)>;

/// What is derived from a resource's tables once: the attributes kept for each part
/// and the columns of its collection.
#[derive(Debug)]
pub struct Columns {
    /// Attributes kept for each part (`part_index`), with the kind that says how their
    /// values read in JSON (`None`: not a field of its own, e.g. a private customer's
    /// names on the customer entry).
    layouts: [Layout; 3],
    /// The collection item's columns, in its order: the root's own fields, then the
    /// billing address's.
    pub item: Vec<Column>,
    /// What `q=` searches: the searchable fields of the root and the billing address.
    pub search: Vec<Column>,
    /// Where each of `search` lies in its part's layout (none for derived ones).
    search_slots: Vec<Option<usize>>,
    /// What a list may filter on: the filterable fields, the addresses' for each address.
    pub filter: Vec<Column>,
    /// What `sort=` accepts: the sortable item columns.
    pub sort: Vec<Column>,
}

pub fn part_index(p: Part) -> usize {
    match p {
        Part::Root => 0,
        Part::Billing => 1,
        Part::Shipping => 2,
    }
}

impl Columns {
    pub fn of(def: &'static ResourceDef) -> Columns {
        let mut root: Layout = def
            .fields
            .iter()
            // The id and the parent come from the DN.
            .filter(|f| f.is_read() && !f.is_hidden() && !matches!(f.kind, Kind::Id | Kind::ParentRef))
            .map(|f| (f.attr, Some(f.kind)))
            .collect();
        for a in [PERSON_NAME_ATTRS.0, PERSON_NAME_ATTRS.1] {
            if !root.iter().any(|(x, _)| *x == a) {
                root.push((a, None));
            }
        }
        let child = |p: Part| -> Layout { table::part_fields(def, p).iter().map(|f| (f.attr, Some(f.kind))).collect() };
        let root_and_billing = |pick: fn(&Field) -> bool| -> Vec<Column> {
            let own = def.fields.iter().filter(|f| pick(f)).map(|field| Column { def, part: Part::Root, field });
            let billing = table::part_fields(def, Part::Billing).iter().filter(|f| pick(f));
            own.chain(billing.map(|field| Column { def, part: Part::Billing, field })).collect()
        };
        let item = root_and_billing(|f| f.in_collection);
        let mut filter: Vec<Column> = def
            .fields
            .iter()
            .filter(|f| f.filterable && !f.is_object())
            .map(|field| Column { def, part: Part::Root, field })
            .collect();
        for &part in def.children {
            filter.extend(table::part_fields(def, part).iter().filter(|f| f.filterable).map(|field| Column {
                def,
                part,
                field,
            }));
        }
        let layouts = [root, child(Part::Billing), child(Part::Shipping)];
        let search = root_and_billing(|f| f.searchable);
        let search_slots =
            search.iter().map(|c| layouts[part_index(c.part)].iter().position(|(a, _)| *a == c.field.attr)).collect();
        Columns {
            layouts,
            sort: item.iter().filter(|c| c.field.sortable).copied().collect(),
            search,
            search_slots,
            filter,
            item,
        }
    }

    /// A column by the name a list query uses: a field of the element (`isActive`), a
    /// dotted address field (`billingAddress.localityName`) or the collection item's
    /// shorthand for a billing field (`localityName`).
    pub fn by_name(&self, def: &'static ResourceDef, name: &str) -> Option<Column> {
        if let Some((part, field)) = table::resolve(def, name) {
            return Some(Column { def, part, field });
        }
        self.item.iter().find(|c| c.part == Part::Billing && c.field.name == name).copied()
    }
}

fn layout(def: &'static ResourceDef, part: Part) -> &'static [(&'static str, Option<Kind>)] {
    &def.columns().layouts[part_index(part)]
}

/// The values of one entry, in the order of its part's layout: a bit for each slot that
/// holds values, the byte length of each such slot (LEB128), then the slots' UTF-8
/// bytes. A slot holds every value of its attribute, in the directory's order, apart by
/// NUL (which no value the gateway writes and no query contains): JSON and sorting take
/// the first, filters and `q=` any. Most slots of most entries are empty and cost a bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartValues {
    data: Box<[u8]>,
}

impl PartValues {
    /// Takes what the mapping knows of an entry, each value in its JSON reading (postal
    /// addresses with line breaks, booleans as `true`/`false`); other attributes are
    /// dropped, and so is what would take the values past 64 KiB.
    pub fn from_entry(def: &'static ResourceDef, part: Part, entry: &Entry) -> PartValues {
        let slots = layout(def, part);
        let mut text = String::new();
        let mut lens = Vec::with_capacity(slots.len());
        for (attr, kind) in slots {
            let before = text.len();
            for raw in entry.values(attr) {
                let start = text.len();
                if start > before {
                    text.push(SEPARATOR);
                }
                match kind.and_then(|k| values::from_ldap(k, raw)) {
                    Some(Value::String(s)) => text.push_str(&s.replace(SEPARATOR, " ")),
                    Some(Value::Bool(b)) => text.push_str(if b { "true" } else { "false" }),
                    Some(other) => text.push_str(&other.to_string()),
                    None if kind.is_none() => text.push_str(&raw.replace(SEPARATOR, " ")),
                    None => {}
                }
                if text.len() == start + usize::from(start > before) {
                    // A value that cannot be shown as its kind is not kept.
                    text.truncate(start);
                }
            }
            if text.len() > u16::MAX as usize {
                text.truncate(before);
            }
            lens.push(text.len() - before);
        }
        let mut data = vec![0u8; slots.len().div_ceil(8)];
        for (i, &len) in lens.iter().enumerate() {
            if len > 0 {
                data[i / 8] |= 1 << (i % 8);
                let mut n = len;
                while n >= 0x80 {
                    data.push((n as u8) | 0x80);
                    n >>= 7;
                }
                data.push(n as u8);
            }
        }
        data.extend_from_slice(text.as_bytes());
        PartValues { data: data.into() }
    }

    pub fn view(&self) -> Values<'_> {
        Values { data: &self.data }
    }

    /// The (first) value of an attribute (canonical name) when the entry has one.
    pub fn get(&self, def: &'static ResourceDef, part: Part, attr: &str) -> Option<&str> {
        self.view().get(def, part, attr)
    }

    /// Every value of an attribute.
    pub fn all(&self, def: &'static ResourceDef, part: Part, attr: &str) -> impl Iterator<Item = &str> {
        self.view().all(def, part, attr)
    }
}

/// The values of one entry where a [`Row`] keeps them (see [`PartValues`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values<'a> {
    data: &'a [u8],
}

impl<'a> Values<'a> {
    /// The (first) value of an attribute (canonical name) when the entry has one.
    pub fn get(self, def: &'static ResourceDef, part: Part, attr: &str) -> Option<&'a str> {
        self.at(def, part, slot_of(def, part, attr)?)
    }

    /// Every value of an attribute.
    pub fn all(self, def: &'static ResourceDef, part: Part, attr: &str) -> impl Iterator<Item = &'a str> {
        slot_of(def, part, attr).and_then(|i| self.slot(def, part, i)).into_iter().flat_map(|s| s.split(SEPARATOR))
    }

    /// The first value in a slot of the part's layout (see [`slot_of`]).
    pub fn at(self, def: &'static ResourceDef, part: Part, i: usize) -> Option<&'a str> {
        self.slot(def, part, i).map(|s| s.split(SEPARATOR).next().unwrap_or_default())
    }

    /// Every value in a slot, apart by [`SEPARATOR`]. Bytes that do not hold together
    /// (a damaged snapshot) read as no values.
    pub fn slot(self, def: &'static ResourceDef, part: Part, i: usize) -> Option<&'a str> {
        let n = layout(def, part).len();
        if i >= n {
            return None;
        }
        let map = self.data.get(..n.div_ceil(8))?;
        if map[i / 8] & (1 << (i % 8)) == 0 {
            return None;
        }
        let present = map.iter().map(|b| b.count_ones() as usize).sum::<usize>();
        let before = (0..i).filter(|&j| map[j / 8] & (1 << (j % 8)) != 0).count();
        // The lengths, then the bytes: where this slot's bytes start is the sum of the
        // lengths before it, and the bytes start after the last length.
        let mut at = map.len();
        let (mut start, mut len) = (0usize, 0usize);
        for k in 0..present {
            let mut n = 0usize;
            let mut shift = 0;
            loop {
                let b = *self.data.get(at)?;
                at += 1;
                n |= usize::from(b & 0x7f).checked_shl(shift)?;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
                if shift > 21 {
                    return None;
                }
            }
            if k < before {
                start += n;
            } else if k == before {
                len = n;
            }
        }
        let bytes = self.data.get(at + start..at + start + len)?;
        std::str::from_utf8(bytes).ok().filter(|s| !s.is_empty())
    }
}

/// A `q=` term (lower-cased already) to look for in the search texts of many rows.
pub struct SearchTerm<'a> {
    finder: memchr::memmem::Finder<'a>,
    /// Lower-casing leaves the term as it is and no text holds it across two values:
    /// its ASCII digits and punctuation (no letter lower-cases to them, and lower-casing
    /// leaves them where they are), no space (a name joins two values by one) and no
    /// NUL. And every searchable column of `def` is a stored value, the id or the name,
    /// so a text that holds the term has it in the row's bytes or in the id.
    caseless: bool,
}

impl<'a> SearchTerm<'a> {
    pub fn new(def: &'static ResourceDef, term: &'a str) -> SearchTerm<'a> {
        let columns = def.columns();
        let stored = columns.search.iter().zip(&columns.search_slots).all(|(c, slot)| match c.field.kind {
            Kind::Id | Kind::DisplayName => true,
            Kind::ParentRef | Kind::Object(_) | Kind::Link(_) => false,
            // A default reads as `true` or `false`: letters.
            _ => slot.is_some(),
        });
        let caseless =
            stored && !term.is_empty() && term.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_alphabetic());
        SearchTerm { finder: memchr::memmem::Finder::new(term), caseless }
    }
}

/// What keeps the values of one attribute apart in a slot.
pub const SEPARATOR: char = '\0';

/// Where a part keeps an attribute, to look it up once for many rows.
pub fn slot_of(def: &'static ResourceDef, part: Part, attr: &str) -> Option<usize> {
    layout(def, part).iter().position(|(a, _)| *a == attr)
}

/// A column of the collection: a field of a resource and the entry it is read from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub def: &'static ResourceDef,
    pub part: Part,
    pub field: &'static Field,
}

impl Column {
    pub fn kind(&self) -> Kind {
        self.field.kind
    }
}

/// The entries of one resource as the collection keeps them, in one allocation: a byte
/// whose bit `part_index` says that part is there, the length of each part there but
/// the last (LEB128), then each part: the key the collection finds its entry by (an
/// [`EntryKey`]) and its values (see [`PartValues`]), the last part to the end. A
/// customer with a billing address spends 3 bytes on the header; an entry that is not
/// there costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    data: Box<[u8]>,
}

/// What the collection finds an entry by (its entryUUID).
pub type EntryKey = [u8; 16];

const KEY: usize = std::mem::size_of::<EntryKey>();

fn push_len(data: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        data.push((n as u8) | 0x80);
        n >>= 7;
    }
    data.push(n as u8);
}

/// A LEB128 length at `*at` (moved past it); `None` past the end or past 21 bits.
fn read_len(data: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = *data.get(*at)?;
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
        shift += 7;
        if shift > 21 {
            return None;
        }
    }
}

impl Row {
    /// A row of these parts' entries and values (`part_index` order).
    pub fn of(parts: [Option<(&EntryKey, &PartValues)>; 3]) -> Row {
        Row::of_bytes(parts.map(|p| p.map(|(k, v)| (k, &*v.data))))
    }

    fn of_bytes(parts: [Option<(&EntryKey, &[u8])>; 3]) -> Row {
        let there: Vec<(&EntryKey, &[u8])> = parts.iter().flatten().copied().collect();
        let Some((_, but_last)) = there.split_last() else { return Row::default() };
        let size = there.iter().map(|(_, v)| KEY + v.len()).sum::<usize>();
        let mut data = Vec::with_capacity(1 + 3 * but_last.len() + size);
        data.push(parts.iter().enumerate().filter(|(_, p)| p.is_some()).fold(0u8, |bits, (i, _)| bits | 1 << i));
        for (_, v) in but_last {
            push_len(&mut data, KEY + v.len());
        }
        for (k, v) in &there {
            data.extend_from_slice(&k[..]);
            data.extend_from_slice(v);
        }
        Row { data: data.into() }
    }

    /// Where each part's values lie. Bytes that do not hold together (a damaged
    /// snapshot) read as no parts.
    fn spans(&self) -> [Option<std::ops::Range<usize>>; 3] {
        let mut spans = [None, None, None];
        let Some(&bits) = self.data.first().filter(|&&b| b < 8) else { return spans };
        let there = bits.count_ones() as usize;
        let mut at = 1;
        let mut lens = [0usize; 2];
        for len in lens.iter_mut().take(there.saturating_sub(1)) {
            match read_len(&self.data, &mut at) {
                Some(n) => *len = n,
                None => return spans,
            }
        }
        let mut start = at;
        let mut k = 0;
        for (i, span) in spans.iter_mut().enumerate() {
            if bits & (1 << i) == 0 {
                continue;
            }
            let end = if k + 1 == there { self.data.len() } else { start + lens[k] };
            if end > self.data.len() {
                return [None, None, None];
            }
            *span = Some(start..end);
            start = end;
            k += 1;
        }
        spans
    }

    /// A part's entry key and values.
    fn entry(&self, part: Part) -> Option<(&EntryKey, &[u8])> {
        let span = self.spans()[part_index(part)].clone()?;
        let (key, values) = self.data.get(span)?.split_first_chunk::<KEY>()?;
        Some((key, values))
    }

    pub fn part(&self, part: Part) -> Option<Values<'_>> {
        self.entry(part).map(|(_, data)| Values { data })
    }

    /// The key of a part's entry.
    pub fn key(&self, part: Part) -> Option<EntryKey> {
        self.entry(part).map(|(k, _)| *k)
    }

    /// The parts there, with their entries' keys.
    pub fn keys(&self) -> impl Iterator<Item = (Part, EntryKey)> + '_ {
        [Part::Root, Part::Billing, Part::Shipping].into_iter().filter_map(|p| Some((p, self.key(p)?)))
    }

    /// Whether no part is there.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn has(&self, part: Part) -> bool {
        self.data.first().is_some_and(|&bits| bits < 8 && bits & (1 << part_index(part)) != 0)
    }

    /// Gives a part this entry and its values, or takes it away (`None`).
    pub fn set(&mut self, part: Part, entry: Option<(&EntryKey, &PartValues)>) {
        let mut parts = [Part::Root, Part::Billing, Part::Shipping].map(|p| self.entry(p));
        parts[part_index(part)] = entry.map(|(k, v)| (k, &*v.data));
        *self = Row::of_bytes(parts);
    }

    /// The bytes the row takes.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn get(&self, def: &'static ResourceDef, part: Part, attr: &str) -> Option<&str> {
        self.part(part).and_then(|v| v.get(def, part, attr))
    }

    pub fn is_company(&self, def: &'static ResourceDef) -> bool {
        self.get(def, Part::Root, "sstiscompany") == Some("true")
    }

    pub fn display_name(&self, def: &'static ResourceDef) -> Option<String> {
        document::display_name_by(
            self.is_company(def),
            |a| self.get(def, Part::Root, a),
            |a| self.get(def, Part::Billing, a),
        )
    }

    /// The value of a column as JSON shows it (numbers in decimal).
    pub fn value(&self, col: Column, id: u64, parent: u64) -> Option<Cow<'_, str>> {
        match col.field.kind {
            Kind::Id => Some(Cow::Owned(id.to_string())),
            Kind::ParentRef => Some(Cow::Owned(parent.to_string())),
            Kind::DisplayName => self.display_name(col.def).map(Cow::Owned),
            Kind::Object(_) | Kind::Link(_) => None,
            _ => self.get(col.def, col.part, col.field.attr).map(Cow::Borrowed).or_else(|| default_of(col.field)),
        }
    }

    /// Every value of a column: one for the derived ones, the default where none is
    /// stored, else all the entry holds.
    pub fn values(&self, col: Column, id: u64, parent: u64) -> Vec<Cow<'_, str>> {
        match col.field.kind {
            Kind::Id | Kind::ParentRef | Kind::DisplayName | Kind::Object(_) | Kind::Link(_) => {
                self.value(col, id, parent).into_iter().collect()
            }
            _ => {
                let all: Vec<Cow<'_, str>> = self
                    .part(col.part)
                    .into_iter()
                    .flat_map(|v| v.all(col.def, col.part, col.field.attr))
                    .map(Cow::Borrowed)
                    .collect();
                if all.is_empty() {
                    default_of(col.field).into_iter().collect()
                } else {
                    all
                }
            }
        }
    }

    /// The text `q=` searches: every searchable column, lower-cased, kept apart by NUL
    /// (which no query contains) so that no match spans two values.
    pub fn search_text(&self, def: &'static ResourceDef, id: u64) -> Box<str> {
        let mut out = String::new();
        self.search_text_into(def, id, &mut out);
        out.into()
    }

    /// Whether the search text holds `term` (as `search_text` would tell; `scratch`
    /// for the text). A term with no case (digits, punctuation) is first looked for in
    /// the row's bytes and the id: most rows that lack it are told so without their
    /// text being made.
    pub fn search_text_holds(
        &self,
        def: &'static ResourceDef,
        id: u64,
        term: &SearchTerm,
        scratch: &mut String,
    ) -> bool {
        if term.caseless && term.finder.find(&self.data).is_none() {
            use std::fmt::Write as _;
            scratch.clear();
            let _ = write!(scratch, "{id}");
            if term.finder.find(scratch.as_bytes()).is_none() {
                return false;
            }
        }
        self.search_text_into(def, id, scratch);
        term.finder.find(scratch.as_bytes()).is_some()
    }

    /// The same into `out` (cleared first): for a check of many records, with no
    /// allocation for most of them.
    pub fn search_text_into(&self, def: &'static ResourceDef, id: u64, out: &mut String) {
        out.clear();
        let columns = def.columns();
        for (col, slot) in columns.search.iter().zip(&columns.search_slots) {
            let stored = match (col.field.kind, slot) {
                (Kind::Id | Kind::ParentRef | Kind::DisplayName | Kind::Object(_) | Kind::Link(_), _) | (_, None) => {
                    None
                }
                (_, Some(i)) => Some(self.part(col.part).and_then(|v| v.slot(def, col.part, *i))),
            };
            match stored {
                // A slot's values are apart by NUL already, which lower-casing keeps.
                Some(Some(values)) => push_lower(out, values),
                Some(None) => match default_of(col.field) {
                    Some(d) => push_lower(out, &d),
                    None => continue,
                },
                None => match col.field.kind {
                    // Digits: nothing to lower-case, and no allocation.
                    Kind::Id => {
                        use std::fmt::Write as _;
                        let _ = write!(out, "{id}");
                    }
                    Kind::DisplayName => match self.display_name(def) {
                        Some(name) => push_lower(out, &name),
                        None => continue,
                    },
                    _ => {
                        let values = self.values(*col, id, 0);
                        if values.is_empty() {
                            continue;
                        }
                        for (k, v) in values.iter().enumerate() {
                            if k > 0 {
                                out.push('\0');
                            }
                            push_lower(out, v);
                        }
                    }
                },
            }
            out.push('\0');
        }
    }
}

fn push_lower(out: &mut String, s: &str) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        out.push_str(&s.to_lowercase());
    }
}

/// The value a field reads as when the entry has none (`isActive`: true).
fn default_of(f: &Field) -> Option<Cow<'static, str>> {
    f.default.map(|d| Cow::Borrowed(if d { "true" } else { "false" }))
}

/// One collection item (`GET /v1/<resource>`).
pub fn item(def: &'static ResourceDef, id: u64, parent: u64, row: &Row, public_url: &str) -> Value {
    let mut m = Map::new();
    for col in &def.columns().item {
        if let Some(v) = column_json(*col, id, parent, row, public_url) {
            m.insert(col.field.name.to_string(), v);
        }
    }
    Value::Object(m)
}

/// The whole element as `GET /v1/<resource>/{id}` shows it (`document::to_json`), from
/// what the collection keeps: every field, each address as its object while its entry
/// exists.
pub fn element(def: &'static ResourceDef, id: u64, parent: u64, row: &Row, public_url: &str) -> Value {
    let mut m = Map::new();
    for field in def.fields {
        let v = match field.kind {
            Kind::Object(sub) => row.part(field.part).map(|_| {
                let mut o = Map::new();
                for f in sub {
                    let col = Column { def, part: field.part, field: f };
                    if let Some(v) = column_json(col, id, parent, row, public_url) {
                        o.insert(f.name.to_string(), v);
                    }
                }
                Value::Object(o)
            }),
            _ => column_json(Column { def, part: Part::Root, field }, id, parent, row, public_url),
        };
        if let Some(v) = v {
            m.insert(field.name.to_string(), v);
        }
    }
    Value::Object(m)
}

/// A column's value in JSON.
fn column_json(col: Column, id: u64, parent: u64, row: &Row, public_url: &str) -> Option<Value> {
    match col.field.kind {
        Kind::Secret | Kind::Qualified(_) | Kind::Object(_) => None,
        Kind::Id => Some(Value::from(id)),
        Kind::ParentRef => Some(Value::from(parent)),
        Kind::Link(template) => Some(Value::String(col.def.link(public_url, id, template))),
        Kind::Bool => row.value(col, id, parent).map(|v| Value::Bool(v == "true")),
        Kind::Ref(_) => row.value(col, id, parent).and_then(|v| values::from_ldap(col.field.kind, &v)),
        Kind::List(inner) => {
            let all: Vec<Value> = row
                .values(col, id, parent)
                .into_iter()
                .filter_map(|v| match inner {
                    Kind::Ref(_) => values::from_ldap(*inner, &v),
                    _ => Some(Value::String(v.into_owned())),
                })
                .collect();
            (!all.is_empty()).then_some(Value::Array(all))
        }
        _ => row.value(col, id, parent).map(|v| Value::String(v.into_owned())),
    }
}

// ---------------------------------------------------------------------------------------
// Matching: `?attr=value` follows the attribute's LDAP matching rule.

/// Folds a value the way its matching rule compares: case and repeated inner white space
/// do not count (caseIgnoreMatch); telephone numbers also ignore spaces and hyphens
/// (telephoneNumberMatch).
fn fold_for_match(kind: Kind, s: &str, out: &mut String) {
    out.clear();
    let phone = kind.element() == Kind::Phone;
    let s = s.trim();
    if s.is_ascii() {
        // Most values: byte by byte, without Unicode case tables.
        let mut space = false;
        let mut buf = std::mem::take(out).into_bytes();
        for &b in s.as_bytes() {
            if phone && (b.is_ascii_whitespace() || b == b'-') {
                continue;
            }
            if b.is_ascii_whitespace() {
                space = true;
                continue;
            }
            if space && !buf.is_empty() {
                buf.push(b' ');
            }
            space = false;
            buf.push(b.to_ascii_lowercase());
        }
        // Only ASCII bytes were pushed; the buffer's allocation is kept for the next value.
        *out = String::from_utf8(buf).unwrap_or_default();
        return;
    }
    let chars = s.chars().filter(|c| !(phone && (c.is_whitespace() || *c == '-')));
    push_collapsed(out, chars, |out, c| out.extend(c.to_lowercase()));
}

/// Pushes characters with every run of inner white space as one space (leading white
/// space dropped); `push` writes each other character.
fn push_collapsed(out: &mut String, chars: impl Iterator<Item = char>, mut push: impl FnMut(&mut String, char)) {
    let mut space = false;
    for c in chars {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        push(out, c);
    }
}

/// A value folded as its matching rule compares it.
pub fn fold(kind: Kind, s: &str) -> String {
    let mut out = String::new();
    fold_for_match(kind, s, &mut out);
    out
}

/// A filter value: `*` alone asks for presence; other `*` are wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Present,
    Equals(String),
    /// `initial*any*…*final`, each piece folded; empty initial or final means unanchored.
    Substrings {
        initial: String,
        any: Vec<String>,
        last: String,
    },
}

impl Pattern {
    /// Checks a filter value against the column's kind.
    pub fn parse(kind: Kind, raw: &str) -> Result<Pattern, String> {
        let kind = kind.element();
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        if raw.chars().count() > 256 {
            return Err("must be at most 256 characters".into());
        }
        if raw.trim() == "*" {
            return Ok(Pattern::Present);
        }
        match kind {
            Kind::Bool => {
                return match raw.trim().to_ascii_lowercase().as_str() {
                    v @ ("true" | "false") => Ok(Pattern::Equals(v.to_string())),
                    _ => Err("must be true or false".into()),
                };
            }
            Kind::Id | Kind::ParentRef | Kind::Ref(_)
                if raw.trim().is_empty() || !raw.trim().chars().all(|c| c.is_ascii_digit() || c == '*') =>
            {
                return Err("must be a number (digits, * as a wildcard)".into());
            }
            _ => {}
        }
        let mut buf = String::new();
        if !raw.contains('*') {
            fold_for_match(kind, raw, &mut buf);
            return Ok(Pattern::Equals(buf));
        }
        let pieces: Vec<&str> = raw.split('*').collect();
        let mut fold = |s: &str| {
            fold_for_match(kind, s, &mut buf);
            buf.clone()
        };
        let initial = fold(pieces[0]);
        let last = fold(pieces[pieces.len() - 1]);
        let any = pieces[1..pieces.len() - 1].iter().map(|p| fold(p)).filter(|p| !p.is_empty()).collect();
        Ok(Pattern::Substrings { initial, any, last })
    }

    /// Whether a value (absent: `None`) matches; `scratch` is reused between calls.
    pub fn matches(&self, kind: Kind, value: Option<&str>, scratch: &mut String) -> bool {
        let Some(value) = value else { return false };
        if *self == Pattern::Present {
            return true;
        }
        fold_for_match(kind, value, scratch);
        self.matches_folded(Some(scratch))
    }

    /// Whether a value already folded by [`fold`] matches.
    pub fn matches_folded(&self, folded: Option<&str>) -> bool {
        let Some(s) = folded else { return false };
        match self {
            Pattern::Present => true,
            Pattern::Equals(want) => s == want,
            Pattern::Substrings { initial, any, last } => {
                if s.len() < initial.len() + last.len()
                    || !s.starts_with(initial.as_str())
                    || !s.ends_with(last.as_str())
                {
                    return false;
                }
                let mut rest = &s[initial.len()..s.len() - last.len()];
                for piece in any {
                    match rest.find(piece.as_str()) {
                        Some(at) => rest = &rest[at + piece.len()..],
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Collation: how `sort=` orders values.

/// A sort key. Text sorts by its folded form: lower case, without diacritics (`Ä` sorts
/// with `A`, `ß` as `ss`), inner white space collapsed; numbers numerically; `false`
/// before `true`. A missing value sorts after every value (as in RFC 2891).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Int(u64),
    Bool(bool),
    Text(Box<str>),
}

/// The folded form of text for sorting.
pub fn collate(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let letters = s.trim().nfd().filter(|c| !('\u{300}'..='\u{36f}').contains(c));
    push_collapsed(&mut out, letters, |out, c| match c {
        'ß' | 'ẞ' => out.push_str("ss"),
        'æ' | 'Æ' => out.push_str("ae"),
        'œ' | 'Œ' => out.push_str("oe"),
        'ø' | 'Ø' => out.push('o'),
        'ł' | 'Ł' => out.push('l'),
        'đ' | 'Đ' => out.push('d'),
        'þ' | 'Þ' => out.push_str("th"),
        c => out.extend(c.to_lowercase()),
    });
    out
}

/// The sort key of a value of a kind.
pub fn sort_key(kind: Kind, value: &str) -> SortKey {
    match kind {
        Kind::Id | Kind::ParentRef | Kind::Ref(_) => SortKey::Int(value.trim().parse().unwrap_or(u64::MAX)),
        Kind::Bool => SortKey::Bool(value == "true"),
        _ => SortKey::Text(collate(value).into()),
    }
}

/// Compares two optional keys, missing after present; `descending` reverses the order of
/// present keys (missing ones stay last).
pub fn compare_keys(a: Option<&SortKey>, b: Option<&SortKey>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if descending => b.cmp(a),
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::resources::{CUSTOMERS, RESELLERS};

    /// A row of these parts, the key of each its part number + 1 sixteen times.
    fn keyed(parts: [Option<&PartValues>; 3]) -> Row {
        let keys = [[1; 16], [2; 16], [3; 16]];
        Row::of([0, 1, 2].map(|i| parts[i].map(|p| (&keys[i], p))))
    }

    /// The search text holds a term exactly when `search_text_holds` says so, the
    /// shortcut for terms without case included: random values of digits, punctuation,
    /// letters with and without case, spaces and line breaks, in every searchable field,
    /// and random terms of the same characters.
    #[test]
    fn a_term_is_found_with_or_without_the_shortcut_as_in_the_whole_text() {
        const CHARS: &[char] = &['0', '1', '2', '-', '.', '/', '+', 'a', 'Z', 'Ü', 'ß', 'İ', 'Σ', ' ', '$', '@'];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let word = |len: usize, next: &mut dyn FnMut(usize) -> usize| -> String {
            (0..len).map(|_| CHARS[next(CHARS.len())]).collect()
        };
        let (mut caseless, mut found, mut scratch) = (0, 0, String::new());
        for id in 1..400u64 {
            let mut pairs: Vec<(&str, String)> =
                vec![("sstiscompany", if id % 2 == 0 { "TRUE" } else { "FALSE" }.into())];
            for a in ["o", "givenname", "sn", "sgwcustomernumber"] {
                pairs.push((a, word(1 + next(8), &mut next)));
            }
            let root_pairs: Vec<(&str, &str)> = pairs.iter().map(|(a, v)| (*a, v.as_str())).collect();
            let billing: Vec<(&str, String)> = ["o", "givenname", "sn", "postaladdress", "postalcode", "l", "mail"]
                .into_iter()
                .map(|a| (a, word(1 + next(10), &mut next)))
                .collect();
            let billing_pairs: Vec<(&str, &str)> = billing.iter().map(|(a, v)| (*a, v.as_str())).collect();
            let root = PartValues::from_entry(&CUSTOMERS, Part::Root, &entry(&root_pairs));
            let bill = PartValues::from_entry(&CUSTOMERS, Part::Billing, &entry(&billing_pairs));
            let row = keyed([Some(&root), Some(&bill), None]);
            let text = row.search_text(&CUSTOMERS, id).to_string();
            for _ in 0..30 {
                let len = 1 + next(4);
                let term = if next(2) == 0 {
                    // Often a piece of the text itself.
                    let chars: Vec<char> = text.chars().collect();
                    let at = next(chars.len().saturating_sub(len).max(1));
                    chars[at..(at + len).min(chars.len())].iter().collect::<String>()
                } else {
                    word(len, &mut next).to_lowercase()
                };
                if term.is_empty() || term.contains('\0') {
                    continue;
                }
                let t = SearchTerm::new(&CUSTOMERS, &term);
                caseless += usize::from(t.caseless);
                let want = text.contains(term.as_str());
                found += usize::from(want && t.caseless);
                assert_eq!(row.search_text_holds(&CUSTOMERS, id, &t, &mut scratch), want, "{term:?} in {text:?}");
            }
        }
        assert!(caseless > 1000 && found > 100, "the shortcut was tried ({caseless}) and found terms ({found})");
    }

    fn entry(pairs: &[(&str, &str)]) -> Entry {
        let mut e = Entry::default();
        for (k, v) in pairs {
            e.attrs.entry(crate::directory::entry::canonical_attr(k)).or_default().push(v.to_string());
        }
        e
    }

    #[test]
    fn part_values_keep_the_mapped_attributes_in_their_json_reading() {
        let e = entry(&[
            ("localityName", "Bern"),
            ("postalAddress", "a\\24b$Line 2"),
            ("description", "not mapped"),
            ("c", "ch"),
        ]);
        let d = &CUSTOMERS;
        let v = PartValues::from_entry(d, Part::Billing, &e);
        assert_eq!(v.get(d, Part::Billing, "l"), Some("Bern"));
        assert_eq!(v.get(d, Part::Billing, "postaladdress"), Some("a$b\nLine 2"));
        assert_eq!(v.get(d, Part::Billing, "c"), Some("CH"));
        assert_eq!(v.get(d, Part::Billing, "mail"), None);
        assert_eq!(v.get(d, Part::Billing, "description"), None);
        let two = entry(&[("mail", "a@x.ch"), ("mail", "b@x.ch")]);
        let v = PartValues::from_entry(d, Part::Billing, &two);
        assert_eq!(v.get(d, Part::Billing, "mail"), Some("a@x.ch"));
        assert_eq!(v.all(d, Part::Billing, "mail").collect::<Vec<_>>(), ["a@x.ch", "b@x.ch"]);
    }

    #[test]
    fn rows_keep_each_part_and_slot_whatever_its_length() {
        let d = &CUSTOMERS;
        let slots = layout(d, Part::Billing);
        assert!(slots.len() > 8, "the slot bits take more than a byte");
        // Every slot of the billing layout with a value of its own length: short, past
        // one length byte (128) and past two (16384).
        let lens = [1usize, 127, 128, 300, 16_384, 20_000];
        let mut attrs: Vec<(String, String)> = Vec::new();
        for (i, (attr, _)) in slots.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
            attrs.push((attr.to_string(), "x".repeat(lens[i % lens.len()])));
        }
        let e = {
            let pairs: Vec<(&str, &str)> = attrs.iter().map(|(a, v)| (a.as_str(), v.as_str())).collect();
            entry(&pairs)
        };
        let billing = PartValues::from_entry(d, Part::Billing, &e);
        let root = PartValues::from_entry(d, Part::Root, &entry(&[("sstIsCompany", "TRUE"), ("o", "Alpine AG")]));
        let mut row = keyed([Some(&root), Some(&billing), None]);
        for (i, (attr, _)) in slots.iter().enumerate() {
            let want = attrs.iter().find(|(a, _)| a == attr).map(|(_, v)| v.as_str());
            // What a slot of the layout reads as (in its JSON reading: a country code
            // upper-cased; a value its kind cannot show is dropped by `from_entry`).
            let got = row.part(Part::Billing).and_then(|v| v.slot(d, Part::Billing, i));
            assert_eq!(got, billing.view().slot(d, Part::Billing, i), "slot {i} ({attr})");
            if let Some(got) = got {
                let want = want.unwrap_or_default();
                assert!(got.eq_ignore_ascii_case(want), "slot {i} ({attr}): {} bytes for {}", got.len(), want.len());
            }
        }
        assert!(slots.iter().enumerate().filter(|(i, _)| i % 2 == 1).any(|(i, _)| {
            row.part(Part::Billing).and_then(|v| v.slot(d, Part::Billing, i)).is_some_and(|s| s.len() >= 16_384)
        }));
        assert_eq!(row.part(Part::Root).and_then(|v| v.get(d, Part::Root, "o")), Some("Alpine AG"));
        assert!(row.has(Part::Billing) && !row.has(Part::Shipping) && row.part(Part::Shipping).is_none());
        // Parts change one at a time; the others stay.
        let shipping = PartValues::from_entry(d, Part::Shipping, &entry(&[("l", "Thun")]));
        row.set(Part::Shipping, Some((&[9; 16], &shipping)));
        row.set(Part::Billing, None);
        assert_eq!(row.part(Part::Shipping), Some(shipping.view()));
        assert_eq!(
            (row.key(Part::Shipping), row.key(Part::Root), row.key(Part::Billing)),
            (Some([9; 16]), Some([1; 16]), None)
        );
        assert_eq!(row.part(Part::Root), Some(root.view()));
        assert!(!row.has(Part::Billing));
        row.set(Part::Root, None);
        row.set(Part::Shipping, None);
        assert_eq!(row, Row::default());
        assert_eq!(row.bytes(), 0, "a row of no parts holds nothing");
        // Values cut short (a damaged snapshot) read as none, never past their end.
        let cut = Values { data: &billing.data[..billing.data.len() / 2] };
        for i in 0..slots.len() + 2 {
            let _ = cut.slot(d, Part::Billing, i);
        }
        assert_eq!(Values { data: &[] }.slot(d, Part::Billing, 1), None);
        // So do rows cut short or with bits of parts there are not.
        let whole = keyed([Some(&root), Some(&billing), Some(&shipping)]);
        assert_eq!(whole.part(Part::Billing), Some(billing.view()));
        assert_eq!(whole.part(Part::Shipping), Some(shipping.view()));
        for cut in 0..whole.data.len() {
            let row = Row { data: whole.data[..cut].into() };
            for p in [Part::Root, Part::Billing, Part::Shipping] {
                if let Some(v) = row.part(p) {
                    assert!(v.data.len() <= cut);
                }
            }
        }
        for bits in [0x08u8, 0xff] {
            let mut data = whole.data.to_vec();
            data[0] = bits;
            let row = Row { data: data.into() };
            assert!(row.part(Part::Root).is_none() && !row.has(Part::Root));
        }
        // The header: a byte of bits and a length for each part there but the last.
        assert!(root.data.len() < 128 && shipping.data.len() < 128);
        let small = keyed([Some(&root), None, Some(&shipping)]);
        assert_eq!(small.bytes(), 2 + 2 * KEY + root.data.len() + shipping.data.len());
        assert_eq!(small.keys().collect::<Vec<_>>(), [(Part::Root, [1; 16]), (Part::Shipping, [3; 16])]);
        assert_eq!(small.part(Part::Shipping), Some(shipping.view()));
        assert_eq!(keyed([None, None, Some(&shipping)]).bytes(), 1 + KEY + shipping.data.len());
        assert!(billing.data.len() >= 16_384);
        assert_eq!(whole.bytes(), 1 + 1 + 3 + 3 * KEY + root.data.len() + billing.data.len() + shipping.data.len());
    }

    #[test]
    fn the_search_text_is_each_searchable_value_lower_cased_and_apart() {
        let d = &CUSTOMERS;
        let root = entry(&[("sstIsCompany", "FALSE"), ("givenName", "ΟΔΥΣΣΕΥΣ"), ("sn", "Ünal"), ("uid", "7")]);
        let billing = entry(&[
            ("mail", "A@X.CH"),
            ("mail", "b@Ü.ch"),
            ("l", "İstanbul"),
            ("postalCode", "34000"),
            ("o", "Grüne Ärzte AG"),
        ]);
        let row = keyed([
            Some(&PartValues::from_entry(d, Part::Root, &root)),
            Some(&PartValues::from_entry(d, Part::Billing, &billing)),
            None,
        ]);
        // The text as its definition says: every value of every searchable column, each
        // lower-cased on its own, followed by NUL.
        let mut want = String::new();
        for col in &d.columns().search {
            for v in row.values(*col, 42, 0) {
                want.push_str(&v.to_lowercase());
                want.push('\0');
            }
        }
        for part in ["a@x.ch\0b@ü.ch\0", "οδυσσευς ünal\0", "i\u{307}stanbul\0", "grüne ärzte ag\0"] {
            assert!(want.contains(part), "{part:?} in {want:?}");
        }
        let mut out = String::from("left over");
        row.search_text_into(d, 42, &mut out);
        assert_eq!(out, want);
        assert_eq!(&*row.search_text(d, 42), want);
    }

    #[test]
    fn display_names_and_items_come_from_the_rows() {
        let d = &CUSTOMERS;
        let row = keyed([
            Some(&PartValues::from_entry(
                d,
                Part::Root,
                &entry(&[("sstIsCompany", "FALSE"), ("sstIsActive", "TRUE"), ("givenName", "Zoë"), ("sn", "Müller")]),
            )),
            Some(&PartValues::from_entry(
                d,
                Part::Billing,
                &entry(&[("c", "CH"), ("postalCode", "3011"), ("l", "Bern")]),
            )),
            None,
        ]);
        assert_eq!(row.display_name(d).as_deref(), Some("Zoë Müller"));
        let item = item(d, 5000001, 4000001, &row, "http://gw");
        assert_eq!(
            item,
            serde_json::json!({"id": 5000001, "location": "http://gw/v1/customers/5000001", "isCompany": false,
                "isActive": true, "customerName": "Zoë Müller", "belongsToResellerID": 4000001,
                "countryCode": "CH", "postalCode": "3011", "localityName": "Bern"})
        );
        assert_eq!(&*row.search_text(d, 5000001), "5000001\0zoë müller\u{0}3011\0bern\0");
        // The same entries as a reseller: its own fields, its own name field.
        let r = &RESELLERS;
        let row = keyed([
            Some(&PartValues::from_entry(r, Part::Root, &entry(&[("sstIsCompany", "TRUE"), ("o", "Alpine AG")]))),
            Some(&PartValues::from_entry(r, Part::Billing, &entry(&[("c", "CH"), ("l", "Bern")]))),
            None,
        ]);
        assert_eq!(
            super::item(r, 4000001, 4000001, &row, "http://gw"),
            serde_json::json!({"id": 4000001, "location": "http://gw/v1/resellers/4000001", "isCompany": true,
                "isActive": true, "resellerName": "Alpine AG", "countryCode": "CH", "localityName": "Bern"})
        );
    }

    #[test]
    fn columns_resolve_by_element_dotted_and_shorthand_names() {
        assert!(RESELLERS.column("belongsToResellerID").is_none());
        assert!(RESELLERS.column("resellerName").is_some());
        assert_eq!(CUSTOMERS.column("isActive").map(|c| c.part), Some(Part::Root));
        let c = CUSTOMERS.column("billingAddress.mail").unwrap();
        assert_eq!((c.part, c.field.attr), (Part::Billing, "mail"));
        let c = CUSTOMERS.column("shippingAddress.localityName").unwrap();
        assert_eq!((c.part, c.field.attr), (Part::Shipping, "l"));
        let c = CUSTOMERS.column("localityName").unwrap();
        assert_eq!((c.part, c.field.attr), (Part::Billing, "l"));
        assert!(CUSTOMERS.column("mail").is_none(), "only collection fields have a shorthand");
        assert!(CUSTOMERS.column("billingAddress").is_none());
        assert!(CUSTOMERS.column("nope").is_none());
    }

    #[test]
    fn patterns_follow_the_matching_rules() {
        let mut s = String::new();
        let text = Kind::Text { max: 64 };
        let m =
            |p: &str, v: &str, kind: Kind, s: &mut String| Pattern::parse(kind, p).unwrap().matches(kind, Some(v), s);
        assert!(m("bern", "Bern", text, &mut s));
        assert!(m("  New   York ", "new york", text, &mut s));
        assert!(!m("Bern", "Bern-Bümpliz", text, &mut s));
        assert!(m("B*n", "Bern", text, &mut s));
        assert!(m("*bümp*", "Bern-Bümpliz", text, &mut s));
        assert!(m("Be*rn*z", "Bern-Bümpliz", text, &mut s));
        assert!(!m("Bern*x", "Bern-Bümpliz", text, &mut s));
        assert!(!m("ab*ba", "aba", text, &mut s), "pieces may not overlap");
        assert!(m("*", "anything", text, &mut s));
        assert!(!Pattern::Present.matches(text, None, &mut s));
        assert!(m("+41 31-123 45 67", "+41311234567", Kind::Phone, &mut s));
        assert!(m("TRUE", "true", Kind::Bool, &mut s));
        assert!(Pattern::parse(Kind::Bool, "yes").is_err());
        assert!(Pattern::parse(Kind::Id, "5000*").is_ok());
        assert!(Pattern::parse(Kind::Id, "abc").is_err());
        assert!(Pattern::parse(text, "a\u{0}b").is_err());
        // Filter metacharacters are plain characters here.
        assert!(m("a)(uid=*", "a)(uid=x", text, &mut s));
        assert!(!m("*)(uid=*", "Bern", text, &mut s));
    }

    #[test]
    fn collation_ignores_case_and_diacritics() {
        assert_eq!(collate("Ärzte  AG"), "arzte ag");
        assert_eq!(collate("Straße"), "strasse");
        assert_eq!(collate("Zoë"), "zoe");
        assert!(sort_key(Kind::Id, "9") < sort_key(Kind::Id, "10"));
        assert!(sort_key(Kind::Bool, "false") < sort_key(Kind::Bool, "true"));
        let (a, b) = (SortKey::Int(1), SortKey::Int(2));
        assert_eq!(compare_keys(Some(&a), Some(&b), false), Ordering::Less);
        assert_eq!(compare_keys(Some(&a), Some(&b), true), Ordering::Greater);
        assert_eq!(compare_keys(None, Some(&a), false), Ordering::Greater);
        assert_eq!(compare_keys(None, Some(&a), true), Ordering::Greater);
    }
}
