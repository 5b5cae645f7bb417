//! Hash tables of handles (slot numbers) found by a key the handle leads to: the records
//! already hold their ids and entryUUIDs, so a table keeps only the 4-byte handle and
//! its control byte, and compares a key by looking at the record. A map from key to slot
//! would hold each key a second time (an entryUUID map took 29 bytes a bucket).

use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

pub struct Handles {
    table: HashTable<u32>,
    /// Keyed per process: the keys (ids) can be chosen by whoever writes entries.
    hasher: RandomState,
}

impl Default for Handles {
    fn default() -> Self {
        Handles { table: HashTable::new(), hasher: RandomState::new() }
    }
}

impl Handles {
    /// An empty table with room for `n` handles (a rebuild then never grows it, which
    /// would read the key of every handle held again).
    pub fn with_capacity(n: usize) -> Handles {
        Handles { table: HashTable::with_capacity(n), hasher: RandomState::new() }
    }

    fn hash<K: Hash>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The handle of `key`, where `key_of` says which key a handle has now.
    pub fn get<K: Hash + Eq>(&self, key: &K, key_of: impl Fn(u32) -> Option<K>) -> Option<u32> {
        self.table.find(self.hash(key), |&h| key_of(h).as_ref() == Some(key)).copied()
    }

    /// The place of `key` in the table, where `key_of` says which key a handle has.
    fn entry<K: Hash + Eq>(
        &mut self,
        key: &K,
        key_of: impl Fn(u32) -> Option<K>,
    ) -> hashbrown::hash_table::Entry<'_, u32> {
        let hash = self.hash(key);
        let hasher = &self.hasher;
        self.table.entry(
            hash,
            |&h| key_of(h).as_ref() == Some(key),
            // Growing asks again for the hash of every handle: its record holds the key.
            |&h| hasher.hash_one(key_of(h).expect("a handle in the table leads to its key")),
        )
    }

    /// Gives `key` the handle `handle`, which `key_of` must already read it from,
    /// instead of any handle it had.
    pub fn insert<K: Hash + Eq>(&mut self, key: &K, handle: u32, key_of: impl Fn(u32) -> Option<K>) {
        match self.entry(key, key_of) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = handle,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(handle);
            }
        }
    }

    /// Gives `key` the handle `handle` unless it has one: whether it had none (one
    /// probe of the table, where `get` and `insert` take two).
    pub fn insert_new<K: Hash + Eq>(&mut self, key: &K, handle: u32, key_of: impl Fn(u32) -> Option<K>) -> bool {
        match self.entry(key, key_of) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(handle);
                true
            }
        }
    }

    /// Forgets `key` (while `key_of` still reads it from its handle); its handle.
    pub fn remove<K: Hash + Eq>(&mut self, key: &K, key_of: impl Fn(u32) -> Option<K>) -> Option<u32> {
        match self.table.find_entry(self.hash(key), |&h| key_of(h).as_ref() == Some(key)) {
            Ok(o) => Some(o.remove().0),
            Err(_) => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().copied()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// About how many bytes the table takes.
    pub fn bytes(&self) -> usize {
        super::lookup::table_bytes(self.table.capacity(), std::mem::size_of::<u32>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_found_by_the_key_their_record_holds() {
        // Records: the key of handle h is keys[h].
        let mut keys: Vec<Option<u64>> = Vec::new();
        let mut t = Handles::default();
        for k in 0..10_000u64 {
            keys.push(Some(k * 7919));
            let h = (keys.len() - 1) as u32;
            t.insert(&(k * 7919), h, |h| keys[h as usize]);
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get(&(42 * 7919), |h| keys[h as usize]), Some(42));
        assert_eq!(t.get(&5, |h| keys[h as usize]), None);
        // A key given another handle.
        keys.push(Some(42 * 7919));
        t.insert(&(42 * 7919), 10_000, |h| keys[h as usize]);
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get(&(42 * 7919), |h| keys[h as usize]), Some(10_000));
        assert_eq!(t.remove(&(42 * 7919), |h| keys[h as usize]), Some(10_000));
        assert_eq!(t.remove(&(42 * 7919), |h| keys[h as usize]), None);
        keys[42] = None;
        for k in (0..10_000u64).filter(|k| k % 2 == 0 && *k != 42) {
            assert_eq!(t.remove(&(k * 7919), |h| keys[h as usize]), Some(k as u32));
            keys[k as usize] = None;
        }
        assert_eq!(t.len(), 5_000);
        let mut left: Vec<u32> = t.iter().collect();
        left.sort_unstable();
        assert_eq!(left, (0..10_000u32).filter(|k| k % 2 == 1).collect::<Vec<_>>());
        assert!(t.bytes() >= 5_000 * 5);
        // A key that has a handle keeps it.
        assert!(!t.insert_new(&(43 * 7919), 7, |h| keys[h as usize]));
        assert_eq!(t.get(&(43 * 7919), |h| keys[h as usize]), Some(43));
        keys.push(Some(3));
        assert!(t.insert_new(&3, 10_001, |h| keys[h as usize]));
        assert_eq!(t.get(&3, |h| keys[h as usize]), Some(10_001));
        let sized = Handles::with_capacity(1000);
        assert!(sized.bytes() >= 1000 * 5 && sized.is_empty());
    }
}
