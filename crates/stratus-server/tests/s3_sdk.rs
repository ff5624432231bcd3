//! Object storage driven by the AWS SDK for Rust (`aws-sdk-s3`), a client nobody here wrote:
//! its signing, checksums (it sends CRC32 trailers on uploads by default), paginators,
//! presigning and error parsing are the judges of compatibility.

mod common;

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload,
    CompletedPart, Delete, MetadataDirective, ObjectIdentifier, Tag, Tagging,
    VersioningConfiguration,
};
use aws_sdk_s3::Client as S3;
use common::*;
use serde_json::{json, Value};

/// A member of a fresh project with an access key bound to it, as an SDK client.
struct Dept {
    s3: S3,
    user: String,
    project: String,
}

async fn dept(ts: &TestServer, name: &str) -> Dept {
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let t = tree(&admin, name).await;
    let user = format!("sdk-{}", name.to_lowercase());
    let (_, member) = user_with_role(
        ts,
        &sec,
        &user,
        Some(&t.child),
        Some(("member", "project", &t.project)),
    )
    .await;
    let k: Value = member
        .post("/v1/access-keys", &json!({"project_id": t.project}))
        .await
        .unwrap();
    let s3 = sdk(
        ts,
        k["access_key"]["id"].as_str().unwrap(),
        k["secret_access_key"].as_str().unwrap(),
    );
    Dept {
        s3,
        user,
        project: t.project,
    }
}

fn endpoint(ts: &TestServer) -> String {
    format!("http://{}", ts.server.as_ref().unwrap().s3_addr.unwrap())
}

fn sdk(ts: &TestServer, ak: &str, sk: &str) -> S3 {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("gd-1"))
        .credentials_provider(Credentials::new(ak, sk, None, None, "stratus-test"))
        .endpoint_url(endpoint(ts))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    S3::from_conf(conf)
}

/// The S3 error code of a failed call (panics if it succeeded).
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    r: Result<T, SdkError<E, R>>,
) -> String {
    match r {
        Ok(v) => panic!("expected an S3 error, got {v:?}"),
        Err(e) => e
            .code()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no error code in {e:?}")),
    }
}

/// The HTTP status of a failed call (for answers without a body, like 304).
fn http_status<T: std::fmt::Debug, E: std::fmt::Debug>(
    r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> u16 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .raw_response()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|| panic!("no response in {e:?}")),
    }
}

