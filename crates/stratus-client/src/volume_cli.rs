//! `stratus volume|snapshot|backup|backup-policy`: the block storage commands.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use stratus_api::*;
use uuid::Uuid;

use crate::cli::{list_pages, opt, to_value, Out, Paging};
use crate::client::{Client, ClientError};

const VOLUME: &[&str] = &[
    "id",
    "name",
    "status",
    "size_gib",
    "volume_type",
    "max_iops",
    "shareable",
    "bootable",
    "host_name",
    "attached_to",
];
const VOLUME_TYPE: &[&str] = &[
    "id",
    "name",
    "max_iops",
    "max_mbps",
    "builtin",
    "description",
];
const SNAPSHOT: &[&str] = &[
    "id",
    "name",
    "status",
    "volume_id",
    "size_gib",
    "created_at",
];
const BACKUP: &[&str] = &[
    "id",
    "name",
    "status",
    "volume_name",
    "size_gib",
    "stored_bytes",
    "policy_id",
    "created_at",
];
const POLICY: &[&str] = &[
    "id",
    "name",
    "enabled",
    "interval_hours",
    "keep",
    "volume_ids",
    "instance_ids",
    "next_run_at",
    "last_run_at",
];

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Volumes you can see (filters combine).
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long)]
        vdc: Option<Uuid>,
        #[arg(long)]
        status: Option<String>,
        /// Only volumes attached to this instance.
        #[arg(long)]
        server: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create volumes: empty (--size), or from --snapshot, --backup or --image.
    Create {
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        name: String,
        /// Size in GiB, 1–32768 (default: the source's size).
        #[arg(long)]
        size: Option<i64>,
        /// Volume type: normal (800 IOPS), high (2,500), ultra (10,000) or a custom one.
        #[arg(long = "type")]
        volume_type: Option<String>,
        #[arg(long)]
        az: Option<String>,
        /// May be attached to several instances at once (up to 16).
        #[arg(long)]
        shareable: bool,
        #[arg(long)]
        snapshot: Option<Uuid>,
        #[arg(long)]
        backup: Option<Uuid>,
        /// Image name or id: a bootable volume holding it.
        #[arg(long)]
        image: Option<String>,
        /// How many identical volumes (1–100).
        #[arg(long)]
        count: Option<i64>,
        #[arg(long, default_value = "")]
        description: String,
        /// Wait until the volumes are available (or failed).
        #[arg(long)]
        wait: bool,
    },
    /// One volume with its attachments.
    Show { id: Uuid },
    /// Attach to an instance on the same host (hot-plugged while it runs).
    Attach {
        id: Uuid,
        #[arg(long)]
        server: Uuid,
        #[arg(long)]
        wait: bool,
    },
    /// Detach from an instance (--server when attached to several).
    Detach {
        id: Uuid,
        #[arg(long)]
        server: Option<Uuid>,
        #[arg(long)]
        wait: bool,
    },
    /// Grow to --size GiB, online when attached.
    Extend {
        id: Uuid,
        #[arg(long)]
        size: i64,
        #[arg(long)]
        wait: bool,
    },
    /// Roll a detached volume back to one of its snapshots.
    Revert {
        id: Uuid,
        #[arg(long)]
        snapshot: Uuid,
        #[arg(long)]
        wait: bool,
    },
    /// Rename or describe a volume.
    #[command(visible_alias = "update")]
    Rename {
        id: Uuid,
        #[arg(long, required_unless_present = "description")]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a detached volume (--cascade also deletes its snapshots).
    Delete {
        id: Uuid,
        #[arg(long)]
        cascade: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Volume types and their I/O limits.
    Types,
    /// Define a volume type (platform admin).
    TypeCreate {
        name: String,
        /// Read + write operations per second.
        #[arg(long)]
        iops: i64,
        /// Read + write MB/s.
        #[arg(long)]
        mbps: i64,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a custom volume type no volume uses.
    TypeDelete { id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long)]
        volume: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Snapshot a volume (attached or not).
    Create {
        #[arg(long)]
        volume: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        wait: bool,
    },
    Show {
        id: Uuid,
    },
    #[command(visible_alias = "update")]
    Rename {
        id: Uuid,
        #[arg(long, required_unless_present = "description")]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Delete {
        id: Uuid,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long)]
        volume: Option<Uuid>,
        #[arg(long)]
        policy: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Back up a volume now (a full copy kept apart from it).
    Create {
        #[arg(long)]
        volume: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long)]
        wait: bool,
    },
    Show {
        id: Uuid,
    },
    /// Restore into a new volume of the backup's project.
    Restore {
        id: Uuid,
        #[arg(long)]
        name: String,
        /// Size in GiB (default: the backed-up volume's size).
        #[arg(long)]
        size: Option<i64>,
        #[arg(long = "type")]
        volume_type: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    Delete {
        id: Uuid,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupPolicyCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Back up --volume and the volumes of --server every --every-hours, keeping --keep.
    Create {
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long)]
        every_hours: i64,
        /// Copies kept per volume (1–100).
        #[arg(long)]
        keep: i64,
        #[arg(long = "volume")]
        volumes: Vec<Uuid>,
        #[arg(long = "server")]
        servers: Vec<Uuid>,
        /// First run, RFC 3339 (default: one interval from now).
        #[arg(long)]
        first_run: Option<chrono::DateTime<chrono::Utc>>,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
    },
    Show {
        id: Uuid,
    },
    /// Change a policy; --volume/--server replace the target lists when given.
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        every_hours: Option<i64>,
        #[arg(long)]
        keep: Option<i64>,
        #[arg(long = "volume")]
        volumes: Vec<Uuid>,
        #[arg(long = "server")]
        servers: Vec<Uuid>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        next_run: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Run it now, whatever its schedule.
    Run {
        id: Uuid,
    },
    Delete {
        id: Uuid,
    },
}

