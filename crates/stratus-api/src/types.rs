//! Resource and request types of the `/v1` API.
//!
//! Conventions (see docs/api.md): every object has `id`, `name`, `description`,
//! `created_at`, `updated_at`; create/update bodies reject unknown fields; lists answer a
//! [`Page`] with an opaque `next` cursor.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// One page of a list. Pass `next` back as `?next=` to get the following page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Paging and sorting, common to every list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next`.
    pub next: Option<String>,
    /// `name`, `created_at` (default) or either prefixed with `-` for descending.
    pub sort: Option<String>,
    /// Only objects whose name contains this text.
    pub name: Option<String>,
}

// ---------------------------------------------------------------- organizations

/// An organization (委办局): a government department that owns a tree of VDCs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

// ---------------------------------------------------------------- VDCs

/// A virtual data center: a node of an organization's tree (any depth), with quotas.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vdc {
    pub id: Uuid,
    pub org_id: Uuid,
    /// Absent for a top-level VDC of the organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub description: String,
    /// 1 for a top-level VDC, 2 for its children, and so on.
    pub level: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Give `parent_id` for a child VDC, or `org_id` for a top-level one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VdcCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// `parent_id` moves the VDC (with its subtree) under another VDC of the same organization.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VdcUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VdcFilter {
    /// Only VDCs of this organization.
    pub org_id: Option<Uuid>,
    /// Only direct children of this VDC.
    pub parent_id: Option<Uuid>,
}

// ---------------------------------------------------------------- projects

/// A project: where resources live and are counted against quotas.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub vdc_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    pub vdc_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectFilter {
    /// Only projects directly in this VDC.
    pub vdc_id: Option<Uuid>,
    /// Only projects of this organization.
    pub org_id: Option<Uuid>,
}

// ---------------------------------------------------------------- users

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    /// Login name, unique on the platform.
    pub name: String,
    pub display_name: String,
    pub email: String,
    pub description: String,
    /// The VDC the user belongs to; absent for platform staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdc_id: Option<Uuid>,
    pub enabled: bool,
    /// True while locked out after repeated failed logins.
    pub locked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<DateTime<Utc>>,
    pub password_changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub name: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdc_id: Option<Uuid>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` disables the account and revokes its sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Only users of this VDC.
    pub vdc_id: Option<Uuid>,
}

/// An administrator sets a new password (the user's sessions are revoked).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    pub password: String,
}

/// A user changes their own password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

// ---------------------------------------------------------------- auth

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user: User,
    pub grants: Vec<Grant>,
    /// `token` or `access_key`.
    pub auth_method: String,
}

// ---------------------------------------------------------------- roles and grants

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ScopeType {
    Platform,
    Vdc,
    Project,
}

impl ScopeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeType::Platform => "platform",
            ScopeType::Vdc => "vdc",
            ScopeType::Project => "project",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "platform" => Some(ScopeType::Platform),
            "vdc" => Some(ScopeType::Vdc),
            "project" => Some(ScopeType::Project),
            _ => None,
        }
    }
}

/// A built-in role and what it may do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Role {
    pub name: String,
    pub description: String,
    /// Where the role may be granted.
    pub scopes: Vec<ScopeType>,
    pub permissions: Vec<String>,
}

/// A role granted to a user on the platform, a VDC (inherited by its subtree) or a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub scope_type: ScopeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantCreate {
    pub user_id: Uuid,
    pub role: String,
    pub scope_type: ScopeType,
    /// Required for `vdc` and `project` scopes; absent for `platform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantFilter {
    pub user_id: Option<Uuid>,
    pub scope_id: Option<Uuid>,
}

// ---------------------------------------------------------------- access keys

/// An access key for programs: requests are signed with HMAC-SHA256 (SigV4 style).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessKey {
    /// The access key id (`AK…`), also the object's id.
    pub id: String,
    pub user_id: Uuid,
    /// The project the key acts for in object storage: buckets it creates belong there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    pub description: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyCreate {
    #[serde(default)]
    pub description: String,
    /// Bind the key to a project you may write in (object storage creates buckets there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
}

/// Returned once, at creation: the secret is never shown again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyCreated {
    pub access_key: AccessKey,
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessKeyFilter {
    /// Security administrators may list another user's keys.
    pub user_id: Option<Uuid>,
}

// ---------------------------------------------------------------- quotas

/// Every resource kind that quotas limit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum QuotaResource {
    Vcpus,
    MemoryGib,
    StorageGib,
    Instances,
    Volumes,
    Snapshots,
    Images,
    ElasticIps,
    Vpcs,
    SecurityGroups,
    LoadBalancers,
    Buckets,
    /// Object storage capacity in bytes.
    ObjectStorageBytes,
    /// Stored objects (every version counts).
    Objects,
    Projects,
}

