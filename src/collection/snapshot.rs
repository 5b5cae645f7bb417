//! The indexes saved on local disk with the content synchronisation's cookie, so that a
//! restarted gateway resumes the synchronisation from there instead of reading every
//! entry again. A snapshot is taken between two events of the synchronisation (the
//! fan-out holds them back while the indexes are written), so what it holds is exactly
//! the content up to its cookie. It serves as soon as it is read (for lists whose
//! `contextCSN` its cookie covers), but it is only a starting point: the resume brings
//! what changed since, and a check against the directory follows every resume; a snapshot
//! that cannot be read, was written by another version or for another configuration, or
//! whose cookie the directory refuses, is discarded and the indexes load from nothing.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::index::CollectionIndex;
use crate::directory::sync::{Csns, SyncEvent, SyncSink, Uuid, Verified};
use crate::mapping::query;
use crate::mapping::table::{self, Part};

/// One content synchronisation for every resource's index: each event goes to all.
pub struct Fanout {
    indexes: Vec<Arc<CollectionIndex>>,
    gate: Mutex<Gate>,
    /// One snapshot written at a time (the periodic one and the one at the stop).
    saving: Mutex<()>,
}

#[derive(Default)]
struct Gate {
    /// The cookie of the last event handed on (none while loading from nothing).
    cookie: Option<Arc<[u8]>>,
    /// Events handed on so far.
    events: u64,
    /// The last `Verified` the indexes were given (since their last load from nothing).
    verified: Option<Verified>,
}

impl Fanout {
    pub fn new(indexes: Vec<Arc<CollectionIndex>>) -> Fanout {
        Fanout { indexes, gate: Mutex::default(), saving: Mutex::default() }
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events handed on so far: a snapshot is due when this has moved since the last.
    pub fn events(&self) -> u64 {
        self.gate().events
    }
}

impl SyncSink for Fanout {
    fn apply(&self, event: SyncEvent) {
        let mut gate = self.gate();
        gate.events += 1;
        match &event {
            SyncEvent::Cookie(_, raw) => gate.cookie = Some(raw.clone()),
            SyncEvent::RefreshBegin { reload: true } => {
                gate.cookie = None;
                gate.verified = None;
            }
            SyncEvent::Verified(csns) => gate.verified = Some(csns.clone()),
            _ => {}
        }
        if let Some((last, rest)) = self.indexes.split_last() {
            for index in rest {
                index.apply(event.clone());
            }
            last.apply(event);
        }
    }

    fn verified(&self) -> Option<Verified> {
        self.gate().verified.clone()
    }

