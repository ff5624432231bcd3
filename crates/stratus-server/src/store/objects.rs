//! Object storage metadata: buckets, object versions, multipart uploads, and the queue of
//! blobs to remove once the transaction that let go of them has committed.
//!
//! Quotas: every object version (and delete marker) counts one `objects`; its size counts
//! toward `object_storage_bytes`; both are charged to the project, every VDC above it and
//! the bucket, in the same transaction as the row.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use stratus_api::QuotaResource;
use uuid::Uuid;

use super::quotas::QuotaDelta;
use super::{col_i64, col_opt_str, col_str, col_uuid, is_unique_violation, now_text, Store};
use crate::error::{Error, Result};

type Tx = Transaction<'static, Any>;

const BUCKET_COLS: &str =
    "id, name, project_id, vdc_id, region, versioning, acl, policy, lifecycle, \
    quota_bytes, quota_objects, used_bytes, used_objects, read_requests, write_requests, created_by, \
    created_at, updated_at";

#[derive(Debug, Clone)]
pub struct BucketRow {
    pub id: Uuid,
    pub name: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub region: String,
    /// '' (never enabled), 'Enabled' or 'Suspended'.
    pub versioning: String,
    pub acl: String,
    pub policy: Option<String>,
    pub lifecycle: Option<String>,
    pub quota_bytes: i64,
    pub quota_objects: i64,
    pub used_bytes: i64,
    pub used_objects: i64,
    pub read_requests: i64,
    pub write_requests: i64,
    pub created_by: String,
    pub created_at: String,
}

fn bucket_from_row(r: &AnyRow) -> Result<BucketRow> {
    Ok(BucketRow {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        project_id: col_uuid(r, "project_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        region: col_str(r, "region")?,
        versioning: col_str(r, "versioning")?,
        acl: col_str(r, "acl")?,
        policy: col_opt_str(r, "policy")?,
        lifecycle: col_opt_str(r, "lifecycle")?,
        quota_bytes: col_i64(r, "quota_bytes")?,
        quota_objects: col_i64(r, "quota_objects")?,
        used_bytes: col_i64(r, "used_bytes")?,
        used_objects: col_i64(r, "used_objects")?,
        read_requests: col_i64(r, "read_requests")?,
        write_requests: col_i64(r, "write_requests")?,
        created_by: col_str(r, "created_by")?,
        created_at: col_str(r, "created_at")?,
    })
}

const OBJECT_COLS: &str =
    "id, bucket_id, key, version_id, is_latest, delete_marker, blob_id, size, \
    etag, headers, checksums, acl, tags, parts_count, last_modified";

/// One version of an object (or a delete marker).
#[derive(Debug, Clone)]
pub struct ObjectRow {
    pub id: Uuid,
    pub bucket_id: Uuid,
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub blob_id: Option<String>,
    pub size: i64,
    pub etag: String,
    /// Content-Type, Content-Encoding, user metadata… (JSON object of strings).
    pub headers: String,
    /// Checksums by algorithm (JSON object: "CRC32" → base64).
    pub checksums: String,
    pub acl: String,
    pub tags: String,
    pub parts_count: Option<i64>,
    pub last_modified: String,
}

fn object_from_row(r: &AnyRow) -> Result<ObjectRow> {
    Ok(ObjectRow {
        id: col_uuid(r, "id")?,
        bucket_id: col_uuid(r, "bucket_id")?,
        key: col_str(r, "key")?,
        version_id: col_str(r, "version_id")?,
        is_latest: col_i64(r, "is_latest")? != 0,
        delete_marker: col_i64(r, "delete_marker")? != 0,
        blob_id: col_opt_str(r, "blob_id")?,
        size: col_i64(r, "size")?,
        etag: col_str(r, "etag")?,
        headers: col_str(r, "headers")?,
        checksums: col_str(r, "checksums")?,
        acl: col_str(r, "acl")?,
        tags: col_str(r, "tags")?,
        parts_count: r.try_get::<Option<i64>, _>("parts_count").ok().flatten(),
        last_modified: col_str(r, "last_modified")?,
    })
}

/// A new object version to record (its blob is already durable).
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub key: String,
    pub blob_id: Option<String>,
    pub size: i64,
    pub etag: String,
    pub headers: String,
    pub checksums: String,
    pub acl: String,
    pub tags: String,
    pub parts_count: Option<i64>,
    pub delete_marker: bool,
}