/// Volumes as a table shows them: the instances they are attached to, by name.
fn volume_rows(v: &Value) -> Value {
    let mut v = v.clone();
    let fix = |one: &mut Value| {
        let names: Vec<String> = one["attachments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["instance_name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        one["attached_to"] = json!(names.join(","));
    };
    match &mut v {
        Value::Array(a) => a.iter_mut().for_each(fix),
        Value::Object(o) if o.contains_key("items") => {
            if let Some(a) = o.get_mut("items").and_then(Value::as_array_mut) {
                a.iter_mut().for_each(fix);
            }
        }
        other => fix(other),
    }
    v
}

/// Statuses in which something is still happening.
const TRANSITIONAL: [&str; 6] = [
    "creating",
    "attaching",
    "detaching",
    "extending",
    "reverting",
    "deleting",
];

/// Poll `path` until its status is settled (or it is gone when `gone_ok`), printing each
/// change on stderr. Fails when it ends in `error`.
async fn wait_settled(c: &Client, path: &str, gone_ok: bool) -> anyhow::Result<Option<Value>> {
    let mut last = String::new();
    let mut round = 0u32;
    loop {
        match c.get::<Value>(path, &[]).await {
            Ok(v) => {
                let status = v["status"].as_str().unwrap_or("").to_string();
                if status != last {
                    eprintln!(
                        "{} ({}): {status}",
                        v["name"].as_str().unwrap_or(""),
                        v["id"].as_str().unwrap_or("")
                    );
                }
                if status == "error" {
                    anyhow::bail!(
                        "{} is in error: {}",
                        v["name"].as_str().unwrap_or(""),
                        v["status_reason"].as_str().unwrap_or("")
                    );
                }
                if !TRANSITIONAL.contains(&status.as_str()) {
                    let reason = v["status_reason"].as_str().unwrap_or("");
                    if !reason.is_empty() && status != last && round > 0 {
                        eprintln!("note: {reason}");
                    }
                    return Ok(Some(v));
                }
                last = status;
            }
            Err(ClientError { status: 404, .. }) if gone_ok => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(if round < 10 {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        })
        .await;
        round += 1;
    }
}

/// Print a volume-like answer, after waiting for it when asked.
async fn show_after(
    c: &Client,
    out: &Out,
    path: &str,
    v: Value,
    wait: bool,
    columns: &[&str],
) -> anyhow::Result<()> {
    let v = if wait {
        wait_settled(c, path, false).await?.unwrap_or(v)
    } else {
        v
    };
    out.value(&volume_rows(&v), columns);
    Ok(())
}

async fn delete_and_wait(
    c: &Client,
    out: &Out,
    what: &str,
    path: &str,
    wait: bool,
) -> anyhow::Result<()> {
    c.delete(path).await?;
    if wait {
        wait_settled(c, path, true).await?;
        out.done(&format!("Deleted {what}."));
    } else {
        out.done(&format!("Deleting {what}."));
    }
    Ok(())
}

pub(crate) async fn volume(c: &Client, out: &Out, cmd: VolumeCmd) -> anyhow::Result<()> {
    match cmd {
        VolumeCmd::List {
            project,
            vdc,
            status,
            server,
            paging,
        } => {
            let mut q = opt("project_id", project);
            q.extend(opt("vdc_id", vdc));
            q.extend(opt("instance_id", server));
            if let Some(s) = status {
                q.push(("status", s));
            }
            out.value(
                &volume_rows(&list_pages(c, "/v1/volumes", q, &paging).await?),
                VOLUME,
            )
        }
        VolumeCmd::Create {
            project,
            name,
            size,
            volume_type,
            az,
            shareable,
            snapshot,
            backup,
            image,
            count,
            description,
            wait,
        } => {
            let body = VolumeCreate {
                name,
                description,
                project_id: project,
                size_gib: size,
                volume_type,
                availability_zone: az,
                shareable,
                snapshot_id: snapshot,
                backup_id: backup,
                image,
                count,
            };
            create_volumes(c, out, &body, wait).await?
        }
        VolumeCmd::Show { id } => out.value(
            &volume_rows(&c.get::<Value>(&format!("/v1/volumes/{id}"), &[]).await?),
            VOLUME,
        ),
        VolumeCmd::Attach { id, server, wait } => {
            let body = VolumeAttach {
                instance_id: server,
            };
            volume_action(c, out, id, "attach", &body, wait).await?
        }
        VolumeCmd::Detach { id, server, wait } => {
            let body = VolumeDetach {
                instance_id: server,
            };
            volume_action(c, out, id, "detach", &body, wait).await?
        }
        VolumeCmd::Extend { id, size, wait } => {
            let body = VolumeExtend { size_gib: size };
            volume_action(c, out, id, "extend", &body, wait).await?
        }
        VolumeCmd::Revert { id, snapshot, wait } => {
            let body = VolumeRevert {
                snapshot_id: snapshot,
            };
            volume_action(c, out, id, "revert", &body, wait).await?
        }
        VolumeCmd::Rename {
            id,
            name,
            description,
        } => {
            let v: Value = c
                .patch(
                    &format!("/v1/volumes/{id}"),
                    &VolumeUpdate { name, description },
                )
                .await?;
            out.value(&volume_rows(&v), VOLUME)
        }
        VolumeCmd::Delete { id, cascade, wait } => {
            let path = format!("/v1/volumes/{id}");
            if cascade {
                c.call::<Value>(
                    reqwest::Method::DELETE,
                    &path,
                    &[("cascade", "true".into())],
                    None::<&()>,
                )
                .await?;
                if wait {
                    wait_settled(c, &path, true).await?;
                }
                out.done(&format!("Deleting volume {id} and its snapshots."));
            } else {
                delete_and_wait(c, out, &format!("volume {id}"), &path, wait).await?
            }
        }
        VolumeCmd::Types => out.value(&c.get::<Value>("/v1/volume-types", &[]).await?, VOLUME_TYPE),
        VolumeCmd::TypeCreate {
            name,
            iops,
            mbps,
            description,
        } => out.value(
            &c.post::<Value>(
                "/v1/volume-types",
                &VolumeTypeCreate {
                    name,
                    description,
                    max_iops: iops,
                    max_mbps: mbps,
                },
            )
            .await?,
            VOLUME_TYPE,
        ),
        VolumeCmd::TypeDelete { id } => {
            c.delete(&format!("/v1/volume-types/{id}")).await?;
            out.done(&format!("Deleted volume type {id}."))
        }
    }
    Ok(())
}

/// POST `/v1/volumes/{id}/{action}`; with `wait`, until the volume is settled.
async fn volume_action(
    c: &Client,
    out: &Out,
    id: Uuid,
    action: &str,
    body: &impl serde::Serialize,
    wait: bool,
) -> anyhow::Result<()> {
    let v: Value = c.post(&format!("/v1/volumes/{id}/{action}"), body).await?;
    show_after(c, out, &format!("/v1/volumes/{id}"), v, wait, VOLUME).await
}

/// POST a create; with `wait`, poll each new volume until settled. Fails if any failed.
async fn create_volumes(
    c: &Client,
    out: &Out,
    body: &VolumeCreate,
    wait: bool,
) -> anyhow::Result<()> {
    let mut vols: Vec<Value> = c.post("/v1/volumes", body).await?;
    let mut failed = Vec::new();
    for v in vols.iter_mut() {
        let id = v["id"].as_str().unwrap_or("").to_string();
        if v["status"] == "error" {
            failed.push(format!(
                "{id}: {}",
                v["status_reason"].as_str().unwrap_or("")
            ));
        } else if wait {
            match wait_settled(c, &format!("/v1/volumes/{id}"), false).await {
                Ok(Some(now)) => *v = now,
                Ok(None) => {}
                Err(e) => failed.push(format!("{id}: {e}")),
            }
        }
    }
    out.value(&volume_rows(&to_value(&vols)), VOLUME);
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} volumes failed: {}",
            failed.len(),
            vols.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

pub(crate) async fn snapshot(c: &Client, out: &Out, cmd: SnapshotCmd) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::List {
            project,
            volume,
            paging,
        } => {
            let mut q = opt("project_id", project);
            q.extend(opt("volume_id", volume));
            out.value(&list_pages(c, "/v1/snapshots", q, &paging).await?, SNAPSHOT)
        }
        SnapshotCmd::Create {
            volume,
            name,
            description,
            wait,
        } => {
            let s: Value = c
                .post(
                    "/v1/snapshots",
                    &SnapshotCreate {
                        volume_id: volume,
                        name,
                        description,
                    },
                )
                .await?;
            let path = format!("/v1/snapshots/{}", s["id"].as_str().unwrap_or(""));
            show_after(c, out, &path, s, wait, SNAPSHOT).await?
        }
        SnapshotCmd::Show { id } => out.value(
            &c.get::<Value>(&format!("/v1/snapshots/{id}"), &[]).await?,
            SNAPSHOT,
        ),
        SnapshotCmd::Rename {
            id,
            name,
            description,
        } => out.value(
            &c.patch::<Value>(
                &format!("/v1/snapshots/{id}"),
                &VolumeUpdate { name, description },
            )
            .await?,
            SNAPSHOT,
        ),
        SnapshotCmd::Delete { id, wait } => {
            delete_and_wait(
                c,
                out,
                &format!("snapshot {id}"),
                &format!("/v1/snapshots/{id}"),
                wait,
            )
            .await?
        }
    }
    Ok(())
}

