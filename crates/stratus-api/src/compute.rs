//! Compute: hosts, images, key pairs and instances (ECS), and the protocol between the
//! control plane and the host agents.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

// ---------------------------------------------------------------- hosts

/// What a host has and what it runs guests with, as its agent measured it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostFacts {
    pub hostname: String,
    pub cpus: i64,
    pub memory_mib: i64,
    /// Space for instance disks, GiB.
    pub disk_gib: i64,
    /// `kvm` or `tcg`: the accelerator a boot probe showed really runs guests.
    pub hypervisor: String,
    pub agent_version: String,
    /// A simulated agent (a scale-test instrument, never a real host).
    #[serde(default)]
    pub simulated: bool,
    /// Where clients reach the instances' VNC consoles on this host.
    #[serde(default)]
    pub console_address: String,
    /// Size of the storage pool volumes live in, GiB (0: the host has no volume pool).
    #[serde(default)]
    pub volume_pool_gib: i64,
    /// The address other hosts reach this one's VXLAN tunnels at (empty: none).
    #[serde(default)]
    pub tunnel_ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Heartbeating.
    Up,
    /// No heartbeat for longer than `host_down_after_secs`.
    Down,
}

/// A compute host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub id: Uuid,
    pub name: String,
    pub availability_zone: String,
    pub state: HostState,
    /// Disabled hosts keep their instances but get no new ones (maintenance).
    pub enabled: bool,
    pub disabled_reason: String,
    pub facts: HostFacts,
    /// Allocated to instances (before overcommit ratios).
    pub allocated_vcpus: i64,
    pub allocated_memory_mib: i64,
    pub allocated_disk_gib: i64,
    /// What may be allocated: facts × overcommit ratio.
    pub capacity_vcpus: i64,
    pub capacity_memory_mib: i64,
    pub capacity_disk_gib: i64,
    pub instance_count: i64,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Why the host is disabled (shown to operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenCreate {
    /// Hours the token stays valid, 1–720 (default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_hours: Option<i64>,
    /// Availability zone of hosts that join with it (default `az1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
}

/// A join token: shown once. `stratus agent --join <url> --token <token>` on each host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinToken {
    pub token: String,
    pub availability_zone: String,
    pub expires_at: DateTime<Utc>,
}

// ---------------------------------------------------------------- images

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageVisibility {
    /// Everyone (made by platform admins).
    Public,
    /// The owning project.
    Private,
    /// The owning project and the projects it is shared with.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Created, waiting for its data.
    Queued,
    /// Data arriving or being converted.
    Saving,
    Active,
    Error,
}

/// Disk formats (spec 5.2.1.3). `vhd` is QEMU's `vpc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    Qcow2,
    Raw,
    Vmdk,
    Vhd,
}

impl DiskFormat {
    pub const ALL: [DiskFormat; 4] = [
        DiskFormat::Qcow2,
        DiskFormat::Raw,
        DiskFormat::Vmdk,
        DiskFormat::Vhd,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vhd => "vhd",
        }
    }
    /// The name `qemu-img` uses.
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Vhd => "vpc",
            other => other.as_str(),
        }
    }
    pub fn parse(s: &str) -> Option<DiskFormat> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// A bootable disk image (IMS). Stored as qcow2 whatever it was uploaded as.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Image {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Owning project; absent for public images.
    pub project_id: Option<Uuid>,
    pub visibility: ImageVisibility,
    pub status: ImageStatus,
    /// Why the image is in `error`.
    pub status_reason: String,
    /// The format it was uploaded in.
    pub disk_format: DiskFormat,
    /// e.g. `linux`, `windows`.
    pub os_type: String,
    /// Bytes of the stored qcow2 file.
    pub size_bytes: i64,
    /// Size of the disk it holds.
    pub virtual_size_bytes: i64,
    /// Smallest root disk it boots on, GiB.
    pub min_disk_gib: i64,
    /// SHA-256 of the uploaded data, as the uploader declared and the server verified.
    pub checksum_sha256: String,
    /// The instance it was made from, if any.
    pub source_instance_id: Option<Uuid>,
    /// Projects it is shared with (shared images, seen by the owner only).
    pub shared_with: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The project that owns it; omit for a public image (platform admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    /// Default `private` with a project, `public` without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<ImageVisibility>,
    /// The format of the data that will be uploaded.
    pub disk_format: DiskFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_disk_gib: Option<i64>,
    /// SHA-256 (hex) the upload must match; also accepted as the upload's
    /// `x-checksum-sha256` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<ImageVisibility>,
    /// Replace the list of projects a shared image is shared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_with: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_disk_gib: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageFilter {
    pub project_id: Option<Uuid>,
    pub visibility: Option<ImageVisibility>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageDownload {
    /// qcow2 (default), raw, vmdk or vhd.
    pub format: Option<DiskFormat>,
}

// ---------------------------------------------------------------- key pairs

/// An SSH public key, injected into instances through their metadata.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyPair {
    pub id: Uuid,
    pub name: String,
    pub project_id: Uuid,
    pub public_key: String,
    /// SHA256 fingerprint as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPairCreate {
    pub name: String,
    pub project_id: Uuid,
    /// OpenSSH public key (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectScope {
    /// Only this project's.
    pub project_id: Option<Uuid>,
}

