//! Stratus's embedded time-series store, for the single-host default of the monitoring
//! service: series of (millisecond time, f64) samples named by labels, as Prometheus
//! models them.
//!
//! - Samples live in Gorilla-compressed [`chunk::Chunk`]s in memory, indexed by label
//!   (an inverted index from `name=value` to series), so a selection touches only the
//!   series it names.
//! - Every append is written first to a write-ahead log (framed, checksummed records);
//!   [`Tsdb::checkpoint`] writes a snapshot of all chunks and starts a new log. Opening
//!   replays the snapshot and the log, stopping at a torn tail, so a crash loses at most
//!   what was not yet flushed to the operating system (the log is flushed on every
//!   append and synced by [`Tsdb::sync`], which the owner calls every second).
//! - [`Tsdb::retain`] drops whole chunks older than the retention.

pub mod chunk;
pub mod labels;
pub mod query;
mod wal;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

pub use chunk::Chunk;
pub use labels::{Labels, MatchOp, Matcher, NAME};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("time-series store: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One sample to append.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Labels,
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    pub v: f64,
}

/// A selected series and its samples in the asked range.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// What was appended: samples kept, and those refused as out of order (not later than
/// the series' last sample) — Prometheus refuses them too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub samples: usize,
    pub out_of_order: usize,
    pub new_series: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub series: usize,
    pub chunks: usize,
    pub samples: usize,
    /// Bytes of chunk data, label strings and index, approximately.
    pub bytes: usize,
}

struct Series {
    labels: Labels,
    chunks: Vec<Chunk>,
}

impl Series {
    fn last_time(&self) -> Option<i64> {
        self.chunks
            .last()
            .filter(|c| !c.is_empty())
            .map(|c| c.max_time())
    }

    fn push(&mut self, t: i64, v: f64) {
        if self.chunks.last().is_none_or(|c| c.is_full()) {
            self.chunks.push(Chunk::new());
        }
        if let Some(c) = self.chunks.last_mut() {
            c.append(t, v);
        }
    }
}

#[derive(Default)]
struct Head {
    series: Vec<Option<Series>>,
    by_labels: HashMap<Labels, u32>,
    /// `name=value` → series ids (ascending).
    postings: HashMap<(String, String), Vec<u32>>,
    /// Every series id, for selections without an equality matcher.
    all: Vec<u32>,
}

impl Head {
    fn id_of(&mut self, labels: &Labels) -> (u32, bool) {
        if let Some(id) = self.by_labels.get(labels) {
            return (*id, false);
        }
        let id = self.series.len() as u32;
        self.insert(id, labels.clone());
        (id, true)
    }

    fn insert(&mut self, id: u32, labels: Labels) {
        for (k, v) in labels.iter() {
            self.postings
                .entry((k.to_string(), v.to_string()))
                .or_default()
                .push(id);
        }
        self.all.push(id);
        self.by_labels.insert(labels.clone(), id);
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, || None);
        }
        self.series[i] = Some(Series {
            labels,
            chunks: Vec::new(),
        });
    }

    /// Series ids matching every matcher: the shortest equality posting list, filtered.
    fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        let base = matchers
            .iter()
            .filter(|m| m.op == MatchOp::Equal && !m.value.is_empty())
            .map(|m| {
                self.postings
                    .get(&(m.name.clone(), m.value.clone()))
                    .map(|v| v.as_slice())
                    .unwrap_or(&[])
            })
            .min_by_key(|p| p.len())
            .unwrap_or(&self.all);
        base.iter()
            .copied()
            .filter(|id| {
                self.series
                    .get(*id as usize)
                    .and_then(|s| s.as_ref())
                    .is_some_and(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            })
            .collect()
    }
}

pub struct Tsdb {
    head: RwLock<Head>,
    wal: Option<Mutex<wal::Wal>>,
    dir: Option<PathBuf>,
}

impl Tsdb {
    /// A store kept only in memory (tests, benchmarks of the in-memory path).
    pub fn in_memory() -> Tsdb {
        Tsdb {
            head: RwLock::new(Head::default()),
            wal: None,
            dir: None,
        }
    }