pub(crate) async fn backup(c: &Client, out: &Out, cmd: BackupCmd) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::List {
            project,
            volume,
            policy,
            paging,
        } => {
            let mut q = opt("project_id", project);
            q.extend(opt("volume_id", volume));
            q.extend(opt("policy_id", policy));
            out.value(&list_pages(c, "/v1/backups", q, &paging).await?, BACKUP)
        }
        BackupCmd::Create { volume, name, wait } => {
            let b: Value = c
                .post(
                    "/v1/backups",
                    &BackupCreate {
                        volume_id: volume,
                        name,
                    },
                )
                .await?;
            let path = format!("/v1/backups/{}", b["id"].as_str().unwrap_or(""));
            show_after(c, out, &path, b, wait, BACKUP).await?
        }
        BackupCmd::Show { id } => out.value(
            &c.get::<Value>(&format!("/v1/backups/{id}"), &[]).await?,
            BACKUP,
        ),
        BackupCmd::Restore {
            id,
            name,
            size,
            volume_type,
            wait,
        } => {
            let b: Backup = c.get(&format!("/v1/backups/{id}"), &[]).await?;
            let body = VolumeCreate {
                name,
                description: format!("restored from backup {id}"),
                project_id: b.project_id,
                size_gib: size,
                volume_type,
                availability_zone: None,
                shareable: false,
                snapshot_id: None,
                backup_id: Some(id),
                image: None,
                count: None,
            };
            create_volumes(c, out, &body, wait).await?
        }
        BackupCmd::Delete { id, wait } => {
            delete_and_wait(
                c,
                out,
                &format!("backup {id}"),
                &format!("/v1/backups/{id}"),
                wait,
            )
            .await?
        }
    }
    Ok(())
}

