//! Block storage (EVS): volume types, volumes (create → place → the host's agent makes the
//! file), attach/detach to instances, online extend, snapshots and revert, backups and the
//! backup-policy scheduler.
//!
//! Volumes live in a host's storage pool (local files today; the agent's pool trait takes a
//! Ceph RBD pool later), so a volume attaches only to instances on the same host, and a
//! volume made from a snapshot or backup is placed where that data is.

use chrono::{DateTime, Utc};
use stratus_api::{
    Backup, BackupCreate, BackupFilter, BackupPolicy, BackupPolicyCreate, BackupPolicyFilter,
    BackupPolicyUpdate, BackupStatus, InstanceStatus, ListParams, Page, Snapshot, SnapshotCreate,
    SnapshotFilter, SnapshotStatus, Volume, VolumeAttach, VolumeCreate, VolumeDetach, VolumeExtend,
    VolumeFilter, VolumeRevert, VolumeStatus, VolumeType, VolumeTypeCreate, VolumeUpdate,
};
use uuid::Uuid;

use super::instances::instance_writable;
use super::{require, require_global, require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{NewVolume, Paging, Placement, SnapshotRow, VolumeQuery, VolumeRow};
use crate::validate;

/// Spec 5.2.2.1 (4): data disks of 1 GB to 32 TB.
pub const MAX_VOLUME_GIB: i64 = 32 * 1024;
const MAX_COUNT: i64 = 100;
const SORTABLE: &[&str] = &["created_at", "name"];

// ---------------------------------------------------------------- volume types

pub async fn volume_type_list(app: &App, _p: &Principal) -> Result<Vec<VolumeType>> {
    app.store.volume_type_list().await
}

pub async fn volume_type_create(
    app: &App,
    p: &Principal,
    b: VolumeTypeCreate,
) -> Result<VolumeType> {
    require_global(p, Perm::FlavorWrite)?;
    validate::login_name("name", &b.name)?;
    validate::description("description", &b.description)?;
    if !(1..=1_000_000).contains(&b.max_iops) {
        return Err(Error::invalid("max_iops", "must be between 1 and 1000000"));
    }
    if !(1..=100_000).contains(&b.max_mbps) {
        return Err(Error::invalid("max_mbps", "must be between 1 and 100000"));
    }
    app.store
        .volume_type_create(&b.name, &b.description, b.max_iops, b.max_mbps, false)
        .await
}

pub async fn volume_type_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    require_global(p, Perm::FlavorWrite)?;
    let t = app
        .store
        .volume_type_list()
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| Error::not_found("volume type", id))?;
    if t.builtin {
        return Err(Error::conflict(format!(
            "volume type {} is one of the spec's built-in tiers and cannot be deleted",
            t.name
        )));
    }
    app.store.volume_type_delete(id).await
}

pub(crate) async fn resolve_type(app: &App, key: Option<&str>) -> Result<VolumeType> {
    let key = key.unwrap_or("normal");
    app.store
        .volume_type_list()
        .await?
        .into_iter()
        .find(|t| t.name == key || t.id.to_string() == key)
        .ok_or_else(|| {
            Error::invalid(
                "volume_type",
                &format!("no volume type {key:?} (see `stratus volume types`)"),
            )
        })
}

// ---------------------------------------------------------------- visibility

fn target<'a>(project: Uuid, chain: &'a [Uuid]) -> Target<'a> {
    Target::Project { id: project, chain }
}

/// `found` (a `what` with id `id`, owned by the project and VDC `owner` gives) if the caller
/// may see it, with its VDC chain; 404 otherwise, as if it did not exist.
async fn seen<T>(
    app: &App,
    p: &Principal,
    what: &str,
    id: Uuid,
    found: Option<T>,
    owner: impl Fn(&T) -> (Uuid, Uuid),
) -> Result<(T, Vec<Uuid>)> {
    let item = found.ok_or_else(|| Error::not_found(what, id))?;
    let (project, vdc) = owner(&item);
    let chain = app.store.vdc_chain(vdc).await?;
    if !p.can(Perm::ResourceRead, &target(project, &chain)) {
        return Err(Error::not_found(what, id));
    }
    Ok((item, chain))
}

