//! Posting lists that answer a query without a pass over every record: which records
//! hold a value of a column (exact filters on columns of many values, such as a person's
//! mail or customer), and which records' search text holds a trigram of characters
//! (`q=`: only records holding every trigram of the term can contain it; a term of three
//! characters is one trigram, whose records are exactly those that contain it, longer
//! ones are then checked).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use hashbrown::HashTable;
use memchr::memmem;
use roaring::RoaringBitmap;

/// The records (slots) whose search text holds each trigram, as compressed bitmaps: a
/// trigram of most records (a mail domain, a street word) costs about a bit per record,
/// a rare one two bytes per record that holds it, and a change is O(log n).
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Grams {
    map: HashMap<Gram, RoaringBitmap>,
}

/// Three characters, 21 bits each.
pub type Gram = u64;

impl Grams {
    pub fn add(&mut self, gram: Gram, slot: u32) {
        self.map.entry(gram).or_default().insert(slot);
    }

    pub fn remove(&mut self, gram: Gram, slot: u32) {
        if let Some(b) = self.map.get_mut(&gram) {
            b.remove(slot);
            if b.is_empty() {
                self.map.remove(&gram);
            }
        }
    }

    /// The records holding every one of `grams` (none for a gram no record holds).
    pub fn all_of(&self, grams: &[Gram]) -> RoaringBitmap {
        let mut lists: Vec<&RoaringBitmap> = Vec::with_capacity(grams.len());
        for g in grams {
            match self.map.get(g) {
                Some(b) => lists.push(b),
                None => return RoaringBitmap::new(),
            }
        }
        lists.sort_by_key(|b| b.len());
        let Some((first, rest)) = lists.split_first() else { return RoaringBitmap::new() };
        let mut out = (*first).clone();
        for b in rest {
            if out.is_empty() {
                break;
            }
            out &= *b;
        }
        out
    }

    /// Whether every record named is below `records` (as read from a snapshot).
    pub fn is_sound(&self, records: usize) -> bool {
        self.map.values().all(|b| b.max().is_none_or(|m| (m as usize) < records))
    }

    /// About how many bytes the bitmaps and their map take.
    pub fn bytes(&self) -> usize {
        map_bytes(&self.map) + self.map.values().map(|b| b.serialized_size()).sum::<usize>()
    }

    /// Gives back what the bitmaps grew beyond their need (after a load).
    pub fn shrink(&mut self) {
        for b in self.map.values_mut() {
            b.optimize();
        }
        self.map.shrink_to_fit();
    }
}

/// The matches of the last few `q=` terms that need a check (more than one trigram), in
/// every listed record, kept exact as records change: paging through a search, or the
/// same search by many, checks its candidates once.
#[derive(Default)]
pub struct Recent {
    terms: Mutex<VecDeque<(memmem::Finder<'static>, RoaringBitmap)>>,
}

const RECENT: usize = 16;

impl Recent {
    pub fn get(&self, term: &str) -> Option<RoaringBitmap> {
        let mut terms = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        let i = terms.iter().position(|(f, _)| f.needle() == term.as_bytes())?;
        let hit = terms.remove(i)?;
        let bits = hit.1.clone();
        terms.push_front(hit);
        Some(bits)
    }

    pub fn put(&self, term: &str, bits: RoaringBitmap) {
        let mut terms = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        terms.retain(|(f, _)| f.needle() != term.as_bytes());
        terms.push_front((memmem::Finder::new(term).into_owned(), bits));
        terms.truncate(RECENT);
    }

