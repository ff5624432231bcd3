//! Images (IMS) and key pairs.

use sqlx::any::AnyRow;
use stratus_api::{DiskFormat, Image, ImageStatus, ImageVisibility, KeyPair, QuotaResource};
use uuid::Uuid;

use super::quotas::QuotaDelta;
use super::{
    col_i64, col_opt_uuid, col_str, col_time, col_uuid, is_unique_violation, now_text, Arg, Conds,
    Paging, Store,
};
use crate::authz::Visibility;
use crate::error::{Error, Result};

const COLS: &str = "id, name, description, project_id, vdc_id, visibility, status, status_reason, \
    disk_format, os_type, size_bytes, virtual_size_bytes, min_disk_gib, checksum_sha256, stored_sha256, \
    source_instance_id, quota_held, created_at, updated_at";

/// An image with what only the server needs.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub api: Image,
    pub vdc_id: Option<Uuid>,
    pub stored_sha256: String,
    pub quota_held: bool,
}

fn visibility_str(v: ImageVisibility) -> &'static str {
    match v {
        ImageVisibility::Public => "public",
        ImageVisibility::Private => "private",
        ImageVisibility::Shared => "shared",
    }
}

fn status_str(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::Queued => "queued",
        ImageStatus::Saving => "saving",
        ImageStatus::Active => "active",
        ImageStatus::Error => "error",
    }
}

fn image_from_row(row: &AnyRow) -> Result<ImageRow> {
    let vis = match col_str(row, "visibility")?.as_str() {
        "public" => ImageVisibility::Public,
        "shared" => ImageVisibility::Shared,
        _ => ImageVisibility::Private,
    };
    let status = match col_str(row, "status")?.as_str() {
        "queued" => ImageStatus::Queued,
        "saving" => ImageStatus::Saving,
        "active" => ImageStatus::Active,
        _ => ImageStatus::Error,
    };
    let fmt = col_str(row, "disk_format")?;
    Ok(ImageRow {
        api: Image {
            id: col_uuid(row, "id")?,
            name: col_str(row, "name")?,
            description: col_str(row, "description")?,
            project_id: col_opt_uuid(row, "project_id")?,
            visibility: vis,
            status,
            status_reason: col_str(row, "status_reason")?,
            disk_format: DiskFormat::parse(&fmt)
                .ok_or_else(|| Error::internal(format!("bad disk format {fmt:?}")))?,
            os_type: col_str(row, "os_type")?,
            size_bytes: col_i64(row, "size_bytes")?,
            virtual_size_bytes: col_i64(row, "virtual_size_bytes")?,
            min_disk_gib: col_i64(row, "min_disk_gib")?,
            checksum_sha256: col_str(row, "checksum_sha256")?,
            source_instance_id: col_opt_uuid(row, "source_instance_id")?,
            shared_with: Vec::new(),
            created_at: col_time(row, "created_at")?,
            updated_at: col_time(row, "updated_at")?,
        },
        vdc_id: col_opt_uuid(row, "vdc_id")?,
        stored_sha256: col_str(row, "stored_sha256")?,
        quota_held: col_i64(row, "quota_held")? != 0,
    })
}

pub fn image_quota(sign: i64) -> [QuotaDelta; 1] {
    [QuotaDelta {
        resource: QuotaResource::Images,
        amount: sign,
    }]
}

/// A new image record.
pub struct NewImage<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// (project, its VDC chain with the project first) — absent for public images.
    pub owner: Option<(Uuid, Uuid, &'a [Uuid])>,
    pub visibility: ImageVisibility,
    pub disk_format: DiskFormat,
    pub os_type: &'a str,
    pub min_disk_gib: i64,
    pub checksum_sha256: &'a str,
    pub source_instance_id: Option<Uuid>,
    pub status: ImageStatus,
    pub created_by: &'a str,
}