/// A volume the caller may see, with its VDC chain.
pub async fn volume_visible(app: &App, p: &Principal, id: Uuid) -> Result<(VolumeRow, Vec<Uuid>)> {
    let mut row = app.store.volume_get(id).await?;
    // In the recycle bin it is deleted, as far as the API goes (restore brings it back).
    if row.is_some() && app.store.is_recycled(id).await? {
        row = None;
    }
    seen(app, p, "volume", id, row, |v| {
        (v.api.project_id, v.api.vdc_id)
    })
    .await
}

/// A volume the caller may change (403 if they only see it).
pub async fn volume_writable(app: &App, p: &Principal, id: Uuid) -> Result<(VolumeRow, Vec<Uuid>)> {
    let (row, chain) = volume_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(row.api.project_id, &chain),
        "volume",
        id,
    )?;
    Ok((row, chain))
}

/// A project the caller may create resources in: (project, chain with the project first).
async fn writable_project(app: &App, p: &Principal, id: Uuid) -> Result<(Uuid, Uuid, Vec<Uuid>)> {
    let (project, chain) = app
        .project_visible(p, id)
        .await
        .map_err(|_| Error::not_found("project", id))?;
    require(
        p,
        Perm::ResourceWrite,
        &target(project.id, &chain),
        "project",
        project.id,
    )?;
    let mut full = vec![project.id];
    full.extend(chain);
    Ok((project.id, project.vdc_id, full))
}

fn notify(app: &App, host: Option<Uuid>) {
    if let Some(h) = host {
        app.hub.notify(h);
    }
}

