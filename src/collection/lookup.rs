//! Posting lists that answer a query without a pass over every record: which records
//! hold a value of a column (exact filters on columns of many values, such as a person's
//! mail or customer), and which records' search text holds a trigram (`q=`: only records
//! holding every trigram of the term can contain it; they are then checked).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use roaring::RoaringBitmap;

/// The records (slots) whose search text holds each trigram, as compressed bitmaps: a
/// trigram of most records (a mail domain, a street word) costs about a bit per record,
/// a rare one two bytes per record that holds it, and a change is O(log n).
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Grams {
    map: HashMap<u32, RoaringBitmap>,
}

impl Grams {
    pub fn add(&mut self, gram: u32, slot: u32) {
        self.map.entry(gram).or_default().insert(slot);
    }

    pub fn remove(&mut self, gram: u32, slot: u32) {
        if let Some(b) = self.map.get_mut(&gram) {
            b.remove(slot);
            if b.is_empty() {
                self.map.remove(&gram);
            }
        }
    }

    /// The records holding every one of `grams` (none for a gram no record holds).
    pub fn all_of(&self, grams: &[u32]) -> RoaringBitmap {
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

    /// Gives back what the bitmaps grew beyond their need (after a load).
    pub fn shrink(&mut self) {
        for b in self.map.values_mut() {
            b.optimize();
        }
        self.map.shrink_to_fit();
    }
}

/// The records (slots) of each key, ascending.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Postings {
    map: HashMap<u64, Posting>,
}

/// Most keys of a value index have one record: no allocation for those.
#[derive(serde::Serialize, serde::Deserialize)]
enum Posting {
    One(u32),
    Many(Vec<u32>),
}

impl Postings {
    pub fn add(&mut self, key: u64, slot: u32) {
        use std::collections::hash_map::Entry;
        match self.map.entry(key) {
            Entry::Vacant(v) => {
                v.insert(Posting::One(slot));
            }
            Entry::Occupied(mut o) => {
                let p = o.get_mut();
                match p {
                    Posting::One(s) => {
                        let s = *s;
                        if s != slot {
                            *p = Posting::Many(vec![s.min(slot), s.max(slot)]);
                        }
                    }
                    Posting::Many(v) => {
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
    }

    pub fn remove(&mut self, key: u64, slot: u32) {
        let gone = match self.map.get_mut(&key) {
            None => false,
            Some(Posting::One(s)) => *s == slot,
            Some(Posting::Many(v)) => {
                if let Ok(i) = v.binary_search(&slot) {
                    v.remove(i);
                }
                if v.len() == 1 {
                    let last = v[0];
                    self.map.insert(key, Posting::One(last));
                }
                false
            }
        };
        if gone {
            self.map.remove(&key);
        }
    }

    /// Whether every list is ascending and below `records` (as read from a snapshot).
    pub fn is_sound(&self, records: usize) -> bool {
        self.map.values().all(|p| match p {
            Posting::One(s) => (*s as usize) < records,
            Posting::Many(v) => v.windows(2).all(|w| w[0] < w[1]) && v.last().is_some_and(|&s| (s as usize) < records),
        })
    }

    /// The records of a key, ascending.
    pub fn get(&self, key: u64) -> &[u32] {
        match self.map.get(&key) {
            None => &[],
            Some(Posting::One(s)) => std::slice::from_ref(s),
            Some(Posting::Many(v)) => v,
        }
    }

    /// Gives back what the lists grew beyond their length (after a load).
    pub fn shrink(&mut self) {
        for p in self.map.values_mut() {
            if let Posting::Many(v) = p {
                v.shrink_to_fit();
            }
        }
        self.map.shrink_to_fit();
    }
}

/// The key of a (folded) value: a hash; a collision only adds a record that the query
/// then checks and drops.
pub fn value_key(folded: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    folded.hash(&mut h);
    h.finish()
}

/// The distinct byte trigrams of a search text, without those that span a value
/// separator (NUL): a substring of one value has only trigrams of that value.
pub fn trigrams(text: &str) -> Vec<u32> {
    let b = text.as_bytes();
    let mut out: Vec<u32> = b
        .windows(3)
        .filter(|w| !w.contains(&0))
        .map(|w| (u32::from(w[0]) << 16) | (u32::from(w[1]) << 8) | u32::from(w[2]))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
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
        assert!(p.get(7).is_empty() && p.map.is_empty());
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
    fn intersections_keep_what_every_list_has() {
        assert_eq!(intersect(vec![&[1, 2, 3, 8, 9], &[2, 3, 9], &[0, 3, 9, 10]]), [3, 9]);
        assert!(intersect(vec![&[1, 2], &[]]).is_empty());
        assert!(intersect(vec![]).is_empty());
    }
}
