//! Instances (ECS): the create saga (quota → schedule → agent builds → running, unwinding
//! at every step), lifecycle actions, consoles and metrics; and key pairs.

use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};
use stratus_api::{
    DesiredPower, ImageStatus, ImageVisibility, Instance, InstanceAction, InstanceActionKind,
    InstanceCreate, InstanceFilter, InstanceMetrics, InstanceStatus, InstanceTask, InstanceUpdate,
    KeyPair, KeyPairCreate, ListParams, Page, ProjectScope, RemoteConsole,
};
use uuid::Uuid;

use super::{require, require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{FlavorSnapshot, InstanceQuery, InstanceRow, NewInstance, Paging, Transition};
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];
const MAX_USER_DATA: usize = 64 * 1024;
const MAX_COUNT: i64 = 100;
/// How long a one-time console password may be used to connect.
const CONSOLE_VALID_SECS: i64 = 60;

/// An instance the caller may see, with its VDC chain.
pub async fn instance_visible(
    app: &App,
    p: &Principal,
    id: Uuid,
) -> Result<(InstanceRow, Vec<Uuid>)> {
    let row = app
        .store
        .instance_get(id)
        .await?
        .ok_or_else(|| Error::not_found("instance", id))?;
    // In the recycle bin it is deleted, as far as the API goes (restore brings it back).
    if app.store.is_recycled(id).await? {
        return Err(Error::not_found("instance", id));
    }
    let chain = app.store.vdc_chain(row.api.vdc_id).await?;
    let target = Target::Project {
        id: row.api.project_id,
        chain: &chain,
    };
    if !p.can(Perm::ResourceRead, &target) {
        return Err(Error::not_found("instance", id));
    }
    Ok((row, chain))
}

/// An instance the caller may change (403 if they only see it).
pub async fn instance_writable(
    app: &App,
    p: &Principal,
    id: Uuid,
) -> Result<(InstanceRow, Vec<Uuid>)> {
    let (row, chain) = instance_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &Target::Project {
            id: row.api.project_id,
            chain: &chain,
        },
        "instance",
        id,
    )?;
    Ok((row, chain))
}

/// A flavor by id or name that the project's VDC may use.
async fn resolve_flavor(
    app: &App,
    p: &Principal,
    key: &str,
    chain: &[Uuid],
) -> Result<stratus_api::Flavor> {
    let flavors = super::flavors::flavor_list(app, p).await?;
    let f = flavors
        .into_iter()
        .find(|f| f.name == key || f.id.to_string() == key)
        .ok_or_else(|| {
            Error::invalid(
                "flavor",
                &format!("no flavor {key:?} (see `stratus flavor list`)"),
            )
        })?;
    if !f.vdc_ids.is_empty() && !f.vdc_ids.iter().any(|v| chain.contains(v)) {
        return Err(Error::invalid(
            "flavor",
            &format!("flavor {} is not available in this project's VDC", f.name),
        ));
    }
    Ok(f)
}

/// An active image by id or name that the project may boot.
pub(crate) async fn resolve_image(
    app: &App,
    p: &Principal,
    key: &str,
    project: Uuid,
) -> Result<crate::store::ImageRow> {
    let mut candidates = Vec::new();
    let ids = match Uuid::parse_str(key) {
        Ok(id) => vec![id],
        Err(_) => app.store.image_ids_named(key).await?,
    };
    for id in ids {
        if let Ok(img) = super::images::image_visible(app, p, id).await {
            let usable = img.api.visibility == ImageVisibility::Public
                || img.api.project_id == Some(project)
                || (img.api.visibility == ImageVisibility::Shared
                    && img.api.shared_with.contains(&project));
            if usable {
                candidates.push(img);
            }
        }
    }
    let img = match candidates.len() {
        0 => {
            return Err(Error::invalid(
                "image",
                &format!("no image {key:?} that this project may use (see `stratus image list`)"),
            ))
        }
        1 => candidates.remove(0),
        n => {
            return Err(Error::invalid(
                "image",
                &format!("{n} images are named {key:?}; give the id"),
            ))
        }
    };
    if img.api.status != ImageStatus::Active {
        return Err(Error::invalid(
            "image",
            &format!("image {} has no data yet (upload it first)", img.api.name),
        ));
    }
    Ok(img)
}