/// What a delete did.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// The version removed or the delete marker created.
    pub version_id: Option<String>,
    pub delete_marker: bool,
}

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub id: String,
    pub bucket_id: Uuid,
    pub key: String,
    pub headers: String,
    pub acl: String,
    pub checksum_algorithm: Option<String>,
    pub created_by: String,
    pub initiated_at: String,
}

#[derive(Debug, Clone)]
pub struct PartRow {
    pub part_number: i64,
    pub blob_id: String,
    pub size: i64,
    pub etag: String,
    pub md5: String,
    pub checksums: String,
    pub last_modified: String,
}

fn deltas(bytes: i64, objects: i64) -> [QuotaDelta; 2] {
    [
        QuotaDelta {
            resource: QuotaResource::ObjectStorageBytes,
            amount: bytes,
        },
        QuotaDelta {
            resource: QuotaResource::Objects,
            amount: objects,
        },
    ]
}

/// A new version id: sortable by time, unique.
pub fn new_version_id() -> String {
    let t = chrono::Utc::now().timestamp_micros();
    format!("{t:016x}{}", &Uuid::new_v4().simple().to_string()[..16])
}

impl Store {
    // ------------------------------------------------------------ buckets

    #[allow(clippy::too_many_arguments)]
    pub async fn bucket_create(
        &self,
        name: &str,
        project: Uuid,
        vdc: Uuid,
        chain: &[Uuid],
        region: &str,
        acl: &str,
        created_by: &str,
    ) -> Result<BucketRow> {
        let mut tx = self.db.write.begin().await?;
        Store::quota_charge(
            &mut tx,
            chain,
            &[QuotaDelta {
                resource: QuotaResource::Buckets,
                amount: 1,
            }],
        )
        .await?;
        let now = now_text();
        sqlx::query(&format!(
            "INSERT INTO buckets ({BUCKET_COLS}) VALUES ($1, $2, $3, $4, $5, '', $6, NULL, NULL, -1, -1, 0, 0, 0, 0, $7, $8, $8)"
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(name)
        .bind(project.to_string())
        .bind(vdc.to_string())
        .bind(region)
        .bind(acl)
        .bind(created_by)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("bucket {name} already exists"))
            } else {
                e.into()
            }
        })?;
        tx.commit().await?;
        self.bucket_get(name)
            .await?
            .ok_or_else(|| Error::internal("bucket vanished after insert"))
    }

    pub async fn bucket_get(&self, name: &str) -> Result<Option<BucketRow>> {
        let row = sqlx::query(&format!(
            "SELECT {BUCKET_COLS} FROM buckets WHERE name = $1 AND {}",
            super::recycle::not_recycled("id")
        ))
        .bind(name)
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| bucket_from_row(&r)).transpose()
    }

    pub async fn bucket_by_id(&self, id: Uuid) -> Result<Option<BucketRow>> {
        let row = sqlx::query(&format!("SELECT {BUCKET_COLS} FROM buckets WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| bucket_from_row(&r)).transpose()
    }

    /// Every bucket (the caller filters by visibility; a platform has hundreds, not millions).
    pub async fn bucket_list(&self) -> Result<Vec<BucketRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {BUCKET_COLS} FROM buckets WHERE {} ORDER BY name",
            super::recycle::not_recycled("id")
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(bucket_from_row).collect()
    }

    pub async fn bucket_object_count(&self, id: Uuid) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE bucket_id = $1")
                .bind(id.to_string())
                .fetch_one(&self.db.read)
                .await?,
        )
    }

    /// Delete an empty bucket; in-progress multipart uploads go with it.
    pub async fn bucket_delete(&self, b: &BucketRow, chain: &[Uuid]) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE bucket_id = $1")
            .bind(b.id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(Error::conflict("BucketNotEmpty"));
        }
        let uploads: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM multipart_uploads WHERE bucket_id = $1")
                .bind(b.id.to_string())
                .fetch_all(&mut *tx)
                .await?;
        for (u,) in uploads {
            drop_upload(&mut tx, &u).await?;
        }
        Store::quota_charge(
            &mut tx,
            chain,
            &[QuotaDelta {
                resource: QuotaResource::Buckets,
                amount: -1,
            }],
        )
        .await?;
        sqlx::query("DELETE FROM buckets WHERE id = $1")
            .bind(b.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Set one of the bucket's configuration columns (versioning, acl, policy, lifecycle).
    pub async fn bucket_set(
        &self,
        id: Uuid,
        column: BucketSetting,
        value: Option<&str>,
    ) -> Result<()> {
        let col = match column {
            BucketSetting::Versioning => "versioning",
            BucketSetting::Acl => "acl",
            BucketSetting::Policy => "policy",
            BucketSetting::Lifecycle => "lifecycle",
        };
        sqlx::query(&format!(
            "UPDATE buckets SET {col} = $1, updated_at = $2 WHERE id = $3"
        ))
        .bind(value)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Add request counts gathered in memory.
    pub async fn bucket_count_requests(&self, name: &str, reads: i64, writes: i64) -> Result<()> {
        sqlx::query(
            "UPDATE buckets SET read_requests = read_requests + $1, write_requests = write_requests + $2 WHERE name = $3",
        )
        .bind(reads)
        .bind(writes)
        .bind(name)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn bucket_set_quota(&self, id: Uuid, bytes: i64, objects: i64) -> Result<()> {
        sqlx::query("UPDATE buckets SET quota_bytes = $1, quota_objects = $2, updated_at = $3 WHERE id = $4")
            .bind(bytes)
            .bind(objects)
            .bind(now_text())
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ objects

    /// Record a new version of `o.key` (or replace the unversioned one), charging quota.
    /// Returns the new row; blobs it replaced are queued for removal.
    pub async fn object_put(
        &self,
        b: &BucketRow,
        chain: &[Uuid],
        o: NewObject,
    ) -> Result<ObjectRow> {
        let mut tx = self.db.write.begin().await?;
        let row = object_put_tx(&mut tx, b, chain, o).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The latest version (None if absent or a delete marker) or a given version.
    pub async fn object_get(
        &self,
        bucket: Uuid,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<ObjectRow>> {
        let row = match version {
            Some(v) => {
                sqlx::query(&format!(
                    "SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND key = $2 AND version_id = $3"
                ))
                .bind(bucket.to_string())
                .bind(key)
                .bind(v)
                .fetch_optional(&self.db.read)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND key = $2 AND is_latest = 1"
                ))
                .bind(bucket.to_string())
                .bind(key)
                .fetch_optional(&self.db.read)
                .await?
            }
        };
        row.map(|r| object_from_row(&r)).transpose()
    }

    /// Current objects (not delete markers) with keys after `after` and starting with
    /// `prefix`, in key order (UTF-8 byte order on both backends).
    pub async fn object_list(
        &self,
        bucket: Uuid,
        prefix: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ObjectRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND is_latest = 1 AND delete_marker = 0 \
             AND key > $2 AND key >= $3 AND substr(key, 1, CAST($4 AS INTEGER)) = $3 ORDER BY key LIMIT $5"
        ))
        .bind(bucket.to_string())
        .bind(after)
        .bind(prefix)
        .bind(prefix.chars().count() as i64)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(object_from_row).collect()
    }

    /// Every version and delete marker, by key, newest first within a key.
    pub async fn object_versions(
        &self,
        bucket: Uuid,
        prefix: &str,
        after_key: &str,
        limit: i64,
    ) -> Result<Vec<ObjectRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND key >= $2 AND key >= $3 \
             AND substr(key, 1, CAST($4 AS INTEGER)) = $3 ORDER BY key, last_modified DESC, version_id DESC LIMIT $5"
        ))
        .bind(bucket.to_string())
        .bind(after_key)
        .bind(prefix)
        .bind(prefix.chars().count() as i64)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(object_from_row).collect()
    }

    /// Delete the way S3 does: a version id removes that version; otherwise, with
    /// versioning enabled a delete marker is added; unversioned, the object goes.
    pub async fn object_delete(
        &self,
        b: &BucketRow,
        chain: &[Uuid],
        key: &str,
        version: Option<&str>,
    ) -> Result<Deleted> {
        let mut tx = self.db.write.begin().await?;
        let out = match version {
            Some(v) => {
                let removed = remove_version(&mut tx, b, chain, key, v).await?;
                Deleted {
                    version_id: Some(v.to_string()),
                    delete_marker: removed.is_some_and(|r| r.delete_marker),
                }
            }
            None if b.versioning == "Enabled" || b.versioning == "Suspended" => {
                let marker = object_put_tx(
                    &mut tx,
                    b,
                    chain,
                    NewObject {
                        key: key.to_string(),
                        delete_marker: true,
                        ..Default::default()
                    },
                )
                .await?;
                Deleted {
                    version_id: Some(marker.version_id),
                    delete_marker: true,
                }
            }
            None => {
                remove_version(&mut tx, b, chain, key, "null").await?;
                Deleted::default()
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    /// Replace an object version's ACL or tags.
    pub async fn object_set(&self, id: Uuid, column: ObjectSetting, value: &str) -> Result<()> {
        let col = match column {
            ObjectSetting::Acl => "acl",
            ObjectSetting::Tags => "tags",
        };
        sqlx::query(&format!("UPDATE objects SET {col} = $1 WHERE id = $2"))
            .bind(value)
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ multipart

    pub async fn upload_create(&self, u: &UploadRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO multipart_uploads (id, bucket_id, key, headers, acl, checksum_algorithm, created_by, initiated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&u.id)
        .bind(u.bucket_id.to_string())
        .bind(&u.key)
        .bind(&u.headers)
        .bind(&u.acl)
        .bind(u.checksum_algorithm.as_deref())
        .bind(&u.created_by)
        .bind(&u.initiated_at)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn upload_get(&self, bucket: Uuid, key: &str, id: &str) -> Result<Option<UploadRow>> {
        let row = sqlx::query(
            "SELECT id, bucket_id, key, headers, acl, checksum_algorithm, created_by, initiated_at \
             FROM multipart_uploads WHERE id = $1 AND bucket_id = $2 AND key = $3",
        )
        .bind(id)
        .bind(bucket.to_string())
        .bind(key)
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| upload_from_row(&r)).transpose()
    }

    pub async fn upload_list(
        &self,
        bucket: Uuid,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<UploadRow>> {
        let rows = sqlx::query(
            "SELECT id, bucket_id, key, headers, acl, checksum_algorithm, created_by, initiated_at \
             FROM multipart_uploads WHERE bucket_id = $1 AND substr(key, 1, CAST($2 AS INTEGER)) = $3 \
             ORDER BY key, initiated_at LIMIT $4",
        )
        .bind(bucket.to_string())
        .bind(prefix.chars().count() as i64)
        .bind(prefix)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(upload_from_row).collect()
    }

    /// Record a part, replacing one with the same number (its blob is queued for removal).
    pub async fn part_put(&self, upload: &str, p: &PartRow) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let old: Option<String> = sqlx::query_scalar(
            "SELECT blob_id FROM multipart_parts WHERE upload_id = $1 AND part_number = $2",
        )
        .bind(upload)
        .bind(p.part_number)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(b) = old {
            garbage(&mut tx, &b).await?;
            sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1 AND part_number = $2")
                .bind(upload)
                .bind(p.part_number)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO multipart_parts (upload_id, part_number, blob_id, size, etag, md5, checksums, last_modified) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(upload)
        .bind(p.part_number)
        .bind(&p.blob_id)
        .bind(p.size)
        .bind(&p.etag)
        .bind(&p.md5)
        .bind(&p.checksums)
        .bind(&p.last_modified)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn part_list(&self, upload: &str, after: i64, limit: i64) -> Result<Vec<PartRow>> {
        let rows = sqlx::query(
            "SELECT part_number, blob_id, size, etag, md5, checksums, last_modified FROM multipart_parts \
             WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3",
        )
        .bind(upload)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PartRow {
                    part_number: col_i64(r, "part_number")?,
                    blob_id: col_str(r, "blob_id")?,
                    size: col_i64(r, "size")?,
                    etag: col_str(r, "etag")?,
                    md5: col_str(r, "md5")?,
                    checksums: col_str(r, "checksums")?,
                    last_modified: col_str(r, "last_modified")?,
                })
            })
            .collect()
    }

    /// Finish an upload: the assembled object becomes a version, the parts and the upload
    /// go (their blobs are queued), all in one transaction.
    pub async fn upload_complete(
        &self,
        b: &BucketRow,
        chain: &[Uuid],
        upload: &str,
        o: NewObject,
    ) -> Result<ObjectRow> {
        let mut tx = self.db.write.begin().await?;
        let row = object_put_tx(&mut tx, b, chain, o).await?;
        drop_upload(&mut tx, upload).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn upload_abort(&self, upload: &str) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        drop_upload(&mut tx, upload).await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ blob garbage

    /// Blobs whose rows are gone; the caller removes the files and then [`Self::blob_forget`].
    pub async fn blob_garbage(&self, limit: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT blob_id FROM blob_garbage ORDER BY queued_at LIMIT $1")
                .bind(limit)
                .fetch_all(&self.db.read)
                .await?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }

    pub async fn blob_forget(&self, blob: &str) -> Result<()> {
        sqlx::query("DELETE FROM blob_garbage WHERE blob_id = $1")
            .bind(blob)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Recount of object usage per project, for the quota consistency check.
    pub(crate) async fn object_usage(&self) -> Result<Vec<(String, i64, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT b.project_id, CAST(COALESCE(COUNT(o.id), 0) AS BIGINT), \
             CAST(COALESCE(SUM(o.size), 0) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM buckets b2 WHERE b2.project_id = b.project_id) AS BIGINT) \
             FROM buckets b LEFT JOIN objects o ON o.bucket_id = b.id GROUP BY b.project_id",
        )
        .fetch_all(&self.db.read)
        .await?)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum BucketSetting {
    Versioning,
    Acl,
    Policy,
    Lifecycle,
}

#[derive(Debug, Clone, Copy)]
pub enum ObjectSetting {
    Acl,
    Tags,
}

fn upload_from_row(r: &AnyRow) -> Result<UploadRow> {
    Ok(UploadRow {
        id: col_str(r, "id")?,
        bucket_id: col_uuid(r, "bucket_id")?,
        key: col_str(r, "key")?,
        headers: col_str(r, "headers")?,
        acl: col_str(r, "acl")?,
        checksum_algorithm: col_opt_str(r, "checksum_algorithm")?,
        created_by: col_str(r, "created_by")?,
        initiated_at: col_str(r, "initiated_at")?,
    })
}

async fn garbage(tx: &mut Tx, blob: &str) -> Result<()> {
    sqlx::query("INSERT INTO blob_garbage (blob_id, queued_at) VALUES ($1, $2)")
        .bind(blob)
        .bind(now_text())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn drop_upload(tx: &mut Tx, upload: &str) -> Result<()> {
    let parts: Vec<(String,)> =
        sqlx::query_as("SELECT blob_id FROM multipart_parts WHERE upload_id = $1")
            .bind(upload)
            .fetch_all(&mut **tx)
            .await?;
    for (b,) in parts {
        garbage(tx, &b).await?;
    }
    sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1")
        .bind(upload)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM multipart_uploads WHERE id = $1")
        .bind(upload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Charge (or refund) the project chain and the bucket.
async fn charge(
    tx: &mut Tx,
    b: &BucketRow,
    chain: &[Uuid],
    bytes: i64,
    objects: i64,
) -> Result<()> {
    Store::quota_charge(tx, chain, &deltas(bytes, objects)).await?;
    let done = sqlx::query(
        "UPDATE buckets SET used_bytes = used_bytes + $1, used_objects = used_objects + $2 WHERE id = $3 \
         AND ($1 <= 0 OR quota_bytes < 0 OR used_bytes + $1 <= quota_bytes) \
         AND ($2 <= 0 OR quota_objects < 0 OR used_objects + $2 <= quota_objects)",
    )
    .bind(bytes)
    .bind(objects)
    .bind(b.id.to_string())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::QuotaExceeded(format!(
            "bucket {} is at its quota of {} bytes / {} objects",
            b.name, b.quota_bytes, b.quota_objects
        )));
    }
    Ok(())
}

async fn object_put_tx(
    tx: &mut Tx,
    b: &BucketRow,
    chain: &[Uuid],
    o: NewObject,
) -> Result<ObjectRow> {
    let versioned = b.versioning == "Enabled";
    let version_id = if versioned {
        new_version_id()
    } else {
        "null".to_string()
    };
    // An unversioned write replaces the 'null' version.
    if !versioned {
        remove_version_row(tx, b, chain, &o.key, "null").await?;
    }
    sqlx::query(
        "UPDATE objects SET is_latest = 0 WHERE bucket_id = $1 AND key = $2 AND is_latest = 1",
    )
    .bind(b.id.to_string())
    .bind(&o.key)
    .execute(&mut **tx)
    .await?;
    charge(tx, b, chain, o.size, 1).await?;
    let id = Uuid::new_v4();
    sqlx::query(&format!(
        "INSERT INTO objects ({OBJECT_COLS}) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(id.to_string())
    .bind(b.id.to_string())
    .bind(&o.key)
    .bind(&version_id)
    .bind(o.delete_marker as i64)
    .bind(o.blob_id.as_deref())
    .bind(o.size)
    .bind(&o.etag)
    .bind(&o.headers)
    .bind(&o.checksums)
    .bind(&o.acl)
    .bind(&o.tags)
    .bind(o.parts_count)
    .bind(now_text())
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query(&format!("SELECT {OBJECT_COLS} FROM objects WHERE id = $1"))
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    object_from_row(&row)
}

/// Remove one version row (refunding quota, queueing its blob); no promotion.
async fn remove_version_row(
    tx: &mut Tx,
    b: &BucketRow,
    chain: &[Uuid],
    key: &str,
    version: &str,
) -> Result<Option<ObjectRow>> {
    let row = sqlx::query(&format!(
        "SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND key = $2 AND version_id = $3"
    ))
    .bind(b.id.to_string())
    .bind(key)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row.map(|r| object_from_row(&r)).transpose()? else {
        return Ok(None);
    };
    sqlx::query("DELETE FROM objects WHERE id = $1")
        .bind(row.id.to_string())
        .execute(&mut **tx)
        .await?;
    if let Some(blob) = &row.blob_id {
        garbage(tx, blob).await?;
    }
    charge(tx, b, chain, -row.size, -1).await?;
    Ok(Some(row))
}

/// Remove a version and, if it was the latest, make the newest remaining one latest.
async fn remove_version(
    tx: &mut Tx,
    b: &BucketRow,
    chain: &[Uuid],
    key: &str,
    version: &str,
) -> Result<Option<ObjectRow>> {
    let removed = remove_version_row(tx, b, chain, key, version).await?;
    if removed.as_ref().is_some_and(|r| r.is_latest) {
        let next: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM objects WHERE bucket_id = $1 AND key = $2 \
             ORDER BY last_modified DESC, version_id DESC LIMIT 1",
        )
        .bind(b.id.to_string())
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((id,)) = next {
            sqlx::query("UPDATE objects SET is_latest = 1 WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(removed)
}
