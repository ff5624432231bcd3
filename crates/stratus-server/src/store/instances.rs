//! Instances: rows, desired state for agents, reports from agents, task history and the
//! transactions of the create/resize/delete sagas.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use stratus_api::{
    DesiredInstance, DesiredPower, Instance, InstanceStatus, InstanceTask, QuotaResource,
};
use uuid::Uuid;

use super::hosts::Footprint;
use super::quotas::QuotaDelta;
use super::{
    col_i64, col_opt_str, col_opt_time, col_opt_uuid, col_str, col_time, col_uuid, now_text,
    time_text, Arg, Conds, Paging, Store,
};
use crate::authz::Visibility;
use crate::error::{Error, Result};

pub type Tx = Transaction<'static, Any>;

const COLS: &str = "i.id, i.name, i.description, i.project_id, i.vdc_id, i.flavor_id, i.flavor_name, \
    i.vcpus, i.memory_mib, i.root_disk_gib, i.image_id, i.image_name, i.image_sha256, \
    i.availability_zone, i.host_id, h.name AS host_name, i.key_name, i.ssh_keys, i.user_data, i.power, \
    i.generation, i.applied_generation, i.status, i.actual_state, i.task, i.status_reason, i.stop_timeout_secs, \
    i.soft_reboots, i.hard_reboots, i.console_password, i.console_serial, i.console_applied, \
    i.console_expires_at, i.vnc_port, i.capture_image_id, i.host_held, i.prev_flavor, i.quota_held, \
    i.launched_at, i.boot_volume_id, i.created_by, i.created_at, i.updated_at";

const FROM: &str = "instances i LEFT JOIN hosts h ON h.id = i.host_id";

/// Everything stored about an instance.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub api: Instance,
    pub image_sha256: String,
    pub ssh_keys: Vec<String>,
    pub user_data: Option<String>,
    pub power: DesiredPower,
    pub generation: i64,
    pub applied_generation: i64,
    /// What the agent last reported.
    pub actual_state: String,
    pub stop_timeout_secs: i64,
    pub soft_reboots: i64,
    pub hard_reboots: i64,
    /// Sealed one-time VNC password.
    pub console_password: Option<String>,
    pub console_serial: i64,
    pub console_applied: i64,
    pub console_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub vnc_port: Option<i64>,
    pub capture_image_id: Option<Uuid>,
    pub host_held: bool,
    pub prev_flavor: Option<FlavorSnapshot>,
    pub quota_held: bool,
}

/// The sizing part of a flavor, as copied into an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlavorSnapshot {
    pub id: Uuid,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

impl FlavorSnapshot {
    pub fn footprint(&self) -> Footprint {
        Footprint {
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
        }
    }
    /// Quota charged for one instance of this size (memory in whole GiB, rounded up).
    pub fn quota(&self, sign: i64) -> Vec<QuotaDelta> {
        vec![
            QuotaDelta {
                resource: QuotaResource::Instances,
                amount: sign,
            },
            QuotaDelta {
                resource: QuotaResource::Vcpus,
                amount: sign * self.vcpus,
            },
            QuotaDelta {
                resource: QuotaResource::MemoryGib,
                amount: sign * ((self.memory_mib + 1023) / 1024),
            },
        ]
    }
}

impl InstanceRow {
    pub fn flavor(&self) -> FlavorSnapshot {
        FlavorSnapshot {
            id: self.api.flavor_id,
            vcpus: self.api.vcpus,
            memory_mib: self.api.memory_mib,
            disk_gib: self.api.root_disk_gib,
        }
    }
}

pub fn power_str(p: DesiredPower) -> &'static str {
    match p {
        DesiredPower::Running => "running",
        DesiredPower::Stopped => "stopped",
        DesiredPower::Paused => "paused",
        DesiredPower::Suspended => "suspended",
        DesiredPower::Deleted => "deleted",
    }
}

fn parse_power(s: &str) -> DesiredPower {
    match s {
        "stopped" => DesiredPower::Stopped,
        "paused" => DesiredPower::Paused,
        "suspended" => DesiredPower::Suspended,
        "deleted" => DesiredPower::Deleted,
        _ => DesiredPower::Running,
    }
}

