//! The cloud management platform's front door (spec 8.3.3): a service catalog, requests
//! with multi-level approval, and the order each approved request becomes.
//!
//! Departments do not create resources directly here: they request a service, approvers
//! decide level by level, and the platform provisions what was approved as the requester,
//! within the requester's quota.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

// ---------------------------------------------------------------- services

/// What a service provisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Virtual machines (ECS).
    Instance,
    /// Block storage volumes (EVS).
    Volume,
    /// A VPC.
    Vpc,
    /// Elastic IP addresses.
    ElasticIp,
    /// An object storage bucket.
    Bucket,
    /// A sub-VDC of the requester's VDC with its quotas.
    Vdc,
    /// A stack made from the service's orchestration template; the form's parameters are
    /// the template's, plus `name` for the stack.
    Template,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Instance => "instance",
            ServiceKind::Volume => "volume",
            ServiceKind::Vpc => "vpc",
            ServiceKind::ElasticIp => "elastic_ip",
            ServiceKind::Bucket => "bucket",
            ServiceKind::Vdc => "vdc",
            ServiceKind::Template => "template",
        }
    }
}

/// The value a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParameterType {
    String,
    Integer,
    Boolean,
}

/// Who may set a parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParameterMode {
    /// The requester fills it in (an approver may not change it).
    #[default]
    Requester,
    /// Only an approver may set it (the requester sees the default).
    Approver,
    /// Fixed by the service definition: nobody changes it.
    Locked,
}

/// One field of a service's request form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceParameter {
    /// A parameter the service's kind knows (see `GET /v1/service-kinds`).
    pub name: String,
    /// What the form shows (default: the name).
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub mode: ParameterMode,
    /// The value when nobody sets one; required for locked parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The only values allowed (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Value>,
    /// Bounds of an integer parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Set by the server from the kind (ignored in what clients send).
    #[serde(default, rename = "type")]
    pub kind: Option<ParameterType>,
}

/// A parameter a service kind knows: its name, type, whether a request needs a value for
/// it, and what it means.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KindParameter {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    pub required: bool,
    pub description: String,
}

/// A service kind and its parameters (`GET /v1/service-kinds`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceKindInfo {
    pub kind: ServiceKind,
    pub description: String,
    pub parameters: Vec<KindParameter>,
}

/// A service in the catalog (spec 8.3.3.1).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// An icon name or URL for the console.
    pub icon: String,
    pub category: String,
    pub kind: ServiceKind,
    pub parameters: Vec<ServiceParameter>,
    /// The VDCs (and their sub-VDCs) that see the service; everyone when empty.
    pub vdc_ids: Vec<Uuid>,
    /// Unpublished services are seen by catalog administrators only.
    pub published: bool,
    /// For `template` services: the orchestration template (docs/stacks.md).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub icon: String,
    #[serde(default)]
    pub category: String,
    pub kind: ServiceKind,
    /// The form; a kind's required parameter left out is a requester parameter.
    #[serde(default)]
    pub parameters: Vec<ServiceParameter>,
    #[serde(default)]
    pub vdc_ids: Vec<Uuid>,
    #[serde(default = "yes")]
    pub published: bool,
    /// For `template` services (only): the orchestration template; its parameters are the
    /// form's.
    #[serde(default)]
    pub template: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<ServiceParameter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdc_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    /// A new template (template services); the form is checked against it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceFilter {
    pub category: Option<String>,
    pub kind: Option<ServiceKind>,
}

// ---------------------------------------------------------------- approval flows

/// How a level is passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LevelRule {
    /// One approval of any approver of the level.
    #[default]
    Any,
    /// Every approver of the level approves.
    All,
}

/// One approver seat: a user, or a role held over the requester's project (a grant on the
/// project, on a VDC above it, or platform-wide) — e.g. `vdc_admin` is "an administrator
/// of the requester's VDC", `platform_admin` the platform's business administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalLevel {
    pub name: String,
    #[serde(default)]
    pub rule: LevelRule,
    /// 1–50 seats.
    pub approvers: Vec<Approver>,
}

/// A request is approved without anyone's decision when every condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoApprove {
    /// An integer parameter of the request, e.g. `size_gib` or `count`.
    pub parameter: String,
    /// Approved automatically when the value is at most this.
    pub max: i64,
}

