//! The S3 operations. Each one: find the bucket (access was already decided), stream data
//! through the blob store (verifying what the client promised), then record metadata and
//! quota in one transaction. Blobs that metadata let go of are removed after the commit.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::access::{owner_can, Caller};
use super::policy;
use super::storage::{self, BlobId, BlobStore, Expect, FsBlobStore, StorageError, Written};
use crate::app::AppRef;
use crate::authz::{Perm, Target};
use crate::error::Error;
use crate::store::{
    BucketRow, BucketSetting, NewObject, ObjectRow, ObjectSetting, PartRow, UploadRow,
};

/// S3's limits (spec 5.2.2.2 (7): objects up to 5 TiB; (9): up to 10,000 parts).
pub const MAX_OBJECT: u64 = 5 << 40;
pub const MAX_PUT: u64 = 5 << 30;
pub const MAX_PARTS: i32 = 10_000;
pub const MIN_PART: i64 = 5 << 20;

pub struct Obs {
    app: AppRef,
    blobs: Arc<FsBlobStore>,
}

/// Headers stored with an object and given back on GET/HEAD.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    metadata: HashMap<String, String>,
}

/// Checksums kept with an object: the algorithm the client chose and every value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    algorithm: Option<String>,
    #[serde(default)]
    crc32: String,
    #[serde(default)]
    crc32c: String,
    #[serde(default)]
    sha1: String,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    md5: String,
}

impl Sums {
    fn of(w: &Written, algorithm: Option<String>) -> Sums {
        Sums {
            algorithm,
            crc32: w.digests.crc32_base64(),
            crc32c: w.digests.crc32c_base64(),
            sha1: w.digests.sha1_base64(),
            sha256: w.digests.sha256_base64(),
            md5: hex::encode(w.digests.md5),
        }
    }

    /// The checksum of `algorithm` as S3 answers it: (CRC32, CRC32C, SHA1, SHA256), one set.
    fn answer(self, algorithm: Option<&str>) -> ChecksumAnswer {
        let mut a = ChecksumAnswer::default();
        match algorithm {
            Some("CRC32") => a.0 = Some(self.crc32),
            Some("CRC32C") => a.1 = Some(self.crc32c),
            Some("SHA1") => a.2 = Some(self.sha1),
            Some("SHA256") => a.3 = Some(self.sha256),
            _ => {}
        }
        a
    }

    /// The checksum the client chose when it stored the object.
    fn stored_answer(self) -> ChecksumAnswer {
        let algorithm = self.algorithm.clone();
        self.answer(algorithm.as_deref())
    }
}

/// The four `x-amz-checksum-*` answer headers (at most one is set).
#[derive(Default)]
struct ChecksumAnswer(
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Drop the `aws-chunked` coding a streaming upload declares: it describes the transfer,
/// not the object, and S3 does not store it.
fn stored_encoding(e: Option<String>) -> Option<String> {
    let kept: Vec<&str> = e
        .as_deref()?
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// A `Sync` wrapper for a body stream (s3s requires `Sync`; a `Mutex` gives it without
/// locking, since polling has `&mut` access).
struct SyncStream<S>(std::sync::Mutex<S>);

impl<S: Stream + Unpin> Stream for SyncStream<S> {
    type Item = S::Item;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = match self.get_mut().0.get_mut() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        Pin::new(inner).poll_next(cx)
    }
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    s3_error!(InternalError, "{e}")
}

/// Map a store error to the S3 error a client understands.
fn store_err(e: Error) -> S3Error {
    match e {
        Error::QuotaExceeded(m) => {
            let mut err = S3Error::with_message(S3ErrorCode::Custom("QuotaExceeded".into()), m);
            err.set_status_code(http::StatusCode::FORBIDDEN);
            err
        }
        Error::Conflict(m) if m == "BucketNotEmpty" => s3_error!(BucketNotEmpty),
        Error::Conflict(m) => s3_error!(OperationAborted, "{m}"),
        Error::NotFound(m) => s3_error!(NoSuchKey, "{m}"),
        other => internal(other),
    }
}

fn storage_err(e: StorageError) -> S3Error {
    match e {
        StorageError::BadDigest { .. } => s3_error!(BadDigest, "{e}"),
        StorageError::SizeMismatch { .. } => s3_error!(IncompleteBody, "{e}"),
        StorageError::TooLarge { .. } => s3_error!(EntityTooLarge, "{e}"),
        StorageError::RangeNotSatisfiable { .. } => s3_error!(InvalidRange),
        // The request body failed while arriving: a chunk whose signature does not verify
        // (aws-chunked uploads), or a client that went away.
        StorageError::Body(m) if m.to_ascii_lowercase().contains("signature") => {
            s3_error!(
                SignatureDoesNotMatch,
                "a chunk of the body does not match its signature"
            )
        }
        StorageError::Body(m) => s3_error!(IncompleteBody, "the body could not be read: {m}"),
        other => internal(other),
    }
}

fn systime(t: &Timestamp) -> std::time::SystemTime {
    let odt = time::OffsetDateTime::from(t.clone());
    std::time::UNIX_EPOCH
        + std::time::Duration::from_nanos(odt.unix_timestamp_nanos().max(0) as u64)
}

fn timestamp(text: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| Timestamp::from(std::time::SystemTime::from(t)))
}

fn quoted(etag: &str) -> ETag {
    ETag::Strong(etag.trim_matches('"').to_string())
}

fn caller(ext: &http::Extensions) -> Caller {
    ext.get::<Caller>().cloned().unwrap_or(Caller {
        principal: None,
        access_key: None,
        key_project: None,
        source_ip: None,
    })
}

/// What the client promised about a body, from the parsed headers.
fn expect(
    md5: Option<&str>,
    crc32: Option<&str>,
    crc32c: Option<&str>,
    sha1: Option<&str>,
    sha256: Option<&str>,
    length: Option<i64>,
) -> S3Result<Expect> {
    let bad = |what: &str| {
        s3_error!(
            InvalidDigest,
            "{what} is not valid base64 of the right length"
        )
    };
    Ok(Expect {
        md5: md5
            .map(|v| storage::decode_base64_digest::<16>(v).ok_or_else(|| bad("Content-MD5")))
            .transpose()?,
        crc32: crc32
            .map(|v| storage::decode_checksum_u32(v).ok_or_else(|| bad("x-amz-checksum-crc32")))
            .transpose()?,
        crc32c: crc32c
            .map(|v| storage::decode_checksum_u32(v).ok_or_else(|| bad("x-amz-checksum-crc32c")))
            .transpose()?,
        sha1: sha1
            .map(|v| {
                storage::decode_base64_digest::<20>(v).ok_or_else(|| bad("x-amz-checksum-sha1"))
            })
            .transpose()?,
        sha256: sha256
            .map(|v| {
                storage::decode_base64_digest::<32>(v).ok_or_else(|| bad("x-amz-checksum-sha256"))
            })
            .transpose()?,
        size: length.and_then(|l| u64::try_from(l).ok()),
    })
}

