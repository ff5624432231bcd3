//! Object data ("blobs") for the S3-compatible object storage.
//!
//! Buckets, objects and versions live in the SQL store; this module only keeps the bytes.
//! It sits behind [`BlobStore`] so that a Ceph/RADOS backend can replace the local
//! filesystem later without the S3 layer noticing.
//!
//! The filesystem backend ([`FsBlobStore`]) keeps three promises:
//!
//! * **Crash safety.** A blob is written to `<root>/tmp/<id>`, fsynced, renamed to
//!   `<root>/blobs/<aa>/<bb>/<id>` and the directory fsynced. A crash therefore leaves
//!   either a complete blob or a stray temp file (removed by [`BlobStore::sweep_temp`]),
//!   never a torn blob under a name the metadata could point at.
//! * **Verified before visible.** Digests and size the client promised ([`Expect`]) are
//!   checked before the rename, so a mismatch leaves nothing behind.
//! * **Bounded memory.** Bodies are streamed through a small channel into a 1 MiB write
//!   buffer and hashed on the way; a 5 GiB upload uses a few MiB.
//!
//! Hashing and disk I/O run on tokio's blocking pool, one task per upload, so a large
//! upload neither stalls the async workers nor pays a thread hop per write (as
//! `tokio::fs` would). The async side only receives the body, which also lets receiving
//! and hashing overlap on two cores.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use crc::{Crc, Table, CRC_32_ISCSI, CRC_32_ISO_HDLC};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;
use tokio::sync::mpsc;

/// Size of the write buffer in front of a temp file: large writes keep syscalls and
/// filesystem allocation overhead small without costing real memory per upload.
const WRITE_BUFFER: usize = 1 << 20;

/// Size of a read when concatenating blobs: same reasoning as [`WRITE_BUFFER`].
const COPY_BUFFER: usize = 1 << 20;

/// Size of one chunk of a [`BlobStore::get`] stream: big enough to amortise the hop to the
/// blocking pool, small enough that many concurrent downloads stay cheap.
const READ_CHUNK: usize = 256 << 10;

/// Body chunks queued between the receiving task and the writer. Two would already keep
/// both sides busy; four absorbs jitter. With hyper's chunks (at most a few hundred KiB)
/// this bounds an upload's memory to roughly the write buffer plus a MiB or two.
const CHANNEL_CHUNKS: usize = 4;

/// CRC-32 (IEEE, as in zlib and `x-amz-checksum-crc32`). Slice-by-16 tables, built at
/// compile time, run at several GB/s: far from the bottleneck next to MD5.
static CRC32: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISO_HDLC);

/// CRC-32C (Castagnoli, as in `x-amz-checksum-crc32c`).
static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// Digests of a blob, computed while it was written.
///
/// All five are computed in one pass because S3 clients may ask for any of them after
/// the fact (`x-amz-checksum-mode`), and reading a blob back to hash it would cost far
/// more than hashing bytes already in cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digests {
    /// MD5, the basis of a single-part object's ETag.
    pub md5: [u8; 16],
    /// CRC-32 (IEEE).
    pub crc32: u32,
    /// CRC-32C (Castagnoli).
    pub crc32c: u32,
    /// SHA-1.
    pub sha1: [u8; 20],
    /// SHA-256.
    pub sha256: [u8; 32],
}

impl Digests {
    /// The `ETag` header value of a single-part object: hex MD5 in double quotes.
    pub fn etag(&self) -> String {
        etag(&self.md5)
    }

    /// The `x-amz-checksum-crc32` header value.
    pub fn crc32_base64(&self) -> String {
        checksum_u32_base64(self.crc32)
    }

    /// The `x-amz-checksum-crc32c` header value.
    pub fn crc32c_base64(&self) -> String {
        checksum_u32_base64(self.crc32c)
    }

    /// The `x-amz-checksum-sha1` header value.
    pub fn sha1_base64(&self) -> String {
        B64.encode(self.sha1)
    }

    /// The `x-amz-checksum-sha256` header value.
    pub fn sha256_base64(&self) -> String {
        B64.encode(self.sha256)
    }
}

/// What the writer must verify before a blob becomes durable and visible; `None` means
/// "not promised by the client". Built from `Content-MD5`, `x-amz-checksum-*`,
/// `x-amz-content-sha256` and `Content-Length`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Expected MD5 (`Content-MD5`).
    pub md5: Option<[u8; 16]>,
    /// Expected CRC-32 (`x-amz-checksum-crc32`).
    pub crc32: Option<u32>,
    /// Expected CRC-32C (`x-amz-checksum-crc32c`).
    pub crc32c: Option<u32>,
    /// Expected SHA-1 (`x-amz-checksum-sha1`).
    pub sha1: Option<[u8; 20]>,
    /// Expected SHA-256 (`x-amz-checksum-sha256` or a signed `x-amz-content-sha256`).
    pub sha256: Option<[u8; 32]>,
    /// Expected size in bytes (`Content-Length` / `x-amz-decoded-content-length`).
    pub size: Option<u64>,
}

impl Expect {
    /// Checks the promises against a blob already written (for promises that arrived after
    /// its body, such as an aws-chunked trailer).
    pub fn verify_written(&self, w: &Written) -> Result<(), StorageError> {
        self.verify(w.size, &w.digests)
    }

