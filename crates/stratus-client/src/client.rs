//! A small typed client for the `/v1` API.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http_body::{Frame, SizeHint};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use stratus_api::{sigv4, ErrorBody};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Token(String),
    /// Requests signed with AWS4-HMAC-SHA256, service `stratus`.
    Key {
        access_key: String,
        secret_key: String,
        region: String,
    },
}

/// An error the server answered with, or a transport failure (status 0).
#[derive(Debug, Clone)]
pub struct ClientError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            return write!(f, "{}", self.message);
        }
        write!(f, "{} ({}, HTTP {})", self.message, self.code, self.status)?;
        if !self.request_id.is_empty() {
            write!(f, " [request {}]", self.request_id)?;
        }
        Ok(())
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The error of a non-2xx answer: the API's error body, else the text itself.
    pub fn from_answer(status: u16, body: &[u8]) -> ClientError {
        error_from(status, body)
    }
}

#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    pub auth: Auth,
    http: reqwest::Client,
}

/// The raw answer: status and body bytes.
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(endpoint: &str, auth: Auth) -> Client {
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
            http: reqwest::Client::new(),
        }
    }

    /// Send a request; `query` pairs are URL-encoded; the body is JSON when given.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let url = self.url(path, query)?;
        let body = body.unwrap_or_default();
        let mut req = self.http.request(method.clone(), url.clone());
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let req = self.authorize(req, &method, &url, &sigv4::sha256_hex(&body));
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_vec();
        Ok(RawResponse { status, body })
    }

    /// Send and decode; a non-2xx answer becomes a [`ClientError`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let raw = self.send_raw(method, path, query, bytes).await?;
        let text = if raw.body.is_empty() {
            b"null".to_vec()
        } else {
            raw.body
        };
        if raw.status >= 300 {
            return Err(error_from(raw.status, &text));
        }
        decode(raw.status, &text)
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.call(Method::GET, path, query, None::<&()>).await
    }
    /// GET an answer that is not JSON (CSV, HTML): its text.
    pub async fn get_text(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<String, ClientError> {
        let raw = self.send_raw(Method::GET, path, query, None).await?;
        if raw.status >= 300 {
            return Err(error_from(raw.status, &raw.body));
        }
        Ok(String::from_utf8_lossy(&raw.body).into_owned())
    }
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }
    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, &[], Some(body)).await
    }
    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, &[], Some(body)).await
    }
    /// DELETE, for calls that answer with what they started (202 with a body).
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, &[], None::<&()>).await
    }
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::DELETE, path, &[], None::<&()>)
            .await
            .map(|_| ())
    }

    /// Stream a file as the body of `PUT api_path`, with `x-checksum-sha256: sha256` (hex).
    /// The file is read in chunks as it is sent, never whole; access-key requests sign it
    /// as `UNSIGNED-PAYLOAD` (the server checks the checksum header instead).
    pub async fn upload_file<T: DeserializeOwned>(
        &self,
        api_path: &str,
        file: &Path,
        sha256: &str,
        progress: Option<Progress>,
    ) -> Result<T, ClientError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| local(format!("{}: {e}", file.display())))?;
        let len = f
            .metadata()
            .await
            .map_err(|e| local(format!("{}: {e}", file.display())))?
            .len();
        let url = self.url(api_path, &[])?;
        let req = self
            .http
            .request(Method::PUT, url.clone())
            .header("content-type", "application/octet-stream")
            .header("content-length", len);
        let req = self.authorize_with(
            req,
            &Method::PUT,
            &url,
            UNSIGNED_PAYLOAD,
            &[("x-checksum-sha256", sha256)],
        );
        let mut progress = progress;
        if let Some(p) = &mut progress {
            p.set_total(Some(len));
        }
        let body = FileBody {
            file: f,
            buf: vec![0; CHUNK].into_boxed_slice(),
            remaining: len,
            progress,
        };
        let resp = req
            .body(reqwest::Body::wrap(body))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .bytes()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?;
        if status >= 300 {
            return Err(error_from(status, &text));
        }
        decode(status, if text.is_empty() { b"null" } else { &text })
    }

    /// Stream `GET api_path` into `dest`: written to a temporary file beside it, then
    /// renamed, so `dest` never holds a partial download. Answers the number of bytes.
    pub async fn download_to(
        &self,
        api_path: &str,
        query: &[(&str, String)],
        dest: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, ClientError> {
        let tmp = partial_path(dest)?;
        let url = self.url(api_path, query)?;
        let req = self.authorize(
            self.http.request(Method::GET, url.clone()),
            &Method::GET,
            &url,
            &sigv4::sha256_hex(b""),
        );
        let mut resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if status >= 300 {
            let text = resp
                .bytes()
                .await
                .map_err(|e| transport(format!("reading the answer: {e}")))?;
            return Err(error_from(status, &text));
        }
        let expected = resp.content_length();
        let mut progress = progress;
        if let Some(p) = &mut progress {
            p.set_total(expected);
        }
        let written = async {
            let mut out = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| local(format!("{}: {e}", tmp.display())))?;
            let mut n: u64 = 0;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| transport(format!("downloading: {e}")))?
            {
                out.write_all(&chunk)
                    .await
                    .map_err(|e| local(format!("{}: {e}", tmp.display())))?;
                n += chunk.len() as u64;
                if let Some(p) = &mut progress {
                    p.advance(chunk.len() as u64);
                }
            }
            if expected.is_some_and(|want| want != n) {
                return Err(transport(format!(
                    "the download ended after {n} of {} bytes",
                    expected.unwrap_or_default()
                )));
            }
            out.sync_all()
                .await
                .map_err(|e| local(format!("{}: {e}", tmp.display())))?;
            Ok(n)
        }
        .await;
        if let Some(p) = &mut progress {
            p.finish();
        }
        match written {
            Ok(n) => match tokio::fs::rename(&tmp, dest).await {
                Ok(()) => Ok(n),
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    Err(local(format!("{}: {e}", dest.display())))
                }
            },
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// The URL of `path` under the endpoint, with `query` URL-encoded.
    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<url::Url, ClientError> {
        let mut url = url::Url::parse(&format!("{}{}", self.endpoint, path))
            .map_err(|e| transport(format!("endpoint: {e}")))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        // The chain names the real cause (refused, reset, a local read error…).
        let mut msg = format!("cannot reach {}: {e}", self.endpoint);
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        transport(msg)
    }

    fn authorize(
        &self,
        req: reqwest::RequestBuilder,
        method: &Method,
        url: &url::Url,
        payload_hash: &str,
    ) -> reqwest::RequestBuilder {
        self.authorize_with(req, method, url, payload_hash, &[])
    }

    /// Add the credentials; `extra` headers are added too, and signed with access keys.
    fn authorize_with(
        &self,
        mut req: reqwest::RequestBuilder,
        method: &Method,
        url: &url::Url,
        payload_hash: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        match &self.auth {
            Auth::None => req,
            Auth::Token(t) => req.bearer_auth(t),
            Auth::Key {
                access_key,
                secret_key,
                region,
            } => {
                let host = match url.port() {
                    Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_string(),
                };
                let amz_date = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                let mut headers = vec![
                    ("host".to_string(), host),
                    ("x-amz-content-sha256".to_string(), payload_hash.to_string()),
                    ("x-amz-date".to_string(), amz_date.clone()),
                ];
                headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                let signed = sigv4::Request {
                    method: method.as_str(),
                    raw_path: url.path(),
                    raw_query: url.query().unwrap_or(""),
                    headers,
                    payload_hash,
                };
                let authz = sigv4::authorization_header(
                    access_key, secret_key, &amz_date, region, "stratus", &signed,
                );
                req.header("x-amz-date", amz_date)
                    .header("x-amz-content-sha256", payload_hash)
                    .header("authorization", authz)
            }
        }
    }
}