/// The checksum algorithm an `x-amz-trailer` header announces, if any.
fn trailer_algorithm(headers: &http::HeaderMap) -> Option<String> {
    let named = headers.get("x-amz-trailer")?.to_str().ok()?;
    named.split(',').find_map(|n| {
        match n.trim().to_ascii_lowercase().as_str() {
            "x-amz-checksum-crc32" => Some("CRC32"),
            "x-amz-checksum-crc32c" => Some("CRC32C"),
            "x-amz-checksum-sha1" => Some("SHA1"),
            "x-amz-checksum-sha256" => Some("SHA256"),
            _ => None,
        }
        .map(str::to_string)
    })
}

/// What the trailer of an aws-chunked body promised, read once the body has ended. A
/// checksum named in `x-amz-trailer` must have arrived.
fn trailer_expect(
    headers: &http::HeaderMap,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<Expect> {
    let announced = trailer_algorithm(headers);
    let map = trailers.and_then(|t| t.take()).unwrap_or_default();
    let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok());
    if let Some(a) = &announced {
        let name = format!("x-amz-checksum-{}", a.to_ascii_lowercase());
        if get(&name).is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-trailer announces {name} but the body's trailer does not carry it"
            ));
        }
    }
    expect(
        None,
        get("x-amz-checksum-crc32"),
        get("x-amz-checksum-crc32c"),
        get("x-amz-checksum-sha1"),
        get("x-amz-checksum-sha256"),
        None,
    )
}

fn algorithm_of(
    declared: Option<&ChecksumAlgorithm>,
    crc32: bool,
    crc32c: bool,
    sha1: bool,
    sha256: bool,
) -> Option<String> {
    if let Some(a) = declared {
        return Some(a.as_str().to_string());
    }
    [
        ("CRC32", crc32),
        ("CRC32C", crc32c),
        ("SHA1", sha1),
        ("SHA256", sha256),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(n, _)| n.to_string())
}

/// Valid bucket names (DNS-compatible, as S3 requires for new buckets).
pub(crate) fn valid_bucket_name(n: &str) -> bool {
    let ok_chars = n
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    (3..=63).contains(&n.len())
        && ok_chars
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !n.contains("..")
        && n.parse::<std::net::Ipv4Addr>().is_err()
}

impl Obs {
    pub fn new(app: AppRef, blobs: Arc<FsBlobStore>) -> Obs {
        Obs { app, blobs }
    }

    /// Remove blobs whose rows are gone (after commits, and at start after a crash).
    pub async fn collect_garbage(&self) {
        collect_garbage(&self.app, &self.blobs).await
    }

    async fn bucket(&self, name: &str) -> S3Result<(BucketRow, Vec<Uuid>)> {
        let b = self
            .app
            .store
            .bucket_get(name)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let mut chain = vec![b.project_id];
        chain.extend(self.app.store.vdc_chain(b.vdc_id).await.map_err(internal)?);
        Ok((b, chain))
    }

    /// Store a body as a blob (nothing is left behind when it fails).
    async fn write_blob(
        &self,
        body: Option<StreamingBlob>,
        ex: &Expect,
        limit: u64,
    ) -> S3Result<Written> {
        let body = body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
        });
        self.blobs.put(body, ex, limit).await.map_err(storage_err)
    }

    /// Store an upload's body and check the checksum an aws-chunked trailer carried (the
    /// SDKs send it after the data when they stream a body). The blob is not referenced by
    /// any object until the caller records it, so a mismatch is removed here and never
    /// becomes visible.
    async fn write_upload(
        &self,
        req_headers: &http::HeaderMap,
        trailers: Option<&s3s::TrailingHeaders>,
        body: Option<StreamingBlob>,
        ex: &Expect,
    ) -> S3Result<Written> {
        let written = self.write_blob(body, ex, MAX_PUT).await?;
        let late = trailer_expect(req_headers, trailers)
            .and_then(|late| late.verify_written(&written).map_err(storage_err));
        if let Err(e) = late {
            let _ = self.blobs.delete(&written.id).await;
            return Err(e);
        }
        Ok(written)
    }

    async fn record(
        &self,
        b: &BucketRow,
        chain: &[Uuid],
        o: NewObject,
        blob: &BlobId,
    ) -> S3Result<ObjectRow> {
        match self.app.store.object_put(b, chain, o).await {
            Ok(row) => {
                self.collect_garbage().await;
                Ok(row)
            }
            Err(e) => {
                // The metadata never pointed at it: remove the blob now.
                let _ = self.blobs.delete(blob).await;
                Err(store_err(e))
            }
        }
    }

    /// The object a copy reads (CopyObject, UploadPartCopy): it must exist, the caller must
    /// be able to read it, and the x-amz-copy-source-if-* conditions must hold.
    async fn copy_source(
        &self,
        c: &Caller,
        source: &CopySource,
        [if_match, if_none_match]: [Option<&ETagCondition>; 2],
        [if_modified, if_unmodified]: [Option<&Timestamp>; 2],
    ) -> S3Result<(String, String, Option<String>, ObjectRow)> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(
                NotImplemented,
                "access points and outposts are not supported"
            ));
        };
        let (sb, _) = self.bucket(bucket).await?;
        // Reading the source needs read access to it, like a GET would.
        if !owner_can(&self.app, c, &sb, Perm::ResourceRead).await {
            return Err(s3_error!(AccessDenied, "you may not read the copy source"));
        }
        let src = self.object(&sb, key, version_id.as_deref()).await?;
        preconditions(&src, if_match, if_none_match, if_modified, if_unmodified).map_err(|e| {
            if *e.code() == S3ErrorCode::NotModified {
                s3_error!(PreconditionFailed)
            } else {
                e
            }
        })?;
        Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_ref().map(|v| v.to_string()),
            src,
        ))
    }

    async fn object(&self, b: &BucketRow, key: &str, version: Option<&str>) -> S3Result<ObjectRow> {
        let row = self
            .app
            .store
            .object_get(b.id, key, version)
            .await
            .map_err(internal)?;
        match row {
            Some(r) if r.delete_marker && version.is_none() => Err(s3_error!(NoSuchKey)),
            Some(r) if r.delete_marker => Err(s3_error!(
                MethodNotAllowed,
                "the version is a delete marker"
            )),
            Some(r) => Ok(r),
            None if version.is_some() => Err(s3_error!(NoSuchVersion)),
            None => Err(s3_error!(NoSuchKey)),
        }
    }
}