    /// Compares the promises with what was written; the first mismatch wins, checked in a
    /// fixed order so the same upload always reports the same error.
    fn verify(&self, size: u64, d: &Digests) -> Result<(), StorageError> {
        if let Some(expected) = self.size {
            if expected != size {
                return Err(StorageError::SizeMismatch {
                    expected,
                    actual: size,
                });
            }
        }
        fn check<T: PartialEq>(
            which: &'static str,
            expected: Option<T>,
            actual: T,
            show: impl Fn(&T) -> String,
        ) -> Result<(), StorageError> {
            match expected {
                Some(e) if e != actual => Err(StorageError::BadDigest {
                    which,
                    expected: show(&e),
                    actual: show(&actual),
                }),
                _ => Ok(()),
            }
        }
        check("md5", self.md5, d.md5, |v| B64.encode(v))?;
        check("crc32", self.crc32, d.crc32, |v| checksum_u32_base64(*v))?;
        check("crc32c", self.crc32c, d.crc32c, |v| checksum_u32_base64(*v))?;
        check("sha1", self.sha1, d.sha1, |v| B64.encode(v))?;
        check("sha256", self.sha256, d.sha256, |v| hex::encode(v))?;
        Ok(())
    }
}

/// Why a blob operation failed.
///
/// The S3 layer maps these to AWS error codes: `BadDigest` → `BadDigest` (or
/// `XAmzContentSHA256Mismatch` when the SHA-256 came from `x-amz-content-sha256`),
/// `SizeMismatch` → `IncompleteBody`, `TooLarge` → `EntityTooLarge`, `NotFound` →
/// `NoSuchKey` (the metadata said the blob exists, so usually a 500 in practice),
/// `RangeNotSatisfiable` → `InvalidRange`, `Io` → `InternalError`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A digest the client promised did not match the data. Values are shown in the
    /// encoding S3 uses in headers (base64, hex for SHA-256), for the error message.
    #[error("the {which} of the data ({actual}) does not match the expected {expected}")]
    BadDigest {
        /// Which digest: `md5`, `crc32`, `crc32c`, `sha1` or `sha256`.
        which: &'static str,
        /// The promised value.
        expected: String,
        /// The computed value.
        actual: String,
    },
    /// The body was not as long as promised. When it was longer, `actual` is the count
    /// at which reading stopped, since reading on would only waste bandwidth.
    #[error("expected {expected} bytes of data, got {actual}")]
    SizeMismatch {
        /// The promised size.
        expected: u64,
        /// The size received (at least this many when the body was too long).
        actual: u64,
    },
    /// The body exceeded the caller's limit; reading stopped there.
    #[error("data is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// No blob with this id (or the id is malformed, which can name no blob either).
    #[error("blob not found")]
    NotFound,
    /// The requested range starts past the end of the blob.
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size, for `Content-Range: bytes */<size>`.
        size: u64,
    },
    /// The filesystem failed.
    #[error("blob storage I/O failed")]
    Io(#[from] io::Error),
    /// The request body stream failed (client went away, bad chunk encoding, …).
    #[error("reading the request body failed: {0}")]
    Body(String),
}

/// The name of a blob: opaque to callers, safe as a file name.
///
/// New ids are UUIDv4 simple strings (32 lowercase hex digits), so their first two hex
/// pairs spread blobs evenly over the directory fan-out. Ids read back from the database
/// are checked before use ([`BlobId::is_valid`]) so a corrupted row can never name a path
/// outside the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobId(pub String);