pub async fn instance_create(
    app: &App,
    p: &Principal,
    b: InstanceCreate,
    request_id: &str,
) -> Result<Vec<Instance>> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    if b.name.len() > 63
        || !b
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::invalid(
            "name",
            "becomes the hostname: use 1–63 letters, digits and '-'",
        ));
    }
    let count = b.count.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(Error::invalid(
            "count",
            &format!("must be between 1 and {MAX_COUNT}"),
        ));
    }
    if b.user_data
        .as_ref()
        .is_some_and(|u| u.len() > MAX_USER_DATA)
    {
        return Err(Error::invalid("user_data", "must be at most 64 KiB"));
    }
    let (project, chain) = app
        .project_visible(p, b.project_id)
        .await
        .map_err(|_| Error::not_found("project", b.project_id))?;
    require(
        p,
        Perm::ResourceWrite,
        &Target::Project {
            id: project.id,
            chain: &chain,
        },
        "project",
        project.id,
    )?;
    let flavor = resolve_flavor(app, p, &b.flavor, &chain).await?;
    let volumes = super::volumes::boot_volumes(app, p, &b, project.id, count).await?;
    let nics = super::networks::instance_nics(app, p, project.id, &b.nics, count).await?;
    let (image_id, image_name, image_sha256, root_disk_gib) = match &volumes.boot {
        Some(v) => (
            // What the boot volume was made from, for the record; the agent boots the volume.
            v.api.image_id.unwrap_or(Uuid::nil()),
            format!("volume {}", v.api.name),
            String::new(),
            0,
        ),
        None => {
            let image = resolve_image(app, p, &b.image, project.id).await?;
            let image_min = image
                .api
                .min_disk_gib
                .max((image.api.virtual_size_bytes + (1 << 30) - 1) >> 30);
            if flavor.disk_gib < image_min {
                return Err(Error::invalid(
                    "flavor",
                    &format!(
                        "{} has a {} GiB root disk; image {} needs at least {image_min} GiB",
                        flavor.name, flavor.disk_gib, image.api.name
                    ),
                ));
            }
            (
                image.api.id,
                image.api.name.clone(),
                image.stored_sha256.clone(),
                flavor.disk_gib,
            )
        }
    };
    let (key_name, ssh_keys) = match &b.key_name {
        None => (None, vec![]),
        Some(k) => {
            let kp = app
                .store
                .keypair_by_name(project.id, k)
                .await?
                .ok_or_else(|| {
                    Error::invalid(
                        "key_name",
                        &format!("the project has no key pair named {k:?}"),
                    )
                })?;
            (Some(kp.name), vec![kp.public_key])
        }
    };
    let az = b
        .availability_zone
        .clone()
        .unwrap_or_else(|| app.config.local_agent.availability_zone.clone());
    validate::login_name("availability_zone", &az)?;
    let snapshot = FlavorSnapshot {
        id: flavor.id,
        vcpus: flavor.vcpus,
        memory_mib: flavor.memory_mib,
        // Booting from a volume takes no root disk from the host.
        disk_gib: root_disk_gib,
    };
    let items: Vec<NewInstance> = (1..=count)
        .map(|n| NewInstance {
            id: Uuid::new_v4(),
            name: if count == 1 {
                b.name.clone()
            } else {
                format!("{}-{n}", b.name)
            },
            description: b.description.clone(),
            project_id: project.id,
            vdc_id: project.vdc_id,
            flavor: snapshot,
            flavor_name: flavor.name.clone(),
            image_id,
            image_name: image_name.clone(),
            image_sha256: image_sha256.clone(),
            availability_zone: az.clone(),
            key_name: key_name.clone(),
            ssh_keys: ssh_keys.clone(),
            user_data: b.user_data.clone(),
            boot_volume_id: volumes.boot.as_ref().map(|v| v.api.id),
            created_by: p.name.clone(),
            request_id: request_id.to_string(),
        })
        .collect();
    let mut full = vec![project.id];
    full.extend(chain.iter().copied());
    // Step 1: records and quota, all or nothing.
    app.store
        .instance_create(&full, &items, app.config.fault("create.quota"))
        .await?;
    // Step 2: placement. A failure from here on leaves the instance in `error` with
    // nothing held; the agent's build steps unwind the same way when they fail.
    let mut out = Vec::with_capacity(items.len());
    for n in &items {
        // Its NICs first: the desired state of its first boot carries them.
        if !nics.is_empty() {
            if let Err(e) = super::networks::instance_nics_make(app, n.id, &nics).await {
                app.store
                    .instance_fail_build(n.id, &format!("making its NICs failed: {e}"))
                    .await?;
                let row = app
                    .store
                    .instance_get(n.id)
                    .await?
                    .ok_or_else(|| Error::internal("instance vanished after create"))?;
                out.push(row.api);
                continue;
            }
        }
        let placed = app
            .store
            .instance_place(
                n.id,
                volumes.host,
                &app.config.compute,
                app.config.fault("create.schedule"),
            )
            .await;
        match placed {
            Ok(Some(_)) => {
                if !nics.is_empty() {
                    if let Some(h) = app
                        .store
                        .instance_get(n.id)
                        .await?
                        .and_then(|r| r.api.host_id)
                    {
                        super::networks::instance_placed(app, n.id, h).await?;
                    }
                }
                // Its volumes, from the first boot: the root disk first.
                let attach = async {
                    if let Some(v) = &volumes.boot {
                        app.store.volume_attach(v.api.id, n.id, true).await?;
                    }
                    for v in &volumes.data {
                        app.store.volume_attach(v.api.id, n.id, false).await?;
                    }
                    Ok::<_, Error>(())
                };
                if let Err(e) = attach.await {
                    app.store
                        .instance_fail_build(n.id, &format!("attaching its volumes failed: {e}"))
                        .await?;
                }
            }
            Ok(None) => {
                let reason = match volumes.host {
                    Some(h) => format!(
                        "no valid host: host {h}, where its volumes are, is down, disabled or lacks \
                         {} vCPU, {} MiB memory and {} GiB disk",
                        snapshot.vcpus, snapshot.memory_mib, snapshot.disk_gib
                    ),
                    None => format!(
                        "no valid host: no enabled, running host in availability zone {az} has {} vCPU, \
                         {} MiB memory and {} GiB disk free",
                        snapshot.vcpus, snapshot.memory_mib, snapshot.disk_gib
                    ),
                };
                app.store.instance_fail_build(n.id, &reason).await?;
            }
            Err(e) => {
                app.store
                    .instance_fail_build(n.id, &format!("scheduling failed: {e}"))
                    .await?;
            }
        }
        let row = app
            .store
            .instance_get(n.id)
            .await?
            .ok_or_else(|| Error::internal("instance vanished after create"))?;
        if let Some(h) = row.api.host_id {
            app.hub.notify(h);
        }
        out.push(row.api);
    }
    Ok(out)
}

