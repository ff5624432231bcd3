//! The write-ahead log and the snapshot: sequences of framed records
//! `[kind u8][length u32][payload][crc32c u32]` (little-endian). Reading stops at the
//! first record that is short or fails its checksum — a write torn by a crash — and the
//! log is cut there, so later appends follow the last good record.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::chunk::Chunk;
use crate::labels::Labels;
use crate::Result;

pub const LOG: &str = "wal.log";
pub const SNAPSHOT: &str = "snapshot.bin";

const SERIES: u8 = 1;
const SAMPLES: u8 = 2;
const CHUNKS: u8 = 3;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

pub enum Record {
    Series(u32, Labels),
    Samples(Vec<(u32, i64, f64)>),
    Chunks(u32, Vec<Chunk>),
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = CRC.checksum(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn series_record(out: &mut Vec<u8>, id: u32, labels: &Labels) {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    for (k, v) in labels.iter() {
        put_str(&mut p, k);
        put_str(&mut p, v);
    }
    frame(out, SERIES, &p);
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn parse(kind: u8, payload: &[u8]) -> Option<Record> {
    let mut c = Cursor(payload);
    match kind {
        SERIES => {
            let id = c.u32()?;
            let n = c.u32()? as usize;
            let mut pairs = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                pairs.push((c.str()?, c.str()?));
            }
            Some(Record::Series(id, Labels::new(pairs).ok()?))
        }
        SAMPLES => {
            let n = c.u32()? as usize;
            let mut v = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = c.u32()?;
                let t = c.u64()? as i64;
                let x = f64::from_bits(c.u64()?);
                v.push((id, t, x));
            }
            Some(Record::Samples(v))
        }
        CHUNKS => {
            let id = c.u32()?;
            let n = c.u32()? as usize;
            let mut chunks = Vec::with_capacity(n.min(1 << 16));
            let mut rest = c.0;
            for _ in 0..n {
                chunks.push(Chunk::decode(&mut rest)?);
            }
            Some(Record::Chunks(id, chunks))
        }
        _ => None,
    }
}

/// Feed every good record of `bytes` to `load`; the length of the good prefix.
fn replay(bytes: &[u8], load: &mut dyn FnMut(Record)) -> usize {
    let mut pos = 0;
    while bytes.len() - pos >= 9 {
        let kind = bytes[pos];
        let len = u32::from_le_bytes([
            bytes[pos + 1],
            bytes[pos + 2],
            bytes[pos + 3],
            bytes[pos + 4],
        ]) as usize;
        let end = pos + 5 + len;
        if bytes.len() < end + 4 {
            break;
        }
        let crc = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        if CRC.checksum(&bytes[pos..end]) != crc {
            break;
        }
        let Some(r) = parse(kind, &bytes[pos + 5..end]) else {
            break;
        };
        load(r);
        pos = end + 4;
    }
    pos
}

pub fn read_snapshot(path: &Path, load: &mut dyn FnMut(Record)) -> Result<()> {
    match std::fs::read(path) {
        Ok(b) => {
            replay(&b, load);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Write the snapshot beside, sync it, and rename it into place.
pub fn write_snapshot<'a>(
    path: &Path,
    series: impl Iterator<Item = (u32, &'a Labels, &'a [Chunk])>,
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(File::create(&tmp)?);
    let mut buf = Vec::new();
    for (id, labels, chunks) in series {
        buf.clear();
        series_record(&mut buf, id, labels);
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for c in chunks {
            c.encode(&mut p);
        }
        frame(&mut buf, CHUNKS, &p);
        f.write_all(&buf)?;
    }
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub struct Wal {
    file: File,
    len: u64,
    buf: Vec<u8>,
}

impl Wal {
    /// Replay the log into `load`, cut a torn tail, and open it for appending.
    pub fn open(path: &Path, load: &mut dyn FnMut(Record)) -> Result<Wal> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let good = replay(&bytes, load) as u64;
        if good < bytes.len() as u64 {
            file.set_len(good)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(good))?;
        Ok(Wal {
            file,
            len: good,
            buf: Vec::new(),
        })
    }

    pub fn write(
        &mut self,
        new_series: &[(u32, Labels)],
        samples: &[(u32, i64, f64)],
    ) -> Result<()> {
        self.buf.clear();
        for (id, l) in new_series {
            series_record(&mut self.buf, *id, l);
        }
        if !samples.is_empty() {
            let mut p = Vec::with_capacity(4 + samples.len() * 20);
            p.extend_from_slice(&(samples.len() as u32).to_le_bytes());
            for (id, t, v) in samples {
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(&t.to_le_bytes());
                p.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            frame(&mut self.buf, SAMPLES, &p);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        self.len += self.buf.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }

    /// Empty the log (its content is in the snapshot just written).
    pub fn reset(&mut self) -> Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }
}