/// The payload hash of a streamed upload signed with an access key.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Bytes read from disk per chunk of an upload.
const CHUNK: usize = 256 * 1024;

fn transport(message: String) -> ClientError {
    ClientError {
        status: 0,
        code: "transport".into(),
        message,
        request_id: String::new(),
    }
}

/// A local file could not be read or written.
fn local(message: String) -> ClientError {
    ClientError {
        status: 0,
        code: "io".into(),
        message,
        request_id: String::new(),
    }
}

/// The error of a non-2xx answer: the API's error body, else the text itself.
fn error_from(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError {
            status,
            code: serde_json::to_value(e.error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            message: e.error.message,
            request_id: e.error.request_id,
        },
        Err(_) => ClientError {
            status,
            code: "unknown".into(),
            message: String::from_utf8_lossy(body).into_owned(),
            request_id: String::new(),
        },
    }
}

fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError {
        status,
        code: "decode".into(),
        message: format!("unexpected answer: {e}"),
        request_id: String::new(),
    })
}

/// `dir/.name.<pid>.part`: where a download goes until it is complete.
fn partial_path(dest: &Path) -> Result<PathBuf, ClientError> {
    let name = dest
        .file_name()
        .ok_or_else(|| local(format!("{}: not a file name", dest.display())))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.part", std::process::id()));
    Ok(dest.with_file_name(tmp))
}

