//! `stratus server|image|keypair|host`: the compute commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use stratus_api::*;
use uuid::Uuid;

use crate::cli::{list_pages, opt, to_value, Out, Paging};
use crate::client::{sha256_file, Client, ClientError, Progress};
use crate::output::{self, Format};

const INSTANCE: &[&str] = &[
    "id",
    "name",
    "status",
    "task",
    "flavor_name",
    "image_name",
    "host_name",
    "availability_zone",
];
const TASK: &[&str] = &[
    "id",
    "action",
    "user_name",
    "result",
    "message",
    "started_at",
    "finished_at",
];
const IMAGE: &[&str] = &[
    "id",
    "name",
    "status",
    "disk_format",
    "visibility",
    "os_type",
    "size_bytes",
    "min_disk_gib",
    "project_id",
];
const KEYPAIR: &[&str] = &["id", "name", "project_id", "fingerprint", "created_at"];
const HOST: &[&str] = &[
    "id",
    "name",
    "az",
    "state",
    "enabled",
    "hypervisor",
    "cpus",
    "memory_mib",
    "alloc_vcpus",
    "alloc_memory_mib",
    "instances",
];

const STATUSES: [&str; 8] = [
    "building",
    "running",
    "stopped",
    "paused",
    "suspended",
    "busy",
    "deleting",
    "error",
];