    /// Open (or create) the store in `dir`: load the snapshot, replay the log.
    pub fn open(dir: &Path) -> Result<Tsdb> {
        std::fs::create_dir_all(dir)?;
        let mut replay = Replay::default();
        let mut load = |r: wal::Record| replay.apply(r);
        wal::read_snapshot(&dir.join(wal::SNAPSHOT), &mut load)?;
        let log = wal::Wal::open(&dir.join(wal::LOG), &mut load)?;
        Ok(Tsdb {
            head: RwLock::new(replay.head),
            wal: Some(Mutex::new(log)),
            dir: Some(dir.to_path_buf()),
        })
    }

    /// Append samples (any series, any order between series; within a series, later
    /// than its last sample).
    pub fn append(&self, samples: &[Sample]) -> Result<Appended> {
        let mut out = Appended::default();
        let mut head = self.head.write().map_err(|_| poisoned())?;
        let mut new_series = Vec::new();
        let mut kept = Vec::with_capacity(samples.len());
        for s in samples {
            if s.labels.is_empty() {
                return Err(Error::Invalid("a sample needs labels".into()));
            }
            let (id, new) = head.id_of(&s.labels);
            if new {
                new_series.push((id, s.labels.clone()));
                out.new_series += 1;
            }
            let Some(series) = head.series[id as usize].as_mut() else {
                continue;
            };
            if series.last_time().is_some_and(|last| s.t <= last) {
                out.out_of_order += 1;
                continue;
            }
            series.push(s.t, s.v);
            kept.push((id, s.t, s.v));
            out.samples += 1;
        }
        if let Some(w) = &self.wal {
            // Written while the head is held, so the log's order is the head's.
            let mut w = w.lock().map_err(|_| poisoned())?;
            w.write(&new_series, &kept)?;
        }
        Ok(out)
    }

    /// Series matching every matcher, with their samples in `[start, end]` (ms).
    pub fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<SeriesData>> {
        let head = self.head.read().map_err(|_| poisoned())?;
        let mut out = Vec::new();
        for id in head.select_ids(matchers) {
            let Some(s) = head.series[id as usize].as_ref() else {
                continue;
            };
            let mut samples = Vec::new();
            for c in &s.chunks {
                if c.max_time() < start || c.min_time() > end {
                    continue;
                }
                samples.extend(
                    c.samples()
                        .into_iter()
                        .filter(|(t, _)| *t >= start && *t <= end),
                );
            }
            if !samples.is_empty() {
                out.push(SeriesData {
                    labels: s.labels.clone(),
                    samples,
                });
            }
        }
        Ok(out)
    }

    /// Label sets of the series matching (whether or not they have samples left).
    pub fn series(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        let head = self.head.read().map_err(|_| poisoned())?;
        Ok(head
            .select_ids(matchers)
            .into_iter()
            .filter_map(|id| head.series[id as usize].as_ref().map(|s| s.labels.clone()))
            .collect())
    }