pub async fn instance_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: InstanceFilter,
) -> Result<Page<Instance>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    if let Some(s) = &f.status {
        if InstanceStatus::parse(s).is_none() {
            return Err(Error::invalid(
                "status",
                "must be building, running, stopped, paused, suspended, busy, deleting or error",
            ));
        }
    }
    let (items, next) = app
        .store
        .instance_list(
            &vis,
            &InstanceQuery {
                project_id: f.project_id,
                vdc_id: f.vdc_id,
                host_id: f.host_id,
                status: f.status.as_deref(),
                name: q.name.as_deref(),
            },
            &paging,
        )
        .await?;
    Ok(Page { items, next })
}

pub async fn instance_view(app: &App, p: &Principal, id: Uuid) -> Result<Instance> {
    let mut i = instance_visible(app, p, id).await?.0.api;
    i.volumes = app.store.volume_ids_of_instance(id, false).await?;
    i.addresses = app
        .store
        .ports_of_instance(id)
        .await?
        .into_iter()
        .map(|port| port.ip)
        .collect();
    Ok(i)
}

pub async fn instance_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: InstanceUpdate,
) -> Result<Instance> {
    instance_writable(app, p, id).await?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    app.store
        .instance_rename(id, b.name.as_deref(), b.description.as_deref())
        .await?;
    instance_view(app, p, id).await
}