fn check_size(field: &str, size: i64) -> Result<()> {
    if !(1..=MAX_VOLUME_GIB).contains(&size) {
        return Err(Error::invalid(
            field,
            &format!("must be between 1 and {MAX_VOLUME_GIB} GiB (32 TiB)"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- volumes

/// Where a new volume's data comes from, resolved and checked.
struct Source {
    placement: Placement,
    min_gib: i64,
    volume_id: Option<Uuid>,
    snapshot_id: Option<Uuid>,
    backup_id: Option<Uuid>,
    image: Option<(Uuid, String)>,
}

async fn resolve_source(
    app: &App,
    p: &Principal,
    b: &VolumeCreate,
    project: Uuid,
) -> Result<Source> {
    let given = [
        b.snapshot_id.is_some(),
        b.backup_id.is_some(),
        b.image.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given > 1 {
        return Err(Error::invalid(
            "snapshot_id",
            "give at most one of snapshot_id, backup_id and image",
        ));
    }
    let mut src = Source {
        placement: Placement::Anywhere,
        min_gib: 1,
        volume_id: None,
        snapshot_id: None,
        backup_id: None,
        image: None,
    };
    if let Some(sid) = b.snapshot_id {
        let (s, _) = snapshot_visible(app, p, sid)
            .await
            .map_err(|_| Error::invalid("snapshot_id", &format!("no snapshot {sid}")))?;
        if s.api.project_id != project {
            return Err(Error::invalid(
                "snapshot_id",
                "the snapshot belongs to another project",
            ));
        }
        if s.api.status != SnapshotStatus::Available {
            return Err(Error::invalid(
                "snapshot_id",
                &format!(
                    "snapshot {sid} is {}; it must be available",
                    s.api.status.as_str()
                ),
            ));
        }
        let v = app
            .store
            .volume_get(s.api.volume_id)
            .await?
            .ok_or_else(|| Error::invalid("snapshot_id", "the snapshot's volume is gone"))?;
        let host = v
            .api
            .host_id
            .ok_or_else(|| Error::invalid("snapshot_id", "the snapshot's volume is on no host"))?;
        src.placement = Placement::Host(host);
        src.min_gib = s.api.size_gib;
        src.volume_id = Some(v.api.id);
        src.snapshot_id = Some(sid);
    }
    if let Some(bid) = b.backup_id {
        let (bk, _) = backup_visible(app, p, bid)
            .await
            .map_err(|_| Error::invalid("backup_id", &format!("no backup {bid}")))?;
        if bk.project_id != project {
            return Err(Error::invalid(
                "backup_id",
                "the backup belongs to another project",
            ));
        }
        if bk.status != BackupStatus::Available {
            return Err(Error::invalid(
                "backup_id",
                &format!(
                    "backup {bid} is {}; it must be available",
                    bk.status.as_str()
                ),
            ));
        }
        let host = bk
            .host_id
            .ok_or_else(|| Error::invalid("backup_id", "the backup is on no host"))?;
        src.placement = Placement::Host(host);
        src.min_gib = bk.size_gib;
        src.backup_id = Some(bid);
    }
    if let Some(key) = &b.image {
        let img = super::instances::resolve_image(app, p, key, project).await?;
        src.min_gib = img
            .api
            .min_disk_gib
            .max((img.api.virtual_size_bytes + (1 << 30) - 1) >> 30)
            .max(1);
        src.image = Some((img.api.id, img.stored_sha256.clone()));
    }
    Ok(src)
}

pub async fn volume_create(app: &App, p: &Principal, b: VolumeCreate) -> Result<Vec<Volume>> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let count = b.count.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(Error::invalid(
            "count",
            &format!("must be between 1 and {MAX_COUNT}"),
        ));
    }
    if let Some(s) = b.size_gib {
        check_size("size_gib", s)?;
    }
    let (project, vdc, chain) = writable_project(app, p, b.project_id).await?;
    let vtype = resolve_type(app, b.volume_type.as_deref()).await?;
    let src = resolve_source(app, p, &b, project).await?;
    let size = match b.size_gib {
        Some(s) if s < src.min_gib => {
            return Err(Error::invalid(
                "size_gib",
                &format!(
                    "must be at least {} GiB, the size of its source",
                    src.min_gib
                ),
            ))
        }
        Some(s) => s,
        None if src.snapshot_id.is_some() || src.backup_id.is_some() || src.image.is_some() => {
            src.min_gib
        }
        None => {
            return Err(Error::invalid(
                "size_gib",
                "is required for an empty volume",
            ))
        }
    };
    check_size("size_gib", size)?;
    let az = b
        .availability_zone
        .clone()
        .unwrap_or_else(|| app.config.local_agent.availability_zone.clone());
    validate::login_name("availability_zone", &az)?;
    let items: Vec<NewVolume> = (1..=count)
        .map(|n| NewVolume {
            id: Uuid::new_v4(),
            name: if count == 1 {
                b.name.clone()
            } else {
                format!("{}-{n}", b.name)
            },
            description: b.description.clone(),
            project_id: project,
            vdc_id: vdc,
            volume_type_id: vtype.id,
            size_gib: size,
            shareable: b.shareable,
            bootable: src.image.is_some(),
            source_volume_id: src.volume_id,
            source_snapshot_id: src.snapshot_id,
            source_backup_id: src.backup_id,
            image_id: src.image.as_ref().map(|i| i.0),
            image_sha256: src.image.as_ref().map(|i| i.1.clone()),
            availability_zone: az.clone(),
            created_by: p.name.clone(),
        })
        .collect();
    // Step 1: rows and quota, all or nothing.
    app.store.volume_create(&chain, &items).await?;
    // Step 2: room in a pool. A volume that fits nowhere goes to `error` holding nothing.
    let mut out = Vec::with_capacity(items.len());
    for n in &items {
        let placement = src.placement;
        let placed = app
            .store
            .volume_place(
                n.id,
                placement,
                app.config.storage.volume_allocation_ratio,
                app.config.compute.host_down_after_secs,
            )
            .await;
        match placed {
            Ok(Some(h)) => app.hub.notify(h),
            Ok(None) => {
                let reason = match src.placement {
                    Placement::Host(h) => format!(
                        "no room: the storage pool of host {h}, where its source is, cannot take \
                         {size} GiB more (or the host is down or disabled)"
                    ),
                    Placement::Anywhere => format!(
                        "no valid host: no enabled, running host in availability zone {az} has \
                         {size} GiB free in its storage pool"
                    ),
                };
                app.store.volume_fail_create(n.id, &reason).await?;
            }
            Err(e) => {
                app.store
                    .volume_fail_create(n.id, &format!("placing it failed: {e}"))
                    .await?;
            }
        }
        let row = app
            .store
            .volume_get(n.id)
            .await?
            .ok_or_else(|| Error::internal("volume vanished after create"))?;
        out.push(row.api);
    }
    Ok(out)
}

pub async fn volume_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: VolumeFilter,
) -> Result<Page<Volume>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    if let Some(s) = &f.status {
        if VolumeStatus::parse(s).is_none() {
            let all: Vec<&str> = VolumeStatus::ALL.iter().map(|s| s.as_str()).collect();
            return Err(Error::invalid(
                "status",
                &format!("must be one of {}", all.join(", ")),
            ));
        }
    }
    let (items, next) = app
        .store
        .volume_list(
            &vis,
            &VolumeQuery {
                project_id: f.project_id,
                vdc_id: f.vdc_id,
                status: f.status.as_deref(),
                instance_id: f.instance_id,
                name: q.name.as_deref(),
            },
            &paging,
        )
        .await?;
    Ok(Page { items, next })
}

pub async fn volume_view(app: &App, p: &Principal, id: Uuid) -> Result<Volume> {
    Ok(volume_visible(app, p, id).await?.0.api)
}

pub async fn volume_update(app: &App, p: &Principal, id: Uuid, b: VolumeUpdate) -> Result<Volume> {
    volume_writable(app, p, id).await?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    app.store
        .name_description_update("volumes", id, b.name.as_deref(), b.description.as_deref())
        .await?;
    volume_view(app, p, id).await
}

pub async fn volume_delete(app: &App, p: &Principal, id: Uuid, cascade: bool) -> Result<()> {
    let (row, _) = volume_writable(app, p, id).await?;
    app.store.volume_delete(id, cascade).await?;
    notify(app, row.api.host_id);
    Ok(())
}

/// The instance a volume may be attached to or detached from: writable by the caller, in
/// the volume's project, on its host, and running or stopped.
async fn attach_target(
    app: &App,
    p: &Principal,
    v: &VolumeRow,
    instance: Uuid,
    what: &str,
) -> Result<crate::store::InstanceRow> {
    let (inst, _) = instance_writable(app, p, instance).await?;
    if inst.api.project_id != v.api.project_id {
        return Err(Error::invalid(
            "instance_id",
            &format!(
                "instance {instance} is in another project than volume {}; both must be in the same project",
                v.api.id
            ),
        ));
    }
    let ok = matches!(
        inst.api.status,
        InstanceStatus::Running | InstanceStatus::Stopped
    ) && inst.api.task.is_none();
    if !ok {
        return Err(Error::conflict(format!(
            "instance {instance} is {}; {what} needs it running or stopped",
            inst.api.status.as_str()
        )));
    }
    Ok(inst)
}

pub async fn volume_attach(app: &App, p: &Principal, id: Uuid, b: VolumeAttach) -> Result<Volume> {
    let (v, _) = volume_writable(app, p, id).await?;
    let inst = attach_target(app, p, &v, b.instance_id, "attaching a volume").await?;
    if inst.api.availability_zone != v.api.availability_zone {
        return Err(Error::conflict(format!(
            "volume {id} is in availability zone {}, instance {} in {}",
            v.api.availability_zone, inst.api.id, inst.api.availability_zone
        )));
    }
    if v.api.host_id.is_none() || v.api.host_id != inst.api.host_id {
        return Err(Error::conflict(format!(
            "volume {id} is in the storage pool of host {}, instance {} runs on host {}: the local \
             pool serves only its own host",
            v.api.host_name.clone().unwrap_or_else(|| "(none)".into()),
            inst.api.id,
            inst.api.host_name.clone().unwrap_or_else(|| "(none)".into())
        )));
    }
    app.store.volume_attach(id, b.instance_id, false).await?;
    notify(app, inst.api.host_id);
    volume_view(app, p, id).await
}

pub async fn volume_detach(app: &App, p: &Principal, id: Uuid, b: VolumeDetach) -> Result<Volume> {
    let (v, _) = volume_writable(app, p, id).await?;
    let instance = match (b.instance_id, v.api.attachments.as_slice()) {
        (Some(i), _) => i,
        (None, []) => {
            return Err(Error::conflict(format!("volume {id} is not attached")));
        }
        (None, [one]) => one.instance_id,
        (None, many) => {
            return Err(Error::invalid(
                "instance_id",
                &format!(
                    "volume {id} is attached to {} instances; say which to detach it from",
                    many.len()
                ),
            ))
        }
    };
    if !v.api.attachments.iter().any(|a| a.instance_id == instance) {
        return Err(Error::conflict(format!(
            "volume {id} is not attached to instance {instance}"
        )));
    }
    let inst = attach_target(app, p, &v, instance, "detaching a volume").await?;
    app.store.volume_detach(id, instance).await?;
    notify(app, inst.api.host_id);
    volume_view(app, p, id).await
}

pub async fn volume_extend(app: &App, p: &Principal, id: Uuid, b: VolumeExtend) -> Result<Volume> {
    let (v, chain) = volume_writable(app, p, id).await?;
    check_size("size_gib", b.size_gib)?;
    // Online growth goes through the running guest; a suspended or busy one cannot.
    for a in &v.api.attachments {
        if let Some(inst) = app.store.instance_get(a.instance_id).await? {
            let ok = matches!(
                inst.api.status,
                InstanceStatus::Running | InstanceStatus::Stopped
            );
            if !ok {
                return Err(Error::conflict(format!(
                    "volume {id} is attached to instance {} which is {}; extending needs it running or stopped",
                    inst.api.id,
                    inst.api.status.as_str()
                )));
            }
        }
    }
    let mut full = vec![v.api.project_id];
    full.extend(chain);
    app.store
        .volume_extend(
            id,
            &full,
            b.size_gib,
            app.config.storage.volume_allocation_ratio,
        )
        .await?;
    notify(app, v.api.host_id);
    volume_view(app, p, id).await
}

pub async fn volume_revert(app: &App, p: &Principal, id: Uuid, b: VolumeRevert) -> Result<Volume> {
    let (v, _) = volume_writable(app, p, id).await?;
    app.store.volume_revert(id, b.snapshot_id).await?;
    notify(app, v.api.host_id);
    volume_view(app, p, id).await
}

// ---------------------------------------------------------------- snapshots

async fn snapshot_visible(app: &App, p: &Principal, id: Uuid) -> Result<(SnapshotRow, Vec<Uuid>)> {
    let s = app.store.snapshot_get(id).await?;
    seen(app, p, "snapshot", id, s, |s| {
        (s.api.project_id, s.api.vdc_id)
    })
    .await
}

pub async fn snapshot_create(app: &App, p: &Principal, b: SnapshotCreate) -> Result<Snapshot> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let (v, chain) = volume_visible(app, p, b.volume_id)
        .await
        .map_err(|_| Error::not_found("volume", b.volume_id))?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(v.api.project_id, &chain),
        "volume",
        v.api.id,
    )?;
    let mut full = vec![v.api.project_id];
    full.extend(chain);
    let id = Uuid::new_v4();
    app.store
        .snapshot_create(id, v.api.id, &full, &b.name, &b.description, &p.name)
        .await?;
    notify(app, v.api.host_id);
    snapshot_view(app, p, id).await
}

