//! One sort order of the index: slots in a sequence of chunks of at most `2 * CHUNK`,
//! so that a change moves at most one chunk's worth of slots, not the whole order, and a
//! lookup by position walks the chunk lengths (a few thousand at a million customers),
//! not the slots. Each position also says whether its key equals its predecessor's
//! (`same`), so that the runs of equal keys are known without looking at the records:
//! a run's end is the next flag that is not set, found by a byte search, and a walk
//! hands on a run as its positions, without copying its slots.

use std::cmp::Ordering;
use std::ops::Range;

/// Slots per chunk after a split; a chunk splits at twice this.
const CHUNK: usize = 512;

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct Chunk {
    slots: Vec<u32>,
    /// 1 where the key equals the one before, else 0 (a byte each, for `memchr`).
    same: Vec<u8>,
}

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Order {
    chunks: Vec<Chunk>,
    len: usize,
}

impl Order {
    /// About how many bytes the chunks take.
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.slots.capacity() * 4 + c.same.capacity()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }

    /// An order of slots already sorted, with their `same` flags.
    pub fn from_sorted(slots: Vec<u32>, same: Vec<bool>) -> Order {
        assert_eq!(slots.len(), same.len());
        let len = slots.len();
        let chunks = slots
            .chunks(CHUNK)
            .zip(same.chunks(CHUNK))
            .map(|(s, f)| Chunk { slots: s.to_vec(), same: f.iter().map(|&b| u8::from(b)).collect() })
            .collect();
        Order { chunks, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The chunk of position `i` and the position within it (`i == len` is the end of
    /// the last chunk).
    fn locate(&self, mut i: usize) -> (usize, usize) {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if i < chunk.slots.len() {
                return (c, i);
            }
            i -= chunk.slots.len();
        }
        match self.chunks.len() {
            0 => (0, 0),
            n => (n - 1, self.chunks[n - 1].slots.len() + i),
        }
    }

    /// Where the first slot of the chunk `c` sits.
    fn start_of(&self, c: usize) -> usize {
        self.chunks[..c].iter().map(|k| k.slots.len()).sum()
    }

    pub fn get(&self, i: usize) -> u32 {
        let (c, at) = self.locate(i);
        self.chunks[c].slots[at]
    }

    #[cfg(test)]
    fn same(&self, i: usize) -> bool {
        let (c, at) = self.locate(i);
        self.chunks[c].same[at] != 0
    }

    pub fn set_same(&mut self, i: usize, same: bool) {
        let (c, at) = self.locate(i);
        self.chunks[c].same[at] = u8::from(same);
    }

    /// Whether the chunks hold together (as read from a snapshot): none empty or too
    /// big, a flag per slot, `len` their sum, every slot below `records`.
    pub fn is_sound(&self, records: usize) -> bool {
        let mut n = 0;
        for c in &self.chunks {
            if c.slots.is_empty()
                || c.slots.len() >= 2 * CHUNK
                || c.slots.len() != c.same.len()
                || c.same.iter().any(|&f| f > 1)
            {
                return false;
            }
            if c.slots.iter().any(|&s| s as usize >= records) {
                return false;
            }
            n += c.slots.len();
        }
        n == self.len
    }

    /// Binary search with `f` comparing a slot to the one looked for, as
    /// `slice::binary_search_by` does over the whole order.
    pub fn search(&self, mut f: impl FnMut(u32) -> Ordering) -> Result<usize, usize> {
        let c = self.chunks.partition_point(|k| k.slots.last().is_some_and(|&s| f(s) == Ordering::Less));
        if c == self.chunks.len() {
            return Err(self.len);
        }
        let start = self.start_of(c);
        match self.chunks[c].slots.binary_search_by(|&s| f(s)) {
            Ok(i) => Ok(start + i),
            Err(i) => Err(start + i),
        }
    }

    /// The first position whose slot fails `pred`, for a `pred` that holds for a prefix
    /// of the order.
    pub fn partition_point(&self, mut pred: impl FnMut(u32) -> bool) -> usize {
        let c = self.chunks.partition_point(|k| k.slots.last().is_some_and(|&s| pred(s)));
        if c == self.chunks.len() {
            return self.len;
        }
        self.start_of(c) + self.chunks[c].slots.partition_point(|&s| pred(s))
    }

    pub fn insert(&mut self, i: usize, slot: u32, same: bool) {
        assert!(i <= self.len, "insert at {i} of {}", self.len);
        if self.chunks.is_empty() {
            self.chunks.push(Chunk::default());
        }
        let (c, at) = self.locate(i);
        let chunk = &mut self.chunks[c];
        chunk.slots.insert(at, slot);
        chunk.same.insert(at, u8::from(same));
        self.len += 1;
        if chunk.slots.len() >= 2 * CHUNK {
            let tail = Chunk { slots: chunk.slots.split_off(CHUNK), same: chunk.same.split_off(CHUNK) };
            self.chunks.insert(c + 1, tail);
        }
    }

    pub fn remove(&mut self, i: usize) -> u32 {
        assert!(i < self.len, "remove at {i} of {}", self.len);
        let (c, at) = self.locate(i);
        let chunk = &mut self.chunks[c];
        let slot = chunk.slots.remove(at);
        chunk.same.remove(at);
        self.len -= 1;
        if chunk.slots.is_empty() {
            self.chunks.remove(c);
        } else if chunk.slots.len() < CHUNK / 4 && c + 1 < self.chunks.len() {
            // Small chunks join their successor while the join stays below a split.
            if self.chunks[c + 1].slots.len() + self.chunks[c].slots.len() < 2 * CHUNK {
                let next = self.chunks.remove(c + 1);
                let chunk = &mut self.chunks[c];
                chunk.slots.extend_from_slice(&next.slots);
                chunk.same.extend_from_slice(&next.same);
            }
        }
        slot
    }

    /// The slots and `same` flags from position `from` on, in order.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = (u32, bool)> + '_ {
        let (c, at) = self.locate(from);
        self.chunks
            .iter()
            .enumerate()
            .skip(c)
            .flat_map(move |(k, chunk)| {
                let skip = if k == c { at } else { 0 };
                chunk.slots.iter().copied().zip(chunk.same.iter().map(|&f| f != 0)).skip(skip)
            })
            .take(self.len.saturating_sub(from))
    }

    /// The slots and `same` flags before position `to`, last first.
    #[cfg(test)]
    fn iter_back_from(&self, to: usize) -> impl Iterator<Item = (u32, bool)> + '_ {
        let to = to.min(self.len);
        let (c, at) = if to == 0 { (0, 0) } else { self.locate(to - 1) };
        let chunks = if to == 0 { &self.chunks[..0] } else { &self.chunks[..=c] };
        chunks.iter().enumerate().rev().flat_map(move |(k, chunk)| {
            let end = if k == c { at + 1 } else { chunk.slots.len() };
            chunk.slots[..end].iter().copied().zip(chunk.same[..end].iter().map(|&f| f != 0)).rev()
        })
    }

    /// The slots at the positions `run`, in order.
    pub fn slots(&self, run: Range<usize>) -> RunSlots<'_> {
        self.slots_from(self.cursor(run.start), run.end.min(self.len))
    }

    /// The slots from `start` to the position `end`, in order.
    fn slots_from(&self, start: Cursor, end: usize) -> RunSlots<'_> {
        RunSlots { order: self, c: start.c, at: start.at, left: end.saturating_sub(start.p) }
    }

    /// The position after `cur`.
    fn step(&self, cur: Cursor) -> Cursor {
        let at = cur.at + 1;
        match self.chunks.get(cur.c) {
            Some(chunk) if at < chunk.slots.len() => Cursor { p: cur.p + 1, c: cur.c, at },
            _ => Cursor { p: cur.p + 1, c: cur.c + 1, at: 0 },
        }
    }

    /// The position before `cur` (which is not the first).
    fn step_back(&self, cur: Cursor) -> Cursor {
        match cur.at {
            0 => Cursor { p: cur.p - 1, c: cur.c - 1, at: self.chunks[cur.c - 1].slots.len() - 1 },
            at => Cursor { p: cur.p - 1, c: cur.c, at: at - 1 },
        }
    }

    /// From `cur` on, the first position before `to` that begins a run (its flag is not
    /// set), or `to`.
    fn next_start(&self, mut cur: Cursor, to: usize) -> Cursor {
        while cur.p < to && cur.c < self.chunks.len() {
            let flags = &self.chunks[cur.c].same[cur.at..];
            let n = flags.len().min(to - cur.p);
            if let Some(i) = memchr::memchr(0, &flags[..n]) {
                return Cursor { p: cur.p + i, c: cur.c, at: cur.at + i };
            }
            cur = match n == flags.len() {
                true => Cursor { p: cur.p + n, c: cur.c + 1, at: 0 },
                false => Cursor { p: cur.p + n, c: cur.c, at: cur.at + n },
            };
        }
        cur
    }

    /// The first position of the run that holds `last`, not below `floor`.
    fn run_start(&self, last: Cursor, floor: usize) -> Cursor {
        let (mut c, mut end, mut base) = (last.c, last.at + 1, last.p - last.at);
        loop {
            let lo = floor.saturating_sub(base);
            if lo < end {
                if let Some(i) = memchr::memrchr(0, &self.chunks[c].same[lo..end]) {
                    return Cursor { p: base + lo + i, c, at: lo + i };
                }
            }
            if base <= floor || c == 0 {
                let at = floor.saturating_sub(base);
                return Cursor { p: base + at, c, at };
            }
            c -= 1;
            end = self.chunks[c].slots.len();
            base -= end;
        }
    }

    fn cursor(&self, p: usize) -> Cursor {
        let (c, at) = self.locate(p);
        Cursor { p, c, at }
    }

    /// Walks the runs of equal keys: ascending, from the first position on; descending,
    /// the runs before `missing_from` from the last to the first, then those from
    /// `missing_from` on (missing keys come last either way). A run never spans
    /// `missing_from`. The walk begins with the run that holds its `at`-th position, so
    /// that a deep page need not pass over the runs before it. `f` gets the number of
    /// positions before each run in the walk, the run's positions in the order and its
    /// slots (ascending, as there), and says whether to go on.
    pub fn walk_runs(
        &self,
        missing_from: usize,
        descending: bool,
        at: usize,
        mut f: impl FnMut(usize, Range<usize>, RunSlots<'_>) -> bool,
    ) {
        if at >= self.len {
            return;
        }
        // From `cur` (a run's first position) to the end: in the walk as in the order.
        let forward = |mut cur: Cursor, f: &mut dyn FnMut(usize, Range<usize>, RunSlots<'_>) -> bool| {
            while cur.p < self.len {
                let limit = if cur.p < missing_from { missing_from } else { self.len };
                let next = self.next_start(self.step(cur), limit);
                if !f(cur.p, cur.p..next.p, self.slots_from(cur, next.p)) {
                    return;
                }
                cur = next;
            }
        };
        if !descending || at >= missing_from {
            let floor = if at >= missing_from { missing_from } else { 0 };
            forward(self.run_start(self.cursor(at), floor), &mut f);
            return;
        }
        // The walk's `at`-th position is the order's `r`-th; its run ends at `e`, and
        // the runs after it in the order (`e..missing_from`) came before it in the walk.
        let r = missing_from - 1 - at;
        let mut end = self.next_start(self.step(self.cursor(r)), missing_from);
        let mut before = missing_from - end.p;
        while end.p > 0 {
            let start = self.run_start(self.step_back(end), 0);
            if !f(before, start.p..end.p, self.slots_from(start, end.p)) {
                return;
            }
            before += end.p - start.p;
            end = start;
        }
        forward(self.cursor(missing_from), &mut f);
    }
}