    /// Whether no term is kept (then no change needs a record's text).
    pub fn is_empty(&mut self) -> bool {
        self.terms.get_mut().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// A record's text changed, or it stopped being listed (`None`).
    pub fn recheck(&mut self, slot: u32, listed_text: Option<&str>) {
        let terms = self.terms.get_mut().unwrap_or_else(|p| p.into_inner());
        for (finder, bits) in terms.iter_mut() {
            match listed_text {
                Some(t) if finder.find(t.as_bytes()).is_some() => bits.insert(slot),
                _ => bits.remove(slot),
            };
        }
    }
}

/// The records (slots) of each key, ascending. Most keys of a value index have one
/// record: the table holds it beside the key (12 bytes a key); a key of several has the
/// top bit set and the index of its list in `many`.
#[derive(Default, serde::Deserialize)]
#[serde(try_from = "PostingsWire")]
pub struct Postings {
    table: HashTable<[u32; 3]>,
    many: Vec<Vec<u32>>,
    /// Indexes of `many` no key uses.
    free: Vec<u32>,
}

const LIST: u32 = 1 << 31;

fn key_of(e: &[u32; 3]) -> u64 {
    u64::from(e[0]) | (u64::from(e[1]) << 32)
}

/// The keys are hashes already (`value_key`).
fn posting(key: u64, v: u32) -> [u32; 3] {
    [key as u32, (key >> 32) as u32, v]
}

impl Postings {
    pub fn add(&mut self, key: u64, slot: u32) {
        let Postings { table, many, free } = self;
        match table.entry(key, |e| key_of(e) == key, key_of) {
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(posting(key, slot));
            }
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                if e[2] & LIST == 0 {
                    let s = e[2];
                    if s != slot {
                        let list = vec![s.min(slot), s.max(slot)];
                        let i = match free.pop() {
                            Some(i) => {
                                many[i as usize] = list;
                                i
                            }
                            None => {
                                many.push(list);
                                (many.len() - 1) as u32
                            }
                        };
                        e[2] = LIST | i;
                    }
                } else {
                    let v = &mut many[(e[2] & !LIST) as usize];
                    // Slots mostly arrive in ascending order (a load): then this is a push.
                    if v.last().is_some_and(|&l| l < slot) {
                        v.push(slot);
                    } else if let Err(i) = v.binary_search(&slot) {
                        v.insert(i, slot);
                    }
                }
            }
        }
    }

    pub fn remove(&mut self, key: u64, slot: u32) {
        let Ok(mut o) = self.table.find_entry(key, |e| key_of(e) == key) else { return };
        let e = o.get_mut();
        if e[2] & LIST == 0 {
            if e[2] == slot {
                o.remove();
            }
            return;
        }
        let i = e[2] & !LIST;
        let v = &mut self.many[i as usize];
        if let Ok(at) = v.binary_search(&slot) {
            v.remove(at);
        }
        if v.len() == 1 {
            e[2] = v[0];
            self.many[i as usize] = Vec::new();
            self.free.push(i);
        }
    }

    /// Whether every list is ascending and below `records` (as read from a snapshot).
    pub fn is_sound(&self, records: usize) -> bool {
        self.table.iter().all(|e| match e[2] & LIST {
            0 => (e[2] as usize) < records,
            _ => self.many.get((e[2] & !LIST) as usize).is_some_and(|v| {
                v.len() > 1 && v.windows(2).all(|w| w[0] < w[1]) && v.last().is_some_and(|&s| (s as usize) < records)
            }),
        })
    }

    /// About how many bytes the lists and their table take.
    pub fn bytes(&self) -> usize {
        table_bytes(self.table.capacity(), std::mem::size_of::<[u32; 3]>())
            + self.many.capacity() * std::mem::size_of::<Vec<u32>>()
            + self.many.iter().map(|v| v.capacity() * 4).sum::<usize>()
    }

    /// The records of a key, ascending.
    pub fn get(&self, key: u64) -> &[u32] {
        match self.table.find(key, |e| key_of(e) == key) {
            None => &[],
            Some(e) if e[2] & LIST == 0 => std::slice::from_ref(&e[2]),
            Some(e) => self.many.get((e[2] & !LIST) as usize).map_or(&[], Vec::as_slice),
        }
    }

    /// Gives back what the lists grew beyond their length (after a load).
    pub fn shrink(&mut self) {
        for v in &mut self.many {
            v.shrink_to_fit();
        }
        self.many.shrink_to_fit();
        self.table.shrink_to_fit(key_of);
    }
}

/// How a snapshot holds [`Postings`]: each key with its slot or list, and the lists.
#[derive(serde::Serialize, serde::Deserialize)]
struct PostingsWire {
    keys: Vec<(u64, u32)>,
    many: Vec<Vec<u32>>,
}