pub async fn snapshot_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: SnapshotFilter,
) -> Result<Page<Snapshot>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    let (items, next) = app
        .store
        .snapshot_list(&vis, f.project_id, f.volume_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn snapshot_view(app: &App, p: &Principal, id: Uuid) -> Result<Snapshot> {
    Ok(snapshot_visible(app, p, id).await?.0.api)
}

pub async fn snapshot_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: VolumeUpdate,
) -> Result<Snapshot> {
    let (s, chain) = snapshot_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(s.api.project_id, &chain),
        "snapshot",
        id,
    )?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    app.store
        .name_description_update("snapshots", id, b.name.as_deref(), b.description.as_deref())
        .await?;
    snapshot_view(app, p, id).await
}

pub async fn snapshot_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (s, chain) = snapshot_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(s.api.project_id, &chain),
        "snapshot",
        id,
    )?;
    app.store.snapshot_delete(id).await?;
    if let Some(v) = app.store.volume_get(s.api.volume_id).await? {
        notify(app, v.api.host_id);
    }
    Ok(())
}

// ---------------------------------------------------------------- backups

async fn backup_visible(app: &App, p: &Principal, id: Uuid) -> Result<(Backup, Vec<Uuid>)> {
    let b = app.store.backup_get(id).await?;
    seen(app, p, "backup", id, b, |b| (b.project_id, b.vdc_id)).await
}