/// A position in the order with its chunk and its place there.
#[derive(Clone, Copy)]
struct Cursor {
    p: usize,
    c: usize,
    at: usize,
}

/// The slots of a run (or any positions), read chunk by chunk.
pub struct RunSlots<'a> {
    order: &'a Order,
    c: usize,
    at: usize,
    left: usize,
}

impl Iterator for RunSlots<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        let chunk = self.order.chunks.get(self.c)?;
        let slot = *chunk.slots.get(self.at)?;
        self.left -= 1;
        self.at += 1;
        if self.at == chunk.slots.len() {
            self.c += 1;
            self.at = 0;
        }
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference order kept in one vector next to the chunked one.
    fn check(order: &Order, model: &[(u32, bool)]) {
        assert_eq!(order.len(), model.len());
        let all: Vec<(u32, bool)> = order.iter_from(0).collect();
        assert_eq!(all, model);
        for from in [0, 1, model.len() / 2, model.len().saturating_sub(1), model.len()] {
            let tail: Vec<(u32, bool)> = order.iter_from(from).collect();
            assert_eq!(tail, model[from.min(model.len())..]);
            let mut head: Vec<(u32, bool)> = order.iter_back_from(from).collect();
            head.reverse();
            assert_eq!(head, model[..from.min(model.len())]);
        }
    }

    #[test]
    fn inserts_and_removes_anywhere_keep_the_sequence_of_a_plain_vector() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        let mut order = Order::default();
        let mut model: Vec<(u32, bool)> = Vec::new();
        for step in 0..20_000u32 {
            // Grows to a few thousand (several chunks, splits), then shrinks to nothing
            // (joins, empty chunks).
            let grow = if step < 12_000 { next(10) < 7 } else { next(10) < 2 };
            if grow || model.is_empty() {
                let i = next(model.len() + 1);
                let same = next(2) == 0;
                order.insert(i, step, same);
                model.insert(i, (step, same));
            } else {
                let i = next(model.len());
                assert_eq!(order.remove(i), model.remove(i).0);
            }
            if step % 997 == 0 {
                check(&order, &model);
                if !model.is_empty() {
                    let i = next(model.len());
                    assert_eq!((order.get(i), order.same(i)), model[i]);
                    order.set_same(i, !model[i].1);
                    model[i].1 = !model[i].1;
                }
            }
        }
        check(&order, &model);
        assert!(order.chunks.iter().all(|c| !c.slots.is_empty() && c.slots.len() < 2 * CHUNK));
    }

    #[test]
    fn searches_find_what_a_sorted_vector_finds() {
        let sorted: Vec<u32> = (0..5000).map(|i| i * 2).collect();
        let order = Order::from_sorted(sorted.clone(), vec![false; sorted.len()]);
        for target in [0u32, 1, 2, 999, 1000, 5000, 9998, 9999, 20_000] {
            assert_eq!(order.search(|s| s.cmp(&target)), sorted.binary_search(&target), "{target}");
            assert_eq!(order.partition_point(|s| s < target), sorted.partition_point(|&s| s < target));
        }
        assert_eq!(Order::default().search(|s| s.cmp(&1)), Err(0));
        assert_eq!(Order::default().partition_point(|_| true), 0);
    }

    #[test]
    fn runs_come_whole_in_the_order_asked_for_with_missing_keys_last() {
        // Keys: 1 1 2 3 3 3 | missing missing (as runs of one: `same` is false there).
        let keys = [Some(1), Some(1), Some(2), Some(3), Some(3), Some(3), None, None];
        let slots: Vec<u32> = (0..keys.len() as u32).collect();
        let same: Vec<bool> = (0..keys.len()).map(|i| i > 0 && keys[i] == keys[i - 1] && keys[i].is_some()).collect();
        let mut order = Order::default();
        for (i, (&s, &f)) in slots.iter().zip(&same).enumerate() {
            order.insert(i, s, f);
        }
        let runs = |descending| {
            let mut out: Vec<Vec<u32>> = Vec::new();
            order.walk_runs(6, descending, 0, |_, run, slots| {
                let got: Vec<u32> = slots.collect();
                assert_eq!(got, order.slots(run).collect::<Vec<u32>>());
                out.push(got);
                true
            });
            out
        };
        assert_eq!(runs(false), vec![vec![0, 1], vec![2], vec![3, 4, 5], vec![6], vec![7]]);
        assert_eq!(runs(true), vec![vec![3, 4, 5], vec![2], vec![0, 1], vec![6], vec![7]]);
        let mut seen = 0;
        order.walk_runs(6, true, 0, |_, _, _| {
            seen += 1;
            seen < 2
        });
        assert_eq!(seen, 2, "the walk ends when told");
    }

    #[test]
    fn runs_across_chunk_borders_are_those_of_a_plain_vector() {
        // Runs of 1 to 700 equal keys over many chunks, then 300 missing keys.
        let mut keys: Vec<Option<u32>> = Vec::new();
        let mut k = 0;
        while keys.len() < 6000 {
            k += 1;
            keys.extend(std::iter::repeat_n(Some(k), 1 + (k as usize * 7919) % 700));
        }
        let missing_from = keys.len();
        keys.extend(std::iter::repeat_n(None, 300));
        let same: Vec<bool> = (0..keys.len()).map(|i| i > 0 && keys[i] == keys[i - 1]).collect();
        let order = Order::from_sorted((0..keys.len() as u32).collect(), same.clone());
        let expected = |descending: bool| {
            let mut runs: Vec<Vec<u32>> = Vec::new();
            for (i, &same) in same.iter().enumerate() {
                if i == 0 || !same || i == missing_from {
                    runs.push(Vec::new());
                }
                runs.last_mut().unwrap().push(i as u32);
            }
            if descending {
                let split = runs.iter().position(|r| r[0] as usize >= missing_from).unwrap();
                runs[..split].reverse();
            }
            runs
        };
        for descending in [false, true] {
            let runs = expected(descending);
            let mut got: Vec<Vec<u32>> = Vec::new();
            order.walk_runs(missing_from, descending, 0, |_, run, slots| {
                let run_slots: Vec<u32> = slots.collect();
                assert_eq!(run_slots, order.slots(run).collect::<Vec<u32>>());
                got.push(run_slots);
                true
            });
            assert_eq!(got, runs, "descending: {descending}");
            // Begun anywhere: the run holding that position of the walk and all after
            // it, each with the number of positions before it.
            let walk: Vec<u32> = runs.concat();
            for at in [0, 1, 650, 3001, missing_from - 1, missing_from, missing_from + 150, walk.len() - 1] {
                let mut got: Vec<(usize, Vec<u32>)> = Vec::new();
                order.walk_runs(missing_from, descending, at, |before, run, slots| {
                    let run_slots: Vec<u32> = slots.collect();
                    assert_eq!(run_slots, order.slots(run).collect::<Vec<u32>>());
                    got.push((before, run_slots));
                    true
                });
                let first = got.first().map_or(usize::MAX, |g| g.0);
                assert!(
                    first <= at && at < first + got[0].1.len(),
                    "descending {descending}, at {at}: first run at {first}"
                );
                let rest: Vec<u32> = got.iter().flat_map(|g| g.1.clone()).collect();
                assert_eq!(rest, walk[first..], "descending {descending}, at {at}");
                let mut before = first;
                for (b, r) in &got {
                    assert_eq!(*b, before);
                    before += r.len();
                }
            }
            order.walk_runs(missing_from, descending, walk.len(), |_, _, _| panic!("nothing after the end"));
        }
    }
}