#[derive(Debug, Args)]
pub struct IdWait {
    id: Uuid,
    /// Wait until the action has finished and print the final status.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// Instances you can see (filters combine).
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long)]
        vdc: Option<Uuid>,
        #[arg(long, value_parser = STATUSES)]
        status: Option<String>,
        /// Only instances on this host (operators).
        #[arg(long)]
        host: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create instances; with --count N they are named NAME-1 … NAME-N.
    Create {
        #[arg(long)]
        project: Uuid,
        /// Flavor name or id.
        #[arg(long)]
        flavor: String,
        /// Image name or id (or --boot-volume).
        #[arg(long, default_value = "")]
        image: String,
        /// Boot from this volume (made with `volume create --image`) instead of an image copy.
        #[arg(long, conflicts_with = "image")]
        boot_volume: Option<Uuid>,
        /// Data volumes to attach from the first boot (repeatable).
        #[arg(long = "volume")]
        volumes: Vec<Uuid>,
        /// A NIC: `subnet=<id>[,ip=<addr>][,secgroup=<id>]` or `port=<id>` (repeatable, in
        /// the order the guest sees them).
        #[arg(long = "nic")]
        nics: Vec<String>,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Key pair name in the project: its public key goes into the guest.
        #[arg(long)]
        key_name: Option<String>,
        /// cloud-init user data (text, at most 64 KiB).
        #[arg(long)]
        user_data_file: Option<PathBuf>,
        /// How many identical instances (1–100).
        #[arg(long)]
        count: Option<i64>,
        /// Availability zone (default: any).
        #[arg(long)]
        az: Option<String>,
        /// Wait until every instance runs (or failed); exit non-zero if any failed.
        #[arg(long)]
        wait: bool,
    },
    /// The instance and its task history.
    Show { id: Uuid },
    /// Start a stopped instance.
    Start(#[command(flatten)] IdWait),
    /// Stop gracefully; force it off after --timeout seconds.
    Stop {
        #[command(flatten)]
        target: IdWait,
        /// Seconds to wait for the guest to shut down (default 60, 0–3600).
        #[arg(long)]
        timeout: Option<i64>,
    },
    /// Reboot: ask the guest, or reset it with --hard.
    Reboot {
        #[command(flatten)]
        target: IdWait,
        #[arg(long)]
        hard: bool,
    },
    /// Freeze the guest where it is (it keeps its memory).
    Pause(#[command(flatten)] IdWait),
    /// Let a paused guest run again.
    Unpause(#[command(flatten)] IdWait),
    /// Save the guest's memory to disk and stop it.
    Suspend(#[command(flatten)] IdWait),
    /// Bring a suspended guest back.
    Resume(#[command(flatten)] IdWait),
    /// Change the flavor of a stopped instance.
    Resize {
        #[command(flatten)]
        target: IdWait,
        /// Flavor name or id.
        #[arg(long)]
        flavor: String,
    },
    /// Rename or describe an instance.
    #[command(visible_alias = "update")]
    Rename {
        id: Uuid,
        #[arg(long, required_unless_present = "description")]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an instance; with --wait, until its host has removed it.
    Delete {
        id: Uuid,
        #[arg(long)]
        wait: bool,
    },
    /// The end of the serial console output.
    ConsoleLog {
        id: Uuid,
        /// Last N bytes (default 16384, at most 65536).
        #[arg(long)]
        bytes: Option<i64>,
    },
    /// A VNC address and a one-time password for the instance's screen.
    Console { id: Uuid },
    /// Live CPU, memory, disk and network rates.
    Metrics { id: Uuid },
    /// Make a private image of a stopped instance's root disk.
    Image {
        id: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Qcow2,
    Raw,
    Vmdk,
    Vhd,
}

impl From<FormatArg> for DiskFormat {
    fn from(f: FormatArg) -> DiskFormat {
        match f {
            FormatArg::Qcow2 => DiskFormat::Qcow2,
            FormatArg::Raw => DiskFormat::Raw,
            FormatArg::Vmdk => DiskFormat::Vmdk,
            FormatArg::Vhd => DiskFormat::Vhd,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VisibilityArg {
    Public,
    Private,
    Shared,
}

impl From<VisibilityArg> for ImageVisibility {
    fn from(v: VisibilityArg) -> ImageVisibility {
        match v {
            VisibilityArg::Public => ImageVisibility::Public,
            VisibilityArg::Private => ImageVisibility::Private,
            VisibilityArg::Shared => ImageVisibility::Shared,
        }
    }
}

impl VisibilityArg {
    fn as_str(self) -> &'static str {
        match self {
            VisibilityArg::Public => "public",
            VisibilityArg::Private => "private",
            VisibilityArg::Shared => "shared",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long, value_enum)]
        visibility: Option<VisibilityArg>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create an image; with --file, upload its data too.
    Create {
        #[arg(long)]
        name: String,
        /// The format of the data.
        #[arg(long, value_enum)]
        format: FormatArg,
        /// The owning project; without it, a public image (platform admins).
        #[arg(long)]
        project: Option<Uuid>,
        /// Default private with --project, public without.
        #[arg(long, value_enum)]
        visibility: Option<VisibilityArg>,
        /// e.g. linux or windows.
        #[arg(long)]
        os_type: Option<String>,
        /// Smallest root disk it boots on, GiB.
        #[arg(long)]
        min_disk: Option<i64>,
        #[arg(long, default_value = "")]
        description: String,
        /// Upload this file as the image's data (streamed, checked by SHA-256).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Upload the data of a queued image, in the format it was created with.
    Upload {
        id: Uuid,
        #[arg(long)]
        file: PathBuf,
    },
    /// Download an image, converted to --format (default qcow2), into --file.
    Download {
        id: Uuid,
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Where to write it (replaced only once the download is complete).
        #[arg(long)]
        file: PathBuf,
    },
    Show {
        id: Uuid,
    },
    /// Rename, describe, share or unshare an image.
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Share with exactly these projects (repeatable; replaces the current list and
        /// makes the image shared).
        #[arg(long = "share-with")]
        share_with: Vec<Uuid>,
        /// Share with no project (makes the image private).
        #[arg(long, conflicts_with = "share_with")]
        unshare_all: bool,
        /// Smallest root disk it boots on, GiB.
        #[arg(long)]
        min_disk: Option<i64>,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeypairCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
    },
    /// Import an SSH public key into a project.
    Create {
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        name: String,
        /// OpenSSH public key file (default ~/.ssh/id_ed25519.pub).
        #[arg(long)]
        public_key_file: Option<PathBuf>,
    },
    Show {
        id: Uuid,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Buckets you may see, with their usage.
    List {
        #[arg(long)]
        project: Option<Uuid>,
    },
    Show {
        id: Uuid,
    },
    /// Limit a bucket's capacity and object count (`unlimited` lifts a limit).
    Quota {
        id: Uuid,
        /// Bytes, e.g. 10737418240, or `unlimited`.
        #[arg(long)]
        bytes: Option<String>,
        /// Objects, or `unlimited`.
        #[arg(long)]
        objects: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Hosts with their state and allocation (allocated/capacity).
    List,
    Show {
        id: Uuid,
    },
    /// Place no new instances on a host (maintenance); its instances stay.
    Disable {
        id: Uuid,
        /// Shown to operators.
        #[arg(long)]
        reason: Option<String>,
    },
    Enable {
        id: Uuid,
    },
    /// Remove a host that has no instances.
    Delete {
        id: Uuid,
    },
    /// A token for adding hosts, and the command to run on them; shown once.
    JoinToken {
        /// Availability zone of the hosts that join with it (default az1).
        #[arg(long)]
        az: Option<String>,
        /// Hours the token stays valid, 1–720 (default 24).
        #[arg(long)]
        hours: Option<i64>,
    },
}

// ---------------------------------------------------------------- instances

pub(crate) async fn server(c: &Client, out: &Out, cmd: ServerCmd) -> anyhow::Result<()> {
    match cmd {
        ServerCmd::List {
            project,
            vdc,
            status,
            host,
            paging,
        } => {
            let mut q = opt("project_id", project);
            q.extend(opt("vdc_id", vdc));
            q.extend(opt("host_id", host));
            if let Some(s) = status {
                q.push(("status", s));
            }
            out.value(&list_pages(c, "/v1/instances", q, &paging).await?, INSTANCE)
        }
        ServerCmd::Create {
            project,
            flavor,
            image,
            name,
            description,
            key_name,
            user_data_file,
            count,
            az,
            wait,
            boot_volume,
            volumes,
            nics,
        } => {
            let nics = nics
                .iter()
                .map(|n| crate::net_cli::parse_nic(n))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let user_data = match user_data_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("--user-data-file {}", f.display()))?,
                ),
                None => None,
            };
            let body = InstanceCreate {
                name,
                description,
                project_id: project,
                flavor,
                image,
                boot_volume_id: boot_volume,
                volume_ids: volumes,
                nics,
                availability_zone: az,
                key_name,
                user_data,
                count,
            };
            let mut instances: Vec<Instance> = c.post("/v1/instances", &body).await?;
            if wait {
                instances = wait_built(c, instances).await?;
            }
            out.value(&to_value(&instances), INSTANCE);
            let failed: Vec<String> = instances
                .iter()
                .filter(|i| i.status == InstanceStatus::Error)
                .map(|i| format!("{} ({}): {}", i.name, i.id, i.status_reason))
                .collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "{} of {} instances failed: {}",
                    failed.len(),
                    instances.len(),
                    failed.join("; ")
                );
            }
        }
        ServerCmd::Show { id } => {
            let i: Value = c.get(&format!("/v1/instances/{id}"), &[]).await?;
            let tasks: Value = c.get(&format!("/v1/instances/{id}/tasks"), &[]).await?;
            if out.format == Format::Table {
                out.value(&i, INSTANCE);
                println!("\nTasks:");
                let rows = tasks.as_array().cloned().unwrap_or_default();
                for line in output::table(&rows, TASK).lines() {
                    println!("  {line}");
                }
            } else {
                let mut v = i;
                v["tasks"] = tasks;
                out.value(&v, &[]);
            }
        }
        ServerCmd::Start(t) => action(c, out, t, simple(InstanceActionKind::Start)).await?,
        ServerCmd::Stop { target, timeout } => {
            let mut a = simple(InstanceActionKind::Stop);
            a.timeout_secs = timeout;
            action(c, out, target, a).await?
        }
        ServerCmd::Reboot { target, hard } => {
            let mut a = simple(InstanceActionKind::Reboot);
            a.hard = hard;
            action(c, out, target, a).await?
        }
        ServerCmd::Pause(t) => action(c, out, t, simple(InstanceActionKind::Pause)).await?,
        ServerCmd::Unpause(t) => action(c, out, t, simple(InstanceActionKind::Unpause)).await?,
        ServerCmd::Suspend(t) => action(c, out, t, simple(InstanceActionKind::Suspend)).await?,
        ServerCmd::Resume(t) => action(c, out, t, simple(InstanceActionKind::Resume)).await?,
        ServerCmd::Resize { target, flavor } => {
            let mut a = simple(InstanceActionKind::Resize);
            a.flavor = Some(flavor);
            action(c, out, target, a).await?
        }
        ServerCmd::Rename {
            id,
            name,
            description,
        } => {
            let v: Value = c
                .patch(
                    &format!("/v1/instances/{id}"),
                    &InstanceUpdate { name, description },
                )
                .await?;
            out.value(&v, INSTANCE)
        }
        ServerCmd::Delete { id, wait } => {
            c.delete(&format!("/v1/instances/{id}")).await?;
            if !wait {
                out.done(&format!("Deleting instance {id}."));
                return Ok(());
            }
            wait_gone(c, id).await?;
            out.done(&format!("Deleted instance {id}."))
        }
        ServerCmd::ConsoleLog { id, bytes } => {
            let q: Vec<(&str, String)> = bytes
                .map(|b| ("bytes", b.to_string()))
                .into_iter()
                .collect();
            let raw = c
                .send_raw(
                    reqwest::Method::GET,
                    &format!("/v1/instances/{id}/console-log"),
                    &q,
                    None,
                )
                .await?;
            if raw.status >= 300 {
                return Err(ClientError::from_answer(raw.status, &raw.body).into());
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&raw.body)?;
            stdout.flush()?;
        }
        ServerCmd::Console { id } => {
            let rc: RemoteConsole = c
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/instances/{id}/remote-console"),
                    &[],
                    None::<&()>,
                )
                .await?;
            if out.format == Format::Table {
                print!("{}", render_console(&rc));
            } else {
                out.value(&to_value(&rc), &[]);
            }
        }
        ServerCmd::Metrics { id } => out.value(
            &c.get::<Value>(&format!("/v1/instances/{id}/metrics"), &[])
                .await?,
            &[],
        ),
        ServerCmd::Image {
            id,
            name,
            description,
        } => {
            let v: Value = c
                .post(
                    &format!("/v1/instances/{id}/image"),
                    &ImageFromInstance { name, description },
                )
                .await?;
            out.value(&v, IMAGE)
        }
    }
    Ok(())
}

fn simple(action: InstanceActionKind) -> InstanceAction {
    InstanceAction {
        action,
        hard: false,
        timeout_secs: None,
        flavor: None,
    }
}

/// POST the action; with --wait, poll until no task is under way.
async fn action(c: &Client, out: &Out, t: IdWait, body: InstanceAction) -> anyhow::Result<()> {
    let id = t.id;
    let i: Instance = c
        .call(
            reqwest::Method::POST,
            &format!("/v1/instances/{id}/actions"),
            &[],
            Some(&body),
        )
        .await?;
    if !t.wait {
        out.value(&to_value(&i), INSTANCE);
        return Ok(());
    }
    let i = wait_settled(c, i).await?;
    if out.format == Format::Table {
        println!("{} ({}) is {}.", i.name, i.id, i.status.as_str());
    } else {
        out.value(&to_value(&i), &[]);
    }
    if i.status == InstanceStatus::Error {
        anyhow::bail!("{} ({}) is in error: {}", i.name, i.id, i.status_reason);
    }
    // An action that failed without breaking the instance shows in its last task.
    let tasks: Vec<InstanceTask> = c.get(&format!("/v1/instances/{id}/tasks"), &[]).await?;
    if let Some(last) = tasks.last().filter(|t| t.result == "failed") {
        anyhow::bail!("{} failed: {}", last.action, last.message);
    }
    Ok(())
}

/// Polling delays: quick at first, then every two seconds.
fn poll_delay(round: u32) -> Duration {
    if round < 10 {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    }
}

/// `web1 (…): building`, `web1 (…): busy (stopping)`: a line of --wait progress.
fn describe(i: &Instance) -> String {
    match &i.task {
        Some(t) => format!("{} ({}): {} ({t})", i.name, i.id, i.status.as_str()),
        None => format!("{} ({}): {}", i.name, i.id, i.status.as_str()),
    }
}

/// Poll new instances until each is `running` or `error`, printing changes to stderr.
async fn wait_built(c: &Client, mut instances: Vec<Instance>) -> anyhow::Result<Vec<Instance>> {
    let done = |i: &Instance| matches!(i.status, InstanceStatus::Running | InstanceStatus::Error);
    for i in &instances {
        eprintln!("{}", describe(i));
    }
    let mut round = 0;
    while !instances.iter().all(done) {
        tokio::time::sleep(poll_delay(round)).await;
        round += 1;
        for i in instances.iter_mut().filter(|i| !done(i)) {
            let now: Instance = c.get(&format!("/v1/instances/{}", i.id), &[]).await?;
            if now.status != i.status || now.task != i.task {
                eprintln!("{}", describe(&now));
            }
            *i = now;
        }
    }
    Ok(instances)
}

/// Poll until no task is under way.
async fn wait_settled(c: &Client, mut i: Instance) -> anyhow::Result<Instance> {
    eprintln!("{}", describe(&i));
    let mut round = 0;
    while i.task.is_some() || i.status == InstanceStatus::Busy {
        tokio::time::sleep(poll_delay(round)).await;
        round += 1;
        let now: Instance = c.get(&format!("/v1/instances/{}", i.id), &[]).await?;
        if now.status != i.status || now.task != i.task {
            eprintln!("{}", describe(&now));
        }
        i = now;
    }
    Ok(i)
}

/// Poll until the instance is gone (404).
async fn wait_gone(c: &Client, id: Uuid) -> anyhow::Result<()> {
    let mut last: Option<InstanceStatus> = None;
    let mut round = 0;
    loop {
        match c.get::<Instance>(&format!("/v1/instances/{id}"), &[]).await {
            Ok(i) => {
                if last != Some(i.status) {
                    eprintln!("{}", describe(&i));
                }
                if i.status == InstanceStatus::Error {
                    anyhow::bail!("deleting {} ({id}) failed: {}", i.name, i.status_reason);
                }
                last = Some(i.status);
            }
            Err(ClientError { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(poll_delay(round)).await;
        round += 1;
    }
}

fn render_console(rc: &RemoteConsole) -> String {
    format!(
        "Protocol: {}\nHost:     {}\nPort:     {}\nPassword: {} (one-time)\nExpires:  {}\nConnect:  vncviewer {}::{}\n",
        rc.protocol,
        rc.host,
        rc.port,
        rc.password,
        rc.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        rc.host,
        rc.port
    )
}

// ---------------------------------------------------------------- images

pub(crate) async fn image(c: &Client, out: &Out, cmd: ImageCmd) -> anyhow::Result<()> {
    match cmd {
        ImageCmd::List {
            project,
            visibility,
            paging,
        } => {
            let mut q = opt("project_id", project);
            if let Some(v) = visibility {
                q.push(("visibility", v.as_str().to_string()));
            }
            out.value(&list_pages(c, "/v1/images", q, &paging).await?, IMAGE)
        }
        ImageCmd::Create {
            name,
            format,
            project,
            visibility,
            os_type,
            min_disk,
            description,
            file,
        } => {
            // Hash first: a missing or unreadable file fails before a record exists.
            let sha = match &file {
                Some(f) => Some(hash(f).await?),
                None => None,
            };
            let body = ImageCreate {
                name,
                description,
                project_id: project,
                visibility: visibility.map(Into::into),
                disk_format: format.into(),
                os_type,
                min_disk_gib: min_disk,
                checksum_sha256: sha.clone(),
            };
            let img: Image = c.post("/v1/images", &body).await?;
            let (Some(f), Some(sha)) = (file, sha) else {
                out.value(&to_value(&img), IMAGE);
                return Ok(());
            };
            let id = img.id;
            let v = upload(c, id, &f, &sha).await.with_context(|| {
                format!(
                    "image {id} was created but its upload failed; retry with \
                     `stratus image upload {id} --file {}`",
                    f.display()
                )
            })?;
            out.value(&v, IMAGE)
        }
        ImageCmd::Upload { id, file } => {
            let sha = hash(&file).await?;
            out.value(&upload(c, id, &file, &sha).await?, IMAGE)
        }
        ImageCmd::Download { id, format, file } => {
            let q: Vec<(&str, String)> = format
                .map(|f| ("format", DiskFormat::from(f).as_str().to_string()))
                .into_iter()
                .collect();
            let n = c
                .download_to(
                    &format!("/v1/images/{id}/file"),
                    &q,
                    &file,
                    Progress::stderr(&format!("Downloading {}", file.display())),
                )
                .await?;
            eprintln!("Wrote {n} bytes to {}.", file.display());
        }
        ImageCmd::Show { id } => out.value(
            &c.get::<Value>(&format!("/v1/images/{id}"), &[]).await?,
            IMAGE,
        ),
        ImageCmd::Update {
            id,
            name,
            description,
            share_with,
            unshare_all,
            min_disk,
        } => {
            let (visibility, shared_with) = if unshare_all {
                (Some(ImageVisibility::Private), Some(Vec::new()))
            } else if !share_with.is_empty() {
                (Some(ImageVisibility::Shared), Some(share_with))
            } else {
                (None, None)
            };
            let v: Value = c
                .patch(
                    &format!("/v1/images/{id}"),
                    &ImageUpdate {
                        name,
                        description,
                        visibility,
                        shared_with,
                        min_disk_gib: min_disk,
                    },
                )
                .await?;
            out.value(&v, IMAGE)
        }
        ImageCmd::Delete { id } => {
            c.delete(&format!("/v1/images/{id}")).await?;
            out.done(&format!("Deleted image {id}."))
        }
    }
    Ok(())
}

async fn hash(file: &Path) -> anyhow::Result<String> {
    let mut progress = Progress::stderr(&format!("Checksumming {}", file.display()));
    sha256_file(file, progress.as_mut())
        .await
        .with_context(|| format!("{}", file.display()))
}

async fn upload(c: &Client, id: Uuid, file: &Path, sha: &str) -> anyhow::Result<Value> {
    let v: Value = c
        .upload_file(
            &format!("/v1/images/{id}/file"),
            file,
            sha,
            Progress::stderr(&format!("Uploading {}", file.display())),
        )
        .await?;
    Ok(v)
}

// ---------------------------------------------------------------- key pairs

pub(crate) async fn keypair(c: &Client, out: &Out, cmd: KeypairCmd) -> anyhow::Result<()> {
    match cmd {
        KeypairCmd::List { project } => out.value(
            &c.get::<Value>("/v1/keypairs", &opt("project_id", project))
                .await?,
            KEYPAIR,
        ),
        KeypairCmd::Create {
            project,
            name,
            public_key_file,
        } => {
            let path = match public_key_file {
                Some(p) => p,
                None => default_public_key().ok_or_else(|| {
                    anyhow::anyhow!("give --public-key-file (there is no ~/.ssh/id_ed25519.pub)")
                })?,
            };
            let public_key = std::fs::read_to_string(&path)
                .with_context(|| format!("{}", path.display()))?
                .trim()
                .to_string();
            let v: Value = c
                .post(
                    "/v1/keypairs",
                    &KeyPairCreate {
                        name,
                        project_id: project,
                        public_key,
                    },
                )
                .await?;
            out.value(&v, KEYPAIR)
        }
        KeypairCmd::Show { id } => out.value(
            &c.get::<Value>(&format!("/v1/keypairs/{id}"), &[]).await?,
            KEYPAIR,
        ),
        KeypairCmd::Delete { id } => {
            c.delete(&format!("/v1/keypairs/{id}")).await?;
            out.done(&format!("Deleted key pair {id}."))
        }
    }
    Ok(())
}

/// `~/.ssh/id_ed25519.pub`, when it exists.
fn default_public_key() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let p = PathBuf::from(home).join(".ssh").join("id_ed25519.pub");
    p.is_file().then_some(p)
}

// ---------------------------------------------------------------- buckets

const BUCKET: &[&str] = &[
    "id",
    "name",
    "project_id",
    "versioning",
    "used_objects",
    "used_bytes",
    "quota_objects",
    "quota_bytes",
    "created_at",
];

/// `unlimited` → None, a number → Some.
fn limit(field: &str, v: &str) -> anyhow::Result<Option<i64>> {
    if v == "unlimited" {
        return Ok(None);
    }
    v.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("--{field}: give a number of {field} or `unlimited`"))
}

pub(crate) async fn bucket(c: &Client, out: &Out, cmd: BucketCmd) -> anyhow::Result<()> {
    match cmd {
        BucketCmd::List { project } => out.value(
            &c.get::<Value>("/v1/buckets", &opt("project_id", project))
                .await?,
            BUCKET,
        ),
        BucketCmd::Show { id } => out.value(
            &c.get::<Value>(&format!("/v1/buckets/{id}"), &[]).await?,
            BUCKET,
        ),
        BucketCmd::Quota { id, bytes, objects } => {
            let current: BucketInfo = c.get(&format!("/v1/buckets/{id}"), &[]).await?;
            let body = BucketQuotaUpdate {
                bytes: match bytes {
                    Some(b) => limit("bytes", &b)?,
                    None => current.quota_bytes,
                },
                objects: match objects {
                    Some(o) => limit("objects", &o)?,
                    None => current.quota_objects,
                },
            };
            out.value(
                &c.put::<Value>(&format!("/v1/buckets/{id}/quota"), &body)
                    .await?,
                BUCKET,
            )
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- hosts

pub(crate) async fn host(c: &Client, out: &Out, cmd: HostCmd) -> anyhow::Result<()> {
    match cmd {
        HostCmd::List => {
            let hosts: Vec<Host> = c.get("/v1/hosts", &[]).await?;
            if out.format == Format::Table {
                print!("{}", output::table(&host_rows(&hosts), HOST));
            } else {
                out.value(&to_value(&hosts), &[]);
            }
        }
        HostCmd::Show { id } => {
            out.value(&c.get::<Value>(&format!("/v1/hosts/{id}"), &[]).await?, &[])
        }
        HostCmd::Disable { id, reason } => {
            let h: Host = c
                .patch(
                    &format!("/v1/hosts/{id}"),
                    &HostUpdate {
                        enabled: Some(false),
                        disabled_reason: reason,
                        availability_zone: None,
                    },
                )
                .await?;
            host_changed(out, &h)
        }
        HostCmd::Enable { id } => {
            let h: Host = c
                .patch(
                    &format!("/v1/hosts/{id}"),
                    &HostUpdate {
                        enabled: Some(true),
                        disabled_reason: Some(String::new()),
                        availability_zone: None,
                    },
                )
                .await?;
            host_changed(out, &h)
        }
        HostCmd::Delete { id } => {
            c.delete(&format!("/v1/hosts/{id}")).await?;
            out.done(&format!("Deleted host {id}."))
        }
        HostCmd::JoinToken { az, hours } => {
            let t: JoinToken = c
                .post(
                    "/v1/hosts/join-tokens",
                    &JoinTokenCreate {
                        valid_hours: hours,
                        availability_zone: az,
                    },
                )
                .await?;
            if out.format == Format::Table {
                print!("{}", render_join_token(&c.endpoint, &t));
            } else {
                let mut v = to_value(&t);
                v["command"] = json!(join_command(&c.endpoint, &t.token));
                out.value(&v, &[]);
            }
        }
    }
    Ok(())
}

fn host_changed(out: &Out, h: &Host) {
    if out.format == Format::Table {
        print!(
            "{}",
            output::table(&host_rows(std::slice::from_ref(h)), HOST)
        );
    } else {
        out.value(&to_value(h), &[]);
    }
}

/// Table rows: allocation as `allocated/capacity`.
fn host_rows(hosts: &[Host]) -> Vec<Value> {
    hosts
        .iter()
        .map(|h| {
            json!({
                "id": h.id,
                "name": h.name,
                "az": h.availability_zone,
                "state": h.state,
                "enabled": h.enabled,
                "hypervisor": h.facts.hypervisor,
                "cpus": h.facts.cpus,
                "memory_mib": h.facts.memory_mib,
                "alloc_vcpus": format!("{}/{}", h.allocated_vcpus, h.capacity_vcpus),
                "alloc_memory_mib": format!("{}/{}", h.allocated_memory_mib, h.capacity_memory_mib),
                "instances": h.instance_count,
            })
        })
        .collect()
}

fn join_command(endpoint: &str, token: &str) -> String {
    format!("stratus agent --join {endpoint} --token {token}")
}

fn render_join_token(endpoint: &str, t: &JoinToken) -> String {
    let mut s = format!(
        "Join token:        {}\nAvailability zone: {}\nExpires:           {}\n\nOn each new host, run:\n\n  {}\n\nThe token is shown only now; it is valid for several hosts until it expires.\n",
        t.token,
        t.availability_zone,
        t.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        join_command(endpoint, &t.token)
    );
    let loopback = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]");
    if loopback {
        s.push_str(&format!(
            "Note: {endpoint} is a loopback address; other hosts need an address of this \
             control plane they can reach.\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_host() -> Host {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        Host {
            id: Uuid::nil(),
            name: "cn1".into(),
            availability_zone: "az1".into(),
            state: HostState::Up,
            enabled: true,
            disabled_reason: String::new(),
            facts: HostFacts {
                hostname: "cn1".into(),
                cpus: 16,
                memory_mib: 65536,
                disk_gib: 1000,
                hypervisor: "kvm".into(),
                agent_version: "0.1.0".into(),
                simulated: false,
                console_address: "10.0.0.1".into(),
                volume_pool_gib: 1000,
                tunnel_ip: String::new(),
            },
            allocated_vcpus: 4,
            allocated_memory_mib: 8192,
            allocated_disk_gib: 80,
            capacity_vcpus: 64,
            capacity_memory_mib: 98304,
            capacity_disk_gib: 1000,
            instance_count: 2,
            last_heartbeat_at: Some(t),
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn host_table_shows_allocation_over_capacity() {
        let table = output::table(&host_rows(&[sample_host()]), HOST);
        let mut lines = table.lines();
        assert_eq!(
            lines
                .next()
                .map(|l| l.split_whitespace().collect::<Vec<_>>()),
            Some(vec![
                "ID",
                "NAME",
                "AZ",
                "STATE",
                "ENABLED",
                "HYPERVISOR",
                "CPUS",
                "MEMORY_MIB",
                "ALLOC_VCPUS",
                "ALLOC_MEMORY_MIB",
                "INSTANCES"
            ])
        );
        let row: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            row,
            vec![
                "00000000-0000-0000-0000-000000000000",
                "cn1",
                "az1",
                "up",
                "true",
                "kvm",
                "16",
                "65536",
                "4/64",
                "8192/98304",
                "2"
            ]
        );
    }

    #[test]
    fn join_token_prints_the_agent_command() {
        let t = JoinToken {
            token: "jt_abc".into(),
            availability_zone: "az2".into(),
            expires_at: sample_host().created_at,
        };
        let s = render_join_token("https://cloud.example.gov", &t);
        assert!(s.contains("\n  stratus agent --join https://cloud.example.gov --token jt_abc\n"));
        assert!(s.contains("2026-01-02T03:04:05Z"));
        assert!(!s.contains("loopback"));
        assert!(render_join_token("http://127.0.0.1:8080", &t).contains("loopback"));
    }

    #[test]
    fn console_gives_a_vncviewer_line() {
        let rc = RemoteConsole {
            protocol: "vnc".into(),
            host: "10.0.0.5".into(),
            port: 5901,
            password: "s3cret".into(),
            expires_at: sample_host().created_at,
        };
        let s = render_console(&rc);
        assert!(s.contains("Connect:  vncviewer 10.0.0.5::5901\n"));
        assert!(s.contains("Password: s3cret (one-time)"));
    }

    #[test]
    fn cli_parses_compute_commands() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            global: crate::cli::GlobalArgs,
            #[command(subcommand)]
            cmd: crate::cli::Command,
        }
        let parse = |args: &[&str]| {
            T::try_parse_from(std::iter::once("stratus").chain(args.iter().copied()))
        };
        let id = "00000000-0000-0000-0000-000000000001";
        assert!(parse(&["server", "stop", id, "--timeout", "5", "--wait"]).is_ok());
        assert!(parse(&["server", "reboot", id, "--hard"]).is_ok());
        assert!(parse(&["server", "rename", id]).is_err());
        assert!(parse(&["server", "list", "--status", "sleeping"]).is_err());
        assert!(parse(&[
            "image", "download", id, "--file", "x.raw", "--format", "raw", "-o", "json"
        ])
        .is_ok());
        assert!(parse(&["image", "update", id, "--share-with", id, "--unshare-all"]).is_err());
        assert!(parse(&["host", "join-token", "--az", "az2", "--hours", "2"]).is_ok());
        assert!(parse(&[
            "server",
            "create",
            "--project",
            id,
            "--flavor",
            "s1.small",
            "--image",
            "debian",
            "--name",
            "web1",
            "--count",
            "2",
            "--wait"
        ])
        .is_ok());
    }
}
