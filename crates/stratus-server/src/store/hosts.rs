//! Hosts, their agents' join tokens and credentials, and placement (the scheduler's SQL).

use chrono::{Duration, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use stratus_api::{Host, HostFacts, HostState};
use uuid::Uuid;

use super::Store;
use super::{col_bool, col_i64, col_opt_time, col_str, col_time, col_uuid, now_text, time_text};
use crate::config::ComputeConfig;
use crate::error::{Error, Result};

type Tx = Transaction<'static, Any>;

const COLS: &str =
    "id, name, availability_zone, enabled, disabled_reason, facts, cpus, memory_mib, \
    disk_gib, alloc_vcpus, alloc_memory_mib, alloc_disk_gib, instance_count, last_heartbeat_at, \
    created_at, updated_at";

/// What an instance takes from a host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Footprint {
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

fn host_from_row(row: &AnyRow, c: &ComputeConfig) -> Result<Host> {
    let facts: HostFacts = serde_json::from_str(&col_str(row, "facts")?).unwrap_or_default();
    let last = col_opt_time(row, "last_heartbeat_at")?;
    let up = last.is_some_and(|t| Utc::now() - t < Duration::seconds(c.host_down_after_secs));
    let cpus = col_i64(row, "cpus")?;
    let mem = col_i64(row, "memory_mib")?;
    let disk = col_i64(row, "disk_gib")?;
    Ok(Host {
        id: col_uuid(row, "id")?,
        name: col_str(row, "name")?,
        availability_zone: col_str(row, "availability_zone")?,
        state: if up { HostState::Up } else { HostState::Down },
        enabled: col_bool(row, "enabled")?,
        disabled_reason: col_str(row, "disabled_reason")?,
        facts,
        allocated_vcpus: col_i64(row, "alloc_vcpus")?,
        allocated_memory_mib: col_i64(row, "alloc_memory_mib")?,
        allocated_disk_gib: col_i64(row, "alloc_disk_gib")?,
        capacity_vcpus: (cpus as f64 * c.cpu_allocation_ratio) as i64,
        capacity_memory_mib: (mem as f64 * c.ram_allocation_ratio) as i64,
        capacity_disk_gib: (disk as f64 * c.disk_allocation_ratio) as i64,
        instance_count: col_i64(row, "instance_count")?,
        last_heartbeat_at: last,
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    })
}

impl Store {
    pub async fn join_token_create(
        &self,
        hash: &str,
        az: &str,
        expires_at: chrono::DateTime<Utc>,
        created_by: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO join_tokens (token_hash, availability_zone, expires_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(az)
            .bind(time_text(expires_at))
            .bind(created_by)
            .bind(now_text())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// The availability zone of a valid (unexpired) join token.
    pub async fn join_token_zone(&self, hash: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT availability_zone FROM join_tokens WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(hash)
        .bind(now_text())
        .fetch_optional(&self.db.read)
        .await?)
    }

    pub async fn host_create(
        &self,
        az: &str,
        credential_hash: &str,
        facts: &HostFacts,
        c: &ComputeConfig,
    ) -> Result<Host> {
        let id = Uuid::new_v4();
        let now = now_text();
        sqlx::query(&format!(
            "INSERT INTO hosts ({COLS}, credential_hash, generation, volume_pool_gib) \
             VALUES ($1, $2, $3, 1, '', $4, $5, $6, $7, 0, 0, 0, 0, $8, $8, $8, $9, 1, $10)"
        ))
        .bind(id.to_string())
        .bind(&facts.hostname)
        .bind(az)
        .bind(serde_json::to_string(facts).unwrap_or_default())
        .bind(facts.cpus)
        .bind(facts.memory_mib)
        .bind(facts.disk_gib)
        .bind(&now)
        .bind(credential_hash)
        .bind(facts.volume_pool_gib)
        .execute(&self.db.write)
        .await?;
        self.host_get(id, c)
            .await?
            .ok_or_else(|| Error::internal("host vanished after insert"))
    }

    pub async fn host_by_credential(&self, hash: &str) -> Result<Option<Uuid>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM hosts WHERE credential_hash = $1")
                .bind(hash)
                .fetch_optional(&self.db.read)
                .await?;
        Ok(id.and_then(|s| Uuid::parse_str(&s).ok()))
    }

    /// A heartbeat with fresh facts.
    pub async fn host_heartbeat(&self, id: Uuid, facts: &HostFacts) -> Result<()> {
        let now = now_text();
        let mut tx = self.db.write.begin().await?;
        sqlx::query(
            "UPDATE hosts SET facts = $1, cpus = $2, memory_mib = $3, disk_gib = $4, \
             last_heartbeat_at = $5, updated_at = $5, volume_pool_gib = $7 WHERE id = $6",
        )
        .bind(serde_json::to_string(facts).unwrap_or_default())
        .bind(facts.cpus)
        .bind(facts.memory_mib)
        .bind(facts.disk_gib)
        .bind(&now)
        .bind(id.to_string())
        .bind(facts.volume_pool_gib)
        .execute(&mut *tx)
        .await?;
        // Its instances were unobserved while it was silent; from now on they are seen.
        Store::meter_host_back_tx(&mut tx, &id.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn host_list(&self, c: &ComputeConfig) -> Result<Vec<Host>> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM hosts ORDER BY name, id"))
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(|r| host_from_row(r, c)).collect()
    }

    pub async fn host_get(&self, id: Uuid, c: &ComputeConfig) -> Result<Option<Host>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM hosts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| host_from_row(&r, c)).transpose()
    }

    pub async fn host_update(
        &self,
        id: Uuid,
        enabled: Option<bool>,
        reason: Option<&str>,
        az: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET enabled = COALESCE($1, enabled), disabled_reason = COALESCE($2, disabled_reason), \
             availability_zone = COALESCE($3, availability_zone), updated_at = $4 WHERE id = $5",
        )
        .bind(enabled.map(|e| e as i64))
        .bind(reason)
        .bind(az)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn host_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM hosts WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    pub async fn host_generation(&self, id: Uuid) -> Result<i64> {
        let g: Option<i64> = sqlx::query_scalar("SELECT generation FROM hosts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        g.ok_or_else(|| Error::not_found("host", id))
    }

    /// Tell the host's agent that its desired state changed.
    pub(crate) async fn host_bump(tx: &mut Tx, id: &str) -> Result<()> {
        sqlx::query("UPDATE hosts SET generation = generation + 1 WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Pick a host in `az` with room for `f` and take that room, in the caller's
    /// transaction. Only enabled hosts that heartbeated recently qualify.
    /// `only` restricts the choice to one host (the one holding the instance's volumes).
    pub(crate) async fn host_place(
        tx: &mut Tx,
        az: &str,
        f: Footprint,
        only: Option<Uuid>,
        c: &ComputeConfig,
    ) -> Result<Option<(String, String)>> {
        let cutoff = time_text(Utc::now() - Duration::seconds(c.host_down_after_secs));
        let order = if c.placement == "pack" { "DESC" } else { "ASC" };
        let fits = "enabled = 1 AND availability_zone = $1 AND last_heartbeat_at >= $2 \
             AND alloc_vcpus + $3 <= cpus * $4 AND alloc_memory_mib + $5 <= memory_mib * $6 \
             AND alloc_disk_gib + $7 <= disk_gib * $8";
        let candidates: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT id, name FROM hosts WHERE {fits} AND ($9 = '' OR id = $9) \
             ORDER BY (alloc_memory_mib * 1.0) / (memory_mib * 1.0 + 1.0) {order}, \
             (alloc_vcpus * 1.0) / (cpus * 1.0 + 1.0) {order}, id LIMIT 8"
        ))
        .bind(az)
        .bind(&cutoff)
        .bind(f.vcpus)
        .bind(c.cpu_allocation_ratio)
        .bind(f.memory_mib)
        .bind(c.ram_allocation_ratio)
        .bind(f.disk_gib)
        .bind(c.disk_allocation_ratio)
        .bind(only.map(|h| h.to_string()).unwrap_or_default())
        .fetch_all(&mut **tx)
        .await?;
        for (id, name) in candidates {
            // Conditional: a concurrent placement on PostgreSQL may have taken the room.
            let done = sqlx::query(&format!(
                "UPDATE hosts SET alloc_vcpus = alloc_vcpus + $3, alloc_memory_mib = alloc_memory_mib + $5, \
                 alloc_disk_gib = alloc_disk_gib + $7, instance_count = instance_count + 1, \
                 generation = generation + 1 WHERE {fits} AND id = $9"
            ))
            .bind(az)
            .bind(&cutoff)
            .bind(f.vcpus)
            .bind(c.cpu_allocation_ratio)
            .bind(f.memory_mib)
            .bind(c.ram_allocation_ratio)
            .bind(f.disk_gib)
            .bind(c.disk_allocation_ratio)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(Some((id, name)));
            }
        }
        Ok(None)
    }

    /// Change what an instance takes from its host (resize); refused when it does not fit.
    pub(crate) async fn host_reallocate(
        tx: &mut Tx,
        id: &str,
        delta: Footprint,
        c: &ComputeConfig,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE hosts SET alloc_vcpus = alloc_vcpus + $1, alloc_memory_mib = alloc_memory_mib + $2, \
             alloc_disk_gib = alloc_disk_gib + $3, generation = generation + 1 \
             WHERE id = $4 AND ($1 <= 0 OR alloc_vcpus + $1 <= cpus * $5) \
             AND ($2 <= 0 OR alloc_memory_mib + $2 <= memory_mib * $6) \
             AND ($3 <= 0 OR alloc_disk_gib + $3 <= disk_gib * $7)",
        )
        .bind(delta.vcpus)
        .bind(delta.memory_mib)
        .bind(delta.disk_gib)
        .bind(id)
        .bind(c.cpu_allocation_ratio)
        .bind(c.ram_allocation_ratio)
        .bind(c.disk_allocation_ratio)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give back what an instance took.
    pub(crate) async fn host_release(tx: &mut Tx, id: &str, f: Footprint) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET alloc_vcpus = alloc_vcpus - $1, alloc_memory_mib = alloc_memory_mib - $2, \
             alloc_disk_gib = alloc_disk_gib - $3, instance_count = instance_count - 1, \
             generation = generation + 1 WHERE id = $4",
        )
        .bind(f.vcpus)
        .bind(f.memory_mib)
        .bind(f.disk_gib)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