/// Hex SHA-256 of a file, read in chunks (never whole into memory).
pub async fn sha256_file(
    path: &Path,
    mut progress: Option<&mut Progress>,
) -> std::io::Result<String> {
    let mut f = tokio::fs::File::open(path).await?;
    if let Some(p) = progress.as_deref_mut() {
        p.set_total(Some(f.metadata().await?.len()));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(p) = progress.as_deref_mut() {
            p.advance(n as u64);
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A request body that reads a file chunk by chunk as the request is sent.
struct FileBody {
    file: tokio::fs::File,
    buf: Box<[u8]>,
    remaining: u64,
    progress: Option<Progress>,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            if let Some(p) = &mut this.progress {
                p.finish();
            }
            return Poll::Ready(None);
        }
        let want = this
            .buf
            .len()
            .min(usize::try_from(this.remaining).unwrap_or(usize::MAX));
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let data = rb.filled();
                if data.is_empty() {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file got shorter while it was being uploaded",
                    ))));
                }
                this.remaining -= data.len() as u64;
                if let Some(p) = &mut this.progress {
                    p.advance(data.len() as u64);
                    if this.remaining == 0 {
                        p.finish();
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(data)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A one-line transfer progress display on stderr (`label  42%  1.2/2.9 GB  118.3 MB/s`),
/// redrawn at most five times a second.
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
    finished: bool,
}

/// The shortest time between two redraws.
const REDRAW: Duration = Duration::from_millis(200);

impl Progress {
    /// A progress line for a transfer, or `None` when stderr is not a terminal (nothing
    /// is printed then, so logs and scripts stay clean).
    pub fn stderr(label: &str) -> Option<Progress> {
        std::io::stderr()
            .is_terminal()
            .then(|| Progress::new(label))
    }

    pub fn new(label: &str) -> Progress {
        Progress {
            label: label.to_string(),
            total: None,
            done: 0,
            started: Instant::now(),
            last_draw: None,
            finished: false,
        }
    }

    /// The size of the transfer, when known; restarts the clock.
    pub fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
        self.done = 0;
        self.started = Instant::now();
        self.finished = false;
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        let now = Instant::now();
        if self
            .last_draw
            .is_none_or(|t| now.duration_since(t) >= REDRAW)
        {
            self.last_draw = Some(now);
            self.draw("");
        }
    }

    /// Draw the final state and end the line (once).
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.draw("\n");
        }
    }

    fn draw(&self, end: &str) {
        let line = format_progress(&self.label, self.done, self.total, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        // \r and "erase to end of line": the line shrinks cleanly.
        let _ = write!(err, "\r{line}\x1b[K{end}");
        let _ = err.flush();
    }
}