pub async fn instance_delete(app: &App, p: &Principal, id: Uuid, request_id: &str) -> Result<()> {
    let (row, _) = instance_writable(app, p, id).await?;
    let gone = app.store.instance_delete(id, &p.name, request_id).await?;
    if gone {
        app.hub.forget(id);
    }
    if let Some(h) = row.api.host_id {
        app.hub.notify(h);
    }
    Ok(())
}

/// Wait until an instance is in `want` with no task under way (an error when it fails).
pub async fn instance_settled(
    app: &App,
    p: &Principal,
    id: Uuid,
    want: InstanceStatus,
) -> Result<Instance> {
    super::until(
        &format!("instance {id} becoming {}", want.as_str()),
        || async {
            let i = instance_view(app, p, id).await?;
            if i.status == want && i.task.is_none() {
                Ok(Some(i))
            } else if i.status == InstanceStatus::Error {
                Err(Error::conflict(format!(
                    "instance {id} is in error: {}",
                    i.status_reason
                )))
            } else {
                Ok(None)
            }
        },
    )
    .await
}

/// Resize an instance whatever its power state: a running guest is stopped, resized and
/// started again (a resize itself needs it stopped); background work only, as it waits.
pub async fn instance_resize_restarting(
    app: &App,
    p: &Principal,
    id: Uuid,
    flavor: &str,
    request_id: &str,
) -> Result<()> {
    let was_running = instance_view(app, p, id).await?.status == InstanceStatus::Running;
    let act = |action, flavor: Option<String>| InstanceAction {
        action,
        hard: false,
        timeout_secs: None,
        flavor,
    };
    if was_running {
        instance_action(app, p, id, act(InstanceActionKind::Stop, None), request_id).await?;
        instance_settled(app, p, id, InstanceStatus::Stopped).await?;
    }
    let resize = act(InstanceActionKind::Resize, Some(flavor.to_string()));
    instance_action(app, p, id, resize, request_id).await?;
    instance_settled(app, p, id, InstanceStatus::Stopped).await?;
    if was_running {
        instance_action(app, p, id, act(InstanceActionKind::Start, None), request_id).await?;
        instance_settled(app, p, id, InstanceStatus::Running).await?;
    }
    Ok(())
}