    /// Values of one label across all series, sorted.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let head = self.head.read().map_err(|_| poisoned())?;
        let mut v: Vec<String> = head
            .postings
            .keys()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        v.sort();
        Ok(v)
    }

    /// Drop chunks whose last sample is before `before` (ms), and series left empty.
    /// Returns the samples dropped.
    pub fn retain(&self, before: i64) -> Result<usize> {
        let mut head = self.head.write().map_err(|_| poisoned())?;
        let mut dropped = 0;
        let mut gone = Vec::new();
        for (id, slot) in head.series.iter_mut().enumerate() {
            let Some(s) = slot.as_mut() else { continue };
            let keep = s.chunks.len();
            s.chunks.retain(|c| {
                let old = c.max_time() < before;
                if old {
                    dropped += c.len();
                }
                !old
            });
            if s.chunks.is_empty() && keep > 0 {
                gone.push(id as u32);
            }
        }
        for id in gone {
            if let Some(s) = head.series[id as usize].take() {
                head.by_labels.remove(&s.labels);
                for (k, v) in s.labels.iter() {
                    let key = (k.to_string(), v.to_string());
                    if let Some(p) = head.postings.get_mut(&key) {
                        p.retain(|x| *x != id);
                        if p.is_empty() {
                            head.postings.remove(&key);
                        }
                    }
                }
                head.all.retain(|x| *x != id);
            }
        }
        drop(head);
        // Otherwise opening would replay what was dropped.
        if dropped > 0 {
            self.checkpoint()?;
        }
        Ok(dropped)
    }

    pub fn stats(&self) -> Result<Stats> {
        let head = self.head.read().map_err(|_| poisoned())?;
        let mut st = Stats::default();
        for s in head.series.iter().flatten() {
            st.series += 1;
            st.chunks += s.chunks.len();
            st.samples += s.chunks.iter().map(|c| c.len()).sum::<usize>();
            st.bytes += s.labels.size()
                + s.chunks
                    .iter()
                    .map(|c| c.bytes() + std::mem::size_of::<Chunk>())
                    .sum::<usize>()
                + s.labels.len() * 8;
        }
        Ok(st)
    }

    /// Flush the log to disk (the owner calls this every second).
    pub fn sync(&self) -> Result<()> {
        if let Some(w) = &self.wal {
            w.lock().map_err(|_| poisoned())?.sync()?;
        }
        Ok(())
    }

    /// Write a snapshot of everything and start an empty log: what opening reads gets
    /// small again. Appends wait while it runs.
    pub fn checkpoint(&self) -> Result<()> {
        let (Some(w), Some(dir)) = (&self.wal, &self.dir) else {
            return Ok(());
        };
        let head = self.head.read().map_err(|_| poisoned())?;
        let mut w = w.lock().map_err(|_| poisoned())?;
        let series = head
            .series
            .iter()
            .enumerate()
            .filter_map(|(id, s)| s.as_ref().map(|s| (id as u32, &s.labels, &s.chunks[..])));
        wal::write_snapshot(&dir.join(wal::SNAPSHOT), series)?;
        w.reset()?;
        Ok(())
    }

    /// Bytes the log holds now.
    pub fn log_bytes(&self) -> u64 {
        self.wal
            .as_ref()
            .and_then(|w| w.lock().ok().map(|w| w.len()))
            .unwrap_or(0)
    }
}

fn poisoned() -> Error {
    Error::Io(std::io::Error::other("a writer panicked"))
}

/// The head rebuilt from a snapshot and a log.
#[derive(Default)]
struct Replay {
    head: Head,
    /// Ids the log gave a series that came back after retention dropped it (its labels
    /// already have an id here): their samples go to that one.
    alias: HashMap<u32, u32>,
}