/// Start a backup of a volume (made on request, or by `policy`).
async fn backup_start(
    app: &App,
    v: &VolumeRow,
    name: &str,
    policy: Option<Uuid>,
    user: &str,
) -> Result<Uuid> {
    if !matches!(v.api.status, VolumeStatus::Available | VolumeStatus::InUse) {
        return Err(Error::conflict(format!(
            "volume {} is {}; a backup needs it available or in_use",
            v.api.id,
            v.api.status.as_str()
        )));
    }
    if v.api.host_id.is_none() {
        return Err(Error::conflict(format!(
            "volume {} is on no host",
            v.api.id
        )));
    }
    let id = Uuid::new_v4();
    app.store.backup_create(id, v, name, policy, user).await?;
    notify(app, v.api.host_id);
    Ok(id)
}

pub async fn backup_create(app: &App, p: &Principal, b: BackupCreate) -> Result<Backup> {
    validate::name("name", &b.name)?;
    let (v, _) = volume_writable(app, p, b.volume_id).await?;
    let id = backup_start(app, &v, &b.name, None, &p.name).await?;
    backup_view(app, p, id).await
}

pub async fn backup_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: BackupFilter,
) -> Result<Page<Backup>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    let (items, next) = app
        .store
        .backup_list(&vis, &f, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn backup_view(app: &App, p: &Principal, id: Uuid) -> Result<Backup> {
    Ok(backup_visible(app, p, id).await?.0)
}

pub async fn backup_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (b, chain) = backup_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(b.project_id, &chain),
        "backup",
        id,
    )?;
    app.store.backup_delete(id).await?;
    notify(app, b.host_id);
    Ok(())
}