impl Store {
    pub async fn image_create(&self, n: NewImage<'_>) -> Result<ImageRow> {
        let id = Uuid::new_v4();
        let now = now_text();
        let mut tx = self.db.write.begin().await?;
        if let Some((_, _, chain)) = n.owner {
            Store::quota_charge(&mut tx, chain, &image_quota(1)).await?;
        }
        sqlx::query(&format!(
            "INSERT INTO images ({COLS}, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8, $9, 0, 0, $10, $11, '', $12, $13, $14, $14, $15)"
        ))
        .bind(id.to_string())
        .bind(n.name)
        .bind(n.description)
        .bind(n.owner.map(|o| o.0.to_string()))
        .bind(n.owner.map(|o| o.1.to_string()))
        .bind(visibility_str(n.visibility))
        .bind(status_str(n.status))
        .bind(n.disk_format.as_str())
        .bind(n.os_type)
        .bind(n.min_disk_gib)
        .bind(n.checksum_sha256)
        .bind(n.source_instance_id.map(|i| i.to_string()))
        .bind(n.owner.is_some() as i64)
        .bind(&now)
        .bind(n.created_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.image_get(id)
            .await?
            .ok_or_else(|| Error::internal("image vanished after insert"))
    }

    pub async fn image_get(&self, id: Uuid) -> Result<Option<ImageRow>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM images WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        let Some(mut img) = row.map(|r| image_from_row(&r)).transpose()? else {
            return Ok(None);
        };
        img.api.shared_with = self.image_members(id).await?;
        Ok(Some(img))
    }