impl BlobId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        BlobId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id as stored in the database.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the id can name a blob: 4 to 128 ASCII letters, digits, `-` or `_`.
    /// Other backends may mint other ids, so this checks safety rather than UUID shape.
    pub fn is_valid(&self) -> bool {
        let s = self.0.as_bytes();
        (4..=128).contains(&s.len())
            && s.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob that is now durable, as returned by [`BlobStore::put`] and [`BlobStore::concat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its id, to be recorded in the metadata.
    pub id: BlobId,
    /// Its size in bytes.
    pub size: u64,
    /// Digests of all its bytes.
    pub digests: Digests,
}

/// Where object data lives. Generic methods make this trait not object-safe; pick the
/// backend with generics or an enum, which also keeps the hot path free of boxing.
///
/// Blobs are immutable: written once, read many times, deleted. Whoever records a blob in
/// the metadata owns it; a blob written but never recorded (crash or cancellation between
/// the two) is an orphan for a metadata-driven garbage collector to reclaim.
pub trait BlobStore: Send + Sync {
    /// Streams `body` into a new blob, hashing it on the way, and makes it durable.
    ///
    /// Stops reading and fails with [`StorageError::TooLarge`] once more than `limit`
    /// bytes arrived (or with `SizeMismatch` past `expect.size`). Verifies `expect` before
    /// the blob becomes visible; on any failure, including the future being dropped,
    /// nothing is left behind.
    fn put<S, E>(
        &self,
        body: S,
        expect: &Expect,
        limit: u64,
    ) -> impl Future<Output = Result<Written, StorageError>> + Send
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display + Send;

    /// Concatenates existing blobs, in order, into a new blob (multipart completion, or a
    /// copy with one part). Returns its size and the digests of the whole. The parts are
    /// left alone: the caller deletes them once the metadata points at the new blob.
    fn concat(
        &self,
        parts: &[BlobId],
    ) -> impl Future<Output = Result<Written, StorageError>> + Send;

    /// Opens a blob for reading. Returns its full size and a stream of the bytes in
    /// `range` (`[start, end)`, or all). `end` is clamped to the size so open-ended HTTP
    /// ranges need not know it; a `start` past the clamped end is
    /// [`StorageError::RangeNotSatisfiable`]. Chunks are at most 256 KiB.
    fn get(
        &self,
        id: &BlobId,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<(u64, BoxStream<'static, io::Result<Bytes>>), StorageError>> + Send;

    /// Deletes a blob. A missing blob is not an error, so retries are harmless.
    fn delete(&self, id: &BlobId) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The size of a blob in bytes.
    fn size(&self, id: &BlobId) -> impl Future<Output = Result<u64, StorageError>> + Send;

    /// Removes temp files left by a crash; returns how many. Call it at start, before any
    /// upload: it cannot tell a crashed upload's file from a running one's.
    fn sweep_temp(&self) -> impl Future<Output = Result<u64, StorageError>> + Send;
}

/// Blobs on a local filesystem: `<root>/blobs/<aa>/<bb>/<id>`, temp files in
/// `<root>/tmp/`.
///
/// Two levels of two hex digits keep every directory under 256 entries of subdirectories
/// and spread blobs evenly (ids are random). `tmp/` sits on the same filesystem as
/// `blobs/` so the final rename is atomic.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store under `root`. Blocking; meant for startup.
    ///
    /// Fails if `tmp/` and `blobs/` are on different filesystems, since the rename that
    /// publishes a blob would then be a copy and no longer atomic.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let store = FsBlobStore { root: root.into() };
        fs::create_dir_all(store.blobs_dir())?;
        fs::create_dir_all(store.tmp_dir())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let blobs = fs::metadata(store.blobs_dir())?.dev();
            let tmp = fs::metadata(store.tmp_dir())?.dev();
            if blobs != tmp {
                return Err(StorageError::Io(io::Error::other(
                    "the blob store's tmp/ and blobs/ are on different filesystems",
                )));
            }
        }
        Ok(store)
    }

    /// The directory the store was opened on.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The final path of a blob, or `NotFound` for an id that could escape the store.
    fn blob_path(&self, id: &BlobId) -> Result<PathBuf, StorageError> {
        if !id.is_valid() {
            return Err(StorageError::NotFound);
        }
        let s = id.as_str();
        Ok(self.blobs_dir().join(&s[0..2]).join(&s[2..4]).join(s))
    }

    /// Where a new blob's fresh temp file and final path go.
    fn new_paths(&self) -> Paths {
        let id = BlobId::new_random();
        let tmp = self.tmp_dir().join(id.as_str());
        let s = id.as_str();
        Paths {
            blobs: self.blobs_dir(),
            tmp,
            fan: [s[0..2].to_owned(), s[2..4].to_owned()],
            id,
        }
    }
}

impl BlobStore for FsBlobStore {
    async fn put<S, E>(&self, body: S, expect: &Expect, limit: u64) -> Result<Written, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display + Send,
    {
        let expect = *expect;
        let paths = self.new_paths();
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let writer = tokio::task::spawn_blocking(move || write_blob(paths, rx, &expect));

        let mut body = pin!(body);
        let mut received: u64 = 0;
        let fed = loop {
            let chunk = match body.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(StorageError::Body(e.to_string())),
                Some(Ok(chunk)) => chunk,
            };
            received = received.saturating_add(chunk.len() as u64);
            if received > limit {
                break Err(StorageError::TooLarge { limit });
            }
            if let Some(expected) = expect.size {
                if received > expected {
                    break Err(StorageError::SizeMismatch {
                        expected,
                        actual: received,
                    });
                }
            }
            if chunk.is_empty() {
                continue;
            }
            if tx.send(Msg::Data(chunk)).await.is_err() {
                // The writer gave up (disk error); its own error, awaited below, says why.
                break Ok(());
            }
        };
        match fed {
            Ok(()) => {
                // An error means the writer already quit; awaiting it tells why.
                let _ = tx.send(Msg::Finish).await;
                match join(writer).await? {
                    Some(written) => Ok(written),
                    None => Err(io::Error::other("blob writer stopped early").into()),
                }
            }
            Err(e) => {
                // Closing the channel without `Finish` makes the writer discard the temp
                // file; wait for that so the caller sees a clean store when we return.
                drop(tx);
                let _ = join(writer).await;
                Err(e)
            }
        }
    }

    async fn concat(&self, parts: &[BlobId]) -> Result<Written, StorageError> {
        let sources = parts
            .iter()
            .map(|p| self.blob_path(p))
            .collect::<Result<Vec<_>, _>>()?;
        let paths = self.new_paths();
        // Blocking tasks cannot be aborted; a flag lets a dropped request stop the copy
        // (and discard the temp file) instead of finishing a blob nobody will record.
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = Arc::clone(&cancel.0);
        let r = join(tokio::task::spawn_blocking(move || {
            concat_blobs(paths, &sources, &flag)
        }))
        .await;
        drop(cancel);
        r
    }

    async fn get(
        &self,
        id: &BlobId,
        range: Option<(u64, u64)>,
    ) -> Result<(u64, BoxStream<'static, io::Result<Bytes>>), StorageError> {
        let path = self.blob_path(id)?;
        let (file, size, start, end) = join(tokio::task::spawn_blocking(move || {
            let mut file = File::open(&path).map_err(not_found)?;
            let size = file.metadata()?.len();
            let (start, end) = match range {
                None => (0, size),
                Some((start, end)) => {
                    let end = end.min(size);
                    if start > end {
                        return Err(StorageError::RangeNotSatisfiable { size });
                    }
                    (start, end)
                }
            };
            file.seek(SeekFrom::Start(start))?;
            Ok((file, size, start, end))
        }))
        .await?;

        let state = Some((file, end - start));
        let chunks = stream::unfold(state, |state| async move {
            let (mut file, remaining) = state?;
            if remaining == 0 {
                return None;
            }
            // Bounded by READ_CHUNK, so the cast cannot truncate.
            let want = remaining.min(READ_CHUNK as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want];
                // A blob shorter than its size at open means it was damaged underneath
                // us; read_exact reports that instead of ending the body early.
                file.read_exact(&mut buf).map(|()| (file, buf))
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
            match read {
                Ok((file, buf)) => {
                    Some((Ok(Bytes::from(buf)), Some((file, remaining - want as u64))))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok((size, chunks.boxed()))
    }

    async fn delete(&self, id: &BlobId) -> Result<(), StorageError> {
        let path = self.blob_path(id)?;
        // No directory fsync: an unlink lost in a crash only leaks space that orphan
        // collection reclaims, while syncing would make bulk deletes wait on the journal.
        // Empty fan-out directories stay, so a concurrent put never loses its directory.
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn size(&self, id: &BlobId) -> Result<u64, StorageError> {
        let path = self.blob_path(id)?;
        Ok(tokio::fs::metadata(&path).await.map_err(not_found)?.len())
    }

    async fn sweep_temp(&self) -> Result<u64, StorageError> {
        let dir = self.tmp_dir();
        join(tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                if !entry.file_type()?.is_file() {
                    continue;
                }
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(removed)
        }))
        .await
    }
}

/// The `ETag` header value of a single-part object: hex MD5 in double quotes, as S3 sends
/// it in headers and XML alike.
pub fn etag(md5: &[u8; 16]) -> String {
    format!("\"{}\"", hex::encode(md5))
}

/// The `ETag` of a multipart object, quoted like [`etag`]: hex MD5 of the parts' binary
/// MD5s concatenated, then `-` and the number of parts. Clients recognise multipart
/// uploads by that suffix and do not compare it with an MD5 of the data.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), part_md5s.len())
}

/// A CRC as S3 sends it in `x-amz-checksum-crc32(c)`: base64 of the big-endian bytes.
pub fn checksum_u32_base64(v: u32) -> String {
    B64.encode(v.to_be_bytes())
}

/// Parses an `x-amz-checksum-crc32(c)` header value; `None` if it is not 4 bytes of base64.
pub fn decode_checksum_u32(s: &str) -> Option<u32> {
    decode_base64_digest::<4>(s).map(u32::from_be_bytes)
}

/// Parses a base64 digest header (`Content-MD5`, `x-amz-checksum-sha1/sha256`); `None` if
/// it is not base64 of exactly `N` bytes.
pub fn decode_base64_digest<const N: usize>(s: &str) -> Option<[u8; N]> {
    B64.decode(s.trim()).ok()?.try_into().ok()
}

/// Messages from the receiving task to the blocking writer. The explicit `Finish` is what
/// tells a complete body from an abandoned one: a channel that closes without it (error,
/// limit, dropped future) means "discard".
enum Msg {
    Data(Bytes),
    Finish,
}

/// Where one new blob is written.
struct Paths {
    id: BlobId,
    tmp: PathBuf,
    blobs: PathBuf,
    fan: [String; 2],
}

/// All five digests, fed in one pass.
struct Hasher {
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    crc32: crc::Digest<'static, u32, Table<16>>,
    crc32c: crc::Digest<'static, u32, Table<16>>,
    size: u64,
}

impl Hasher {
    fn new() -> Self {
        Hasher {
            md5: Md5::new(),
            sha1: Sha1::new(),
            sha256: Sha256::new(),
            crc32: CRC32.digest(),
            crc32c: CRC32C.digest(),
            size: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha1.update(data);
        self.sha256.update(data);
        self.crc32.update(data);
        self.crc32c.update(data);
        self.size += data.len() as u64;
    }

    fn finish(self) -> (u64, Digests) {
        let digests = Digests {
            md5: self.md5.finalize().into(),
            crc32: self.crc32.finalize(),
            crc32c: self.crc32c.finalize(),
            sha1: self.sha1.finalize().into(),
            sha256: self.sha256.finalize().into(),
        };
        (self.size, digests)
    }
}

/// A temp file that removes itself unless published, so every early return, error and
/// panic in the writer cleans up without a dedicated path.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a file that cannot be removed now is swept at next start.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Sets a flag when the owning future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Opens a new temp file for `paths`; the guard removes it unless published.
fn create_temp(paths: &Paths) -> Result<(BufWriter<File>, TempFile), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&paths.tmp)?;
    let guard = TempFile {
        path: paths.tmp.clone(),
        armed: true,
    };
    Ok((BufWriter::with_capacity(WRITE_BUFFER, file), guard))
}

/// The blocking half of `put`: receives chunks, hashes and writes them, then verifies
/// and publishes. `Ok(None)` means the body was abandoned and the temp file discarded.
fn write_blob(
    paths: Paths,
    mut rx: mpsc::Receiver<Msg>,
    expect: &Expect,
) -> Result<Option<Written>, StorageError> {
    let (mut out, guard) = create_temp(&paths)?;
    let mut hasher = Hasher::new();
    loop {
        match rx.blocking_recv() {
            Some(Msg::Data(chunk)) => {
                hasher.update(&chunk);
                out.write_all(&chunk)?;
            }
            Some(Msg::Finish) => break,
            None => return Ok(None),
        }
    }
    // Free the sender promptly; nothing more will be read.
    drop(rx);
    let (size, digests) = hasher.finish();
    // Verify before fsync: a bad upload should not cost a disk flush.
    expect.verify(size, &digests)?;
    publish(paths, out, guard, size, digests).map(Some)
}

/// The blocking half of `concat`.
fn concat_blobs(
    paths: Paths,
    sources: &[PathBuf],
    cancel: &AtomicBool,
) -> Result<Written, StorageError> {
    let (mut out, guard) = create_temp(&paths)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0; COPY_BUFFER];
    for source in sources {
        let mut part = File::open(source).map_err(not_found)?;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "concat cancelled").into());
            }
            let n = match part.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
    }
    let (size, digests) = hasher.finish();
    publish(paths, out, guard, size, digests)
}

/// Makes a fully written temp file a durable blob: flush, fsync the data, rename into
/// place, fsync the directories so the new name survives a crash too.
fn publish(
    paths: Paths,
    out: BufWriter<File>,
    mut guard: TempFile,
    size: u64,
    digests: Digests,
) -> Result<Written, StorageError> {
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);

    let [aa, bb] = &paths.fan;
    let outer = paths.blobs.join(aa);
    let inner = outer.join(bb);
    fs::create_dir_all(&inner)?;
    let dest = inner.join(paths.id.as_str());
    fs::rename(&paths.tmp, &dest)?;
    guard.armed = false;

    // Sync the leaf directory for the new entry and its parents in case this or a
    // concurrent put just created them; syncing a clean directory costs next to nothing,
    // and checking who created it would race.
    let synced = [&inner, &outer, &paths.blobs]
        .into_iter()
        .try_for_each(|d| fsync_dir(d));
    if let Err(e) = synced {
        // Not reported as durable, so do not leave it for anyone to find.
        let _ = fs::remove_file(&dest);
        return Err(e.into());
    }
    Ok(Written {
        id: paths.id,
        size,
        digests,
    })
}

#[cfg(unix)]
fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for syncing elsewhere; renames there are durable once the
/// filesystem says so.
#[cfg(not(unix))]
fn fsync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Maps a missing file to `NotFound`, anything else to `Io`.
fn not_found(e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound
    } else {
        StorageError::Io(e)
    }
}

/// Awaits a blocking task, turning a panic in it into an I/O error rather than
/// propagating it into the request.
async fn join<T>(
    task: tokio::task::JoinHandle<Result<T, StorageError>>,
) -> Result<T, StorageError> {
    task.await
        .unwrap_or_else(|e| Err(io::Error::other(format!("blob task failed: {e}")).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicU64;

    /// A fresh store in its own directory, removed when the test passes (kept on failure
    /// for inspection).
    struct TestStore {
        store: FsBlobStore,
        dir: PathBuf,
    }

    impl TestStore {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "stratus-blobstore-test-{}",
                uuid::Uuid::new_v4().simple()
            ));
            let store = FsBlobStore::open(&dir).unwrap();
            TestStore { store, dir }
        }

        /// Regular files under `blobs/` and `tmp/`.
        fn files(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
            fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
                for e in fs::read_dir(dir).unwrap() {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path(), out);
                    } else {
                        out.push(e.path());
                    }
                }
            }
            let (mut blobs, mut tmp) = (Vec::new(), Vec::new());
            walk(&self.dir.join("blobs"), &mut blobs);
            walk(&self.dir.join("tmp"), &mut tmp);
            (blobs, tmp)
        }

        fn assert_empty(&self) {
            let (blobs, tmp) = self.files();
            assert!(blobs.is_empty(), "blobs left behind: {blobs:?}");
            assert!(tmp.is_empty(), "temp files left behind: {tmp:?}");
        }

        async fn put(&self, data: &[u8]) -> Written {
            self.store
                .put(body(data, 7), &Expect::default(), u64::MAX)
                .await
                .unwrap()
        }

        async fn read(&self, id: &BlobId, range: Option<(u64, u64)>) -> (u64, Vec<u8>) {
            let (size, mut s) = self.store.get(id, range).await.unwrap();
            let mut out = Vec::new();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.unwrap();
                assert!(!chunk.is_empty() && chunk.len() <= READ_CHUNK);
                out.extend_from_slice(&chunk);
            }
            (size, out)
        }
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = fs::remove_dir_all(&self.dir);
            }
        }
    }

    /// `data` as a body stream of `chunk`-byte pieces.
    fn body(
        data: &[u8],
        chunk: usize,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        let chunks: Vec<_> = data
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(chunks)
    }

    /// Deterministic, non-repeating-looking test data.
    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn digests_of(data: &[u8]) -> Digests {
        let mut h = Hasher::new();
        h.update(data);
        h.finish().1
    }

    #[tokio::test]
    async fn put_get_round_trip_with_ranges() {
        let t = TestStore::new();
        // Spans three read chunks so ranges cross chunk boundaries.
        let data = pattern(2 * READ_CHUNK + 1000, 1);
        let w = t.put(&data).await;
        let n = data.len() as u64;
        assert_eq!(w.size, n);
        assert!(w.id.is_valid());
        let (blobs, tmp) = t.files();
        assert_eq!(blobs.len(), 1);
        assert!(tmp.is_empty());
        let id = w.id.as_str();
        assert!(blobs[0].ends_with(format!("blobs/{}/{}/{id}", &id[..2], &id[2..4])));

        assert_eq!(t.read(&w.id, None).await, (n, data.clone()));
        assert_eq!(t.store.size(&w.id).await.unwrap(), n);
        let c = READ_CHUNK as u64;
        for (start, end) in [
            (0, 0),
            (0, 1),
            (n - 1, n),
            (n, n),
            (0, n),
            (c - 1, c + 1),
            (c, 2 * c),
            (5, n - 5),
        ] {
            let (size, got) = t.read(&w.id, Some((start, end))).await;
            assert_eq!(size, n);
            assert_eq!(
                got,
                &data[start as usize..end as usize],
                "range {start}..{end}"
            );
        }
        // An end past the blob is clamped, so open-ended ranges need not know the size.
        assert_eq!(
            t.read(&w.id, Some((n - 3, u64::MAX))).await.1,
            &data[data.len() - 3..]
        );
        assert!(matches!(
            t.store.get(&w.id, Some((n + 1, n + 2))).await,
            Err(StorageError::RangeNotSatisfiable { size }) if size == n
        ));
        assert!(matches!(
            t.store.get(&w.id, Some((3, 2))).await,
            Err(StorageError::RangeNotSatisfiable { .. })
        ));

        t.store.delete(&w.id).await.unwrap();
        t.store.delete(&w.id).await.unwrap();
        assert!(matches!(
            t.store.get(&w.id, None).await,
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            t.store.size(&w.id).await,
            Err(StorageError::NotFound)
        ));
        t.assert_empty();
    }

    #[tokio::test]
    async fn ids_that_could_escape_the_store_name_nothing() {
        let t = TestStore::new();
        for bad in [
            "../../etc/passwd",
            "ab",
            "abcd/..",
            "",
            "ab cd",
            "a\u{e9}bcd",
        ] {
            let id = BlobId(bad.to_owned());
            assert!(!id.is_valid(), "{bad:?}");
            assert!(matches!(
                t.store.get(&id, None).await,
                Err(StorageError::NotFound)
            ));
            assert!(matches!(
                t.store.delete(&id).await,
                Err(StorageError::NotFound)
            ));
        }
    }

    #[tokio::test]
    async fn digests_match_known_values() {
        let t = TestStore::new();
        let w = t.put(b"hello world").await;
        let d = w.digests;
        assert_eq!(hex::encode(d.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            hex::encode(d.sha1),
            "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"
        );
        assert_eq!(
            hex::encode(d.sha256),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(d.crc32, 0x0d4a_1185);
        assert_eq!(d.etag(), "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"");
        assert_eq!(d.sha1_base64(), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");
        assert_eq!(
            d.sha256_base64(),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );

        // The CRC catalogue's check values.
        let w = t.put(b"123456789").await;
        assert_eq!(w.digests.crc32, 0xCBF4_3926);
        assert_eq!(w.digests.crc32c, 0xE306_9283);
        assert_eq!(w.digests.crc32_base64(), "y/Q5Jg==");
        assert_eq!(w.digests.crc32c_base64(), "4waSgw==");
        assert_eq!(decode_checksum_u32("y/Q5Jg=="), Some(0xCBF4_3926));
        assert_eq!(
            decode_base64_digest::<20>("Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
            Some(d.sha1)
        );
        assert_eq!(
            decode_base64_digest::<16>("Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
            None
        );
        assert_eq!(decode_checksum_u32("not base64!"), None);

        // Chunking must not change digests.
        let data = pattern(100_000, 2);
        let a = t
            .store
            .put(body(&data, 1), &Expect::default(), u64::MAX)
            .await
            .unwrap();
        let b = t
            .store
            .put(body(&data, 65_536), &Expect::default(), u64::MAX)
            .await
            .unwrap();
        assert_eq!(a.digests, b.digests);
        assert_eq!(a.digests, digests_of(&data));

        // The empty blob.
        let w = t.put(b"").await;
        assert_eq!(w.size, 0);
        assert_eq!(
            hex::encode(w.digests.md5),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(w.digests.crc32, 0);
        assert_eq!(t.read(&w.id, None).await, (0, Vec::new()));
    }

    #[tokio::test]
    async fn matching_expectations_are_accepted() {
        let t = TestStore::new();
        let d = digests_of(b"hello world");
        let expect = Expect {
            md5: Some(d.md5),
            crc32: Some(d.crc32),
            crc32c: Some(d.crc32c),
            sha1: Some(d.sha1),
            sha256: Some(d.sha256),
            size: Some(11),
        };
        let w = t
            .store
            .put(body(b"hello world", 4), &expect, 11)
            .await
            .unwrap();
        assert_eq!(w.digests, d);
    }

    #[tokio::test]
    async fn a_wrong_expectation_fails_and_leaves_nothing() {
        let t = TestStore::new();
        let data = b"hello world";
        let d = digests_of(data);
        let mut flip_md5 = d.md5;
        flip_md5[0] ^= 1;
        let mut flip_sha1 = d.sha1;
        flip_sha1[19] ^= 1;
        let mut flip_sha256 = d.sha256;
        flip_sha256[31] ^= 1;
        let cases = [
            (
                "md5",
                Expect {
                    md5: Some(flip_md5),
                    ..Expect::default()
                },
            ),
            (
                "crc32",
                Expect {
                    crc32: Some(d.crc32 ^ 1),
                    ..Expect::default()
                },
            ),
            (
                "crc32c",
                Expect {
                    crc32c: Some(d.crc32c ^ 1),
                    ..Expect::default()
                },
            ),
            (
                "sha1",
                Expect {
                    sha1: Some(flip_sha1),
                    ..Expect::default()
                },
            ),
            // The right MD5 does not save a wrong SHA-256.
            (
                "sha256",
                Expect {
                    md5: Some(d.md5),
                    sha256: Some(flip_sha256),
                    ..Expect::default()
                },
            ),
        ];
        for (name, expect) in cases {
            match t.store.put(body(data, 3), &expect, u64::MAX).await {
                Err(StorageError::BadDigest {
                    which,
                    expected,
                    actual,
                }) => {
                    assert_eq!(which, name);
                    assert_ne!(expected, actual);
                }
                other => panic!("{name}: expected BadDigest, got {other:?}"),
            }
            t.assert_empty();
        }
        assert_eq!(
            d.crc32c_base64(),
            match t
                .store
                .put(
                    body(data, 3),
                    &Expect {
                        crc32c: Some(1),
                        ..Expect::default()
                    },
                    100
                )
                .await
            {
                Err(StorageError::BadDigest { actual, .. }) => actual,
                other => panic!("{other:?}"),
            }
        );

        // Too short, and too long (stopped as soon as it overran).
        for (size, actual) in [(12, 11), (10, 11)] {
            let expect = Expect {
                size: Some(size),
                ..Expect::default()
            };
            match t.store.put(body(data, 11), &expect, u64::MAX).await {
                Err(StorageError::SizeMismatch {
                    expected,
                    actual: a,
                }) => {
                    assert_eq!((expected, a), (size, actual));
                }
                other => panic!("size {size}: got {other:?}"),
            }
            t.assert_empty();
        }
    }

    /// Counts the chunks a body stream handed out.
    fn counted(
        chunks: usize,
        chunk: usize,
        pulled: Arc<AtomicU64>,
    ) -> impl Stream<Item = Result<Bytes, String>> + Send {
        stream::iter(0..chunks).map(move |i| {
            pulled.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(pattern(chunk, i as u32)))
        })
    }

    #[tokio::test]
    async fn too_large_stops_reading_and_leaves_nothing() {
        let t = TestStore::new();
        let pulled = Arc::new(AtomicU64::new(0));
        let r = t
            .store
            .put(counted(100, 1024, pulled.clone()), &Expect::default(), 2500)
            .await;
        assert!(
            matches!(r, Err(StorageError::TooLarge { limit: 2500 })),
            "{r:?}"
        );
        assert_eq!(pulled.load(Ordering::SeqCst), 3, "read past the limit");
        t.assert_empty();

        // Exactly at the limit is fine.
        let w = t
            .store
            .put(counted(2, 1250, Arc::default()), &Expect::default(), 2500)
            .await
            .unwrap();
        assert_eq!(w.size, 2500);
    }

    #[tokio::test]
    async fn a_failing_body_leaves_nothing() {
        let t = TestStore::new();
        let s = stream::iter(vec![
            Ok(Bytes::from(pattern(300_000, 3))),
            Ok(Bytes::from(pattern(300_000, 4))),
            Err("connection reset"),
            Ok(Bytes::from_static(b"never read")),
        ]);
        match t.store.put(s, &Expect::default(), u64::MAX).await {
            Err(StorageError::Body(msg)) => assert_eq!(msg, "connection reset"),
            other => panic!("{other:?}"),
        }
        t.assert_empty();
    }

    #[tokio::test]
    async fn a_dropped_put_leaves_nothing() {
        let t = TestStore::new();
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
        let mut sent_tx = Some(sent_tx);
        let tmp_dir = t.dir.join("tmp");
        // Two chunks larger than the write buffer, then a body that never ends (a stalled
        // client). The signal waits until data is on disk, so the test really drops an
        // upload in progress rather than one whose writer has not started.
        let s = counted(2, WRITE_BUFFER + 1, Arc::default()).chain(stream::poll_fn(move |cx| {
            let on_disk: u64 = fs::read_dir(&tmp_dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            if on_disk > 0 {
                if let Some(tx) = sent_tx.take() {
                    let _ = tx.send(());
                }
            } else {
                cx.waker().wake_by_ref();
            }
            std::task::Poll::Pending
        }));
        let expect = Expect::default();
        tokio::select! {
            r = t.store.put(s, &expect, u64::MAX) => panic!("put finished: {r:?}"),
            _ = sent_rx => {}
        }
        // The writer notices the closed channel on its own thread; poll until it has.
        for _ in 0..500 {
            if t.files() == (Vec::new(), Vec::new()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        t.assert_empty();
    }

    #[tokio::test]
    async fn concat_joins_parts_and_digests_the_whole() {
        let t = TestStore::new();
        let parts = [
            pattern(300_000, 5),
            pattern(1, 6),
            pattern(COPY_BUFFER + 17, 7),
        ];
        let mut ids = Vec::new();
        for p in &parts {
            ids.push(t.put(p).await.id);
        }
        let whole = parts.concat();
        let w = t.store.concat(&ids).await.unwrap();
        assert_eq!(w.size, whole.len() as u64);
        assert_eq!(w.digests, digests_of(&whole));
        assert_eq!(t.read(&w.id, None).await.1, whole);
        // Parts stay until the caller deletes them.
        assert_eq!(t.files().0.len(), 4);

        // A missing part fails the whole and leaves no new blob.
        let missing = BlobId::new_random();
        let r = t.store.concat(&[ids[0].clone(), missing]).await;
        assert!(matches!(r, Err(StorageError::NotFound)), "{r:?}");
        let (blobs, tmp) = t.files();
        assert_eq!(blobs.len(), 4);
        assert!(tmp.is_empty());
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        let parts: Vec<[u8; 16]> = [&b"part one"[..], b"part two", b"part three"]
            .iter()
            .map(|p| Md5::digest(p).into())
            .collect();
        // Computed independently: python3 hashlib.md5(b"".join(md5(p).digest() ...)).
        assert_eq!(
            multipart_etag(&parts),
            "\"9c46b2a5c836d5b6fff429d90cae24cf-3\""
        );
        let mut joined = Vec::new();
        for p in &parts {
            joined.extend_from_slice(p);
        }
        assert_eq!(
            multipart_etag(&parts),
            format!("\"{}-3\"", hex::encode(Md5::digest(&joined)))
        );
        assert_eq!(etag(&parts[0]), format!("\"{}\"", hex::encode(parts[0])));
    }

    #[tokio::test]
    async fn sweep_temp_removes_leftovers_only() {
        let t = TestStore::new();
        let kept = t.put(b"keep me").await;
        fs::write(
            t.dir.join("tmp").join(BlobId::new_random().as_str()),
            b"torn",
        )
        .unwrap();
        fs::write(t.dir.join("tmp").join("another"), b"torn").unwrap();
        assert_eq!(t.store.sweep_temp().await.unwrap(), 2);
        let (blobs, tmp) = t.files();
        assert!(tmp.is_empty());
        assert_eq!(blobs.len(), 1);
        assert_eq!(t.read(&kept.id, None).await.1, b"keep me");
        assert_eq!(t.store.sweep_temp().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_large_upload_streams_without_buffering() {
        const MIB: usize = 1 << 20;
        const CHUNKS: usize = 64;
        let t = TestStore::new();
        let tmp_dir = t.dir.join("tmp");
        let max_lag = Arc::new(AtomicU64::new(0));
        let lag = max_lag.clone();
        let mut expected = Hasher::new();
        let mut chunks = Vec::new();
        for i in 0..CHUNKS {
            // Only 8 distinct chunks, to keep the test's own memory small.
            let c = Bytes::from(pattern(MIB, (i % 8) as u32));
            expected.update(&c);
            chunks.push(c);
        }
        // Before handing out each chunk, measure how far the producer is ahead of the
        // temp file: with bounded buffering that gap stays a few MiB, however large the
        // body.
        let s = stream::iter(chunks.into_iter().enumerate()).map(move |(i, c)| {
            let on_disk: u64 = fs::read_dir(&tmp_dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            let produced = (i * MIB) as u64;
            lag.fetch_max(produced.saturating_sub(on_disk), Ordering::SeqCst);
            Ok::<_, Infallible>(c)
        });
        let w = t.store.put(s, &Expect::default(), u64::MAX).await.unwrap();
        let (size, digests) = expected.finish();
        assert_eq!(w.size, size);
        assert_eq!(w.digests, digests);
        let max_lag = max_lag.load(Ordering::SeqCst);
        assert!(
            max_lag <= (CHANNEL_CHUNKS as u64 + 4) * MIB as u64,
            "producer ran {max_lag} bytes ahead of the disk"
        );
        let (blobs, tmp) = t.files();
        assert_eq!(blobs.len(), 1);
        assert!(tmp.is_empty());
        assert_eq!(fs::metadata(&blobs[0]).unwrap().len(), size);
    }
}