impl serde::Serialize for Postings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// The keys as `PostingsWire` has them, without a copy of the table.
        struct Keys<'a>(&'a HashTable<[u32; 3]>);
        impl serde::Serialize for Keys<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|e| (key_of(e), e[2])))
            }
        }
        use serde::ser::SerializeStruct;
        let mut w = s.serialize_struct("PostingsWire", 2)?;
        w.serialize_field("keys", &Keys(&self.table))?;
        w.serialize_field("many", &self.many)?;
        w.end()
    }
}

impl TryFrom<PostingsWire> for Postings {
    type Error = &'static str;

    fn try_from(w: PostingsWire) -> Result<Self, Self::Error> {
        let mut p = Postings { table: HashTable::with_capacity(w.keys.len()), many: w.many, free: Vec::new() };
        let mut used = vec![false; p.many.len()];
        for (key, v) in w.keys {
            if v & LIST != 0 {
                let Some(u) = used.get_mut((v & !LIST) as usize).filter(|u| !**u) else {
                    return Err("a posting list is named by no key or by two");
                };
                *u = true;
            }
            match p.table.entry(key, |e| key_of(e) == key, key_of) {
                hashbrown::hash_table::Entry::Vacant(e) => {
                    e.insert(posting(key, v));
                }
                hashbrown::hash_table::Entry::Occupied(_) => return Err("a posting key is there twice"),
            }
        }
        p.free = used.iter().enumerate().filter(|(_, u)| !**u).map(|(i, _)| i as u32).collect();
        if p.free.iter().any(|&i| !p.many[i as usize].is_empty()) {
            return Err("a posting list is named by no key or by two");
        }
        Ok(p)
    }
}

/// The key of a (folded) value: a hash; a collision only adds a record that the query
/// then checks and drops.
pub fn value_key(folded: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    folded.hash(&mut h);
    h.finish()
}

/// The distinct trigrams of characters of a search text, without those that span a
/// value separator (NUL): a substring of one value has only trigrams of that value.
pub fn trigrams(text: &str) -> Vec<Gram> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Gram> = chars.windows(3).filter(|w| !w.contains(&'\0')).map(gram).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn gram(w: &[char]) -> Gram {
    (u64::from(w[0]) << 42) | (u64::from(w[1]) << 21) | u64::from(w[2])
}

/// The one trigram of a term of three characters (none NUL): the records holding it are
/// exactly those whose search text contains the term.
pub fn whole_gram(term: &str) -> Option<Gram> {
    let mut chars = term.chars();
    let w = [chars.next()?, chars.next()?, chars.next()?];
    (chars.next().is_none() && !w.contains(&'\0')).then(|| gram(&w))
}

/// About how many bytes a hash map's table takes (a control byte per bucket; buckets a
/// power of two above the capacity).
pub fn map_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    table_bytes(map.capacity(), std::mem::size_of::<(K, V)>())
}

/// The same for a table of `capacity` entries of `entry` bytes each.
pub fn table_bytes(capacity: usize, entry: usize) -> usize {
    let buckets = if capacity == 0 { 0 } else { (capacity * 8 / 7).next_power_of_two() };
    buckets * (entry + 1)
}