pub(crate) async fn backup_policy(
    c: &Client,
    out: &Out,
    cmd: BackupPolicyCmd,
) -> anyhow::Result<()> {
    match cmd {
        BackupPolicyCmd::List { project, paging } => out.value(
            &list_pages(
                c,
                "/v1/backup-policies",
                opt("project_id", project),
                &paging,
            )
            .await?,
            POLICY,
        ),
        BackupPolicyCmd::Create {
            project,
            name,
            every_hours,
            keep,
            volumes,
            servers,
            first_run,
            disabled,
        } => out.value(
            &c.post::<Value>(
                "/v1/backup-policies",
                &BackupPolicyCreate {
                    project_id: project,
                    name,
                    interval_hours: every_hours,
                    keep,
                    volume_ids: volumes,
                    instance_ids: servers,
                    enabled: !disabled,
                    first_run_at: first_run,
                },
            )
            .await?,
            POLICY,
        ),
        BackupPolicyCmd::Show { id } => out.value(
            &c.get::<Value>(&format!("/v1/backup-policies/{id}"), &[])
                .await?,
            POLICY,
        ),
        BackupPolicyCmd::Update {
            id,
            name,
            every_hours,
            keep,
            volumes,
            servers,
            enable,
            disable,
            next_run,
        } => {
            let body = BackupPolicyUpdate {
                name,
                interval_hours: every_hours,
                keep,
                volume_ids: (!volumes.is_empty()).then_some(volumes),
                instance_ids: (!servers.is_empty()).then_some(servers),
                enabled: if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                },
                next_run_at: next_run,
            };
            out.value(
                &c.patch::<Value>(&format!("/v1/backup-policies/{id}"), &body)
                    .await?,
                POLICY,
            )
        }
        BackupPolicyCmd::Run { id } => out.value(
            &c.call::<Value>(
                reqwest::Method::POST,
                &format!("/v1/backup-policies/{id}/run"),
                &[],
                None::<&()>,
            )
            .await?,
            POLICY,
        ),
        BackupPolicyCmd::Delete { id } => {
            c.delete(&format!("/v1/backup-policies/{id}")).await?;
            out.done(&format!("Deleted backup policy {id}."))
        }
    }
    Ok(())
}