pub async fn instance_action(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: InstanceAction,
    request_id: &str,
) -> Result<Instance> {
    use InstanceStatus as S;
    let (row, chain) = instance_writable(app, p, id).await?;
    let timeout = match b.timeout_secs {
        None => None,
        Some(t @ 0..=3600) => Some(t),
        Some(_) => return Err(Error::invalid("timeout_secs", "must be between 0 and 3600")),
    };
    if b.action != InstanceActionKind::Stop && b.timeout_secs.is_some() {
        return Err(Error::invalid("timeout_secs", "applies to stop only"));
    }
    if b.action != InstanceActionKind::Resize && b.flavor.is_some() {
        return Err(Error::invalid("flavor", "applies to resize only"));
    }
    if !row.host_held && b.action != InstanceActionKind::Resize {
        return Err(Error::conflict(format!(
            "instance {id} is {} and has no host; delete it and create it again",
            row.api.status.as_str()
        )));
    }
    let t = |from: &'static [S], power: Option<DesiredPower>, task: &'static str| Transition {
        from,
        power,
        status: S::Busy,
        task,
        soft_reboot: false,
        hard_reboot: false,
        stop_timeout_secs: None,
    };
    let transition = match b.action {
        InstanceActionKind::Start => t(&[S::Stopped], Some(DesiredPower::Running), "starting"),
        InstanceActionKind::Stop => Transition {
            stop_timeout_secs: timeout,
            ..t(
                &[S::Running, S::Paused, S::Error],
                Some(DesiredPower::Stopped),
                "stopping",
            )
        },
        InstanceActionKind::Reboot => Transition {
            soft_reboot: !b.hard,
            hard_reboot: b.hard,
            ..t(
                &[S::Running],
                None,
                if b.hard {
                    "rebooting_hard"
                } else {
                    "rebooting"
                },
            )
        },
        InstanceActionKind::Pause => t(&[S::Running], Some(DesiredPower::Paused), "pausing"),
        InstanceActionKind::Unpause => t(&[S::Paused], Some(DesiredPower::Running), "unpausing"),
        InstanceActionKind::Suspend => {
            t(&[S::Running], Some(DesiredPower::Suspended), "suspending")
        }
        InstanceActionKind::Resume => t(&[S::Suspended], Some(DesiredPower::Running), "resuming"),
        InstanceActionKind::Resize => {
            let key = b
                .flavor
                .as_deref()
                .ok_or_else(|| Error::invalid("flavor", "resize needs the new flavor"))?;
            let f = resolve_flavor(app, p, key, &chain).await?;
            if f.id == row.api.flavor_id {
                return Err(Error::invalid("flavor", "is the instance's current flavor"));
            }
            let mut full = vec![row.api.project_id];
            full.extend(chain.iter().copied());
            app.store
                .instance_resize(
                    id,
                    &full,
                    FlavorSnapshot {
                        id: f.id,
                        vcpus: f.vcpus,
                        memory_mib: f.memory_mib,
                        // An instance booted from a volume keeps no root disk of its own.
                        disk_gib: if row.api.boot_volume_id.is_some() {
                            0
                        } else {
                            f.disk_gib
                        },
                    },
                    &f.name,
                    &app.config.compute,
                    &p.name,
                    request_id,
                )
                .await?;
            if let Some(h) = row.api.host_id {
                app.hub.notify(h);
            }
            return instance_view(app, p, id).await;
        }
    };
    app.store
        .instance_transition(id, &transition, &p.name, request_id)
        .await?;
    if let Some(h) = row.api.host_id {
        app.hub.notify(h);
    }
    instance_view(app, p, id).await
}

pub async fn instance_tasks(app: &App, p: &Principal, id: Uuid) -> Result<Vec<InstanceTask>> {
    instance_visible(app, p, id).await?;
    app.store.instance_tasks(id).await
}

pub async fn instance_console_log(
    app: &App,
    p: &Principal,
    id: Uuid,
    bytes: Option<i64>,
) -> Result<String> {
    instance_visible(app, p, id).await?;
    let n = match bytes {
        None => 16 * 1024,
        Some(n @ 1..=65536) => n as usize,
        Some(_) => return Err(Error::invalid("bytes", "must be between 1 and 65536")),
    };
    let text = app.store.instance_console(id).await?;
    let mut cut = text.len().saturating_sub(n);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    Ok(text[cut..].to_string())
}

pub async fn instance_metrics(app: &App, p: &Principal, id: Uuid) -> Result<InstanceMetrics> {
    instance_visible(app, p, id).await?;
    Ok(app.hub.metrics(id))
}