// ---------------------------------------------------------------- backup policies

async fn policy_visible(app: &App, p: &Principal, id: Uuid) -> Result<(BackupPolicy, Vec<Uuid>)> {
    let bp = app.store.backup_policy_get(id).await?;
    seen(app, p, "backup policy", id, bp, |b| {
        (b.project_id, b.vdc_id)
    })
    .await
}

/// Policy settings a user may give, checked: the targets must be the project's own.
async fn check_policy(app: &App, p: &Principal, bp: &BackupPolicy) -> Result<()> {
    validate::name("name", &bp.name)?;
    if !(1..=8760).contains(&bp.interval_hours) {
        return Err(Error::invalid(
            "interval_hours",
            "must be between 1 and 8760 (a year)",
        ));
    }
    if !(1..=100).contains(&bp.keep) {
        return Err(Error::invalid("keep", "must be between 1 and 100"));
    }
    if bp.volume_ids.len() + bp.instance_ids.len() > 1000 {
        return Err(Error::invalid(
            "volume_ids",
            "a policy covers at most 1000 targets",
        ));
    }
    for v in &bp.volume_ids {
        match volume_visible(app, p, *v).await {
            Ok((row, _)) if row.api.project_id == bp.project_id => {}
            _ => {
                return Err(Error::invalid(
                    "volume_ids",
                    &format!("no volume {v} in this project"),
                ))
            }
        }
    }
    for i in &bp.instance_ids {
        match super::instances::instance_visible(app, p, *i).await {
            Ok((row, _)) if row.api.project_id == bp.project_id => {}
            _ => {
                return Err(Error::invalid(
                    "instance_ids",
                    &format!("no instance {i} in this project"),
                ))
            }
        }
    }
    Ok(())
}

pub async fn backup_policy_create(
    app: &App,
    p: &Principal,
    b: BackupPolicyCreate,
) -> Result<BackupPolicy> {
    let (project, vdc, _) = writable_project(app, p, b.project_id).await?;
    let now = Utc::now();
    let bp = BackupPolicy {
        id: Uuid::new_v4(),
        name: b.name,
        project_id: project,
        vdc_id: vdc,
        interval_hours: b.interval_hours,
        keep: b.keep,
        enabled: b.enabled,
        volume_ids: dedup(b.volume_ids),
        instance_ids: dedup(b.instance_ids),
        next_run_at: b
            .first_run_at
            .unwrap_or_else(|| now + chrono::Duration::hours(b.interval_hours.clamp(1, 8760))),
        last_run_at: None,
        created_by: p.name.clone(),
        created_at: now,
        updated_at: now,
    };
    check_policy(app, p, &bp).await?;
    app.store.backup_policy_create(&bp).await?;
    backup_policy_view(app, p, bp.id).await
}

fn dedup(mut v: Vec<Uuid>) -> Vec<Uuid> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(*x));
    v
}