impl QuotaResource {
    pub const ALL: [QuotaResource; 15] = [
        QuotaResource::Vcpus,
        QuotaResource::MemoryGib,
        QuotaResource::StorageGib,
        QuotaResource::Instances,
        QuotaResource::Volumes,
        QuotaResource::Snapshots,
        QuotaResource::Images,
        QuotaResource::ElasticIps,
        QuotaResource::Vpcs,
        QuotaResource::SecurityGroups,
        QuotaResource::LoadBalancers,
        QuotaResource::Buckets,
        QuotaResource::ObjectStorageBytes,
        QuotaResource::Objects,
        QuotaResource::Projects,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaResource::Vcpus => "vcpus",
            QuotaResource::MemoryGib => "memory_gib",
            QuotaResource::StorageGib => "storage_gib",
            QuotaResource::Instances => "instances",
            QuotaResource::Volumes => "volumes",
            QuotaResource::Snapshots => "snapshots",
            QuotaResource::Images => "images",
            QuotaResource::ElasticIps => "elastic_ips",
            QuotaResource::Vpcs => "vpcs",
            QuotaResource::SecurityGroups => "security_groups",
            QuotaResource::LoadBalancers => "load_balancers",
            QuotaResource::Buckets => "buckets",
            QuotaResource::ObjectStorageBytes => "object_storage_bytes",
            QuotaResource::Objects => "objects",
            QuotaResource::Projects => "projects",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaLine {
    pub resource: QuotaResource,
    /// Absent when unlimited at this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    pub used: i64,
    /// What can still be created here: the least headroom of this level and every ancestor;
    /// absent when no level limits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaLevel {
    pub scope_type: ScopeType,
    pub scope_id: Uuid,
    pub name: String,
    pub lines: Vec<QuotaLine>,
}

/// Quotas of a VDC or project: the level itself first, then each ancestor VDC up to the top.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    pub levels: Vec<QuotaLevel>,
}

/// New limits; `null` makes a resource unlimited at this level. Resources not named keep their limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaUpdate {
    pub limits: BTreeMap<QuotaResource, Option<i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaMismatch {
    pub scope_id: Uuid,
    pub resource: QuotaResource,
    pub recorded: i64,
    pub actual: i64,
}

/// Result of comparing every recorded usage counter with a recount of the real resources.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyReport {
    pub counters_checked: i64,
    pub mismatches: Vec<QuotaMismatch>,
}

// ---------------------------------------------------------------- policy

/// Password and login policy, set by the security administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicy {
    /// 8–128.
    pub min_length: u32,
    pub require_upper: bool,
    pub require_lower: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
    /// Failed logins in a row before the account locks (1–100).
    pub max_failed_logins: u32,
    /// How long a lock lasts (1–10080 minutes).
    pub lockout_minutes: u32,
    /// Session token lifetime (5–10080 minutes).
    pub session_minutes: u32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 10,
            require_upper: true,
            require_lower: true,
            require_digit: true,
            require_symbol: false,
            max_failed_logins: 5,
            lockout_minutes: 15,
            session_minutes: 480,
        }
    }
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Success,
    /// Refused as invalid or conflicting, or failed inside Stratus.
    Failure,
    /// Refused for lack of credentials or permission.
    Denied,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
            AuditResult::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(AuditResult::Success),
            "failure" => Some(AuditResult::Failure),
            "denied" => Some(AuditResult::Denied),
            _ => None,
        }
    }
}

/// One mutating call: who, what, which object, from where, result, duration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Login name, or the name tried in a failed login.
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdc_id: Option<Uuid>,
    pub source_ip: String,
    pub method: String,
    pub path: String,
    /// Operation id, e.g. `project_create`.
    pub operation: String,
    pub object_type: String,
    pub object_id: String,
    pub result: AuditResult,
    pub status: u16,
    pub duration_ms: f64,
    /// Error message when the call did not succeed.
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// RFC 3339 time; events at or after it.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339 time; events before it.
    pub until: Option<DateTime<Utc>>,
    /// Login name of the caller.
    pub user: Option<String>,
    pub vdc_id: Option<Uuid>,
    /// Operation id, e.g. `vdc_create`.
    pub operation: Option<String>,
    pub result: Option<AuditResult>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next`.
    pub next: Option<String>,
}

// ---------------------------------------------------------------- system

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub database: String,
}

// ---------------------------------------------------------------- flavors

/// An instance type: vCPUs, memory and root disk size.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Flavor {
    pub id: Uuid,
    /// e.g. `basic.2c4g`.
    pub name: String,
    pub description: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    /// One of the spec's reference flavors, which cannot be deleted.
    pub builtin: bool,
    /// VDCs (with everything below them) that may use the flavor; empty = every VDC.
    pub vdc_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavorCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// 1–255.
    pub vcpus: i64,
    /// 64 MiB – 4 TiB.
    pub memory_mib: i64,
    /// 1–65536 GiB.
    pub disk_gib: i64,
    /// Restrict the flavor to these VDCs; empty or absent = every VDC.
    #[serde(default)]
    pub vdc_ids: Vec<Uuid>,
}

// ---------------------------------------------------------------- transfers

/// Hand a resource to another project (spec 8.3.1.4 (2)): its quota moves with it, in one
/// transaction — given back at the old project and its VDCs, taken (within limits) at the
/// new one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferCreate {
    /// An instance, volume, elastic IP or bucket.
    pub resource_id: Uuid,
    /// The project it goes to.
    pub project_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    /// `instance`, `volume`, `elastic_ip` or `bucket`.
    #[serde(rename = "type")]
    pub kind: String,
    pub resource_id: Uuid,
    pub name: String,
    pub from_project_id: Uuid,
    pub to_project_id: Uuid,
    pub to_vdc_id: Uuid,
}

// ---------------------------------------------------------------- recycle bin

/// A deleted instance, volume or bucket kept in the recycle bin until `purge_at`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecycledResource {
    /// The resource's own id (restore gives it back under it).
    pub id: Uuid,
    /// `instance`, `volume` or `bucket`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub deleted_by: String,
    pub deleted_at: DateTime<Utc>,
    /// When it is deleted for good, unless restored first.
    pub purge_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecycleFilter {
    #[serde(default)]
    pub project_id: Option<Uuid>,
}
