use std::collections::HashMap;

use sqlx::any::AnyRow;
use stratus_api::Flavor;
use uuid::Uuid;

use super::{col_bool, col_i64, col_str, col_time, col_uuid, is_unique_violation, now_text, Store};
use crate::error::{Error, Result};

const COLS: &str =
    "id, name, description, vcpus, memory_mib, disk_gib, builtin, created_at, updated_at";

/// The spec's reference flavors (all with a 100 GB root disk): name, vCPUs, memory GiB.
pub const BUILTIN_FLAVORS: [(&str, i64, i64); 10] = [
    ("basic.2c4g", 2, 4),
    ("basic.4c8g", 4, 8),
    ("general.8c16g", 8, 16),
    ("general.16c32g", 16, 32),
    ("memory.2c8g", 2, 8),
    ("memory.4c16g", 4, 16),
    ("memory.8c32g", 8, 32),
    ("memory.16c64g", 16, 64),
    ("compute.32c64g", 32, 64),
    ("compute.32c128g", 32, 128),
];

fn flavor_from_row(row: &AnyRow) -> Result<Flavor> {
    Ok(Flavor {
        id: col_uuid(row, "id")?,
        name: col_str(row, "name")?,
        description: col_str(row, "description")?,
        vcpus: col_i64(row, "vcpus")?,
        memory_mib: col_i64(row, "memory_mib")?,
        disk_gib: col_i64(row, "disk_gib")?,
        builtin: col_bool(row, "builtin")?,
        vdc_ids: Vec::new(),
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    })
}

pub struct NewFlavor<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub builtin: bool,
    pub vdc_ids: &'a [Uuid],
}

impl Store {
    pub async fn flavor_create(&self, f: NewFlavor<'_>) -> Result<Flavor> {
        let id = Uuid::new_v4();
        let now = now_text();
        let mut tx = self.db.write.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO flavors ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
        ))
        .bind(id.to_string())
        .bind(f.name)
        .bind(f.description)
        .bind(f.vcpus)
        .bind(f.memory_mib)
        .bind(f.disk_gib)
        .bind(f.builtin as i64)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("name: a flavor named {:?} already exists", f.name))
            } else {
                e.into()
            }
        })?;
        for v in f.vdc_ids {
            sqlx::query("INSERT INTO flavor_vdcs (flavor_id, vdc_id) VALUES ($1, $2)")
                .bind(id.to_string())
                .bind(v.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.flavor_get(id)
            .await?
            .ok_or_else(|| Error::internal("flavor vanished after insert"))
    }

    /// Every flavor with its VDC restrictions (the table is small: tens of rows).
    pub async fn flavor_list(&self) -> Result<Vec<Flavor>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM flavors ORDER BY vcpus, memory_mib, name"
        ))
        .fetch_all(&self.db.read)
        .await?;
        let mut flavors = rows
            .iter()
            .map(flavor_from_row)
            .collect::<Result<Vec<_>>>()?;
        let links: Vec<(String, String)> =
            sqlx::query_as("SELECT flavor_id, vdc_id FROM flavor_vdcs")
                .fetch_all(&self.db.read)
                .await?;
        let mut by_flavor: HashMap<String, Vec<Uuid>> = HashMap::new();
        for (f, v) in links {
            if let Ok(v) = Uuid::parse_str(&v) {
                by_flavor.entry(f).or_default().push(v);
            }
        }
        for f in &mut flavors {
            f.vdc_ids = by_flavor.remove(&f.id.to_string()).unwrap_or_default();
            f.vdc_ids.sort();
        }
        Ok(flavors)
    }

    pub async fn flavor_get(&self, id: Uuid) -> Result<Option<Flavor>> {
        Ok(self.flavor_list().await?.into_iter().find(|f| f.id == id))
    }

    pub async fn flavor_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query("DELETE FROM flavor_vdcs WHERE flavor_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM flavors WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Add any missing reference flavor (idempotent; runs at every start).
    pub async fn flavor_seed_builtins(&self) -> Result<()> {
        let existing: Vec<String> = self
            .flavor_list()
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect();
        for (name, vcpus, mem_gib) in BUILTIN_FLAVORS {
            if existing.iter().any(|n| n == name) {
                continue;
            }
            let description =
                format!("{vcpus} vCPU, {mem_gib} GiB memory, 100 GB root disk (reference flavor)");
            self.flavor_create(NewFlavor {
                name,
                description: &description,
                vcpus,
                memory_mib: mem_gib * 1024,
                disk_gib: 100,
                builtin: true,
                vdc_ids: &[],
            })
            .await?;
        }
        Ok(())
    }
}