impl Replay {
    fn apply(&mut self, r: wal::Record) {
        let head = &mut self.head;
        match r {
            wal::Record::Series(id, labels) => match head.by_labels.get(&labels) {
                Some(&have) if have != id => {
                    self.alias.insert(id, have);
                    // New ids are handed out above every id the log used.
                    if head.series.len() <= id as usize {
                        head.series.resize_with(id as usize + 1, || None);
                    }
                }
                Some(_) => {}
                None => head.insert(id, labels),
            },
            wal::Record::Chunks(id, chunks) => {
                if let Some(Some(s)) = head.series.get_mut(id as usize) {
                    s.chunks = chunks;
                }
            }
            wal::Record::Samples(samples) => {
                for (id, t, v) in samples {
                    let id = self.alias.get(&id).copied().unwrap_or(id);
                    if let Some(Some(s)) = head.series.get_mut(id as usize) {
                        if s.last_time().is_none_or(|last| t > last) {
                            s.push(t, v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, host: &str) -> Labels {
        Labels::new([(NAME, name), ("host", host)]).unwrap()
    }

    fn s(name: &str, host: &str, t: i64, v: f64) -> Sample {
        Sample {
            labels: l(name, host),
            t,
            v,
        }
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "stratus-tsdb-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn select_by_matchers_and_range() {
        let db = Tsdb::in_memory();
        let mut batch = Vec::new();
        for i in 0..500 {
            batch.push(s("cpu", "a", i * 1000, i as f64));
            batch.push(s("cpu", "b", i * 1000, -(i as f64)));
            batch.push(s("mem", "a", i * 1000, 1.0));
        }
        let a = db.append(&batch).unwrap();
        assert_eq!(a.samples, 1500);
        assert_eq!(a.new_series, 3);
        let got = db
            .select(&[Matcher::equal(NAME, "cpu")], 10_000, 19_000)
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].samples.len(), 10);
        assert_eq!(got[0].samples[0], (10_000, 10.0));
        let re = Matcher::new("host", MatchOp::Regex, "a|z").unwrap();
        let got = db.select(&[re], 0, 1_000_000).unwrap();
        assert_eq!(got.len(), 2, "cpu and mem of host a");
        let ne = Matcher::new("host", MatchOp::NotEqual, "a").unwrap();
        let got = db
            .select(&[Matcher::equal(NAME, "cpu"), ne], 0, 1_000_000)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels.get("host"), Some("b"));
        assert_eq!(db.label_values("host").unwrap(), vec!["a", "b"]);
        // Out of order within a series is refused, counted.
        let a = db.append(&[s("cpu", "a", 5, 1.0)]).unwrap();
        assert_eq!((a.samples, a.out_of_order), (0, 1));
        let st = db.stats().unwrap();
        assert_eq!(st.samples, 1500);
        assert!(st.bytes < 1500 * 4, "{st:?}");
    }

    #[test]
    fn a_reopened_store_has_everything_written_and_a_torn_log_tail_is_cut() {
        let d = dir();
        {
            let db = Tsdb::open(&d).unwrap();
            for i in 0..300 {
                db.append(&[
                    s("up", "a", i * 15_000, 1.0),
                    s("load", "a", i * 15_000, i as f64),
                ])
                .unwrap();
            }
            db.checkpoint().unwrap();
            for i in 300..400 {
                db.append(&[s("load", "a", i * 15_000, i as f64)]).unwrap();
            }
            db.sync().unwrap();
        }
        // A crash mid-record: garbage after the last good one.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(d.join(wal::LOG))
                .unwrap();
            f.write_all(&[2, 0xff, 0xff, 0, 0, 1, 2, 3]).unwrap();
        }
        let db = Tsdb::open(&d).unwrap();
        let got = db
            .select(&[Matcher::equal(NAME, "load")], 0, i64::MAX)
            .unwrap();
        assert_eq!(got[0].samples.len(), 400);
        assert_eq!(got[0].samples[399], (399 * 15_000, 399.0));
        // Appends go on after the cut tail, and survive another reopen.
        db.append(&[s("load", "a", 400 * 15_000, 400.0)]).unwrap();
        drop(db);
        let db = Tsdb::open(&d).unwrap();
        let got = db
            .select(&[Matcher::equal(NAME, "load")], 0, i64::MAX)
            .unwrap();
        assert_eq!(got[0].samples.len(), 401);
        assert_eq!(db.series(&[]).unwrap().len(), 2);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_series_back_after_retention_survives_a_reopen() {
        let d = dir();
        {
            let db = Tsdb::open(&d).unwrap();
            for i in 0..130 {
                db.append(&[s("x", "a", i, 1.0), s("y", "a", i, 2.0)])
                    .unwrap();
            }
            // Drops x's first chunk and checkpoints; x and y go on in the log.
            assert_eq!(db.retain(125).unwrap(), 240);
            db.append(&[s("x", "a", 500, 3.0)]).unwrap();
        }
        let db = Tsdb::open(&d).unwrap();
        let x = db
            .select(&[Matcher::equal(NAME, "x")], 0, i64::MAX)
            .unwrap();
        assert_eq!(x.len(), 1);
        assert_eq!(
            x[0].samples,
            vec![
                (120, 1.0),
                (121, 1.0),
                (122, 1.0),
                (123, 1.0),
                (124, 1.0),
                (125, 1.0),
                (126, 1.0),
                (127, 1.0),
                (128, 1.0),
                (129, 1.0),
                (500, 3.0)
            ]
        );
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn retention_drops_old_chunks_and_empty_series() {
        let db = Tsdb::in_memory();
        for i in 0..240 {
            db.append(&[s("x", "old", i * 1000, 1.0)]).unwrap();
        }
        for i in 0..240 {
            db.append(&[s("x", "new", 1_000_000 + i * 1000, 1.0)])
                .unwrap();
        }
        // The first chunk of "old" ends at 119 s, the second at 239 s.
        assert_eq!(db.retain(200_000).unwrap(), 120);
        assert_eq!(db.retain(500_000).unwrap(), 120);
        assert_eq!(db.series(&[]).unwrap().len(), 1);
        assert!(db
            .select(&[Matcher::equal("host", "old")], 0, i64::MAX)
            .unwrap()
            .is_empty());
        // A series that comes back starts afresh.
        db.append(&[s("x", "old", 5, 1.0)]).unwrap();
        assert_eq!(db.series(&[]).unwrap().len(), 2);
    }
}