/// The records in every list (each ascending), ascending.
pub fn intersect(mut lists: Vec<&[u32]>) -> Vec<u32> {
    lists.sort_by_key(|l| l.len());
    let Some((first, rest)) = lists.split_first() else { return Vec::new() };
    let mut out: Vec<u32> = first.to_vec();
    for list in rest {
        if out.is_empty() {
            break;
        }
        // The shorter side is looked up in the longer one.
        let mut from = 0;
        out.retain(|s| match list[from..].binary_search(s) {
            Ok(i) => {
                from += i + 1;
                true
            }
            Err(i) => {
                from += i;
                false
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_stay_sorted_and_small() {
        let mut p = Postings::default();
        for s in [5, 1, 9, 3, 9] {
            p.add(7, s);
        }
        assert_eq!(p.get(7), [1, 3, 5, 9]);
        p.remove(7, 3);
        p.remove(7, 4);
        assert_eq!(p.get(7), [1, 5, 9]);
        for s in [1, 9] {
            p.remove(7, s);
        }
        assert_eq!(p.get(7), [5]);
        p.remove(7, 5);
        assert!(p.get(7).is_empty() && p.table.is_empty() && p.free.len() == 1);
    }

    #[test]
    fn postings_read_back_what_they_wrote_and_refuse_lists_named_twice() {
        let mut p = Postings::default();
        for (k, s) in [(1, 4), (2, 9), (2, 3), (3, 7), (3, 8), (3, 1)] {
            p.add(k, s);
        }
        p.add(4, 2);
        p.add(4, 5);
        p.remove(4, 5);
        let bytes = postcard::to_stdvec(&p).unwrap();
        let q: Postings = postcard::from_bytes(&bytes).unwrap();
        for k in 1..=4 {
            assert_eq!(q.get(k), p.get(k), "key {k}");
        }
        assert!(q.is_sound(10) && !q.is_sound(9));
        assert_eq!(q.get(3), [1, 7, 8]);
        let twice = PostingsWire { keys: vec![(1, LIST), (2, LIST)], many: vec![vec![1, 2]] };
        assert!(Postings::try_from(twice).is_err());
        let unnamed = PostingsWire { keys: vec![(1, 3)], many: vec![vec![1, 2]] };
        assert!(Postings::try_from(unnamed).is_err());
        let missing = PostingsWire { keys: vec![(1, LIST | 4)], many: vec![] };
        assert!(Postings::try_from(missing).is_err());
    }

    #[test]
    fn gram_lists_give_the_records_holding_every_gram() {
        let mut g = Grams::default();
        for (slot, text) in ["müller ag", "keller ag", "ammüller", "zürich"].iter().enumerate() {
            for t in trigrams(text) {
                g.add(t, slot as u32);
            }
        }
        let of = |g: &Grams, term: &str| g.all_of(&trigrams(term)).iter().collect::<Vec<u32>>();
        assert_eq!(of(&g, "üll"), [0, 2]);
        assert_eq!(of(&g, "ller ag"), [0, 1]);
        assert_eq!(of(&g, "xyz"), Vec::<u32>::new());
        for t in trigrams("müller ag") {
            g.remove(t, 0);
        }
        assert_eq!(of(&g, "üll"), [2]);
        for t in trigrams("zürich") {
            g.remove(t, 3);
        }
        assert!(trigrams("zürich").iter().all(|t| !g.map.contains_key(t)), "a gram no record holds is dropped");
    }

    #[test]
    fn trigrams_stay_within_values() {
        let t = trigrams("abcd\0xyz\0");
        assert_eq!(t.len(), 3, "abc, bcd, xyz: {t:?}");
        assert!(trigrams("ab\0cd").is_empty());
    }

    #[test]
    fn a_term_of_three_characters_is_one_trigram_whatever_its_bytes() {
        assert_eq!(trigrams("mül"), [whole_gram("mül").unwrap()]);
        assert_eq!(trigrams("müll").len(), 2);
        assert_eq!(trigrams("€€€€"), trigrams("€€€"));
        assert_eq!(whole_gram("müll"), None);
        assert_eq!(whole_gram("mü"), None);
        assert_eq!(whole_gram("a\0b"), None, "a separator is in no trigram");
        assert_ne!(whole_gram("abc"), whole_gram("acb"));
    }

    #[test]
    fn recent_terms_follow_changes_and_keep_the_newest() {
        let r = Recent::default();
        r.put("müll", [1, 5].into_iter().collect());
        let mut r = r;
        r.recheck(7, Some("ammüller"));
        r.recheck(5, Some("keller"));
        r.recheck(1, None);
        assert_eq!(r.get("müll").unwrap().iter().collect::<Vec<u32>>(), [7]);
        assert!(r.get("kell").is_none());
        for i in 0..RECENT {
            r.put(&format!("term{i}"), RoaringBitmap::new());
        }
        assert!(r.get("müll").is_none(), "the oldest goes first");
        assert!(r.get("term0").is_some());
        r.put("term1", [3].into_iter().collect());
        assert_eq!(r.get("term1").unwrap().len(), 1, "put again replaces");
    }

    #[test]
    fn intersections_keep_what_every_list_has() {
        assert_eq!(intersect(vec![&[1, 2, 3, 8, 9], &[2, 3, 9], &[0, 3, 9, 10]]), [3, 9]);
        assert!(intersect(vec![&[1, 2], &[]]).is_empty());
        assert!(intersect(vec![]).is_empty());
    }
}