/// A VNC endpoint with a fresh password the agent sets on the running guest; it must be
/// used within a minute.
pub async fn instance_remote_console(app: &App, p: &Principal, id: Uuid) -> Result<RemoteConsole> {
    let (row, _) = instance_writable(app, p, id).await?;
    if row.api.status != InstanceStatus::Running {
        return Err(Error::conflict(format!(
            "instance {id} is {}; a console needs it running",
            row.api.status.as_str()
        )));
    }
    let password = stratus_agent::random_password(8);
    let expires = Utc::now() + chrono::Duration::seconds(CONSOLE_VALID_SECS);
    let sealed = app.secrets.seal(&password)?;
    let serial = app
        .store
        .instance_console_request(id, &sealed, expires)
        .await?;
    let host = row
        .api
        .host_id
        .ok_or_else(|| Error::conflict("the instance has no host"))?;
    app.hub.notify(host);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = app
            .store
            .instance_get(id)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?;
        if now.console_applied >= serial {
            let port = now
                .vnc_port
                .ok_or_else(|| Error::Unavailable("the host reported no VNC port".into()))?;
            let h = app.store.host_get(host, &app.config.compute).await?;
            return Ok(RemoteConsole {
                protocol: "vnc".into(),
                host: h
                    .map(|h| {
                        if h.facts.console_address.is_empty() {
                            h.facts.hostname
                        } else {
                            h.facts.console_address
                        }
                    })
                    .unwrap_or_default(),
                port,
                password,
                expires_at: expires,
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable(
                "the host did not confirm the console password in time; retry".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- key pairs

/// `ssh-keygen -l` style SHA256 fingerprint of an OpenSSH public key, validating its form.
pub fn ssh_fingerprint(key: &str) -> Result<String> {
    use base64::Engine;
    let bad = |why: &str| Error::invalid("public_key", why);
    let mut parts = key.split_whitespace();
    let kind = parts.next().ok_or_else(|| bad("is empty"))?;
    const KINDS: [&str; 6] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    if !KINDS.contains(&kind) {
        return Err(bad(
            "must be an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-*)",
        ));
    }
    let blob = parts
        .next()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| bad("the key data is not base64"))?;
    // The blob starts with the length-prefixed key type, which must match.
    let declared = blob
        .get(0..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .ok_or_else(|| bad("the key data is truncated"))?;
    if declared != kind.as_bytes() {
        return Err(bad("the key data does not match its type"));
    }
    let digest = Sha256::digest(&blob);
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

pub async fn keypair_create(app: &App, p: &Principal, b: KeyPairCreate) -> Result<KeyPair> {
    validate::login_name("name", &b.name)?;
    let (project, chain) = app
        .project_visible(p, b.project_id)
        .await
        .map_err(|_| Error::not_found("project", b.project_id))?;
    require(
        p,
        Perm::ResourceWrite,
        &Target::Project {
            id: project.id,
            chain: &chain,
        },
        "project",
        project.id,
    )?;
    let key = b.public_key.trim();
    if key.len() > 16 * 1024 {
        return Err(Error::invalid("public_key", "is too long"));
    }
    let fp = ssh_fingerprint(key)?;
    app.store
        .keypair_create(project.id, project.vdc_id, &b.name, key, &fp)
        .await
}

pub async fn keypair_list(app: &App, p: &Principal, f: ProjectScope) -> Result<Vec<KeyPair>> {
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(vec![]);
    }
    app.store.keypair_list(&vis, f.project_id).await
}

async fn keypair_visible(app: &App, p: &Principal, id: Uuid) -> Result<(KeyPair, Vec<Uuid>)> {
    let kp = app
        .store
        .keypair_get(id)
        .await?
        .ok_or_else(|| Error::not_found("key pair", id))?;
    let proj = app
        .store
        .project_get(kp.project_id)
        .await?
        .ok_or_else(|| Error::not_found("key pair", id))?;
    let chain = app.store.vdc_chain(proj.vdc_id).await?;
    if !p.can(
        Perm::ResourceRead,
        &Target::Project {
            id: kp.project_id,
            chain: &chain,
        },
    ) {
        return Err(Error::not_found("key pair", id));
    }
    Ok((kp, chain))
}

pub async fn keypair_view(app: &App, p: &Principal, id: Uuid) -> Result<KeyPair> {
    Ok(keypair_visible(app, p, id).await?.0)
}

pub async fn keypair_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (kp, chain) = keypair_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &Target::Project {
            id: kp.project_id,
            chain: &chain,
        },
        "key pair",
        id,
    )?;
    app.store.keypair_delete(id).await
}
