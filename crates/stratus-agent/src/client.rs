//! The agent side of the control plane's agent protocol (`/v1/agent/*`), shared by the real
//! agent and the simulated one: join, long-poll the desired state, report, and move image
//! files in both directions without holding them in memory.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest, Sha256};
use stratus_api::{AgentJoin, AgentJoined, AgentReport, DesiredState, HostFacts};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use uuid::Uuid;

/// Longer than the server's long-poll wait (~25 s).
const POLL_TIMEOUT: Duration = Duration::from_secs(40);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control plane could not be reached or the connection broke.
    #[error("control plane unreachable")]
    Transport(#[source] reqwest::Error),
    /// The control plane answered with an error.
    #[error("{status}: {code}: {message} (request {request_id})")]
    Status {
        status: StatusCode,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("unexpected answer from the control plane")]
    Decode(#[source] reqwest::Error),
    #[error("image file")]
    Io(#[from] std::io::Error),
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
}

impl ClientError {
    /// True when the credential is not (or no longer) accepted: retrying will not help.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Status { status, .. } if *status == StatusCode::UNAUTHORIZED)
    }
}

/// Bearer credentials must not show up in debug output.
fn bearer(secret: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {secret}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

async fn check(resp: Response) -> Result<Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let e = &body["error"];
    let field = |k: &str| e[k].as_str().map(str::to_string);
    Err(ClientError::Status {
        status,
        code: field("code").unwrap_or_else(|| "unknown".into()),
        message: field("message").unwrap_or_else(|| text.chars().take(200).collect()),
        request_id: field("request_id").unwrap_or_else(|| "-".into()),
    })
}

fn http() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Per read, so long image transfers are fine while a stalled one ends.
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("stratus-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientError::Transport)
}

fn base(server: &str) -> String {
    server.trim_end_matches('/').to_string()
}

/// `POST /v1/agent/join` with a join token: the new host's id and credential.
pub async fn join(
    server: &str,
    join_token: &str,
    facts: &HostFacts,
) -> Result<AgentJoined, ClientError> {
    let resp = http()?
        .post(format!("{}/v1/agent/join", base(server)))
        .header(AUTHORIZATION, bearer(join_token))
        .timeout(CALL_TIMEOUT)
        .json(&AgentJoin {
            facts: facts.clone(),
        })
        .send()
        .await
        .map_err(ClientError::Transport)?;
    check(resp).await?.json().await.map_err(ClientError::Decode)
}

/// A joined host's connection to the control plane.
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    server: String,
    auth: HeaderValue,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    pub fn new(server: &str, credential: &str) -> Result<AgentClient, ClientError> {
        Ok(AgentClient {
            http: http()?,
            server: base(server),
            auth: bearer(credential),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.server))
            .header(AUTHORIZATION, self.auth.clone())
    }

    /// `GET /v1/agent/desired?after=<generation>`: answers at once when the host's
    /// generation is newer, else after the server's long-poll wait.
    pub async fn desired(&self, after: i64) -> Result<DesiredState, ClientError> {
        let resp = self
            .request(Method::GET, &format!("/v1/agent/desired?after={after}"))
            .timeout(POLL_TIMEOUT)
            .send()
            .await
            .map_err(ClientError::Transport)?;
        check(resp).await?.json().await.map_err(ClientError::Decode)
    }

    /// `POST /v1/agent/report`.
    pub async fn report(&self, report: &AgentReport) -> Result<(), ClientError> {
        let resp = self
            .request(Method::POST, "/v1/agent/report")
            .timeout(CALL_TIMEOUT)
            .json(report)
            .send()
            .await
            .map_err(ClientError::Transport)?;
        check(resp).await.map(|_| ())
    }

    /// `GET /v1/agent/images/{id}` streamed into `dst` (temporary file, SHA-256 checked
    /// against `sha256`, fsync, rename).
    pub async fn image_download(
        &self,
        image_id: Uuid,
        sha256: &str,
        dst: &Path,
    ) -> Result<(), ClientError> {
        let mut resp = check(
            self.request(Method::GET, &format!("/v1/agent/images/{image_id}"))
                .send()
                .await
                .map_err(ClientError::Transport)?,
        )
        .await?;
        let mut sink = HashingFile::create(dst).await?;
        while let Some(chunk) = resp.chunk().await.map_err(ClientError::Transport)? {
            sink.write(&chunk).await?;
        }
        sink.finish(sha256).await
    }

    /// `PUT /v1/agent/images/{id}` with the file at `src` as the body (streamed) and its
    /// SHA-256 in `x-checksum-sha256`.
    pub async fn image_upload(&self, image_id: Uuid, src: &Path) -> Result<(), ClientError> {
        let sha = sha256_file(src).await?;
        let file = tokio::fs::File::open(src).await?;
        let len = file.metadata().await?.len();
        let resp = self
            .request(Method::PUT, &format!("/v1/agent/images/{image_id}"))
            .header("x-checksum-sha256", sha)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap(FileBody::new(file, len)))
            .send()
            .await
            .map_err(ClientError::Transport)?;
        check(resp).await.map(|_| ())
    }
}

/// Hex SHA-256 of a file, read in chunks.
pub async fn sha256_file(path: &Path) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Writes a downloaded file next to its destination while hashing it; only a complete
/// file with the expected hash is renamed into place.
pub struct HashingFile {
    tmp: std::path::PathBuf,
    dst: std::path::PathBuf,
    file: tokio::fs::File,
    hash: Sha256,
}

impl HashingFile {
    pub async fn create(dst: &Path) -> std::io::Result<HashingFile> {
        if let Some(parent) = dst.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp = dst.with_extension(format!("part-{}", Uuid::new_v4().simple()));
        Ok(HashingFile {
            file: tokio::fs::File::create(&tmp).await?,
            tmp,
            dst: dst.to_path_buf(),
            hash: Sha256::new(),
        })
    }

    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.hash.update(data);
        self.file.write_all(data).await
    }

    /// Check the hash, fsync and rename; on any failure the temporary file is removed.
    pub async fn finish(mut self, expected_sha256: &str) -> Result<(), ClientError> {
        let actual = hex::encode(self.hash.finalize_reset());
        let result = async {
            if !actual.eq_ignore_ascii_case(expected_sha256) {
                return Err(ClientError::Checksum {
                    expected: expected_sha256.to_string(),
                    actual,
                });
            }
            self.file.sync_all().await?;
            tokio::fs::rename(&self.tmp, &self.dst).await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&self.tmp).await;
        }
        result
    }
}

impl Drop for HashingFile {
    fn drop(&mut self) {
        // After a successful rename the temporary name no longer exists.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// A request body that reads a file in 256 KiB frames.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Box<[u8]>,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: vec![0u8; 256 << 10].into_boxed_slice(),
        }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want =
            usize::try_from(this.remaining).map_or(this.buf.len(), |r| r.min(this.buf.len()));
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was uploaded",
                    ))));
                }
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::copy_from_slice(
                    rb.filled(),
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// Exponential backoff with jitter for retrying the control plane.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    /// The next wait (grows up to `max`, with up to 25 % random jitter).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = (Uuid::new_v4().as_u128() % 1000) as u32;
        d + d / 4 * jitter / 1000
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}