/// Remove blobs whose rows are gone: queued in the transaction that let go of them, removed
/// after it committed (so a crash in between leaks nothing: the queue survives).
pub async fn collect_garbage(app: &AppRef, blobs: &FsBlobStore) {
    loop {
        let batch = match app.store.blob_garbage(500).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the blob garbage queue");
                return;
            }
        };
        if batch.is_empty() {
            return;
        }
        for b in batch {
            if let Err(e) = blobs.delete(&BlobId(b.clone())).await {
                tracing::warn!(error = %e, blob = b, "cannot remove a blob");
                return;
            }
            if let Err(e) = app.store.blob_forget(&b).await {
                tracing::warn!(error = %e, "cannot dequeue a removed blob");
                return;
            }
        }
    }
}

fn version_out(v: &str) -> Option<String> {
    (v != "null").then(|| v.to_string())
}

/// Evaluate If-Match / If-None-Match / If-(Un)Modified-Since the way S3 does for GET/HEAD.
fn preconditions(
    o: &ObjectRow,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = o.etag.trim_matches('"');
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    };
    let modified: Option<std::time::SystemTime> =
        chrono::DateTime::parse_from_rfc3339(&o.last_modified)
            .ok()
            .map(std::time::SystemTime::from);
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(PreconditionFailed));
        }
    } else if let (Some(t), Some(m)) = (if_unmodified_since, modified) {
        if systime(t) < m {
            return Err(s3_error!(PreconditionFailed));
        }
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    } else if let (Some(t), Some(m)) = (if_modified_since, modified) {
        if systime(t) >= m {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for Obs {
    // ------------------------------------------------------------ buckets

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let c = caller(&req.extensions);
        let name = req.input.bucket.clone();
        if !valid_bucket_name(&name) {
            return Err(s3_error!(InvalidBucketName));
        }
        if let Some(existing) = self.app.store.bucket_get(&name).await.map_err(internal)? {
            let mine = owner_can(&self.app, &c, &existing, Perm::ResourceRead).await;
            return Err(if mine {
                s3_error!(BucketAlreadyOwnedByYou)
            } else {
                s3_error!(BucketAlreadyExists)
            });
        }
        let p = c
            .principal
            .as_ref()
            .ok_or_else(|| s3_error!(AccessDenied))?;
        // The project: the key's, else the one project the caller may write in.
        let project = match c.key_project {
            Some(pid) => pid,
            None => {
                let vis = p.visibility(Perm::ResourceWrite);
                let mut found = vis.projects.clone();
                if found.len() != 1 || vis.all || !vis.vdcs.is_empty() {
                    found.clear();
                }
                found.pop().ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "this access key is not bound to a project: create one with `stratus accesskey create --project <id>`"
                    )
                })?
            }
        };
        let proj = self
            .app
            .store
            .project_get(project)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(InvalidRequest, "the key's project no longer exists"))?;
        let vdc_chain = self
            .app
            .store
            .vdc_chain(proj.vdc_id)
            .await
            .map_err(internal)?;
        if !p.can(
            Perm::ResourceWrite,
            &Target::Project {
                id: project,
                chain: &vdc_chain,
            },
        ) {
            return Err(s3_error!(
                AccessDenied,
                "you may not create resources in the key's project"
            ));
        }
        let region = &self.app.config.region;
        if let Some(loc) = req
            .input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
        {
            if loc.as_str() != region.as_str() {
                return Err(s3_error!(
                    InvalidLocationConstraint,
                    "this endpoint serves region {region}"
                ));
            }
        }
        let acl = match &req.input.acl {
            Some(a) => serde_json::to_string(&super::policy::Acl::canned(
                a.as_str()
                    .parse::<super::policy::CannedAcl>()
                    .map_err(|_| s3_error!(InvalidArgument, "unknown canned ACL"))?,
            ))
            .unwrap_or_default(),
            None => String::new(),
        };
        let mut chain = vec![project];
        chain.extend(vdc_chain);
        self.app
            .store
            .bucket_create(&name, project, proj.vdc_id, &chain, region, &acl, &p.name)
            .await
            .map_err(|e| match e {
                Error::Conflict(_) => s3_error!(BucketAlreadyExists),
                other => store_err(other),
            })?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let (b, chain) = self.bucket(&req.input.bucket).await?;
        let who = caller(&req.extensions)
            .principal
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |p| p.name.clone());
        let kept = crate::app::recycle::bucket_recycle(&self.app, &who, &b)
            .await
            .map_err(|e| match e {
                Error::Conflict(_) => s3_error!(BucketNotEmpty),
                other => store_err(other),
            })?;
        if kept {
            return Ok(S3Response::new(DeleteBucketOutput {}));
        }
        self.app
            .store
            .bucket_delete(&b, &chain)
            .await
            .map_err(store_err)?;
        self.collect_garbage().await;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(b.region),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: Some(BucketLocationConstraint::from(b.region)),
        }))
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let c = caller(&req.extensions);
        let mut out = Vec::new();
        for b in self.app.store.bucket_list().await.map_err(internal)? {
            if owner_can(&self.app, &c, &b, Perm::ResourceRead).await {
                out.push(Bucket {
                    name: Some(b.name.clone()),
                    creation_date: timestamp(&b.created_at),
                    bucket_region: Some(b.region.clone()),
                });
            }
        }
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(out),
            owner: Some(Owner {
                display_name: Some(c.name()),
                id: c.principal.as_ref().map(|p| p.user_id.to_string()),
            }),
            ..Default::default()
        }))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: (!b.versioning.is_empty()).then(|| BucketVersioningStatus::from(b.versioning)),
            ..Default::default()
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        let status = req
            .input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str().to_string())
            .ok_or_else(|| s3_error!(MalformedXML, "Status is required"))?;
        if status != "Enabled" && status != "Suspended" {
            return Err(s3_error!(
                MalformedXML,
                "Status must be Enabled or Suspended"
            ));
        }
        self.app
            .store
            .bucket_set(b.id, BucketSetting::Versioning, Some(&status))
            .await
            .map_err(internal)?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    // ------------------------------------------------------------ objects

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let i = req.input;
        let (b, chain) = self.bucket(&i.bucket).await?;
        if let Some(ETagCondition::Any) = i.if_none_match {
            if self
                .app
                .store
                .object_get(b.id, &i.key, None)
                .await
                .map_err(internal)?
                .is_some_and(|o| !o.delete_marker)
            {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        let ex = expect(
            i.content_md5.as_deref(),
            i.checksum_crc32.as_deref(),
            i.checksum_crc32c.as_deref(),
            i.checksum_sha1.as_deref(),
            i.checksum_sha256.as_deref(),
            i.content_length,
        )?;
        let algorithm = algorithm_of(
            i.checksum_algorithm.as_ref(),
            i.checksum_crc32.is_some(),
            i.checksum_crc32c.is_some(),
            i.checksum_sha1.is_some(),
            i.checksum_sha256.is_some(),
        )
        .or_else(|| trailer_algorithm(&req.headers));
        let written = self
            .write_upload(&req.headers, req.trailing_headers.as_ref(), i.body, &ex)
            .await?;
        let stored = Stored {
            content_type: i.content_type,
            content_encoding: stored_encoding(i.content_encoding),
            content_disposition: i.content_disposition,
            content_language: i.content_language,
            cache_control: i.cache_control,
            metadata: i.metadata.unwrap_or_default(),
        };
        let acl = match &i.acl {
            Some(a) => serde_json::to_string(&super::policy::Acl::canned(
                a.as_str()
                    .parse::<super::policy::CannedAcl>()
                    .map_err(|_| s3_error!(InvalidArgument, "unknown canned ACL"))?,
            ))
            .unwrap_or_default(),
            None => String::new(),
        };
        let sums = Sums::of(&written, algorithm.clone());
        let row = self
            .record(
                &b,
                &chain,
                NewObject {
                    key: i.key.clone(),
                    blob_id: Some(written.id.0.clone()),
                    size: written.size as i64,
                    etag: written.digests.etag(),
                    headers: serde_json::to_string(&stored).unwrap_or_default(),
                    checksums: serde_json::to_string(&sums).unwrap_or_default(),
                    acl,
                    tags: i.tagging.unwrap_or_default(),
                    parts_count: None,
                    delete_marker: false,
                },
                &written.id,
            )
            .await?;
        let mut out = PutObjectOutput {
            e_tag: Some(quoted(&row.etag)),
            version_id: version_out(&row.version_id),
            ..Default::default()
        };
        let ChecksumAnswer(crc32, crc32c, sha1, sha256) = sums.answer(algorithm.as_deref());
        (
            out.checksum_crc32,
            out.checksum_crc32c,
            out.checksum_sha1,
            out.checksum_sha256,
        ) = (crc32, crc32c, sha1, sha256);
        Ok(S3Response::new(out))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let o = self.object(&b, &i.key, i.version_id.as_deref()).await?;
        preconditions(
            &o,
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        )?;
        let size = o.size as u64;
        let (range, content_range) = match &i.range {
            None => (None, None),
            Some(r) => {
                let rr = r.check(size).map_err(|_| s3_error!(InvalidRange))?;
                (
                    Some((rr.start, rr.end)),
                    Some(format!(
                        "bytes {}-{}/{size}",
                        rr.start,
                        rr.end.saturating_sub(1)
                    )),
                )
            }
        };
        let length = range.map(|(s, e)| e - s).unwrap_or(size);
        let body = match &o.blob_id {
            Some(blob) if size > 0 => {
                let (_, stream) = self
                    .blobs
                    .get(&BlobId(blob.clone()), range)
                    .await
                    .map_err(storage_err)?;
                Some(StreamingBlob::wrap(SyncStream(std::sync::Mutex::new(
                    stream,
                ))))
            }
            _ => Some(StreamingBlob::wrap(futures_util::stream::empty::<
                Result<Bytes, std::io::Error>,
            >())),
        };
        let h: Stored = serde_json::from_str(&o.headers).unwrap_or_default();
        let sums: Sums = serde_json::from_str(&o.checksums).unwrap_or_default();
        let whole = range.is_none();
        let want_sums = whole
            && i.checksum_mode
                .as_ref()
                .is_some_and(|m| m.as_str() == "ENABLED");
        let mut out = GetObjectOutput {
            body,
            content_length: Some(length as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            last_modified: timestamp(&o.last_modified),
            e_tag: Some(quoted(&o.etag)),
            version_id: version_out(&o.version_id),
            content_type: i.response_content_type.or(h.content_type),
            content_encoding: i.response_content_encoding.or(h.content_encoding),
            content_disposition: i.response_content_disposition.or(h.content_disposition),
            content_language: i.response_content_language.or(h.content_language),
            cache_control: i.response_cache_control.or(h.cache_control),
            metadata: (!h.metadata.is_empty()).then_some(h.metadata),
            parts_count: o.parts_count.map(|n| n as i32),
            ..Default::default()
        };
        if want_sums {
            let ChecksumAnswer(crc32, crc32c, sha1, sha256) = sums.stored_answer();
            (
                out.checksum_crc32,
                out.checksum_crc32c,
                out.checksum_sha1,
                out.checksum_sha256,
            ) = (crc32, crc32c, sha1, sha256);
        }
        Ok(S3Response::new(out))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let o = self.object(&b, &i.key, i.version_id.as_deref()).await?;
        preconditions(
            &o,
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        )?;
        let h: Stored = serde_json::from_str(&o.headers).unwrap_or_default();
        let ChecksumAnswer(crc32, crc32c, sha1, sha256) = if i
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == "ENABLED")
        {
            serde_json::from_str::<Sums>(&o.checksums)
                .unwrap_or_default()
                .stored_answer()
        } else {
            ChecksumAnswer::default()
        };
        Ok(S3Response::new(HeadObjectOutput {
            checksum_crc32: crc32,
            checksum_crc32c: crc32c,
            checksum_sha1: sha1,
            checksum_sha256: sha256,
            content_length: Some(o.size),
            accept_ranges: Some("bytes".into()),
            last_modified: timestamp(&o.last_modified),
            e_tag: Some(quoted(&o.etag)),
            version_id: version_out(&o.version_id),
            content_type: h.content_type,
            content_encoding: h.content_encoding,
            content_disposition: h.content_disposition,
            content_language: h.content_language,
            cache_control: h.cache_control,
            metadata: (!h.metadata.is_empty()).then_some(h.metadata),
            parts_count: o.parts_count.map(|n| n as i32),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = req.input;
        let (b, chain) = self.bucket(&i.bucket).await?;
        let d = self
            .app
            .store
            .object_delete(&b, &chain, &i.key, i.version_id.as_deref())
            .await
            .map_err(store_err)?;
        self.collect_garbage().await;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: d.delete_marker.then_some(true),
            version_id: d.version_id.as_deref().and_then(version_out),
            ..Default::default()
        }))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        let (b, chain) = self.bucket(&i.bucket).await?;
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per request"));
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for obj in i.delete.objects {
            match self
                .app
                .store
                .object_delete(&b, &chain, &obj.key, obj.version_id.as_deref())
                .await
            {
                Ok(d) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(obj.key),
                            version_id: obj.version_id.clone(),
                            delete_marker: d.delete_marker.then_some(true),
                            delete_marker_version_id: if d.delete_marker && obj.version_id.is_none()
                            {
                                d.version_id.as_deref().and_then(version_out)
                            } else {
                                None
                            },
                        });
                    }
                }
                Err(e) => errors.push(s3s::dto::Error {
                    code: Some("InternalError".into()),
                    key: Some(obj.key),
                    message: Some(e.to_string()),
                    version_id: obj.version_id,
                }),
            }
        }
        self.collect_garbage().await;
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let c = caller(&req.extensions);
        let i = req.input;
        let (src_bucket, src_key, src_version, src) = self
            .copy_source(
                &c,
                &i.copy_source,
                [
                    i.copy_source_if_match.as_ref(),
                    i.copy_source_if_none_match.as_ref(),
                ],
                [
                    i.copy_source_if_modified_since.as_ref(),
                    i.copy_source_if_unmodified_since.as_ref(),
                ],
            )
            .await?;
        let (b, chain) = self.bucket(&i.bucket).await?;
        let replace = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        if !replace && src_bucket == i.bucket && src_key == i.key && src_version.is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata"
            ));
        }
        let written = match &src.blob_id {
            Some(blob) => self
                .blobs
                .concat(&[BlobId(blob.clone())])
                .await
                .map_err(storage_err)?,
            None => self.write_blob(None, &Expect::default(), 0).await?,
        };
        let headers = if replace {
            serde_json::to_string(&Stored {
                content_type: i.content_type,
                content_encoding: stored_encoding(i.content_encoding),
                content_disposition: i.content_disposition,
                content_language: i.content_language,
                cache_control: i.cache_control,
                metadata: i.metadata.unwrap_or_default(),
            })
            .unwrap_or_default()
        } else {
            src.headers.clone()
        };
        let etag = if src.parts_count.is_some() {
            src.etag.clone()
        } else {
            written.digests.etag()
        };
        let row = self
            .record(
                &b,
                &chain,
                NewObject {
                    key: i.key.clone(),
                    blob_id: Some(written.id.0.clone()),
                    size: written.size as i64,
                    etag,
                    headers,
                    checksums: serde_json::to_string(&Sums::of(&written, None)).unwrap_or_default(),
                    acl: String::new(),
                    tags: src.tags.clone(),
                    parts_count: src.parts_count,
                    delete_marker: false,
                },
                &written.id,
            )
            .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(quoted(&row.etag)),
                last_modified: timestamp(&row.last_modified),
                ..Default::default()
            }),
            version_id: version_out(&row.version_id),
            copy_source_version_id: version_out(&src.version_id),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let page = list_page(
            &self.app,
            &b,
            &prefix,
            i.delimiter.as_deref(),
            i.marker.as_deref().unwrap_or(""),
            i.max_keys,
        )
        .await?;
        let next_marker = if page.truncated && i.delimiter.is_some() {
            page.last.clone()
        } else {
            None
        };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(b.name),
            prefix: Some(prefix),
            marker: i.marker,
            max_keys: Some(page.max_keys),
            delimiter: i.delimiter,
            is_truncated: Some(page.truncated),
            next_marker,
            contents: Some(page.contents),
            common_prefixes: (!page.prefixes.is_empty()).then_some(page.prefixes),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let after = match &i.continuation_token {
            Some(t) => decode_token(t)?,
            None => i.start_after.clone().unwrap_or_default(),
        };
        let page = list_page(
            &self.app,
            &b,
            &prefix,
            i.delimiter.as_deref(),
            &after,
            i.max_keys,
        )
        .await?;
        let count = (page.contents.len() + page.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(b.name),
            prefix: Some(prefix),
            max_keys: Some(page.max_keys),
            key_count: Some(count),
            continuation_token: i.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: if page.truncated {
                page.last.as_deref().map(encode_token)
            } else {
                None
            },
            contents: Some(page.contents),
            common_prefixes: (!page.prefixes.is_empty()).then_some(page.prefixes),
            delimiter: i.delimiter,
            encoding_type: i.encoding_type,
            start_after: i.start_after,
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = i.max_keys.unwrap_or(1000).clamp(1, 1000);
        let key_marker = i.key_marker.clone().unwrap_or_default();
        let rows = self
            .app
            .store
            .object_versions(b.id, &prefix, &key_marker, 10_001)
            .await
            .map_err(internal)?;
        // Skip what the markers say was already returned.
        let mut skipping = !key_marker.is_empty();
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        let (mut truncated, mut next_key, mut next_version) = (false, None, None);
        let mut n = 0;
        for r in rows {
            if skipping {
                if r.key == key_marker {
                    match &i.version_id_marker {
                        Some(v) if *v == r.version_id => {
                            skipping = false;
                            continue;
                        }
                        Some(_) => continue,
                        None => continue,
                    }
                }
                skipping = false;
            }
            if n == max {
                truncated = true;
                break;
            }
            next_key = Some(r.key.clone());
            next_version = Some(r.version_id.clone());
            n += 1;
            if r.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(r.is_latest),
                    key: Some(r.key),
                    last_modified: timestamp(&r.last_modified),
                    version_id: Some(r.version_id),
                    ..Default::default()
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(quoted(&r.etag)),
                    is_latest: Some(r.is_latest),
                    key: Some(r.key),
                    last_modified: timestamp(&r.last_modified),
                    size: Some(r.size),
                    version_id: Some(r.version_id),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(b.name),
            prefix: Some(prefix),
            key_marker: i.key_marker,
            version_id_marker: i.version_id_marker,
            max_keys: Some(max),
            is_truncated: Some(truncated),
            next_key_marker: if truncated { next_key } else { None },
            next_version_id_marker: if truncated { next_version } else { None },
            versions: Some(versions),
            delete_markers: Some(markers),
            ..Default::default()
        }))
    }

    // ------------------------------------------------------------ policies and ACLs

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        if let Err(e) = policy::parse_policy(&req.input.policy, &b.name) {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedPolicy,
                e.to_string(),
            ));
        }
        self.app
            .store
            .bucket_set(b.id, BucketSetting::Policy, Some(&req.input.policy))
            .await
            .map_err(internal)?;
        Ok(S3Response::new(PutBucketPolicyOutput {}))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        let policy = b.policy.ok_or_else(|| s3_error!(NoSuchBucketPolicy))?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        self.app
            .store
            .bucket_set(b.id, BucketSetting::Policy, None)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let acl = acl_from_request(
            i.acl.as_ref().map(|a| a.as_str()),
            [
                i.grant_read.as_deref(),
                i.grant_write.as_deref(),
                i.grant_read_acp.as_deref(),
                i.grant_write_acp.as_deref(),
                i.grant_full_control.as_deref(),
            ],
            i.access_control_policy.is_some(),
        )?;
        self.app
            .store
            .bucket_set(b.id, BucketSetting::Acl, Some(&acl))
            .await
            .map_err(internal)?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants_of(&b.acl)),
            owner: Some(owner_of(&b)),
        }))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let o = self.object(&b, &i.key, i.version_id.as_deref()).await?;
        let acl = acl_from_request(
            i.acl.as_ref().map(|a| a.as_str()),
            [
                i.grant_read.as_deref(),
                i.grant_write.as_deref(),
                i.grant_read_acp.as_deref(),
                i.grant_write_acp.as_deref(),
                i.grant_full_control.as_deref(),
            ],
            i.access_control_policy.is_some(),
        )?;
        self.app
            .store
            .object_set(o.id, ObjectSetting::Acl, &acl)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let o = self.object(&b, &i.key, i.version_id.as_deref()).await?;
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(grants_of(&o.acl)),
            owner: Some(owner_of(&b)),
            ..Default::default()
        }))
    }

    // ------------------------------------------------------------ tagging

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let o = self.object(&b, &i.key, i.version_id.as_deref()).await?;
        if i.tagging.tag_set.len() > 10 {
            return Err(s3_error!(
                InvalidTag,
                "Object tags cannot be greater than 10"
            ));
        }
        // Built in a block: the encoder is not Send and must not live across an await.
        let tags = {
            let mut enc = url::form_urlencoded::Serializer::new(String::new());
            for t in &i.tagging.tag_set {
                let (k, v) = (
                    t.key.clone().unwrap_or_default(),
                    t.value.clone().unwrap_or_default(),
                );
                if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
                    return Err(s3_error!(
                        InvalidTag,
                        "tag keys are 1-128 characters, values up to 256"
                    ));
                }
                enc.append_pair(&k, &v);
            }
            enc.finish()
        };
        self.app
            .store
            .object_set(o.id, ObjectSetting::Tags, &tags)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: version_out(&o.version_id),
        }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let o = self.object(&b, &i.key, i.version_id.as_deref()).await?;
        let tag_set = url::form_urlencoded::parse(o.tags.as_bytes())
            .map(|(k, v)| Tag {
                key: Some(k.into_owned()),
                value: Some(v.into_owned()),
            })
            .collect();
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set,
            version_id: version_out(&o.version_id),
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let o = self.object(&b, &i.key, i.version_id.as_deref()).await?;
        self.app
            .store
            .object_set(o.id, ObjectSetting::Tags, "")
            .await
            .map_err(internal)?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: version_out(&o.version_id),
        }))
    }

    // ------------------------------------------------------------ lifecycle

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let config = i
            .lifecycle_configuration
            .ok_or_else(|| s3_error!(MalformedXML, "LifecycleConfiguration is required"))?;
        let rules = super::lifecycle::rules_from_dto(&config.rules)?;
        let text = serde_json::to_string(&rules).map_err(internal)?;
        self.app
            .store
            .bucket_set(b.id, BucketSetting::Lifecycle, Some(&text))
            .await
            .map_err(internal)?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        let text = b
            .lifecycle
            .ok_or_else(|| s3_error!(NoSuchLifecycleConfiguration))?;
        let rules: Vec<super::lifecycle::Rule> = serde_json::from_str(&text).map_err(internal)?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules.iter().map(super::lifecycle::Rule::to_dto).collect()),
            ..Default::default()
        }))
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let (b, _) = self.bucket(&req.input.bucket).await?;
        self.app
            .store
            .bucket_set(b.id, BucketSetting::Lifecycle, None)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput {}))
    }

    // ------------------------------------------------------------ multipart

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let c = caller(&req.extensions);
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let id = Uuid::new_v4().simple().to_string();
        let stored = Stored {
            content_type: i.content_type,
            content_encoding: stored_encoding(i.content_encoding),
            content_disposition: i.content_disposition,
            content_language: i.content_language,
            cache_control: i.cache_control,
            metadata: i.metadata.unwrap_or_default(),
        };
        self.app
            .store
            .upload_create(&UploadRow {
                id: id.clone(),
                bucket_id: b.id,
                key: i.key.clone(),
                headers: serde_json::to_string(&stored).unwrap_or_default(),
                acl: String::new(),
                checksum_algorithm: i
                    .checksum_algorithm
                    .as_ref()
                    .map(|a| a.as_str().to_string()),
                created_by: c.name(),
                initiated_at: crate::store::now_text(),
            })
            .await
            .map_err(internal)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(b.name),
            key: Some(i.key),
            upload_id: Some(id),
            checksum_algorithm: i.checksum_algorithm,
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        if !(1..=MAX_PARTS).contains(&i.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        self.app
            .store
            .upload_get(b.id, &i.key, &i.upload_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let ex = expect(
            i.content_md5.as_deref(),
            i.checksum_crc32.as_deref(),
            i.checksum_crc32c.as_deref(),
            i.checksum_sha1.as_deref(),
            i.checksum_sha256.as_deref(),
            i.content_length,
        )?;
        let written = self
            .write_upload(&req.headers, req.trailing_headers.as_ref(), i.body, &ex)
            .await?;
        let trailed = trailer_algorithm(&req.headers);
        let sums = Sums::of(&written, None);
        let part = PartRow {
            part_number: i.part_number as i64,
            blob_id: written.id.0.clone(),
            size: written.size as i64,
            etag: written.digests.etag(),
            md5: hex::encode(written.digests.md5),
            checksums: serde_json::to_string(&sums).unwrap_or_default(),
            last_modified: crate::store::now_text(),
        };
        if let Err(e) = self.app.store.part_put(&i.upload_id, &part).await {
            let _ = self.blobs.delete(&written.id).await;
            return Err(internal(e));
        }
        self.collect_garbage().await;
        let mut out = UploadPartOutput {
            e_tag: Some(quoted(&part.etag)),
            ..Default::default()
        };
        let asked = |name: &str, header: bool| header || trailed.as_deref() == Some(name);
        if asked("CRC32", i.checksum_crc32.is_some()) {
            out.checksum_crc32 = Some(sums.crc32);
        }
        if asked("CRC32C", i.checksum_crc32c.is_some()) {
            out.checksum_crc32c = Some(sums.crc32c);
        }
        if asked("SHA1", i.checksum_sha1.is_some()) {
            out.checksum_sha1 = Some(sums.sha1);
        }
        if asked("SHA256", i.checksum_sha256.is_some()) {
            out.checksum_sha256 = Some(sums.sha256);
        }
        Ok(S3Response::new(out))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let c = caller(&req.extensions);
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        if !(1..=MAX_PARTS).contains(&i.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        self.app
            .store
            .upload_get(b.id, &i.key, &i.upload_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let (_, _, _, src) = self
            .copy_source(
                &c,
                &i.copy_source,
                [
                    i.copy_source_if_match.as_ref(),
                    i.copy_source_if_none_match.as_ref(),
                ],
                [
                    i.copy_source_if_modified_since.as_ref(),
                    i.copy_source_if_unmodified_since.as_ref(),
                ],
            )
            .await?;
        // x-amz-copy-source-range: bytes=first-last (inclusive), within the source.
        let size = src.size as u64;
        let range = match &i.copy_source_range {
            None => None,
            Some(r) => {
                let bad = || {
                    s3_error!(
                        InvalidArgument,
                        "x-amz-copy-source-range must be bytes=first-last within the source"
                    )
                };
                let (a, z) = r
                    .strip_prefix("bytes=")
                    .and_then(|x| x.split_once('-'))
                    .ok_or_else(bad)?;
                let a: u64 = a.parse().map_err(|_| bad())?;
                let z: u64 = z.parse().map_err(|_| bad())?;
                if a > z || z >= size {
                    return Err(s3_error!(InvalidRange));
                }
                Some((a, z + 1))
            }
        };
        let written = match &src.blob_id {
            Some(blob) if size > 0 => {
                let (_, stream) = self
                    .blobs
                    .get(&BlobId(blob.clone()), range)
                    .await
                    .map_err(storage_err)?;
                self.blobs
                    .put(stream, &Expect::default(), MAX_PUT)
                    .await
                    .map_err(storage_err)?
            }
            _ => self.write_blob(None, &Expect::default(), 0).await?,
        };
        let part = PartRow {
            part_number: i.part_number as i64,
            blob_id: written.id.0.clone(),
            size: written.size as i64,
            etag: written.digests.etag(),
            md5: hex::encode(written.digests.md5),
            checksums: serde_json::to_string(&Sums::of(&written, None)).unwrap_or_default(),
            last_modified: crate::store::now_text(),
        };
        if let Err(e) = self.app.store.part_put(&i.upload_id, &part).await {
            let _ = self.blobs.delete(&written.id).await;
            return Err(internal(e));
        }
        self.collect_garbage().await;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(quoted(&part.etag)),
                last_modified: timestamp(&part.last_modified),
                ..Default::default()
            }),
            copy_source_version_id: version_out(&src.version_id),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        self.app
            .store
            .upload_get(b.id, &i.key, &i.upload_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000);
        let after = i.part_number_marker.unwrap_or(0) as i64;
        let mut parts = self
            .app
            .store
            .part_list(&i.upload_id, after, max as i64 + 1)
            .await
            .map_err(internal)?;
        let truncated = parts.len() > max as usize;
        parts.truncate(max as usize);
        let next = parts.last().map(|p| p.part_number as i32);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(b.name),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            is_truncated: Some(truncated),
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| Part {
                        e_tag: Some(quoted(&p.etag)),
                        last_modified: timestamp(&p.last_modified),
                        part_number: Some(p.part_number as i32),
                        size: Some(p.size),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = i.max_uploads.unwrap_or(1000).clamp(1, 1000);
        let mut rows = self
            .app
            .store
            .upload_list(b.id, &prefix, max as i64 + 1)
            .await
            .map_err(internal)?;
        let truncated = rows.len() > max as usize;
        rows.truncate(max as usize);
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(b.name),
            prefix: Some(prefix),
            max_uploads: Some(max),
            is_truncated: Some(truncated),
            uploads: Some(
                rows.into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.id),
                        initiated: timestamp(&u.initiated_at),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        let (b, _) = self.bucket(&i.bucket).await?;
        self.app
            .store
            .upload_get(b.id, &i.key, &i.upload_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        self.app
            .store
            .upload_abort(&i.upload_id)
            .await
            .map_err(internal)?;
        self.collect_garbage().await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        let (b, chain) = self.bucket(&i.bucket).await?;
        let upload = self
            .app
            .store
            .upload_get(b.id, &i.key, &i.upload_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let wanted = i
            .multipart_upload
            .and_then(|m| m.parts)
            .ok_or_else(|| s3_error!(MalformedXML, "the request names no parts"))?;
        if wanted.is_empty() {
            return Err(s3_error!(MalformedXML, "the request names no parts"));
        }
        let stored: HashMap<i64, PartRow> = self
            .app
            .store
            .part_list(&i.upload_id, 0, MAX_PARTS as i64 + 1)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|p| (p.part_number, p))
            .collect();
        // The order is checked over the whole list first, as S3 does: a reversed list is
        // InvalidPartOrder even when its first (small, last) part would also be too small.
        let mut numbers = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let num = w
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "a part has no number"))?
                as i64;
            if numbers.last().is_some_and(|prev| num <= *prev) {
                return Err(s3_error!(InvalidPartOrder));
            }
            numbers.push(num);
        }
        let mut blobs = Vec::with_capacity(wanted.len());
        let mut md5s = Vec::with_capacity(wanted.len());
        for (n, (w, num)) in wanted.iter().zip(numbers).enumerate() {
            let p = stored
                .get(&num)
                .ok_or_else(|| s3_error!(InvalidPart, "part {num} was not uploaded"))?;
            if let Some(e) = &w.e_tag {
                if e.value() != p.etag.trim_matches('"') {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {num}: the ETag does not match"
                    ));
                }
            }
            if n + 1 < wanted.len() && p.size < MIN_PART {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {num} is smaller than 5 MiB and is not the last part"
                ));
            }
            let mut md5 = [0u8; 16];
            hex::decode_to_slice(&p.md5, &mut md5).map_err(internal)?;
            md5s.push(md5);
            blobs.push(BlobId(p.blob_id.clone()));
        }
        let written = self.blobs.concat(&blobs).await.map_err(storage_err)?;
        if written.size > MAX_OBJECT {
            let _ = self.blobs.delete(&written.id).await;
            return Err(s3_error!(EntityTooLarge));
        }
        let etag = storage::multipart_etag(&md5s);
        let new = NewObject {
            key: i.key.clone(),
            blob_id: Some(written.id.0.clone()),
            size: written.size as i64,
            etag: etag.clone(),
            headers: upload.headers.clone(),
            checksums: serde_json::to_string(&Sums::of(&written, None)).unwrap_or_default(),
            acl: upload.acl.clone(),
            tags: String::new(),
            parts_count: Some(blobs.len() as i64),
            delete_marker: false,
        };
        let row = match self
            .app
            .store
            .upload_complete(&b, &chain, &i.upload_id, new)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let _ = self.blobs.delete(&written.id).await;
                return Err(store_err(e));
            }
        };
        self.collect_garbage().await;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(b.name.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(quoted(&etag)),
            location: Some(format!("/{}/{}", b.name, i.key)),
            version_id: version_out(&row.version_id),
            ..Default::default()
        }))
    }
}