impl Drop for Progress {
    /// A transfer that failed half-way still ends its line, so the error starts clean.
    fn drop(&mut self) {
        if self.last_draw.is_some() && !self.finished {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `label  42%  1.2/2.9 GB  118.3 MB/s` (decimal units, as network rates are);
/// without a total, `label  1.2 GB  118.3 MB/s`.
pub fn format_progress(label: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        done as f64 / secs / 1e6
    } else {
        0.0
    };
    match total {
        Some(t) => {
            let pct = if t == 0 {
                100
            } else {
                (u128::from(done.min(t)) * 100 / u128::from(t)) as u64
            };
            format!(
                "{label}  {pct:>3}%  {}/{}  {rate:.1} MB/s",
                amount(done, Some(t)),
                amount(t, None)
            )
        }
        None => format!("{label}  {}  {rate:.1} MB/s", amount(done, None)),
    }
}

/// Bytes in decimal units; with `like`, in the unit `like` is shown in but without it
/// (`1.2` of `2.9 GB`).
fn amount(n: u64, like: Option<u64>) -> String {
    let unit_of = |v: u64| -> (f64, &'static str) {
        match v {
            v if v >= 1_000_000_000 => (1e9, "GB"),
            v if v >= 1_000_000 => (1e6, "MB"),
            v if v >= 1_000 => (1e3, "kB"),
            _ => (1.0, "B"),
        }
    };
    match like {
        Some(t) => {
            let (div, unit) = unit_of(t);
            if unit == "B" {
                format!("{n}")
            } else {
                format!("{:.1}", n as f64 / div)
            }
        }
        None => {
            let (div, unit) = unit_of(n);
            if unit == "B" {
                format!("{n} B")
            } else {
                format!("{:.1} {unit}", n as f64 / div)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_with_a_total() {
        let s = format_progress(
            "Uploading disk.qcow2",
            1_200_000_000,
            Some(2_900_000_000),
            Duration::from_secs(10),
        );
        assert_eq!(s, "Uploading disk.qcow2   41%  1.2/2.9 GB  120.0 MB/s");
        assert_eq!(
            format_progress("x", 512, Some(2048), Duration::from_secs(1)),
            "x   25%  0.5/2.0 kB  0.0 MB/s"
        );
        assert_eq!(
            format_progress("x", 0, Some(0), Duration::ZERO),
            "x  100%  0/0 B  0.0 MB/s"
        );
        // More than announced never shows more than 100%.
        assert!(format_progress("x", 30, Some(10), Duration::from_secs(1)).contains("100%"));
    }

    #[test]
    fn progress_line_without_a_total() {
        assert_eq!(
            format_progress("Downloading a.raw", 3_500_000, None, Duration::from_secs(2)),
            "Downloading a.raw  3.5 MB  1.8 MB/s"
        );
        assert_eq!(
            format_progress("d", 999, None, Duration::ZERO),
            "d  999 B  0.0 MB/s"
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("stratus-client-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn sha256_of_files() {
        let dir = scratch("sha");
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            sha256_file(&empty, None).await.unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Larger than one read buffer, so several chunks are hashed.
        let big = dir.join("big");
        let data: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&big, &data).unwrap();
        let mut p = Progress::new("t");
        assert_eq!(
            sha256_file(&big, Some(&mut p)).await.unwrap(),
            sigv4::sha256_hex(&data)
        );
        assert_eq!(p.done, data.len() as u64);
        assert!(sha256_file(&dir.join("missing"), None).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn file_body_streams_the_whole_file_in_chunks() {
        use http_body::Body as _;
        let dir = scratch("body");
        let path = dir.join("data");
        let data: Vec<u8> = (0..CHUNK * 2 + 5).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut body = FileBody {
            file: tokio::fs::File::open(&path).await.unwrap(),
            buf: vec![0; CHUNK].into_boxed_slice(),
            remaining: data.len() as u64,
            progress: None,
        };
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(chunk.len() <= CHUNK);
            got.extend_from_slice(&chunk);
            frames += 1;
        }
        assert!(frames >= 3);
        assert_eq!(got, data);
        assert!(body.is_end_stream());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn partial_downloads_go_beside_the_destination() {
        let p = partial_path(Path::new("/tmp/out/disk.raw")).unwrap();
        assert_eq!(p.parent(), Some(Path::new("/tmp/out")));
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".disk.raw.") && name.ends_with(".part"));
        assert!(partial_path(Path::new("/")).is_err());
    }

    #[test]
    fn error_bodies_decode() {
        let e = ClientError::from_answer(502, b"bad gateway");
        assert_eq!((e.status, e.code.as_str()), (502, "unknown"));
        assert_eq!(e.message, "bad gateway");
    }

    /// One captured HTTP/1.1 request: head lines (lowercased names) and body.
    struct Captured {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Captured {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Serve one request on a port-0 listener with `response` (a whole HTTP answer).
    async fn serve_once(response: Vec<u8>) -> (String, tokio::task::JoinHandle<Captured>) {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            let head_end = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed before the head ended");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
            };
            let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap().to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = buf[head_end + 4..].to_vec();
            while body.len() < len {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                body.extend_from_slice(&chunk[..n]);
            }
            sock.write_all(&response).await.unwrap();
            sock.shutdown().await.unwrap();
            Captured {
                request_line,
                headers,
                body,
            }
        });
        (endpoint, task)
    }

    fn answer(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn upload_streams_with_a_length_a_checksum_and_an_unsigned_payload() {
        let dir = scratch("upload");
        let path = dir.join("disk.raw");
        let data: Vec<u8> = (0..CHUNK * 3 + 11).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let sha = sha256_file(&path, None).await.unwrap();
        let (endpoint, server) = serve_once(answer(
            "200 OK",
            "application/json",
            br#"{"status":"active"}"#,
        ))
        .await;
        let c = Client::new(
            &endpoint,
            Auth::Key {
                access_key: "AK1".into(),
                secret_key: "secret".into(),
                region: "gd-1".into(),
            },
        );
        let v: serde_json::Value = c
            .upload_file("/v1/images/abc/file", &path, &sha, None)
            .await
            .unwrap();
        assert_eq!(v["status"], "active");
        let got = server.await.unwrap();
        assert_eq!(got.request_line, "PUT /v1/images/abc/file HTTP/1.1");
        assert_eq!(got.body, data);
        assert_eq!(
            got.header("content-length"),
            Some(data.len().to_string().as_str())
        );
        assert_eq!(got.header("transfer-encoding"), None);
        assert_eq!(got.header("x-checksum-sha256"), Some(sha.as_str()));
        assert_eq!(got.header("x-amz-content-sha256"), Some(UNSIGNED_PAYLOAD));
        // The signature covers the checksum header and verifies with the same inputs.
        let date = got.header("x-amz-date").unwrap().to_string();
        let signed = sigv4::Request {
            method: "PUT",
            raw_path: "/v1/images/abc/file",
            raw_query: "",
            headers: [
                "host",
                "x-amz-content-sha256",
                "x-amz-date",
                "x-checksum-sha256",
            ]
            .iter()
            .map(|h| (h.to_string(), got.header(h).unwrap().to_string()))
            .collect(),
            payload_hash: UNSIGNED_PAYLOAD,
        };
        let expected =
            sigv4::authorization_header("AK1", "secret", &date, "gd-1", "stratus", &signed);
        assert_eq!(got.header("authorization"), Some(expected.as_str()));
        assert!(expected.contains("x-checksum-sha256"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn upload_errors_decode_the_api_error() {
        let dir = scratch("upload-error");
        let path = dir.join("disk.raw");
        std::fs::write(&path, b"not an image").unwrap();
        let body = br#"{"error":{"code":"invalid_input","message":"x-checksum-sha256: does not match","request_id":"r1"}}"#;
        let (endpoint, server) =
            serve_once(answer("400 Bad Request", "application/json", body)).await;
        let c = Client::new(&endpoint, Auth::Token("t".into()));
        let e = c
            .upload_file::<serde_json::Value>("/v1/images/abc/file", &path, "00", None)
            .await
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            (e.code.as_str(), e.request_id.as_str()),
            ("invalid_input", "r1")
        );
        assert_eq!(
            server.await.unwrap().header("authorization"),
            Some("Bearer t")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn download_renames_a_complete_file_and_leaves_nothing_on_error() {
        let dir = scratch("download");
        let dest = dir.join("out.qcow2");
        let data: Vec<u8> = (0..200_000).map(|i| (i % 239) as u8).collect();
        let (endpoint, server) =
            serve_once(answer("200 OK", "application/octet-stream", &data)).await;
        let c = Client::new(&endpoint, Auth::None);
        let n = c
            .download_to(
                "/v1/images/abc/file",
                &[("format", "raw".to_string())],
                &dest,
                Some(Progress::new("d")),
            )
            .await
            .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(
            server.await.unwrap().request_line,
            "GET /v1/images/abc/file?format=raw HTTP/1.1"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let body = br#"{"error":{"code":"not_found","message":"image abc does not exist","request_id":"r2"}}"#;
        let (endpoint, server) =
            serve_once(answer("404 Not Found", "application/json", body)).await;
        let c = Client::new(&endpoint, Auth::None);
        let other = dir.join("other.qcow2");
        let e = c
            .download_to("/v1/images/abc/file", &[], &other, None)
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (404, "image abc does not exist")
        );
        server.await.unwrap();
        assert!(!other.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