fn row_to_instance(row: &AnyRow) -> Result<InstanceRow> {
    let status = col_str(row, "status")?;
    let api = Instance {
        id: col_uuid(row, "id")?,
        name: col_str(row, "name")?,
        description: col_str(row, "description")?,
        project_id: col_uuid(row, "project_id")?,
        vdc_id: col_uuid(row, "vdc_id")?,
        status: InstanceStatus::parse(&status)
            .ok_or_else(|| Error::internal(format!("bad instance status {status:?}")))?,
        task: col_opt_str(row, "task")?,
        status_reason: col_str(row, "status_reason")?,
        flavor_id: col_uuid(row, "flavor_id")?,
        flavor_name: col_str(row, "flavor_name")?,
        vcpus: col_i64(row, "vcpus")?,
        memory_mib: col_i64(row, "memory_mib")?,
        root_disk_gib: col_i64(row, "root_disk_gib")?,
        image_id: col_uuid(row, "image_id")?,
        image_name: col_str(row, "image_name")?,
        host_id: col_opt_uuid(row, "host_id")?,
        host_name: col_opt_str(row, "host_name")?,
        availability_zone: col_str(row, "availability_zone")?,
        key_name: col_opt_str(row, "key_name")?,
        addresses: Vec::new(),
        volumes: Vec::new(),
        boot_volume_id: col_opt_uuid(row, "boot_volume_id")?,
        launched_at: col_opt_time(row, "launched_at")?,
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    };
    Ok(InstanceRow {
        api,
        image_sha256: col_str(row, "image_sha256")?,
        ssh_keys: serde_json::from_str(&col_str(row, "ssh_keys")?).unwrap_or_default(),
        user_data: col_opt_str(row, "user_data")?,
        power: parse_power(&col_str(row, "power")?),
        generation: col_i64(row, "generation")?,
        applied_generation: col_i64(row, "applied_generation")?,
        actual_state: col_str(row, "actual_state")?,
        stop_timeout_secs: col_i64(row, "stop_timeout_secs")?,
        soft_reboots: col_i64(row, "soft_reboots")?,
        hard_reboots: col_i64(row, "hard_reboots")?,
        console_password: col_opt_str(row, "console_password")?,
        console_serial: col_i64(row, "console_serial")?,
        console_applied: col_i64(row, "console_applied")?,
        console_expires_at: col_opt_time(row, "console_expires_at")?,
        vnc_port: row.try_get::<Option<i64>, _>("vnc_port").ok().flatten(),
        capture_image_id: col_opt_uuid(row, "capture_image_id")?,
        host_held: col_i64(row, "host_held")? != 0,
        // Stored as (flavor, flavor name).
        prev_flavor: col_opt_str(row, "prev_flavor")?
            .and_then(|s| serde_json::from_str::<(FlavorSnapshot, String)>(&s).ok())
            .map(|(f, _)| f),
        quota_held: col_i64(row, "quota_held")? != 0,
    })
}

use sqlx::Row;

/// Resources of a project are visible where the project is.
pub(crate) fn resource_visible(c: &mut Conds, v: &Visibility, prefix: &str) {
    if v.all {
        return;
    }
    let mut args: Vec<Arg> = v.vdcs.iter().map(|i| Arg::from(*i)).collect();
    args.extend(v.projects.iter().map(|i| Arg::from(*i)));
    c.and(
        format!(
            "{prefix}vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE {}) OR {}",
            Conds::in_list("ancestor_id", v.vdcs.len()),
            Conds::in_list(&format!("{prefix}project_id"), v.projects.len())
        ),
        args,
    );
}

/// A new instance, ready to insert.
pub struct NewInstance {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub flavor: FlavorSnapshot,
    pub flavor_name: String,
    pub image_id: Uuid,
    pub image_name: String,
    pub image_sha256: String,
    pub availability_zone: String,
    pub key_name: Option<String>,
    pub ssh_keys: Vec<String>,
    pub user_data: Option<String>,
    /// Boots from this volume (its root disk); then the flavor's disk is not used.
    pub boot_volume_id: Option<Uuid>,
    pub created_by: String,
    pub request_id: String,
}

/// Filters of an instance list.
#[derive(Debug, Default)]
pub struct InstanceQuery<'a> {
    pub project_id: Option<Uuid>,
    pub vdc_id: Option<Uuid>,
    pub host_id: Option<Uuid>,
    pub status: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// A change to an instance's desired state, applied only if its status is one of `from`.
pub struct Transition<'a> {
    pub from: &'a [InstanceStatus],
    pub power: Option<DesiredPower>,
    pub status: InstanceStatus,
    pub task: &'a str,
    pub soft_reboot: bool,
    pub hard_reboot: bool,
    pub stop_timeout_secs: Option<i64>,
}