/// One page of a listing, with common prefixes rolled up.
struct ListPage {
    contents: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
    truncated: bool,
    /// The last key or common prefix returned (the next marker).
    last: Option<String>,
    max_keys: i32,
}

/// The smallest string greater than every string starting with `p`.
fn after_prefix(p: &str) -> String {
    // Keys are compared as UTF-8 bytes: appending U+10FFFF sorts after every continuation.
    format!("{p}\u{10FFFF}")
}

async fn list_page(
    app: &AppRef,
    b: &BucketRow,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: Option<i32>,
) -> S3Result<ListPage> {
    let max = max_keys.unwrap_or(1000).clamp(0, 1000);
    let mut page = ListPage {
        contents: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
        max_keys: max,
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    // A marker that is a common prefix resumes after everything under it.
    let mut cursor = match delimiter {
        Some(d)
            if after.starts_with(prefix)
                && after.len() > prefix.len()
                && after[prefix.len()..].ends_with(d) =>
        {
            after_prefix(after)
        }
        _ => after.to_string(),
    };
    loop {
        let rows = app
            .store
            .object_list(b.id, prefix, &cursor, 1000)
            .await
            .map_err(internal)?;
        if rows.is_empty() {
            return Ok(page);
        }
        let mut skip_to: Option<String> = None;
        for r in rows {
            let n = (page.contents.len() + page.prefixes.len()) as i32;
            if n >= max {
                page.truncated = true;
                return Ok(page);
            }
            if let Some(d) = delimiter {
                if let Some(pos) = r.key[prefix.len()..].find(d) {
                    let cp = r.key[..prefix.len() + pos + d.len()].to_string();
                    page.last = Some(cp.clone());
                    page.prefixes.push(CommonPrefix {
                        prefix: Some(cp.clone()),
                    });
                    skip_to = Some(after_prefix(&cp));
                    break;
                }
            }
            page.last = Some(r.key.clone());
            cursor = r.key.clone();
            page.contents.push(Object {
                e_tag: Some(quoted(&r.etag)),
                key: Some(r.key),
                last_modified: timestamp(&r.last_modified),
                size: Some(r.size),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            });
        }
        if let Some(s) = skip_to {
            cursor = s;
        }
    }
}

fn encode_token(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

/// The stored ACL (JSON) from a canned ACL or grant headers; XML bodies are not supported.
fn acl_from_request(
    canned: Option<&str>,
    grants: [Option<&str>; 5],
    xml: bool,
) -> S3Result<String> {
    if xml {
        return Err(s3_error!(
            NotImplemented,
            "set ACLs with x-amz-acl or x-amz-grant-* headers; AccessControlPolicy bodies are not supported"
        ));
    }
    let acl = match canned {
        Some(c) => policy::Acl::canned(
            c.parse::<policy::CannedAcl>()
                .map_err(|_| s3_error!(InvalidArgument, "unknown canned ACL {c}"))?,
        ),
        None => {
            let [read, write, read_acp, write_acp, full] = grants;
            policy::Acl::from_grant_headers(read, write, read_acp, write_acp, full)
                .map_err(|e| s3_error!(InvalidArgument, "{e}"))?
        }
    };
    serde_json::to_string(&acl).map_err(internal)
}

fn owner_of(b: &BucketRow) -> Owner {
    Owner {
        display_name: Some(format!("project {}", b.project_id)),
        id: Some(format!("arn:aws:iam::{}:root", b.project_id)),
    }
}

/// S3's view of a stored ACL (the owner's full control first, as S3 lists it).
fn grants_of(acl: &str) -> Vec<Grant> {
    let acl: policy::Acl = serde_json::from_str(acl).unwrap_or_default();
    let mut out = vec![Grant {
        grantee: Some(Grantee {
            display_name: Some("owner".into()),
            email_address: None,
            id: Some("owner".into()),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    for (who, perm) in &acl.grants {
        let (id, uri, ty) = match who {
            policy::Grantee::Owner => continue,
            policy::Grantee::Project(p) => (
                Some(format!("arn:aws:iam::{p}:root")),
                None,
                Type::CANONICAL_USER,
            ),
            policy::Grantee::User(u) => (Some(u.clone()), None, Type::CANONICAL_USER),
            policy::Grantee::AllUsers => (
                None,
                Some("http://acs.amazonaws.com/groups/global/AllUsers".to_string()),
                Type::GROUP,
            ),
            policy::Grantee::AuthenticatedUsers => (
                None,
                Some("http://acs.amazonaws.com/groups/global/AuthenticatedUsers".to_string()),
                Type::GROUP,
            ),
        };
        out.push(Grant {
            grantee: Some(Grantee {
                display_name: None,
                email_address: None,
                id,
                type_: Type::from_static(ty),
                uri,
            }),
            permission: Some(Permission::from(perm.as_str().to_string())),
        });
    }
    out
}