    fn lacks(&self, uuid: &Uuid, dn: &str) -> bool {
        self.indexes.iter().any(|i| i.lacks(uuid, dn))
    }
}

const MAGIC: &[u8; 8] = b"STONEYIX";

#[derive(Serialize, Deserialize, PartialEq)]
struct Header {
    /// The entryUUID of the base entry: replicas share it, another directory (even one
    /// with the same base and content) has its own.
    directory: String,
    /// The gateway's version, the layout of the index's structures and, per index, its
    /// resource's columns and the attributes kept of each entry: a snapshot of another
    /// mapping is of no use.
    shape: Vec<String>,
    base: String,
    cookie: Vec<u8>,
    /// The server and CSNs of the last `Verified` (none: the check after the resume
    /// reads every entry in full).
    verified: Option<(String, Vec<String>)>,
}

fn shape(indexes: &[Arc<CollectionIndex>]) -> Vec<String> {
    let mut out = vec![format!("stoney-gateway {}", env!("CARGO_PKG_VERSION")), super::index::LAYOUT.to_string()];
    for index in indexes {
        let def = index.def();
        let cols = def.columns();
        let names = |c: &[crate::mapping::row::Column]| -> String {
            c.iter().map(|c| format!("{:?}.{}={}", c.part, c.field.name, c.field.attr)).collect::<Vec<_>>().join(",")
        };
        out.push(format!(
            "{} sort[{}] filter[{}] search[{}] item[{}] root[{}] billing[{}] shipping[{}]",
            def.name,
            names(query::sort_columns(def)),
            names(&cols.filter),
            names(&cols.search),
            names(&cols.item),
            table::attributes(def, Part::Root).join(","),
            table::attributes(def, Part::Billing).join(","),
            table::attributes(def, Part::Shipping).join(","),
        ));
    }
    out
}

/// Writes the indexes to `path` (by way of a temporary file beside it, renamed once it
/// is complete); the bytes written, or `None` while the indexes are not loaded.
pub fn save(path: &Path, fanout: &Fanout, base: &str, directory: &str) -> Result<Option<u64>, String> {
    let _one = fanout.saving.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // It holds what the directory holds: for the gateway's user only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut out = Summed { inner: BufWriter::with_capacity(1 << 20, file), sum: Sum::default() };
    let written = (|| {
        // Between two events: the indexes and the cookie agree.
        let gate = fanout.gate();
        let Some(cookie) = gate.cookie.clone() else { return Ok(false) };
        if !fanout.indexes.iter().all(|i| i.is_loaded()) {
            return Ok(false);
        }
        out.inner.write_all(MAGIC).map_err(|e| e.to_string())?;
        let header = Header {
            directory: directory.to_string(),
            shape: shape(&fanout.indexes),
            base: base.to_string(),
            cookie: cookie.to_vec(),
            verified: gate.verified.as_ref().map(|v| (v.server.clone(), v.csns.0.values().cloned().collect())),
        };
        postcard::to_io(&header, &mut out).map_err(|e| e.to_string())?;
        for index in &fanout.indexes {
            if !index.save(&mut out)? {
                return Ok(false);
            }
        }
        Ok::<bool, String>(true)
    })();
    let done = written.and_then(|w| {
        let sum = out.sum.finish();
        let mut inner = out.inner;
        inner.write_all(&sum.to_le_bytes()).map_err(|e| e.to_string())?;
        let file = inner.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        Ok((w, file.metadata().map(|m| m.len()).unwrap_or(0)))
    });
    match done {
        Ok((true, bytes)) => {
            std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(Some(bytes))
        }
        Ok((false, _)) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(None)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Loads the indexes from `path`; the cookie to resume from, or `None` without a file.
/// A snapshot that does not fit leaves the indexes as they were (empty, at start).
/// `at` is how far the directory is (its `contextCSN`): a snapshot ahead of it is of a
/// state the directory does not have (put back from a backup, say).
pub fn load(path: &Path, fanout: &Fanout, base: &str, directory: &str, at: &Csns) -> Result<Option<Vec<u8>>, String> {
    let t = std::time::Instant::now();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let held = Bytes::of(&file).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes: &[u8] = &held;
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not an index snapshot")?;
    let (payload, sum) = rest.split_at_checked(rest.len().saturating_sub(8)).ok_or("cut short")?;
    let mut summed = Sum::default();
    summed.add(payload);
    if sum.len() != 8 || summed.finish().to_le_bytes() != sum {
        return Err("damaged (its checksum does not match)".into());
    }
    tracing::debug!(read_and_summed = ?t.elapsed(), bytes = bytes.len(), "index snapshot read");
    let (header, mut rest): (Header, &[u8]) = postcard::take_from_bytes(payload)
        .map_err(|e| format!("its header does not read, as one of another version of the gateway would not ({e})"))?;
    if header.directory != directory {
        return Err("written for another directory".into());
    }
    let resumed_at = Csns::from_cookie(&header.cookie);
    if !at.covers(&resumed_at) {
        return Err("ahead of the directory (was it put back from a backup?)".into());
    }
    if header.shape != shape(&fanout.indexes) {
        return Err("written by another version of the gateway or for other resources".into());
    }
    if header.base != base {
        return Err(format!("written for the base {:?}", header.base));
    }
    for index in &fanout.indexes {
        rest = index.restore(rest, &resumed_at).inspect_err(|_| fanout.indexes.iter().for_each(|i| i.clear()))?;
    }
    if !rest.is_empty() {
        fanout.indexes.iter().for_each(|i| i.clear());
        return Err("trailing bytes after the indexes".into());
    }
    drop(held);
    super::index::release_free_memory();
    let mut gate = fanout.gate();
    gate.cookie = Some(header.cookie.as_slice().into());
    gate.verified = header
        .verified
        .map(|(server, csns)| Verified { server, csns: Csns::from_values(csns.iter().map(String::as_str)) });
    drop(gate);
    fanout.indexes.iter().for_each(|i| i.serve_restored());
    Ok(Some(header.cookie))
}

/// A snapshot's bytes: the file mapped, or, where it cannot be, read into the heap.
enum Bytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl Bytes {
    fn of(mut file: &std::fs::File) -> std::io::Result<Bytes> {
        // SAFETY: the mapping is read while the file does not change: the gateway writes
        // a snapshot to a temporary file and renames it over the old one, so a mapped
        // file is never written again (the rename leaves its inode as it is). Only
        // another process writing into this file (the gateway's own, mode 0600) could
        // change or cut it under the mapping.
        match unsafe { memmap2::MmapOptions::new().populate().map(file) } {
            Ok(m) => Ok(Bytes::Mapped(m)),
            Err(_) => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut v)?;
                Ok(Bytes::Read(v))
            }
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Read(v) => v,
        }
    }
}

/// A checksum of a snapshot, against a file damaged on disk or cut short (not against
/// tampering: the file is the gateway's own): 64-bit words folded by multiply and
/// rotate, which runs at memory speed.
#[derive(Default)]
struct Sum {
    h: u64,
    pending: Vec<u8>,
    len: u64,
}

impl Sum {
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }

    fn add(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if !self.pending.is_empty() {
            let take = (8 - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.pending[..8].try_into().expect("8 bytes"));
            self.word(w);
            self.pending.clear();
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        self.pending.extend_from_slice(words.remainder());
    }

    fn finish(mut self) -> u64 {
        let mut last = [0u8; 8];
        last[..self.pending.len()].copy_from_slice(&self.pending);
        let len = self.len;
        self.word(u64::from_le_bytes(last));
        self.word(len);
        self.h
    }
}

/// A writer that sums what goes through it.
struct Summed<W> {
    inner: W,
    sum: Sum,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.add(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of a snapshot written before it carried the verified CSNs.
    #[derive(Serialize)]
    struct OlderHeader {
        directory: String,
        shape: Vec<String>,
        base: String,
        cookie: Vec<u8>,
    }

    #[test]
    fn a_snapshot_whose_header_does_not_read_is_named_one_of_another_version() {
        let older = OlderHeader { directory: "d".into(), shape: vec![], base: "b".into(), cookie: b"c".to_vec() };
        let mut payload = postcard::to_allocvec(&older).unwrap();
        // Where the verified CSNs now follow, an index's bytes, which do not read as them.
        payload.push(7);
        let mut sum = Sum::default();
        sum.add(&payload);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&payload);
        file.extend_from_slice(&sum.finish().to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        std::fs::write(&path, file).unwrap();
        let err = load(&path, &Fanout::new(vec![]), "b", "d", &Csns::default()).unwrap_err();
        assert!(err.contains("another version of the gateway"), "{err}");
    }

    #[test]
    fn the_checksum_does_not_depend_on_how_the_bytes_are_cut_and_sees_any_change() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = {
            let mut s = Sum::default();
            s.add(&data);
            s.finish()
        };
        for cut in [1, 3, 7, 8, 9, 500] {
            let mut s = Sum::default();
            for piece in data.chunks(cut) {
                s.add(piece);
            }
            assert_eq!(s.finish(), whole, "pieces of {cut}");
        }
        for at in [0, 1, 499, 999] {
            let mut d = data.clone();
            d[at] ^= 1;
            let mut s = Sum::default();
            s.add(&d);
            assert_ne!(s.finish(), whole, "a change at {at}");
        }
        let mut s = Sum::default();
        s.add(&data[..999]);
        assert_ne!(s.finish(), whole, "one byte short");
    }
}