    pub async fn image_members(&self, id: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT project_id FROM image_members WHERE image_id = $1 ORDER BY project_id",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s,)| Uuid::parse_str(&s).ok())
            .collect())
    }

    /// Images the caller may use: public ones, those of projects it sees, and those shared
    /// with projects it sees.
    pub async fn image_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        visibility: Option<ImageVisibility>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Image>, Option<String>)> {
        let mut c = Conds::new();
        if !vis.all {
            // Own (the project's VDC or the project itself is in scope), public, or shared
            // with a project in scope.
            let in_vdcs = format!(
                "SELECT descendant_id FROM vdc_closure WHERE {}",
                Conds::in_list("ancestor_id", vis.vdcs.len())
            );
            let scope_args = || {
                vis.vdcs
                    .iter()
                    .chain(vis.projects.iter())
                    .map(|v| Arg::from(*v))
                    .collect::<Vec<_>>()
            };
            c.and(
                format!(
                    "visibility = 'public' OR vdc_id IN ({in_vdcs}) OR {} OR (visibility = 'shared' AND id IN \
                     (SELECT m.image_id FROM image_members m JOIN projects p ON p.id = m.project_id WHERE \
                     p.vdc_id IN ({in_vdcs}) OR {}))",
                    Conds::in_list("project_id", vis.projects.len()),
                    Conds::in_list("m.project_id", vis.projects.len())
                ),
                scope_args().into_iter().chain(scope_args()),
            );
        }
        if let Some(p) = project {
            c.and(
                "project_id = ? OR id IN (SELECT image_id FROM image_members WHERE project_id = ?)",
                [Arg::from(p), Arg::from(p)],
            );
        }
        if let Some(v) = visibility {
            c.and("visibility = ?", [Arg::from(visibility_str(v))]);
        }
        if let Some(n) = name {
            c.and(super::NAME_LIKE, [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM images"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| image_from_row(r).map(|i| i.api))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// An image by exact name among those with `ids` visible… (small helper for create).
    pub async fn image_ids_named(&self, name: &str) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM images WHERE name = $1 ORDER BY created_at")
                .bind(name)
                .fetch_all(&self.db.read)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s,)| Uuid::parse_str(&s).ok())
            .collect())
    }

    /// Move an image between states; `from` guards against concurrent uploads.
    pub async fn image_set_status(
        &self,
        id: Uuid,
        from: &[ImageStatus],
        to: ImageStatus,
        reason: &str,
    ) -> Result<bool> {
        // At most three statuses: pad the list by repeating the first.
        let pick = |i: usize| status_str(from.get(i).or(from.first()).copied().unwrap_or(to));
        let done = sqlx::query(
            "UPDATE images SET status = $1, status_reason = $2, updated_at = $3 \
             WHERE id = $4 AND status IN ($5, $6, $7)",
        )
        .bind(status_str(to))
        .bind(reason)
        .bind(now_text())
        .bind(id.to_string())
        .bind(pick(0))
        .bind(pick(1))
        .bind(pick(2))
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The data arrived and was converted: record its facts and make it active.
    pub async fn image_activate(
        &self,
        id: Uuid,
        size: i64,
        virtual_size: i64,
        checksum: &str,
        stored_sha256: &str,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query(
            "UPDATE images SET status = 'active', status_reason = '', size_bytes = $1, virtual_size_bytes = $2, \
             checksum_sha256 = $3, stored_sha256 = $4, \
             min_disk_gib = CASE WHEN min_disk_gib * 1073741824 < $2 THEN ($2 + 1073741823) / 1073741824 ELSE min_disk_gib END, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(size)
        .bind(virtual_size)
        .bind(checksum)
        .bind(stored_sha256)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        // A project's own image is metered for the bytes it stores.
        let owner: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT project_id, vdc_id FROM images WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((Some(p), Some(v))) = owner {
            if let (Ok(p), Ok(v)) = (Uuid::parse_str(&p), Uuid::parse_str(&v)) {
                super::instances::metering_event(
                    &mut tx,
                    "image",
                    id,
                    p,
                    v,
                    "created",
                    serde_json::json!({"size_bytes": size}),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn image_update(
        &self,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
        visibility: Option<ImageVisibility>,
        min_disk_gib: Option<i64>,
        members: Option<&[Uuid]>,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query(
            "UPDATE images SET name = COALESCE($1, name), description = COALESCE($2, description), \
             visibility = COALESCE($3, visibility), min_disk_gib = COALESCE($4, min_disk_gib), \
             updated_at = $5 WHERE id = $6",
        )
        .bind(name)
        .bind(description)
        .bind(visibility.map(visibility_str))
        .bind(min_disk_gib)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(m) = members {
            sqlx::query("DELETE FROM image_members WHERE image_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            for p in m {
                sqlx::query("INSERT INTO image_members (image_id, project_id) VALUES ($1, $2)")
                    .bind(id.to_string())
                    .bind(p.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Delete the record and refund the owner's image quota.
    pub async fn image_delete(&self, img: &ImageRow, chain: &[Uuid]) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        if img.quota_held && !chain.is_empty() {
            Store::quota_charge(&mut tx, chain, &image_quota(-1)).await?;
        }
        sqlx::query("DELETE FROM image_members WHERE image_id = $1")
            .bind(img.api.id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM images WHERE id = $1")
            .bind(img.api.id.to_string())
            .execute(&mut *tx)
            .await?;
        if let (Some(p), Some(v)) = (img.api.project_id, img.vdc_id) {
            super::instances::metering_event(
                &mut tx,
                "image",
                img.api.id,
                p,
                v,
                "deleted",
                serde_json::json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Recount of image usage per project for the quota consistency check.
    pub(crate) async fn image_usage(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT project_id, COUNT(*) FROM images WHERE quota_held = 1 AND project_id IS NOT NULL GROUP BY project_id",
        )
        .fetch_all(&self.db.read)
        .await?)
    }

    // ------------------------------------------------------------ key pairs

    pub async fn keypair_create(
        &self,
        project: Uuid,
        vdc: Uuid,
        name: &str,
        public_key: &str,
        fingerprint: &str,
    ) -> Result<KeyPair> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO keypairs (id, project_id, vdc_id, name, public_key, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(vdc.to_string())
        .bind(name)
        .bind(public_key)
        .bind(fingerprint)
        .bind(now_text())
        .execute(&self.db.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!(
                    "name: the project already has a key pair named {name:?}"
                ))
            } else {
                e.into()
            }
        })?;
        self.keypair_get(id)
            .await?
            .ok_or_else(|| Error::internal("key pair vanished after insert"))
    }

    pub async fn keypair_get(&self, id: Uuid) -> Result<Option<KeyPair>> {
        let row = sqlx::query("SELECT id, project_id, name, public_key, fingerprint, created_at FROM keypairs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| keypair_from_row(&r)).transpose()
    }

    pub async fn keypair_by_name(&self, project: Uuid, name: &str) -> Result<Option<KeyPair>> {
        let row = sqlx::query("SELECT id, project_id, name, public_key, fingerprint, created_at FROM keypairs WHERE project_id = $1 AND name = $2")
            .bind(project.to_string())
            .bind(name)
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| keypair_from_row(&r)).transpose()
    }

    pub async fn keypair_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
    ) -> Result<Vec<KeyPair>> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        let (sql, args) = c.render(
            "SELECT id, project_id, name, public_key, fingerprint, created_at FROM keypairs",
            "ORDER BY name, id LIMIT 1000",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(keypair_from_row).collect()
    }

    pub async fn keypair_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM keypairs WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }
}

fn keypair_from_row(r: &AnyRow) -> Result<KeyPair> {
    Ok(KeyPair {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        project_id: col_uuid(r, "project_id")?,
        public_key: col_str(r, "public_key")?,
        fingerprint: col_str(r, "fingerprint")?,
        created_at: col_time(r, "created_at")?,
    })
}
