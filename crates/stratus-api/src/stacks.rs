//! Orchestration (spec 8.3.3.5): a stack is the set of resources one YAML template
//! describes — VPCs, subnets, security groups, instances, volumes and their attachments,
//! elastic IPs, buckets — made in dependency order, changed by giving a new template, and
//! removed together. The template language is documented in `docs/stacks.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Where a stack stands. `creating`, `updating`, `deleting` and `rolling_back` are in
/// progress; the others are at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StackStatus {
    Creating,
    Updating,
    Deleting,
    /// A failed create is removing what it made.
    RollingBack,
    /// The last create or update finished: every resource of the template exists.
    Complete,
    /// The last action failed; `status_reason` names the resource and why. What was made
    /// stays (delete or update the stack to go on).
    Failed,
    /// A failed create removed everything it had made.
    RolledBack,
}

impl StackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StackStatus::Creating => "creating",
            StackStatus::Updating => "updating",
            StackStatus::Deleting => "deleting",
            StackStatus::RollingBack => "rolling_back",
            StackStatus::Complete => "complete",
            StackStatus::Failed => "failed",
            StackStatus::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<StackStatus> {
        [
            StackStatus::Creating,
            StackStatus::Updating,
            StackStatus::Deleting,
            StackStatus::RollingBack,
            StackStatus::Complete,
            StackStatus::Failed,
            StackStatus::RolledBack,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether an action is under way (a second one is refused).
    pub fn busy(self) -> bool {
        matches!(
            self,
            StackStatus::Creating
                | StackStatus::Updating
                | StackStatus::Deleting
                | StackStatus::RollingBack
        )
    }
}

/// What a failed create does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Remove everything the create made (the default).
    #[default]
    Rollback,
    /// Keep what was made and leave the stack `failed`, to look at.
    Keep,
}

/// Where one resource of a stack stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StackResourceStatus {
    /// Not made yet (waiting for what it depends on).
    Pending,
    Creating,
    Updating,
    Deleting,
    Complete,
    Failed,
}

/// One resource of a stack: its logical name in the template and the real resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StackResource {
    /// The key under `resources:` in the template.
    pub name: String,
    /// The template type, e.g. `Stratus::Instance`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The real resource's id (for an attachment: the volume's); none until it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub status: StackResourceStatus,
    #[serde(default)]
    pub status_reason: String,
    /// The properties it was made (or last changed) with, references resolved.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// What `get_attr` reads: id, name, address, …
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// The resources this one needs (made before it, removed after it).
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// A template output, evaluated when the stack's last action finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StackOutput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(value_type = Object)]
    pub value: Value,
    /// Why the value could not be worked out (its resource is missing, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Stack {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub status: StackStatus,
    pub status_reason: String,
    pub on_failure: OnFailure,
    /// The parameter values in force (given, or the template's defaults).
    pub parameters: Map<String, Value>,
    /// In the template's order.
    pub resources: Vec<StackResource>,
    pub outputs: Vec<StackOutput>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StackCreate {
    pub project_id: Uuid,
    /// 1–64 characters: letters, digits, `-`, `_`, `.`; unique in the project.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The template, YAML (see `docs/stacks.md`).
    pub template: String,
    /// Values for the template's parameters; the others take their defaults.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// Bring a stack to a changed template: resources new in it are made, changed ones changed
/// in place (see `docs/stacks.md` for what can change), the ones it no longer names removed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StackUpdate {
    pub template: String,
    /// Parameter values; those not given keep their current value.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// A stack's template as last given, with its parameter values.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StackTemplate {
    pub stack_id: Uuid,
    pub template: String,
    pub parameters: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateValidate {
    pub template: String,
    /// When given, also checked against the template's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

/// One parameter a template takes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateParameter {
    pub name: String,
    /// `string`, `number` or `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub allowed_values: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateResourceInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub depends_on: Vec<String>,
}

/// What a valid template declares, and the order a stack of it is made in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateInfo {
    pub description: String,
    pub parameters: Vec<TemplateParameter>,
    pub resources: Vec<TemplateResourceInfo>,
    pub outputs: Vec<String>,
    /// Groups of resources made together, in order; each group needs only earlier ones.
    pub waves: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StackFilter {
    #[serde(default)]
    pub project_id: Option<Uuid>,
}