// ---------------------------------------------------------------- instances

/// What the user sees of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Building,
    Running,
    Stopped,
    Paused,
    Suspended,
    /// An action is under way (see `task`).
    Busy,
    Deleting,
    Error,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Building => "building",
            InstanceStatus::Running => "running",
            InstanceStatus::Stopped => "stopped",
            InstanceStatus::Paused => "paused",
            InstanceStatus::Suspended => "suspended",
            InstanceStatus::Busy => "busy",
            InstanceStatus::Deleting => "deleting",
            InstanceStatus::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<InstanceStatus> {
        [
            InstanceStatus::Building,
            InstanceStatus::Running,
            InstanceStatus::Stopped,
            InstanceStatus::Paused,
            InstanceStatus::Suspended,
            InstanceStatus::Busy,
            InstanceStatus::Deleting,
            InstanceStatus::Error,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A virtual machine (ECS).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub status: InstanceStatus,
    /// The action under way (`starting`, `stopping`, `rebooting`…), if any.
    pub task: Option<String>,
    /// Why the instance is in `error`.
    pub status_reason: String,
    pub flavor_id: Uuid,
    pub flavor_name: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub root_disk_gib: i64,
    pub image_id: Uuid,
    pub image_name: String,
    pub host_id: Option<Uuid>,
    pub host_name: Option<String>,
    pub availability_zone: String,
    pub key_name: Option<String>,
    /// Private addresses (once networks exist).
    pub addresses: Vec<String>,
    /// Attached data volume ids, in the order the guest sees them.
    pub volumes: Vec<Uuid>,
    /// The volume it boots from (its root disk), if it does not boot from an image copy.
    pub boot_volume_id: Option<Uuid>,
    pub launched_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceCreate {
    /// With `count` > 1, instances are named `<name>-1`, `<name>-2`, …
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub project_id: Uuid,
    /// Flavor id or name.
    pub flavor: String,
    /// Image id or name (not with `boot_volume_id`).
    #[serde(default)]
    pub image: String,
    /// Boot from this volume (made from an image) instead of a copy of an image: the
    /// volume is the root disk and outlives the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume_id: Option<Uuid>,
    /// Data volumes attached from the first boot (same project; `count` must be 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_ids: Vec<Uuid>,
    /// Networks, as NICs in order (up to 16): a subnet (a port is made for each instance)
    /// or an existing free port (`count` must then be 1). None: no network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<crate::NicRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Key pair name in the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// cloud-init user data (text, at most 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// How many identical instances, 1–100 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceActionKind {
    Start,
    /// Graceful (ACPI) then forced after `timeout_secs`.
    Stop,
    /// `hard = false`: the guest reboots itself (ACPI); `hard = true`: reset.
    Reboot,
    Pause,
    Unpause,
    Suspend,
    Resume,
    /// To `flavor`, while stopped.
    Resize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceAction {
    pub action: InstanceActionKind,
    /// reboot: reset instead of asking the guest.
    #[serde(default)]
    pub hard: bool,
    /// stop: seconds to wait for the guest before forcing it off (default 60, 0–3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<i64>,
    /// resize: flavor id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageFromInstance {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// One entry of an instance's task history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceTask {
    pub id: i64,
    pub action: String,
    pub user_name: String,
    pub request_id: String,
    /// `running`, `succeeded` or `failed`.
    pub result: String,
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceFilter {
    pub project_id: Option<Uuid>,
    pub vdc_id: Option<Uuid>,
    pub host_id: Option<Uuid>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleLogParams {
    /// Last N bytes (default 16384, at most 65536).
    pub bytes: Option<i64>,
}

/// A VNC endpoint with a one-time password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RemoteConsole {
    pub protocol: String,
    pub host: String,
    pub port: i64,
    pub password: String,
    pub expires_at: DateTime<Utc>,
}

/// Live metrics, rates over the last two agent samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InstanceMetrics {
    pub sampled_at: Option<DateTime<Utc>>,
    /// Percent of one vCPU (100 = one vCPU busy).
    pub cpu_percent: f64,
    pub memory_bytes: i64,
    pub memory_used_bytes: i64,
    pub disk_read_bytes_per_sec: f64,
    pub disk_write_bytes_per_sec: f64,
    pub disk_read_ops_per_sec: f64,
    pub disk_write_ops_per_sec: f64,
    pub network_in_bytes_per_sec: f64,
    pub network_out_bytes_per_sec: f64,
}

// ---------------------------------------------------------------- agent protocol

/// `POST /v1/agent/join` with `Authorization: Bearer <join token>`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentJoin {
    pub facts: HostFacts,
}

/// The host's identity and credential; the agent keeps both in its state directory.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentJoined {
    pub host_id: Uuid,
    /// `Authorization: Bearer <credential>` on every later agent call.
    pub credential: String,
}

/// What the agent should run (`GET /v1/agent/desired?after=<generation>`, long poll).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredState {
    /// Bumped whenever anything below changes.
    pub generation: i64,
    pub instances: Vec<DesiredInstance>,
    /// Volumes in this host's storage pool.
    #[serde(default)]
    pub volumes: Vec<crate::DesiredVolume>,
    /// Backup copies in this host's backup directory.
    #[serde(default)]
    pub backups: Vec<crate::DesiredBackup>,
    /// VPCs, security groups, peerings and the external network on this host.
    #[serde(default)]
    pub network: crate::DesiredNetwork,
    /// Seconds between reports.
    pub report_interval_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DesiredPower {
    Running,
    Stopped,
    Paused,
    Suspended,
    /// Stop it and remove its files; report `gone`.
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredInstance {
    pub id: Uuid,
    /// Bumped whenever this instance's desired state changes.
    pub generation: i64,
    pub hostname: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub root_disk_gib: i64,
    pub image_id: Uuid,
    /// SHA-256 of the stored qcow2 the agent downloads from `/v1/agent/images/{id}`.
    pub image_sha256: String,
    pub power: DesiredPower,
    /// Seconds to wait for a graceful stop before forcing it.
    pub stop_timeout_secs: i64,
    /// Reboot when this exceeds the last one applied.
    pub soft_reboots: i64,
    pub hard_reboots: i64,
    pub ssh_keys: Vec<String>,
    pub user_data: Option<String>,
    /// A one-time VNC password to set (with its expiry); `console_serial` identifies it.
    pub console_password: Option<String>,
    pub console_serial: i64,
    pub console_expires_at: Option<DateTime<Utc>>,
    /// Make a standalone qcow2 of the (stopped) root disk and upload it as this image.
    pub capture_image_id: Option<Uuid>,
    /// Data volumes attached to it, in the order the guest sees them.
    #[serde(default)]
    pub volumes: Vec<crate::DesiredAttachment>,
    /// Boot from this volume of the host's pool (then `image_id` is not used and the root
    /// disk is not resized).
    #[serde(default)]
    pub boot_volume: Option<crate::DesiredAttachment>,
    /// NICs, in the order the guest sees them (none: the guest has no network).
    #[serde(default)]
    pub nics: Vec<crate::DesiredNic>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActualState {
    /// Preparing disks or starting.
    Building,
    Running,
    Stopped,
    Paused,
    Suspended,
    /// Converging failed; see `error`. Files are cleaned up when the failure was during build.
    Error,
    /// Deleted: no process, no files.
    Gone,
}

/// Raw counters of a host, read from `/proc` and the instance file system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostCounters {
    /// CPU seconds by mode (`user`, `nice`, `system`, `idle`, `iowait`, `irq`,
    /// `softirq`, `steal`), summed over all CPUs.
    pub cpu_seconds: Vec<CpuSeconds>,
    pub memory_total_bytes: i64,
    pub memory_available_bytes: i64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// The file system holding instance disks.
    pub filesystem_size_bytes: i64,
    pub filesystem_avail_bytes: i64,
    pub disks: Vec<DiskCounters>,
    pub nics: Vec<NicCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CpuSeconds {
    pub mode: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskCounters {
    pub device: String,
    pub read_bytes: i64,
    pub written_bytes: i64,
    pub reads: i64,
    pub writes: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NicCounters {
    pub device: String,
    pub receive_bytes: i64,
    pub transmit_bytes: i64,
    pub receive_packets: i64,
    pub transmit_packets: i64,
}

/// Raw counters of one guest; the control plane computes rates from two samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GuestCounters {
    pub cpu_seconds: f64,
    pub memory_bytes: i64,
    pub rss_bytes: i64,
    pub disk_read_bytes: i64,
    pub disk_write_bytes: i64,
    pub disk_read_ops: i64,
    pub disk_write_ops: i64,
    pub net_rx_bytes: i64,
    pub net_tx_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceReport {
    pub id: Uuid,
    /// The desired generation this state is the outcome of.
    pub generation: i64,
    pub state: ActualState,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub soft_reboots: i64,
    #[serde(default)]
    pub hard_reboots: i64,
    /// The console password serial last applied, and where VNC listens.
    #[serde(default)]
    pub console_serial: i64,
    #[serde(default)]
    pub vnc_port: Option<i64>,
    #[serde(default)]
    pub counters: Option<GuestCounters>,
    /// New serial console output since the last report (the agent sends only what grew).
    #[serde(default)]
    pub console_append: Option<String>,
    /// Set when a capture finished (`Ok`) or failed (the message).
    #[serde(default)]
    pub capture_image_id: Option<Uuid>,
    #[serde(default)]
    pub capture_error: Option<String>,
    /// Volumes attached now (a stopped instance: those its next start attaches).
    #[serde(default)]
    pub volumes: Vec<Uuid>,
    /// Volumes that could not be attached or detached.
    #[serde(default)]
    pub volume_errors: Vec<crate::AttachmentError>,
}

/// `POST /v1/agent/report`: heartbeat, facts and the actual state of every instance the
/// agent knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentReport {
    pub facts: HostFacts,
    /// The host's own counters (none from a simulated agent).
    #[serde(default)]
    pub host: Option<HostCounters>,
    pub instances: Vec<InstanceReport>,
    #[serde(default)]
    pub volumes: Vec<crate::VolumeReport>,
    #[serde(default)]
    pub backups: Vec<crate::BackupReport>,
    #[serde(default)]
    pub vpcs: Vec<crate::VpcReport>,
}

// ---------------------------------------------------------------- object storage

/// A bucket of the S3-compatible object storage, with its usage (operators' view; the data
/// itself is reached through the S3 endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BucketInfo {
    pub id: Uuid,
    pub name: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub region: String,
    /// `""` (never enabled), `Enabled` or `Suspended`.
    pub versioning: String,
    pub has_policy: bool,
    pub has_lifecycle: bool,
    /// Bytes stored (every version).
    pub used_bytes: i64,
    /// Objects stored (every version and delete marker).
    pub used_objects: i64,
    /// S3 requests served (reads: GET/HEAD/LIST; writes: everything else), for metering.
    pub read_requests: i64,
    pub write_requests: i64,
    /// The bucket's own limits; absent = unlimited (project and VDC quotas still apply).
    pub quota_bytes: Option<i64>,
    pub quota_objects: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketQuotaUpdate {
    /// Capacity limit in bytes; null or absent = unlimited.
    #[serde(default)]
    pub bytes: Option<i64>,
    /// Object-count limit; null or absent = unlimited.
    #[serde(default)]
    pub objects: Option<i64>,
}