pub async fn backup_policy_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: BackupPolicyFilter,
) -> Result<Page<BackupPolicy>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    let (items, next) = app
        .store
        .backup_policy_list(&vis, f.project_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn backup_policy_view(app: &App, p: &Principal, id: Uuid) -> Result<BackupPolicy> {
    Ok(policy_visible(app, p, id).await?.0)
}

pub async fn backup_policy_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: BackupPolicyUpdate,
) -> Result<BackupPolicy> {
    let (mut bp, chain) = policy_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(bp.project_id, &chain),
        "backup policy",
        id,
    )?;
    if let Some(n) = b.name {
        bp.name = n;
    }
    if let Some(h) = b.interval_hours {
        bp.interval_hours = h;
    }
    if let Some(k) = b.keep {
        bp.keep = k;
    }
    if let Some(v) = b.volume_ids {
        bp.volume_ids = dedup(v);
    }
    if let Some(i) = b.instance_ids {
        bp.instance_ids = dedup(i);
    }
    if let Some(e) = b.enabled {
        bp.enabled = e;
    }
    if let Some(t) = b.next_run_at {
        bp.next_run_at = t;
    }
    check_policy(app, p, &bp).await?;
    app.store.backup_policy_update(&bp).await?;
    backup_policy_view(app, p, id).await
}

pub async fn backup_policy_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (bp, chain) = policy_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(bp.project_id, &chain),
        "backup policy",
        id,
    )?;
    // Its backups stay: they are the department's data, deleted only on request.
    app.store.backup_policy_delete(id).await
}

/// Run a policy now (as the scheduler would), whatever its schedule.
pub async fn backup_policy_run(app: &App, p: &Principal, id: Uuid) -> Result<BackupPolicy> {
    let (bp, chain) = policy_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(bp.project_id, &chain),
        "backup policy",
        id,
    )?;
    run_policy(app, &bp, Utc::now(), false).await?;
    backup_policy_view(app, p, id).await
}

/// What one run of a policy did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PolicyRun {
    pub started: usize,
    pub pruned: usize,
    pub skipped: usize,
}

/// Back up every target volume of `bp`, prune each volume's copies to `keep`, and (when
/// `scheduled`) move the next run one interval on.
async fn run_policy(
    app: &App,
    bp: &BackupPolicy,
    now: DateTime<Utc>,
    scheduled: bool,
) -> Result<PolicyRun> {
    let mut volumes = bp.volume_ids.clone();
    for i in &bp.instance_ids {
        for v in app.store.volume_ids_of_instance(*i, true).await? {
            if !volumes.contains(&v) {
                volumes.push(v);
            }
        }
    }
    let mut run = PolicyRun::default();
    let label = now.format("%Y%m%d-%H%M%S");
    for vid in volumes {
        let Some(v) = app.store.volume_get(vid).await? else {
            run.skipped += 1;
            continue;
        };
        if v.api.project_id != bp.project_id {
            run.skipped += 1;
            continue;
        }
        match backup_start(
            app,
            &v,
            &format!("{}-{label}", bp.name),
            Some(bp.id),
            &bp.created_by,
        )
        .await
        {
            Ok(_) => run.started += 1,
            Err(e) => {
                tracing::warn!(policy = %bp.id, volume = %vid, "scheduled backup skipped: {e}");
                run.skipped += 1;
                continue;
            }
        }
        // Keep the newest `keep` good copies (the one just started counts); failed copies
        // are of no use and go too.
        let (failed, good): (Vec<Backup>, Vec<Backup>) = app
            .store
            .backups_of_policy(bp.id, vid)
            .await?
            .into_iter()
            .partition(|b| b.status == BackupStatus::Error);
        for old in good.iter().skip(bp.keep.max(1) as usize).chain(&failed) {
            app.store.backup_delete(old.id).await?;
            notify(app, old.host_id);
            run.pruned += 1;
        }
    }
    if scheduled {
        let step = chrono::Duration::hours(bp.interval_hours.max(1));
        let mut next = bp.next_run_at + step;
        if next <= now {
            next = now + step;
        }
        app.store.backup_policy_ran(bp.id, now, next).await?;
    } else {
        app.store
            .backup_policy_ran(bp.id, now, bp.next_run_at)
            .await?;
    }
    Ok(run)
}