/// Who decides requests for a service (or every service) in a VDC (and its sub-VDCs, or
/// everywhere): ordered levels of approvers (spec 5.3.2.1: at least 5 levels of at least 10
/// approvers). The most specific flow applies: one for the service before one for every
/// service, the requester's nearest VDC before those above it before the platform's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalFlow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdc_id: Option<Uuid>,
    pub levels: Vec<ApprovalLevel>,
    pub auto_approve: Vec<AutoApprove>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFlowCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The service it decides for; every service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Uuid>,
    /// Requests from this VDC and its sub-VDCs; everywhere when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vdc_id: Option<Uuid>,
    /// 1–10 levels, decided in order.
    pub levels: Vec<ApprovalLevel>,
    #[serde(default)]
    pub auto_approve: Vec<AutoApprove>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFlowUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<ApprovalLevel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<Vec<AutoApprove>>,
}

// ---------------------------------------------------------------- requests and orders

/// What a request asks for (spec 8.2.3 申请、变更、释放).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestAction {
    /// New resources from a catalog service.
    #[default]
    Create,
    /// Change one resource the requester's project owns: an instance's `flavor`, a
    /// volume's `size_gib`.
    Change,
    /// Delete one resource the requester's project owns.
    Release,
}

/// A request is its order: approval first, then provisioning.
///
/// `approving` → `approved` | `rejected`; `approved` → `provisioning` → `completed` |
/// `failed`; `approving` or `approved` → `cancelled` by the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Approving,
    Approved,
    Rejected,
    Provisioning,
    Completed,
    Failed,
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Approving => "approving",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Provisioning => "provisioning",
            RequestStatus::Completed => "completed",
            RequestStatus::Failed => "failed",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RequestStatus> {
        Some(match s {
            "approving" => RequestStatus::Approving,
            "approved" => RequestStatus::Approved,
            "rejected" => RequestStatus::Rejected,
            "provisioning" => RequestStatus::Provisioning,
            "completed" => RequestStatus::Completed,
            "failed" => RequestStatus::Failed,
            "cancelled" => RequestStatus::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Approve,
    Reject,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    /// The approver; absent for an automatic approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    pub user_name: String,
    pub decision: DecisionKind,
    pub comment: String,
    /// Approver parameters this decision set.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// The seats of the level (indexes into its approvers) the decision fills.
    #[serde(default)]
    pub seats: Vec<i64>,
    pub at: DateTime<Utc>,
}

/// A level of the request's flow (copied when it was submitted) and its decisions so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestLevel {
    pub name: String,
    pub rule: LevelRule,
    pub approvers: Vec<Approver>,
    pub decisions: Vec<Decision>,
}

/// What provisioning made (or changed, or released).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderResource {
    /// `instance`, `volume`, `vpc`, `elastic_ip`, `bucket`, `vdc`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
    pub name: String,
}

/// A request and its order (spec 8.3.3.2, 8.3.9.1 (6)).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Request {
    pub id: Uuid,
    pub action: RequestAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Uuid>,
    pub service_name: String,
    pub kind: ServiceKind,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub requester_id: Uuid,
    pub requester_name: String,
    pub description: String,
    /// The values provisioning uses (the requester's, defaults, locked values and the
    /// approvers' changes).
    pub parameters: Map<String, Value>,
    /// The resource a change or release is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<Uuid>,
    pub status: RequestStatus,
    /// Why it was rejected, failed or cancelled.
    pub status_reason: String,
    /// The level awaiting decisions (0-based) while `approving`.
    pub level: i64,
    pub levels: Vec<RequestLevel>,
    /// The flow it follows; absent for the default flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<Uuid>,
    pub resources: Vec<OrderResource>,
    /// Bought by the month (包年包月) for this many months; absent: pay as you go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_months: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestCreate {
    #[serde(default)]
    pub action: RequestAction,
    /// The catalog service (a create request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Uuid>,
    /// The project the resources are for (a create request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    /// A change or release: the instance, volume, VPC or elastic IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<Uuid>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Why the resources are needed.
    #[serde(default)]
    pub description: String,
    /// Buy what the request makes by the month (包年包月) for this many months (1–36), at
    /// the monthly prices in force when it is made; absent: pay as you go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_months: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestDecide {
    #[serde(default)]
    pub comment: String,
    /// Approver parameters to set (approve only).
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    pub project_id: Option<Uuid>,
    /// Only the caller's own requests.
    pub mine: Option<bool>,
}