impl Store {
    /// Insert instances, charging their quota to the project and every VDC above it, in
    /// one transaction: either all of them exist and are counted, or none.
    pub async fn instance_create(
        &self,
        chain: &[Uuid],
        items: &[NewInstance],
        fault: bool,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        for n in items {
            Store::quota_charge(&mut tx, chain, &n.flavor.quota(1)).await?;
            let now = now_text();
            sqlx::query(
                "INSERT INTO instances (id, name, description, project_id, vdc_id, flavor_id, flavor_name, vcpus, \
                 memory_mib, root_disk_gib, image_id, image_name, image_sha256, availability_zone, key_name, \
                 ssh_keys, user_data, power, generation, status, task, quota_held, created_by, created_at, updated_at, \
                 boot_volume_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 'running', 1, \
                 'building', 'scheduling', 1, $18, $19, $19, $20)",
            )
            .bind(n.id.to_string())
            .bind(&n.name)
            .bind(&n.description)
            .bind(n.project_id.to_string())
            .bind(n.vdc_id.to_string())
            .bind(n.flavor.id.to_string())
            .bind(&n.flavor_name)
            .bind(n.flavor.vcpus)
            .bind(n.flavor.memory_mib)
            .bind(n.flavor.disk_gib)
            .bind(n.image_id.to_string())
            .bind(&n.image_name)
            .bind(&n.image_sha256)
            .bind(&n.availability_zone)
            .bind(n.key_name.as_deref())
            .bind(serde_json::to_string(&n.ssh_keys).unwrap_or_else(|_| "[]".into()))
            .bind(n.user_data.as_deref())
            .bind(&n.created_by)
            .bind(&now)
            .bind(n.boot_volume_id.map(|v| v.to_string()))
            .execute(&mut *tx)
            .await?;
            task_start(&mut tx, n.id, "create", &n.created_by, &n.request_id).await?;
            metering(
                &mut tx,
                n.id,
                n.project_id,
                n.vdc_id,
                "created",
                serde_json::json!({"flavor": n.flavor_name, "vcpus": n.flavor.vcpus,
                    "memory_mib": n.flavor.memory_mib, "root_disk_gib": n.flavor.disk_gib,
                    "image_id": n.image_id, "zone": n.availability_zone,
                    "boot_from_volume": n.boot_volume_id.is_some()}),
            )
            .await?;
        }
        if fault {
            return Err(Error::Unavailable("injected fault at create.quota".into()));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Scheduling step of the create saga: take room on a host. `None` when no host fits.
    /// `only`: the host it must go to (where its volumes are), if any.
    pub async fn instance_place(
        &self,
        id: Uuid,
        only: Option<Uuid>,
        c: &crate::config::ComputeConfig,
        fault: bool,
    ) -> Result<Option<String>> {
        let mut tx = self.db.write.begin().await?;
        let Some(row) = instance_get_tx(&mut tx, id).await? else {
            return Ok(None);
        };
        let placed = Store::host_place(
            &mut tx,
            &row.api.availability_zone,
            row.flavor().footprint(),
            only,
            c,
        )
        .await?;
        let Some((host_id, host_name)) = placed else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE instances SET host_id = $1, host_held = 1, task = 'spawning', updated_at = $2 WHERE id = $3",
        )
        .bind(&host_id)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if fault {
            return Err(Error::Unavailable(
                "injected fault at create.schedule".into(),
            ));
        }
        tx.commit().await?;
        Ok(Some(host_name))
    }

    /// Unwind a failed create: give back quota and host room, ask the agent to remove
    /// whatever it made, and leave the instance in `error` with the reason.
    pub async fn instance_fail_build(&self, id: Uuid, reason: &str) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let Some(row) = instance_get_tx(&mut tx, id).await? else {
            return Ok(());
        };
        if row.quota_held {
            let chain = vdc_chain_tx(&mut tx, row.api.vdc_id).await?;
            let mut full = vec![row.api.project_id];
            full.extend(chain);
            Store::quota_charge(&mut tx, &full, &row.flavor().quota(-1)).await?;
        }
        if let (Some(h), true) = (row.api.host_id, row.host_held) {
            Store::host_release(&mut tx, &h.to_string(), row.flavor().footprint()).await?;
        }
        let power = if row.api.host_id.is_some() {
            "deleted"
        } else {
            "stopped"
        };
        sqlx::query(
            "UPDATE instances SET status = 'error', task = NULL, status_reason = $1, quota_held = 0, \
             host_held = 0, power = $2, generation = generation + 1, updated_at = $3 WHERE id = $4",
        )
        .bind(reason)
        .bind(power)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(h) = row.api.host_id {
            Store::host_bump(&mut tx, &h.to_string()).await?;
        }
        task_finish(&mut tx, id, "failed", reason).await?;
        metering(
            &mut tx,
            id,
            row.api.project_id,
            row.api.vdc_id,
            "failed",
            serde_json::json!({"reason": reason}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn instance_get(&self, id: Uuid) -> Result<Option<InstanceRow>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM {FROM} WHERE i.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| row_to_instance(&r)).transpose()
    }

    pub async fn instance_list(
        &self,
        vis: &Visibility,
        q: &InstanceQuery<'_>,
        paging: &Paging,
    ) -> Result<(Vec<Instance>, Option<String>)> {
        let mut c = Conds::new();
        resource_visible(&mut c, vis, "i.");
        c.and(super::recycle::not_recycled("i.id"), Vec::<Arg>::new());
        if let Some(p) = q.project_id {
            c.and("i.project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = q.vdc_id {
            c.and(
                "i.vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ?)",
                [Arg::from(v)],
            );
        }
        if let Some(h) = q.host_id {
            c.and("i.host_id = ?", [Arg::from(h)]);
        }
        if let Some(s) = q.status {
            c.and("i.status = ?", [Arg::from(s)]);
        }
        if let Some(n) = q.name {
            c.and("i.name LIKE ? ESCAPE '\\'", [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply_to(&mut c, "i.", "i.id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM {FROM}"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| row_to_instance(r).map(|i| i.api))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Every instance placed on a host, for its agent.
    pub async fn instance_rows_on_host(&self, host: Uuid) -> Result<Vec<InstanceRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM {FROM} WHERE i.host_id = $1 ORDER BY i.id"
        ))
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(row_to_instance).collect()
    }

    /// Apply a lifecycle transition; 409 when the instance is not in a status it allows.
    pub async fn instance_transition(
        &self,
        id: Uuid,
        t: &Transition<'_>,
        user: &str,
        request_id: &str,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let row = instance_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?;
        check_status(&row, t.from, t.task)?;
        sqlx::query(
            "UPDATE instances SET power = COALESCE($1, power), status = $2, task = $3, \
             soft_reboots = soft_reboots + $4, hard_reboots = hard_reboots + $5, \
             stop_timeout_secs = COALESCE($6, stop_timeout_secs), generation = generation + 1, \
             status_reason = '', updated_at = $7 WHERE id = $8",
        )
        .bind(t.power.map(power_str))
        .bind(t.status.as_str())
        .bind(t.task)
        .bind(t.soft_reboot as i64)
        .bind(t.hard_reboot as i64)
        .bind(t.stop_timeout_secs)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(h) = row.api.host_id {
            Store::host_bump(&mut tx, &h.to_string()).await?;
        }
        task_start(&mut tx, id, t.task, user, request_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delete: with no host the row goes at once (releasing what it holds); otherwise the
    /// agent is told to remove the guest and the row goes when it reports `gone`.
    pub async fn instance_delete(&self, id: Uuid, user: &str, request_id: &str) -> Result<bool> {
        let mut tx = self.db.write.begin().await?;
        let row = instance_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?;
        if row.api.status == InstanceStatus::Deleting {
            return Ok(false);
        }
        if row.api.host_id.is_none() {
            finalize_delete(&mut tx, &row).await?;
            tx.commit().await?;
            return Ok(true);
        }
        sqlx::query(
            "UPDATE instances SET power = 'deleted', status = 'deleting', task = 'deleting', \
             generation = generation + 1, updated_at = $1 WHERE id = $2",
        )
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(h) = row.api.host_id {
            Store::host_bump(&mut tx, &h.to_string()).await?;
        }
        task_start(&mut tx, id, "delete", user, request_id).await?;
        tx.commit().await?;
        Ok(false)
    }

    /// Resize a stopped instance: quota and host room change in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn instance_resize(
        &self,
        id: Uuid,
        chain: &[Uuid],
        to: FlavorSnapshot,
        to_name: &str,
        c: &crate::config::ComputeConfig,
        user: &str,
        request_id: &str,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let row = instance_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?;
        check_status(&row, &[InstanceStatus::Stopped], "resize")?;
        let from = row.flavor();
        if to.disk_gib < from.disk_gib {
            return Err(Error::conflict(format!(
                "flavor: {to_name} has a {} GiB root disk, smaller than this instance's {} GiB; disks only grow",
                to.disk_gib, from.disk_gib
            )));
        }
        let mut deltas = to.quota(1);
        for (d, old) in deltas.iter_mut().zip(from.quota(1)) {
            d.amount -= old.amount;
        }
        Store::quota_charge(&mut tx, chain, &deltas).await?;
        if let Some(h) = row.api.host_id {
            let delta = Footprint {
                vcpus: to.vcpus - from.vcpus,
                memory_mib: to.memory_mib - from.memory_mib,
                disk_gib: to.disk_gib - from.disk_gib,
            };
            if !Store::host_reallocate(&mut tx, &h.to_string(), delta, c).await? {
                return Err(Error::conflict(format!(
                    "flavor: host {} has no room for {to_name}",
                    row.api.host_name.clone().unwrap_or_default()
                )));
            }
        }
        sqlx::query(
            "UPDATE instances SET flavor_id = $1, flavor_name = $2, vcpus = $3, memory_mib = $4, \
             root_disk_gib = $5, prev_flavor = $6, status = 'busy', task = 'resizing', \
             generation = generation + 1, updated_at = $7 WHERE id = $8",
        )
        .bind(to.id.to_string())
        .bind(to_name)
        .bind(to.vcpus)
        .bind(to.memory_mib)
        .bind(to.disk_gib)
        .bind(serde_json::to_string(&(from, row.api.flavor_name.clone())).unwrap_or_default())
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        task_start(&mut tx, id, "resize", user, request_id).await?;
        metering(
            &mut tx,
            id,
            row.api.project_id,
            row.api.vdc_id,
            "resized",
            serde_json::json!({"flavor": to_name, "vcpus": to.vcpus, "memory_mib": to.memory_mib,
                "root_disk_gib": to.disk_gib}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn instance_rename(
        &self,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        self.name_description_update("instances", id, name, description)
            .await?;
        Ok(())
    }

    /// Record a one-time console password (sealed) for the agent to set.
    pub async fn instance_console_request(
        &self,
        id: Uuid,
        sealed: &str,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64> {
        let mut tx = self.db.write.begin().await?;
        let row = instance_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?;
        sqlx::query(
            "UPDATE instances SET console_password = $1, console_expires_at = $2, \
             console_serial = console_serial + 1, generation = generation + 1 WHERE id = $3",
        )
        .bind(sealed)
        .bind(super::time_text(expires))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(h) = row.api.host_id {
            Store::host_bump(&mut tx, &h.to_string()).await?;
        }
        tx.commit().await?;
        Ok(row.console_serial + 1)
    }

    /// Ask the agent to capture the stopped root disk into `image`.
    pub async fn instance_capture_request(&self, id: Uuid, image: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let row = instance_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?;
        check_status(&row, &[InstanceStatus::Stopped], "create an image")?;
        if row.capture_image_id.is_some() {
            return Err(Error::conflict(
                "an image of this instance is already being made; wait for it to finish",
            ));
        }
        sqlx::query(
            "UPDATE instances SET capture_image_id = $1, generation = generation + 1 WHERE id = $2",
        )
        .bind(image.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(h) = row.api.host_id {
            Store::host_bump(&mut tx, &h.to_string()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn instance_capture_done(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let row = instance_get_tx(&mut tx, id).await?;
        sqlx::query(
            "UPDATE instances SET capture_image_id = NULL, generation = generation + 1 WHERE id = $1",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(h) = row.and_then(|r| r.api.host_id) {
            Store::host_bump(&mut tx, &h.to_string()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn instance_tasks(&self, id: Uuid) -> Result<Vec<InstanceTask>> {
        let rows = sqlx::query(
            "SELECT id, action, user_name, request_id, result, message, started_at, finished_at \
             FROM instance_tasks WHERE instance_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InstanceTask {
                    id: col_i64(r, "id")?,
                    action: col_str(r, "action")?,
                    user_name: col_str(r, "user_name")?,
                    request_id: col_str(r, "request_id")?,
                    result: col_str(r, "result")?,
                    message: col_str(r, "message")?,
                    started_at: col_time(r, "started_at")?,
                    finished_at: col_opt_time(r, "finished_at")?,
                })
            })
            .collect()
    }

    pub async fn instance_console(&self, id: Uuid) -> Result<String> {
        let data: Option<String> =
            sqlx::query_scalar("SELECT data FROM instance_consoles WHERE instance_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.db.read)
                .await?;
        Ok(data.unwrap_or_default())
    }

    /// Append console output, keeping the last 64 KiB.
    pub async fn instance_console_append(&self, id: Uuid, text: &str) -> Result<()> {
        const KEEP: usize = 64 * 1024;
        let mut tx = self.db.write.begin().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT data FROM instance_consoles WHERE instance_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let mut data = old.clone().unwrap_or_default();
        data.push_str(text);
        if data.len() > KEEP {
            let mut cut = data.len() - KEEP;
            while !data.is_char_boundary(cut) {
                cut += 1;
            }
            data = data[cut..].to_string();
        }
        let sql = if old.is_some() {
            "UPDATE instance_consoles SET data = $2 WHERE instance_id = $1"
        } else {
            "INSERT INTO instance_consoles (instance_id, data) VALUES ($1, $2)"
        };
        sqlx::query(sql)
            .bind(id.to_string())
            .bind(&data)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record what the agent says about an instance. Returns true when the instance went
    /// to `error` during its build (the caller then unwinds the create).
    pub async fn instance_observe(
        &self,
        row: &InstanceRow,
        r: &stratus_api::InstanceReport,
    ) -> Result<Observed> {
        use stratus_api::ActualState as A;
        let id = row.api.id;
        if r.state == A::Gone {
            if row.power != DesiredPower::Deleted {
                return Ok(Observed::Nothing);
            }
            let mut tx = self.db.write.begin().await?;
            if row.api.status == InstanceStatus::Deleting {
                finalize_delete(&mut tx, row).await?;
            } else {
                // A failed build the agent has cleaned up: forget the host.
                sqlx::query("UPDATE instances SET host_id = NULL WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            return Ok(Observed::Gone);
        }
        if r.state == A::Error && row.api.status == InstanceStatus::Building {
            return Ok(Observed::BuildFailed(
                r.error
                    .clone()
                    .unwrap_or_else(|| "the agent failed to build it".into()),
            ));
        }
        let converged = r.generation >= row.generation;
        let mut status = row.api.status;
        let mut task = row.api.task.clone();
        let mut reason = row.api.status_reason.clone();
        let mut result: Option<(&str, String)> = None;
        // Metering follows what really runs: a guest holds its resources while running or
        // paused, and gives them up when stopped, suspended or failed.
        let actual = match r.state {
            A::Building => "building",
            A::Running => "running",
            A::Stopped => "stopped",
            A::Paused => "paused",
            A::Suspended => "suspended",
            A::Error => "error",
            A::Gone => "gone",
        };
        let holds = |s: &str| matches!(s, "running" | "paused");
        let event = match (holds(&row.actual_state), holds(actual)) {
            (false, true) => Some("started"),
            (true, false) => Some("stopped"),
            _ => None,
        };
        if r.state == A::Error && row.api.status != InstanceStatus::Error {
            status = InstanceStatus::Error;
            reason = r.error.clone().unwrap_or_default();
            task = None;
            result = Some(("failed", reason.clone()));
        } else if converged && row.api.status != InstanceStatus::Error {
            let actual = match r.state {
                A::Running => Some(InstanceStatus::Running),
                A::Stopped => Some(InstanceStatus::Stopped),
                A::Paused => Some(InstanceStatus::Paused),
                A::Suspended => Some(InstanceStatus::Suspended),
                _ => None,
            };
            if let Some(a) = actual {
                if row.api.status != InstanceStatus::Deleting {
                    if a != status || task.is_some() {
                        result = Some(("succeeded", String::new()));
                    }
                    status = a;
                    task = None;
                }
            }
        }
        let changed = status != row.api.status
            || actual != row.actual_state
            || task != row.api.task
            || r.generation != row.applied_generation
            || r.vnc_port != row.vnc_port
            || r.console_serial != row.console_applied;
        let resize_failed = r.state == A::Error && row.prev_flavor.is_some();
        let resize_done = converged && row.prev_flavor.is_some() && !resize_failed;
        if !changed && !resize_done && !resize_failed {
            return Ok(Observed::Nothing);
        }
        let mut tx = self.db.write.begin().await?;
        let launched = if status == InstanceStatus::Running && row.api.launched_at.is_none() {
            Some(now_text())
        } else {
            None
        };
        sqlx::query(
            "UPDATE instances SET status = $1, task = $2, status_reason = $3, applied_generation = $4, \
             vnc_port = $5, console_applied = $6, launched_at = COALESCE(launched_at, $7), \
             prev_flavor = CASE WHEN $8 = 1 THEN NULL ELSE prev_flavor END, updated_at = $9, \
             actual_state = $11 WHERE id = $10",
        )
        .bind(status.as_str())
        .bind(task.as_deref())
        .bind(&reason)
        .bind(r.generation.max(row.applied_generation))
        .bind(r.vnc_port)
        .bind(r.console_serial)
        .bind(launched)
        .bind(resize_done as i64)
        .bind(now_text())
        .bind(id.to_string())
        .bind(actual)
        .execute(&mut *tx)
        .await?;
        if let Some((res, msg)) = &result {
            task_finish(&mut tx, id, res, msg).await?;
        }
        if let Some(e) = event {
            metering(
                &mut tx,
                id,
                row.api.project_id,
                row.api.vdc_id,
                e,
                serde_json::json!({"flavor": row.api.flavor_name, "vcpus": row.api.vcpus,
                    "memory_mib": row.api.memory_mib}),
            )
            .await?;
        }
        tx.commit().await?;
        if resize_failed {
            return Ok(Observed::ResizeFailed);
        }
        Ok(Observed::Updated)
    }

    /// Undo a resize the agent could not apply: back to the previous flavor, quota and
    /// host room restored.
    pub async fn instance_resize_unwind(
        &self,
        id: Uuid,
        c: &crate::config::ComputeConfig,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let Some(row) = instance_get_tx(&mut tx, id).await? else {
            return Ok(());
        };
        let Some(prev) = row.prev_flavor else {
            return Ok(());
        };
        let name: String = col_opt_str_json_name(&mut tx, id).await?;
        let cur = row.flavor();
        let chain = vdc_chain_tx(&mut tx, row.api.vdc_id).await?;
        let mut full = vec![row.api.project_id];
        full.extend(chain);
        let mut deltas = prev.quota(1);
        for (d, now) in deltas.iter_mut().zip(cur.quota(1)) {
            d.amount -= now.amount;
        }
        Store::quota_charge(&mut tx, &full, &deltas).await?;
        if let Some(h) = row.api.host_id {
            let delta = Footprint {
                vcpus: prev.vcpus - cur.vcpus,
                memory_mib: prev.memory_mib - cur.memory_mib,
                disk_gib: prev.disk_gib - cur.disk_gib,
            };
            Store::host_reallocate(&mut tx, &h.to_string(), delta, c).await?;
        }
        sqlx::query(
            "UPDATE instances SET flavor_id = $1, flavor_name = $2, vcpus = $3, memory_mib = $4, \
             root_disk_gib = $5, prev_flavor = NULL, generation = generation + 1, updated_at = $6 WHERE id = $7",
        )
        .bind(prev.id.to_string())
        .bind(&name)
        .bind(prev.vcpus)
        .bind(prev.memory_mib)
        .bind(prev.disk_gib)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        // Metering saw the resize; it must see it undone too.
        metering(
            &mut tx,
            id,
            row.api.project_id,
            row.api.vdc_id,
            "resized",
            serde_json::json!({"flavor": name, "vcpus": prev.vcpus, "memory_mib": prev.memory_mib,
                "root_disk_gib": prev.disk_gib, "reverted": true}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recount of instance usage per project for the quota consistency check.
    pub(crate) async fn instance_usage(&self) -> Result<Vec<(String, i64, i64, i64)>> {
        Ok(sqlx::query_as(
            // PostgreSQL sums BIGINT as NUMERIC: cast back so both backends give i64.
            "SELECT project_id, COUNT(*), CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), \
             CAST(COALESCE(SUM((memory_mib + 1023) / 1024), 0) AS BIGINT) FROM instances \
             WHERE quota_held = 1 GROUP BY project_id",
        )
        .fetch_all(&self.db.read)
        .await?)
    }

    pub async fn instance_count_using_image(&self, image: Uuid) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances WHERE image_id = $1 AND status = 'building'",
        )
        .bind(image.to_string())
        .fetch_one(&self.db.read)
        .await?)
    }
}

/// What a report changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    Nothing,
    Updated,
    Gone,
    BuildFailed(String),
    ResizeFailed,
}

async fn col_opt_str_json_name(tx: &mut Tx, id: Uuid) -> Result<String> {
    let raw: Option<String> = sqlx::query_scalar("SELECT prev_flavor FROM instances WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .flatten();
    Ok(raw
        .and_then(|s| serde_json::from_str::<(FlavorSnapshot, String)>(&s).ok())
        .map(|(_, n)| n)
        .unwrap_or_default())
}

fn check_status(row: &InstanceRow, from: &[InstanceStatus], what: &str) -> Result<()> {
    if from.contains(&row.api.status) && row.api.task.is_none() {
        return Ok(());
    }
    let now = match &row.api.task {
        Some(t) => format!("{} ({t})", row.api.status.as_str()),
        None => row.api.status.as_str().to_string(),
    };
    let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    Err(Error::conflict(format!(
        "instance {} is {now}; {what} needs it to be {}",
        row.api.id,
        allowed.join(" or ")
    )))
}

async fn instance_get_tx(tx: &mut Tx, id: Uuid) -> Result<Option<InstanceRow>> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM {FROM} WHERE i.id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| row_to_instance(&r)).transpose()
}

pub(crate) async fn vdc_chain_tx(tx: &mut Tx, vdc: Uuid) -> Result<Vec<Uuid>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT ancestor_id FROM vdc_closure WHERE descendant_id = $1 ORDER BY distance",
    )
    .bind(vdc.to_string())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(s,)| Uuid::parse_str(&s).ok())
        .collect())
}

/// Remove the row and give back what it held.
async fn finalize_delete(tx: &mut Tx, row: &InstanceRow) -> Result<()> {
    let id = row.api.id;
    if row.quota_held {
        let chain = vdc_chain_tx(tx, row.api.vdc_id).await?;
        let mut full = vec![row.api.project_id];
        full.extend(chain);
        Store::quota_charge(tx, &full, &row.flavor().quota(-1)).await?;
    }
    if let (Some(h), true) = (row.api.host_id, row.host_held) {
        Store::host_release(tx, &h.to_string(), row.flavor().footprint()).await?;
    }
    super::volumes::detach_all_tx(tx, id).await?;
    Store::instance_ports_release_tx(tx, id).await?;
    for table in ["instance_consoles"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE instance_id = $1"))
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("DELETE FROM instances WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    task_finish(tx, id, "succeeded", "").await?;
    metering(
        tx,
        id,
        row.api.project_id,
        row.api.vdc_id,
        "deleted",
        serde_json::json!({"flavor": row.api.flavor_name}),
    )
    .await
}

async fn task_start(
    tx: &mut Tx,
    id: Uuid,
    action: &str,
    user: &str,
    request_id: &str,
) -> Result<()> {
    // A new action supersedes one still marked running.
    task_finish(tx, id, "superseded", "").await?;
    sqlx::query(
        "INSERT INTO instance_tasks (instance_id, action, user_name, request_id, result, started_at) \
         VALUES ($1, $2, $3, $4, 'running', $5)",
    )
    .bind(id.to_string())
    .bind(action)
    .bind(user)
    .bind(request_id)
    .bind(now_text())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn task_finish(tx: &mut Tx, id: Uuid, result: &str, message: &str) -> Result<()> {
    sqlx::query(
        "UPDATE instance_tasks SET result = $1, message = $2, finished_at = $3 \
         WHERE instance_id = $4 AND result = 'running'",
    )
    .bind(result)
    .bind(message)
    .bind(now_text())
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn metering(
    tx: &mut Tx,
    id: Uuid,
    project: Uuid,
    vdc: Uuid,
    event: &str,
    attrs: serde_json::Value,
) -> Result<()> {
    metering_event(tx, "instance", id, project, vdc, event, attrs).await
}

/// A lifecycle event of any resource, for metering (话单) to consume.
pub(crate) async fn metering_event(
    tx: &mut Tx,
    resource_type: &str,
    id: Uuid,
    project: Uuid,
    vdc: Uuid,
    event: &str,
    attrs: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO metering_events (at, resource_type, resource_id, project_id, vdc_id, event, attrs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(time_text(super::metering::meter_now()))
    .bind(resource_type)
    .bind(id.to_string())
    .bind(project.to_string())
    .bind(vdc.to_string())
    .bind(event)
    .bind(attrs.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The desired state of one instance, for its agent.
pub fn desired(row: &InstanceRow, console_password: Option<String>) -> DesiredInstance {
    DesiredInstance {
        id: row.api.id,
        generation: row.generation,
        hostname: row.api.name.clone(),
        vcpus: row.api.vcpus,
        memory_mib: row.api.memory_mib,
        root_disk_gib: row.api.root_disk_gib,
        image_id: row.api.image_id,
        image_sha256: row.image_sha256.clone(),
        power: row.power,
        stop_timeout_secs: row.stop_timeout_secs,
        soft_reboots: row.soft_reboots,
        hard_reboots: row.hard_reboots,
        ssh_keys: row.ssh_keys.clone(),
        user_data: row.user_data.clone(),
        console_password,
        console_serial: row.console_serial,
        console_expires_at: row.console_expires_at,
        capture_image_id: row.capture_image_id,
        volumes: Vec::new(),
        boot_volume: None,
        nics: Vec::new(),
    }
}