/// Run every policy due at `now` (the scheduler calls this every
/// `storage.backup_check_secs`; tests call it with a clock of their own).
pub async fn backup_policies_run_due(app: &App, now: DateTime<Utc>) -> Result<PolicyRun> {
    let mut total = PolicyRun::default();
    for bp in app.store.backup_policies_due(now).await? {
        match run_policy(app, &bp, now, true).await {
            Ok(r) => {
                total.started += r.started;
                total.pruned += r.pruned;
                total.skipped += r.skipped;
            }
            Err(e) => tracing::warn!(policy = %bp.id, "backup policy run failed: {e}"),
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------- volumes of a new instance

/// The volumes a new instance boots from and attaches from its first boot, checked, and
/// the host it must be placed on (where they are).
pub struct InstanceVolumes {
    pub boot: Option<VolumeRow>,
    pub data: Vec<VolumeRow>,
    pub host: Option<Uuid>,
}

pub async fn boot_volumes(
    app: &App,
    p: &Principal,
    b: &stratus_api::InstanceCreate,
    project: Uuid,
    count: i64,
) -> Result<InstanceVolumes> {
    match (b.boot_volume_id, b.image.is_empty()) {
        (Some(_), false) => {
            return Err(Error::invalid(
                "boot_volume_id",
                "give either an image or a boot volume, not both",
            ))
        }
        (None, true) => {
            return Err(Error::invalid(
                "image",
                "is required (or boot from a volume with boot_volume_id)",
            ))
        }
        _ => {}
    }
    let wanted = b.boot_volume_id.is_some() as usize + b.volume_ids.len();
    if wanted > 0 && count != 1 {
        return Err(Error::invalid(
            "count",
            "must be 1 for an instance with volumes (a volume belongs to one instance)",
        ));
    }
    if b.volume_ids.len() as i64 > crate::store::MAX_INSTANCE_VOLUMES {
        return Err(Error::invalid(
            "volume_ids",
            &format!(
                "at most {} data volumes",
                crate::store::MAX_INSTANCE_VOLUMES
            ),
        ));
    }
    let usable = |field: &'static str, v: &VolumeRow| -> Result<()> {
        if v.api.project_id != project {
            return Err(Error::invalid(
                field,
                &format!("volume {} is in another project", v.api.id),
            ));
        }
        let free = v.api.status == VolumeStatus::Available
            || (v.api.shareable && v.api.status == VolumeStatus::InUse);
        if !free {
            return Err(Error::invalid(
                field,
                &format!(
                    "volume {} is {}; it must be available",
                    v.api.id,
                    v.api.status.as_str()
                ),
            ));
        }
        Ok(())
    };
    let mut out = InstanceVolumes {
        boot: None,
        data: Vec::new(),
        host: None,
    };
    if let Some(id) = b.boot_volume_id {
        let (v, _) = volume_visible(app, p, id)
            .await
            .map_err(|_| Error::invalid("boot_volume_id", &format!("no volume {id}")))?;
        usable("boot_volume_id", &v)?;
        if !v.api.bootable {
            return Err(Error::invalid(
                "boot_volume_id",
                &format!(
                    "volume {id} is not bootable: make it from an image (volume create --image)"
                ),
            ));
        }
        if v.api.shareable {
            return Err(Error::invalid(
                "boot_volume_id",
                "a shareable volume cannot be a root disk",
            ));
        }
        out.boot = Some(v);
    }
    for id in &b.volume_ids {
        if Some(*id) == b.boot_volume_id || out.data.iter().any(|v| v.api.id == *id) {
            return Err(Error::invalid(
                "volume_ids",
                &format!("volume {id} is listed twice"),
            ));
        }
        let (v, _) = volume_visible(app, p, *id)
            .await
            .map_err(|_| Error::invalid("volume_ids", &format!("no volume {id}")))?;
        usable("volume_ids", &v)?;
        out.data.push(v);
    }
    for v in out.boot.iter().chain(&out.data) {
        let h = v.api.host_id.ok_or_else(|| {
            Error::invalid("volume_ids", &format!("volume {} is on no host", v.api.id))
        })?;
        match out.host {
            Some(other) if other != h => {
                return Err(Error::invalid(
                    "volume_ids",
                    "the volumes are in different hosts' storage pools; an instance can use only one host's",
                ))
            }
            _ => out.host = Some(h),
        }
    }
    Ok(out)
}