async fn body(s3: &S3, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// Deterministic data that does not repeat in short cycles.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn sdk_buckets_objects_and_listing() {
    let ts = TestServer::start().await;
    let a = dept(&ts, "A").await;
    let s3 = &a.s3;

    assert_eq!(
        code(s3.create_bucket().bucket("Bad_Name").send().await),
        "InvalidBucketName"
    );
    s3.create_bucket().bucket("sdk-docs").send().await.unwrap();
    assert_eq!(
        code(s3.create_bucket().bucket("sdk-docs").send().await),
        "BucketAlreadyOwnedByYou"
    );
    s3.head_bucket().bucket("sdk-docs").send().await.unwrap();
    assert_eq!(
        http_status(s3.head_bucket().bucket("sdk-none").send().await),
        404
    );
    let names: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert_eq!(names, ["sdk-docs"]);
    s3.get_bucket_location()
        .bucket("sdk-docs")
        .send()
        .await
        .unwrap();

    // An object with metadata and content headers; ranges and conditions on read.
    let put = s3
        .put_object()
        .bucket("sdk-docs")
        .key("reports/2026/q1.txt")
        .body(ByteStream::from_static(b"first quarter report"))
        .content_type("text/plain; charset=utf-8")
        .metadata("department", "finance")
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", hex::encode(md5_of(b"first quarter report"))),
        "the ETag of a single-part object is its MD5"
    );
    let head = s3
        .head_object()
        .bucket("sdk-docs")
        .key("reports/2026/q1.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(20));
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(
        head.metadata()
            .unwrap()
            .get("department")
            .map(String::as_str),
        Some("finance")
    );
    let part = s3
        .get_object()
        .bucket("sdk-docs")
        .key("reports/2026/q1.txt")
        .range("bytes=6-12")
        .send()
        .await
        .unwrap();
    assert_eq!(part.content_range(), Some("bytes 6-12/20"));
    assert_eq!(
        part.body.collect().await.unwrap().into_bytes().as_ref(),
        b"quarter"
    );
    assert_eq!(
        http_status(
            s3.get_object()
                .bucket("sdk-docs")
                .key("reports/2026/q1.txt")
                .if_none_match(&etag)
                .send()
                .await
        ),
        304
    );
    assert_eq!(
        code(
            s3.get_object()
                .bucket("sdk-docs")
                .key("reports/2026/q1.txt")
                .if_match("\"0000\"")
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    assert_eq!(
        code(
            s3.get_object()
                .bucket("sdk-docs")
                .key("reports/2026/q1.txt")
                .range("bytes=100-200")
                .send()
                .await
        ),
        "InvalidRange"
    );
    assert_eq!(
        code(s3.get_object().bucket("sdk-docs").key("nope").send().await),
        "NoSuchKey"
    );

    // Copy with new metadata (REPLACE), then with the source's (COPY).
    s3.copy_object()
        .bucket("sdk-docs")
        .key("archive/q1.txt")
        .copy_source("sdk-docs/reports/2026/q1.txt")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("department", "archive")
        .content_type("text/x-report")
        .send()
        .await
        .unwrap();
    let copied = s3
        .head_object()
        .bucket("sdk-docs")
        .key("archive/q1.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(copied.content_type(), Some("text/x-report"));
    assert_eq!(
        copied
            .metadata()
            .unwrap()
            .get("department")
            .map(String::as_str),
        Some("archive")
    );
    s3.copy_object()
        .bucket("sdk-docs")
        .key("archive/q1-copy.txt")
        .copy_source("sdk-docs/reports/2026/q1.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        body(s3, "sdk-docs", "archive/q1-copy.txt").await,
        b"first quarter report"
    );

    // 25 more objects, listed with a delimiter, and page by page with the paginator.
    for i in 0..25 {
        s3.put_object()
            .bucket("sdk-docs")
            .key(format!("logs/day-{i:02}.log"))
            .body(ByteStream::from(format!("log {i}").into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let top = s3
        .list_objects_v2()
        .bucket("sdk-docs")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = top
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["archive/", "logs/", "reports/"]);
    assert!(top.contents().is_empty());
    let mut pages = s3
        .list_objects_v2()
        .bucket("sdk-docs")
        .prefix("logs/")
        .max_keys(10)
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        page_count += 1;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
    }
    assert_eq!(page_count, 3);
    assert_eq!(keys.len(), 25);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    let after = s3
        .list_objects_v2()
        .bucket("sdk-docs")
        .prefix("logs/")
        .start_after("logs/day-22.log")
        .send()
        .await
        .unwrap();
    assert_eq!(after.key_count(), Some(2));
    let v1 = s3
        .list_objects()
        .bucket("sdk-docs")
        .prefix("logs/")
        .marker("logs/day-20.log")
        .max_keys(3)
        .send()
        .await
        .unwrap();
    let v1_keys: Vec<&str> = v1.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        v1_keys,
        ["logs/day-21.log", "logs/day-22.log", "logs/day-23.log"]
    );
    assert_eq!(v1.is_truncated(), Some(true));

    // A bucket with objects cannot go; batch delete empties it, then it can.
    assert_eq!(
        code(s3.delete_bucket().bucket("sdk-docs").send().await),
        "BucketNotEmpty"
    );
    let all = s3
        .list_objects_v2()
        .bucket("sdk-docs")
        .send()
        .await
        .unwrap();
    let ids: Vec<ObjectIdentifier> = all
        .contents()
        .iter()
        .map(|o| {
            ObjectIdentifier::builder()
                .key(o.key().unwrap())
                .build()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 28);
    let deleted = s3
        .delete_objects()
        .bucket("sdk-docs")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.deleted().len(), 28);
    assert!(deleted.errors().is_empty());
    s3.delete_bucket().bucket("sdk-docs").send().await.unwrap();
    assert_eq!(
        code(
            s3.list_objects_v2()
                .bucket("sdk-docs")
                .send()
                .await
                .map(|_| ())
        ),
        "NoSuchBucket"
    );
    ts.stop().await;
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(data).into()
}

/// CompleteMultipartUpload of `key` in `sdk-big` with `parts`, as given.
async fn complete(
    s3: &S3,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    SdkError<
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
> {
    s3.complete_multipart_upload()
        .bucket("sdk-big")
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
}

#[tokio::test]
async fn sdk_multipart_versioning_and_presigned_urls() {
    let ts = TestServer::start().await;
    let a = dept(&ts, "A").await;
    let s3 = &a.s3;
    s3.create_bucket().bucket("sdk-big").send().await.unwrap();

    // Three parts: 5 MiB, 5 MiB, 1 MiB. The ETag is the MD5 of the part MD5s, "-3".
    let parts_data: Vec<Vec<u8>> = [5 << 20, 5 << 20, 1 << 20]
        .iter()
        .enumerate()
        .map(|(i, n)| pattern(*n, i as u64 + 1))
        .collect();
    let up = s3
        .create_multipart_upload()
        .bucket("sdk-big")
        .key("dataset.bin")
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap().to_string();
    let mut completed = Vec::new();
    for (i, data) in parts_data.iter().enumerate() {
        let n = i as i32 + 1;
        let r = s3
            .upload_part()
            .bucket("sdk-big")
            .key("dataset.bin")
            .upload_id(&upload_id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        completed.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    let listed = s3
        .list_parts()
        .bucket("sdk-big")
        .key("dataset.bin")
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 3);
    assert_eq!(listed.parts()[0].size(), Some(5 << 20));
    let uploads = s3
        .list_multipart_uploads()
        .bucket("sdk-big")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);

    // Completing with parts out of order, or a wrong ETag, is refused and changes nothing.
    let reversed: Vec<CompletedPart> = completed.iter().rev().cloned().collect();
    assert_eq!(
        code(complete(s3, "dataset.bin", &upload_id, reversed).await),
        "InvalidPartOrder"
    );
    let mut wrong = completed.clone();
    wrong[1] = CompletedPart::builder()
        .part_number(2)
        .e_tag("\"00000000000000000000000000000000\"")
        .build();
    assert_eq!(
        code(complete(s3, "dataset.bin", &upload_id, wrong).await),
        "InvalidPart"
    );
    let done = complete(s3, "dataset.bin", &upload_id, completed)
        .await
        .unwrap();
    let mut md5s = Vec::new();
    for p in &parts_data {
        md5s.extend_from_slice(&md5_of(p));
    }
    assert_eq!(
        done.e_tag(),
        Some(format!("\"{}-3\"", hex::encode(md5_of(&md5s))).as_str())
    );
    let whole = body(s3, "sdk-big", "dataset.bin").await;
    assert_eq!(whole, parts_data.concat());
    assert!(s3
        .list_multipart_uploads()
        .bucket("sdk-big")
        .send()
        .await
        .unwrap()
        .uploads()
        .is_empty());

    // A part below 5 MiB that is not the last is refused at completion.
    let small = s3
        .create_multipart_upload()
        .bucket("sdk-big")
        .key("small-parts.bin")
        .send()
        .await
        .unwrap();
    let small_id = small.upload_id().unwrap();
    let mut small_parts = Vec::new();
    for n in 1..=2 {
        let r = s3
            .upload_part()
            .bucket("sdk-big")
            .key("small-parts.bin")
            .upload_id(small_id)
            .part_number(n)
            .body(ByteStream::from(vec![n as u8; 1024]))
            .send()
            .await
            .unwrap();
        small_parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    assert_eq!(
        code(complete(s3, "small-parts.bin", small_id, small_parts).await),
        "EntityTooSmall"
    );
    s3.abort_multipart_upload()
        .bucket("sdk-big")
        .key("small-parts.bin")
        .upload_id(small_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.list_parts()
                .bucket("sdk-big")
                .key("small-parts.bin")
                .upload_id(small_id)
                .send()
                .await
        ),
        "NoSuchUpload"
    );
    assert_eq!(
        http_status(
            s3.head_object()
                .bucket("sdk-big")
                .key("small-parts.bin")
                .send()
                .await
        ),
        404
    );

    // UploadPartCopy: a new object from a byte range of the big one plus a small tail.
    let cp = s3
        .create_multipart_upload()
        .bucket("sdk-big")
        .key("excerpt.bin")
        .send()
        .await
        .unwrap();
    let cp_id = cp.upload_id().unwrap();
    let first = s3
        .upload_part_copy()
        .bucket("sdk-big")
        .key("excerpt.bin")
        .upload_id(cp_id)
        .part_number(1)
        .copy_source("sdk-big/dataset.bin")
        .copy_source_range(format!("bytes=0-{}", (5 << 20) - 1))
        .send()
        .await
        .unwrap();
    let tail = s3
        .upload_part()
        .bucket("sdk-big")
        .key("excerpt.bin")
        .upload_id(cp_id)
        .part_number(2)
        .body(ByteStream::from_static(b"tail"))
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("sdk-big")
        .key("excerpt.bin")
        .upload_id(cp_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(first.copy_part_result().unwrap().e_tag().unwrap())
                        .build(),
                )
                .parts(
                    CompletedPart::builder()
                        .part_number(2)
                        .e_tag(tail.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let excerpt = body(s3, "sdk-big", "excerpt.bin").await;
    assert_eq!(&excerpt[..5 << 20], &parts_data[0][..]);
    assert_eq!(&excerpt[5 << 20..], b"tail");

    // Versioning: two versions, each readable by id; a delete leaves a marker.
    s3.put_bucket_versioning()
        .bucket("sdk-big")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        s3.get_bucket_versioning()
            .bucket("sdk-big")
            .send()
            .await
            .unwrap()
            .status(),
        Some(&BucketVersioningStatus::Enabled)
    );
    let mut versions = Vec::new();
    for text in ["draft", "final"] {
        let r = s3
            .put_object()
            .bucket("sdk-big")
            .key("plan.txt")
            .body(ByteStream::from_static(text.as_bytes()))
            .send()
            .await
            .unwrap();
        versions.push(r.version_id().unwrap().to_string());
    }
    assert_ne!(versions[0], versions[1]);
    let old = s3
        .get_object()
        .bucket("sdk-big")
        .key("plan.txt")
        .version_id(&versions[0])
        .send()
        .await
        .unwrap();
    assert_eq!(old.version_id(), Some(versions[0].as_str()));
    assert_eq!(
        old.body.collect().await.unwrap().into_bytes().as_ref(),
        b"draft"
    );
    let del = s3
        .delete_object()
        .bucket("sdk-big")
        .key("plan.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(
        code(
            s3.get_object()
                .bucket("sdk-big")
                .key("plan.txt")
                .send()
                .await
        ),
        "NoSuchKey"
    );
    let lv = s3
        .list_object_versions()
        .bucket("sdk-big")
        .prefix("plan.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(lv.versions().len(), 2);
    assert_eq!(lv.delete_markers().len(), 1);
    assert_eq!(lv.delete_markers()[0].is_latest(), Some(true));
    s3.delete_object()
        .bucket("sdk-big")
        .key("plan.txt")
        .version_id(del.version_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(body(s3, "sdk-big", "plan.txt").await, b"final");

    // A presigned GET works without credentials until it expires; a tampered one never.
    let http = reqwest::Client::new();
    let url = s3
        .get_object()
        .bucket("sdk-big")
        .key("plan.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let r = http.get(url.uri()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"final");
    let tampered = url.uri().replace("plan.txt", "excerpt.bin");
    let r = http.get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Code>SignatureDoesNotMatch</Code>"));
    let short = s3
        .get_object()
        .bucket("sdk-big")
        .key("plan.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = http.get(short.uri()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Code>AccessDenied</Code>"));
    // A presigned PUT stores an object.
    let put_url = s3
        .put_object()
        .bucket("sdk-big")
        .key("dropbox/form.pdf")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let r = http
        .put(put_url.uri())
        .body(b"%PDF-1.7".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(body(s3, "sdk-big", "dropbox/form.pdf").await, b"%PDF-1.7");
    ts.stop().await;
}

#[tokio::test]
async fn sdk_integrity_tags_and_tenancy() {
    let ts = TestServer::start().await;
    let a = dept(&ts, "A").await;
    let b = dept(&ts, "B").await;
    a.s3.create_bucket().bucket("sdk-a").send().await.unwrap();

    // The SDK computes each checksum (sent as a trailer after the body); the server
    // verifies it and gives it back when asked.
    for (alg, key) in [
        (ChecksumAlgorithm::Crc32, "crc32.bin"),
        (ChecksumAlgorithm::Crc32C, "crc32c.bin"),
        (ChecksumAlgorithm::Sha1, "sha1.bin"),
        (ChecksumAlgorithm::Sha256, "sha256.bin"),
    ] {
        let data = pattern(300_000, key.len() as u64);
        // From a file the SDK streams the body (aws-chunked, checksum in the trailer).
        let file = ts.dir.join(key);
        std::fs::write(&file, &data).unwrap();
        let put =
            a.s3.put_object()
                .bucket("sdk-a")
                .key(key)
                .checksum_algorithm(alg.clone())
                .body(ByteStream::from_path(&file).await.unwrap())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let got =
            a.s3.get_object()
                .bucket("sdk-a")
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
        let (sent, back) = match alg {
            ChecksumAlgorithm::Crc32 => (put.checksum_crc32(), got.checksum_crc32()),
            ChecksumAlgorithm::Crc32C => (put.checksum_crc32_c(), got.checksum_crc32_c()),
            ChecksumAlgorithm::Sha1 => (put.checksum_sha1(), got.checksum_sha1()),
            _ => (put.checksum_sha256(), got.checksum_sha256()),
        };
        assert!(sent.is_some(), "{key}: no checksum in the PUT answer");
        // aws-chunked described the transfer, not the object.
        assert_eq!(got.content_encoding(), None, "{key}");
        assert_eq!(sent, back, "{key}");
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().as_ref(),
            &data[..]
        );
    }
    // A checksum that does not match the data: refused, nothing stored.
    assert_eq!(
        code(
            a.s3.put_object()
                .bucket("sdk-a")
                .key("bad-md5.txt")
                .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
                .body(ByteStream::from_static(b"not empty"))
                .send()
                .await
        ),
        "BadDigest"
    );
    assert_eq!(
        code(
            a.s3.put_object()
                .bucket("sdk-a")
                .key("bad-sha256.txt")
                .checksum_sha256("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
                .body(ByteStream::from_static(b"not empty"))
                .send()
                .await
        ),
        "BadDigest"
    );
    for key in ["bad-md5.txt", "bad-sha256.txt"] {
        assert_eq!(
            http_status(a.s3.head_object().bucket("sdk-a").key(key).send().await),
            404,
            "{key}"
        );
    }

    // Tags.
    a.s3.put_object_tagging()
        .bucket("sdk-a")
        .key("crc32.bin")
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key("classification")
                        .value("internal")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tags =
        a.s3.get_object_tagging()
            .bucket("sdk-a")
            .key("crc32.bin")
            .send()
            .await
            .unwrap();
    assert_eq!(tags.tag_set().len(), 1);
    assert_eq!(tags.tag_set()[0].value(), "internal");

    // Another department's key: no access to A's bucket, not even its listing.
    assert_eq!(
        code(b.s3.list_objects_v2().bucket("sdk-a").send().await),
        "AccessDenied"
    );
    assert_eq!(
        code(
            b.s3.get_object()
                .bucket("sdk-a")
                .key("crc32.bin")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(
            b.s3.put_object()
                .bucket("sdk-a")
                .key("intruder.txt")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(b.s3.create_bucket().bucket("sdk-a").send().await),
        "BucketAlreadyExists"
    );
    let b_buckets = b.s3.list_buckets().send().await.unwrap();
    assert!(b_buckets.buckets().is_empty());
    // A bucket policy grants B's user read on one prefix, and only that.
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": [b.user]},
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::sdk-a/crc32*"}]});
    a.s3.put_bucket_policy()
        .bucket("sdk-a")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let shared =
        b.s3.get_object()
            .bucket("sdk-a")
            .key("crc32.bin")
            .send()
            .await
            .unwrap();
    assert_eq!(shared.content_length(), Some(300_000));
    assert_eq!(
        code(
            b.s3.get_object()
                .bucket("sdk-a")
                .key("sha1.bin")
                .send()
                .await
        ),
        "AccessDenied"
    );
    // A wrong secret is a signature error, not a success and not a 500.
    let forged = sdk(&ts, "AKIDNOTAKEY000000000", "secret");
    assert_eq!(
        code(forged.list_buckets().send().await),
        "InvalidAccessKeyId"
    );
    let _ = (a.project, b.project);
    ts.stop().await;
}

/// With the recycle bin on, DeleteBucket keeps the (empty) bucket in the bin: S3 sees no
/// such bucket but its name stays taken; restoring gives it back with its settings, and a
/// purge frees the name.
#[tokio::test]
async fn sdk_deleted_buckets_go_to_the_recycle_bin() {
    let ts = TestServer::start_with(|c| c.recycle_bin.retention_secs = 3600).await;
    let a = dept(&ts, "A").await;
    let s3 = &a.s3;
    let member = ts.login(&a.user, USER_PW).await;
    s3.create_bucket().bucket("sdk-bin").send().await.unwrap();
    s3.put_object()
        .bucket("sdk-bin")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(s3.delete_bucket().bucket("sdk-bin").send().await),
        "BucketNotEmpty"
    );
    s3.delete_object()
        .bucket("sdk-bin")
        .key("k")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("sdk-bin").send().await.unwrap();
    assert_eq!(
        http_status(s3.head_bucket().bucket("sdk-bin").send().await),
        404
    );
    assert_eq!(
        code(s3.create_bucket().bucket("sdk-bin").send().await),
        "BucketAlreadyExists",
        "the name is the bin's until it is purged"
    );
    let listed = s3.list_buckets().send().await.unwrap();
    assert!(listed.buckets().iter().all(|b| b.name() != Some("sdk-bin")));
    let kept: Vec<Value> = member
        .get("/v1/recycle-bin", &[("project_id", a.project.clone())])
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (&kept[0]["type"], &kept[0]["name"]),
        (&json!("bucket"), &json!("sdk-bin"))
    );
    assert_eq!(kept[0]["deleted_by"], a.user);
    let bid = kept[0]["id"].as_str().unwrap().to_string();

    let _: Value = member
        .post(&format!("/v1/recycle-bin/{bid}/restore"), &json!({}))
        .await
        .unwrap();
    s3.head_bucket().bucket("sdk-bin").send().await.unwrap();
    s3.delete_bucket().bucket("sdk-bin").send().await.unwrap();
    member
        .delete(&format!("/v1/recycle-bin/{bid}"))
        .await
        .unwrap();
    s3.create_bucket().bucket("sdk-bin").send().await.unwrap();
    ts.stop().await;
}
