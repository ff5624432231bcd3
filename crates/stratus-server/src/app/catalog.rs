//! The service catalog and approval flows: what departments may request, with which form,
//! and who decides.

use chrono::Utc;
use serde_json::{Map, Value};
use stratus_api::{
    ApprovalFlow, ApprovalFlowCreate, ApprovalFlowUpdate, ApprovalLevel, Approver, AutoApprove,
    KindParameter, LevelRule, ParameterMode, ParameterType, Service, ServiceCreate, ServiceFilter,
    ServiceKind, ServiceKindInfo, ServiceParameter, ServiceUpdate,
};
use uuid::Uuid;

use super::{require_global, App};
use crate::authz::{self, Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::validate;

/// Levels of a flow and seats of a level, at most (the spec asks for at least 5 and 10).
pub const MAX_LEVELS: usize = 10;
pub const MAX_SEATS: usize = 50;

// ---------------------------------------------------------------- kinds and their parameters

struct Known {
    name: &'static str,
    kind: ParameterType,
    required: bool,
    description: &'static str,
}

const fn p(
    name: &'static str,
    kind: ParameterType,
    required: bool,
    description: &'static str,
) -> Known {
    Known {
        name,
        kind,
        required,
        description,
    }
}

use ParameterType::{Boolean as B, Integer as I, String as S};

const INSTANCE: &[Known] = &[
    p(
        "name",
        S,
        true,
        "Instance name (becomes the hostname; `<name>-1`, `-2`… for several)",
    ),
    p("flavor", S, true, "Flavor name or id"),
    p("image", S, true, "Image name or id"),
    p(
        "availability_zone",
        S,
        false,
        "Availability zone (default: the region's first)",
    ),
    p(
        "subnet_id",
        S,
        false,
        "Subnet for the first NIC (none: no network)",
    ),
    p("key_name", S, false, "Key pair of the project"),
    p("user_data", S, false, "cloud-init user data"),
    p("count", I, false, "How many instances, 1–100 (default 1)"),
];
const VOLUME: &[Known] = &[
    p(
        "name",
        S,
        true,
        "Volume name (`<name>-1`, `-2`… for several)",
    ),
    p("size_gib", I, true, "Size, 1–32,768 GiB"),
    p(
        "volume_type",
        S,
        false,
        "Volume type: normal, high, ultra or a custom one",
    ),
    p("availability_zone", S, false, "Availability zone"),
    p("count", I, false, "How many volumes, 1–100 (default 1)"),
];
const VPC: &[Known] = &[
    p("name", S, true, "VPC name"),
    p("cidr", S, true, "Private IPv4 range, /8 to /28"),
    p(
        "snat",
        B,
        false,
        "A shared public address for outbound traffic",
    ),
    p("availability_zone", S, false, "Availability zone"),
];
const ELASTIC_IP: &[Known] = &[
    p("count", I, false, "How many addresses, 1–100 (default 1)"),
    p(
        "external_network_id",
        S,
        false,
        "External network (default: the zone's)",
    ),
];

const BUCKET: &[Known] = &[p(
    "name",
    S,
    true,
    "Bucket name (global: 3–63 lowercase letters, digits, '-', '.')",
)];
/// The quota resources a VDC service may set, by parameter name.
pub const VDC_QUOTAS: [(&str, stratus_api::QuotaResource); 7] = [
    ("vcpus", stratus_api::QuotaResource::Vcpus),
    ("memory_gib", stratus_api::QuotaResource::MemoryGib),
    ("storage_gib", stratus_api::QuotaResource::StorageGib),
    ("instances", stratus_api::QuotaResource::Instances),
    ("elastic_ips", stratus_api::QuotaResource::ElasticIps),
    ("vpcs", stratus_api::QuotaResource::Vpcs),
    (
        "security_groups",
        stratus_api::QuotaResource::SecurityGroups,
    ),
];
const VDC: &[Known] = &[
    p(
        "name",
        S,
        true,
        "Name of the new VDC (under the project's VDC)",
    ),
    p("vcpus", I, false, "Quota: vCPUs"),
    p("memory_gib", I, false, "Quota: memory, GiB"),
    p("storage_gib", I, false, "Quota: block storage, GiB"),
    p("instances", I, false, "Quota: instances"),
    p("elastic_ips", I, false, "Quota: elastic IPs"),
    p("vpcs", I, false, "Quota: VPCs"),
    p("security_groups", I, false, "Quota: security groups"),
];

const TEMPLATE: &[Known] = &[p("name", S, true, "Name of the stack")];

fn known(kind: ServiceKind) -> &'static [Known] {
    match kind {
        ServiceKind::Instance => INSTANCE,
        ServiceKind::Volume => VOLUME,
        ServiceKind::Vpc => VPC,
        ServiceKind::ElasticIp => ELASTIC_IP,
        ServiceKind::Bucket => BUCKET,
        ServiceKind::Vdc => VDC,
        ServiceKind::Template => TEMPLATE,
    }
}

/// A parameter a service may put on its form.
pub struct Field {
    pub name: String,
    pub kind: ParameterType,
    pub required: bool,
}

/// The parameters a service's form may hold: its kind's, and for a template service the
/// template's own (those without a default are required).
pub fn fields(kind: ServiceKind, template: &str) -> Result<Vec<Field>> {
    let mut out: Vec<Field> = known(kind)
        .iter()
        .map(|k| Field {
            name: k.name.to_string(),
            kind: k.kind,
            required: k.required,
        })
        .collect();
    if kind == ServiceKind::Template {
        let t = super::stacks::template::parse(template)?;
        if t.param("name").is_some() {
            return Err(Error::invalid(
                "template",
                "a template service's template cannot take a parameter called name: the form's name is the stack's",
            ));
        }
        for tp in &t.params {
            out.push(Field {
                name: tp.name.clone(),
                kind: match tp.kind {
                    super::stacks::template::ParamKind::String => ParameterType::String,
                    super::stacks::template::ParamKind::Number => ParameterType::Integer,
                    super::stacks::template::ParamKind::Boolean => ParameterType::Boolean,
                },
                required: tp.default.is_none(),
            });
        }
    }
    Ok(out)
}

const KINDS: [(ServiceKind, &str); 7] = [
    (ServiceKind::Instance, "Virtual machines (ECS)"),
    (ServiceKind::Volume, "Block storage volumes (EVS)"),
    (ServiceKind::Vpc, "A virtual private cloud"),
    (ServiceKind::ElasticIp, "Elastic IP addresses"),
    (ServiceKind::Bucket, "An object storage bucket (OBS)"),
    (
        ServiceKind::Vdc,
        "A sub-VDC of the requester's VDC with its quotas (made by the last approver)",
    ),
    (
        ServiceKind::Template,
        "A stack from the service's orchestration template (its parameters join the form)",
    ),
];

pub fn service_kinds() -> Vec<ServiceKindInfo> {
    KINDS
        .iter()
        .map(|(kind, description)| ServiceKindInfo {
            kind: *kind,
            description: description.to_string(),
            parameters: known(*kind)
                .iter()
                .map(|k| KindParameter {
                    name: k.name.to_string(),
                    kind: k.kind,
                    required: k.required,
                    description: k.description.to_string(),
                })
                .collect(),
        })
        .collect()
}

fn type_name(t: ParameterType) -> &'static str {
    match t {
        ParameterType::String => "a string",
        ParameterType::Integer => "an integer",
        ParameterType::Boolean => "true or false",
    }
}

/// A value against a form field: its type, the allowed values, the bounds.
pub fn check_value(field: &str, def: &ServiceParameter, t: ParameterType, v: &Value) -> Result<()> {
    let ok = match t {
        ParameterType::String => v.is_string(),
        ParameterType::Integer => v.is_i64(),
        ParameterType::Boolean => v.is_boolean(),
    };
    if !ok {
        return Err(Error::invalid(field, &format!("must be {}", type_name(t))));
    }
    if !def.allowed.is_empty() && !def.allowed.contains(v) {
        let list: Vec<String> = def.allowed.iter().map(Value::to_string).collect();
        return Err(Error::invalid(
            field,
            &format!("must be one of {}", list.join(", ")),
        ));
    }
    if let Some(n) = v.as_i64() {
        let bound = match (def.min, def.max) {
            (Some(a), Some(b)) if n < a || n > b => Some(format!("must be between {a} and {b}")),
            (Some(a), None) if n < a => Some(format!("must be at least {a}")),
            (None, Some(b)) if n > b => Some(format!("must be at most {b}")),
            _ => None,
        };
        if let Some(why) = bound {
            return Err(Error::invalid(field, &why));
        }
    }
    Ok(())
}

/// A service's form: known names, no repeats, consistent defaults, allowed values and bounds.
fn check_form(kind: ServiceKind, template: &str, params: &mut Vec<ServiceParameter>) -> Result<()> {
    let known = fields(kind, template)?;
    let mut seen = std::collections::HashSet::new();
    for (i, d) in params.iter_mut().enumerate() {
        let f = |x: &str| format!("parameters[{i}].{x}");
        let Some(t) = known.iter().find(|k| k.name == d.name).map(|k| k.kind) else {
            let names: Vec<&str> = known.iter().map(|k| k.name.as_str()).collect();
            return Err(Error::invalid(
                &f("name"),
                &format!(
                    "{} services have no parameter {:?} (they have {})",
                    kind.as_str(),
                    d.name,
                    names.join(", ")
                ),
            ));
        };
        if !seen.insert(d.name.clone()) {
            return Err(Error::invalid(
                &f("name"),
                &format!("{:?} appears twice", d.name),
            ));
        }
        validate::description(&f("label"), &d.label)?;
        if d.label.is_empty() {
            d.label = d.name.clone();
        }
        d.kind = Some(t);
        if t != ParameterType::Integer && (d.min.is_some() || d.max.is_some()) {
            return Err(Error::invalid(
                &f("min"),
                "bounds apply to integer parameters",
            ));
        }
        if let (Some(a), Some(b)) = (d.min, d.max) {
            if a > b {
                return Err(Error::invalid(&f("min"), "is above max"));
            }
        }
        let bare = ServiceParameter {
            allowed: vec![],
            ..d.clone()
        };
        for (j, v) in d.allowed.iter().enumerate() {
            check_value(&f(&format!("allowed[{j}]")), &bare, t, v)?;
        }
        match &d.default {
            Some(v) => check_value(&f("default"), d, t, v)?,
            None if d.mode == ParameterMode::Locked => {
                return Err(Error::invalid(
                    &f("default"),
                    "a locked parameter needs its value here",
                ))
            }
            None if d.mode == ParameterMode::Approver
                && known.iter().any(|k| k.name == d.name && k.required) =>
            {
                return Err(Error::invalid(
                    &f("default"),
                    "a required parameter only approvers set needs a default",
                ))
            }
            None => {}
        }
    }
    // What a request cannot do without and the form left out, the requester fills in.
    for k in known.iter().filter(|k| k.required) {
        if !params.iter().any(|d| d.name == k.name) {
            params.push(ServiceParameter {
                name: k.name.clone(),
                label: k.name.clone(),
                mode: ParameterMode::Requester,
                default: None,
                allowed: vec![],
                min: None,
                max: None,
                kind: Some(k.kind),
            });
        }
    }
    Ok(())
}

async fn check_vdcs(app: &App, vdcs: &[Uuid]) -> Result<()> {
    for (i, v) in vdcs.iter().enumerate() {
        if app.store.vdc_get(*v).await?.is_none() {
            return Err(Error::invalid(
                &format!("vdc_ids[{i}]"),
                &format!("no VDC {v}"),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- services

/// Whether the caller's departments may see a service: published, and whitelisted for a
/// VDC the caller belongs to or acts in (or for everyone).
async fn service_seen(app: &App, p: &Principal, s: &Service) -> Result<bool> {
    if p.has_global(Perm::CatalogWrite) {
        return Ok(true);
    }
    if !s.published {
        return Ok(false);
    }
    if s.vdc_ids.is_empty() {
        return Ok(true);
    }
    // The caller's own VDC and those of its grants, with their ancestors.
    let vis = p.visibility(Perm::ResourceRead);
    let mut mine: Vec<Uuid> = vis.vdcs.clone();
    mine.extend(p.vdc_id);
    for proj in &vis.projects {
        if let Some(pr) = app.store.project_get(*proj).await? {
            mine.push(pr.vdc_id);
        }
    }
    for v in mine {
        let chain = app.store.vdc_chain(v).await?;
        if chain.iter().any(|c| s.vdc_ids.contains(c)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a project may use a service (its VDC or one above it is whitelisted).
pub fn service_open_to(s: &Service, chain: &[Uuid]) -> bool {
    s.published && (s.vdc_ids.is_empty() || chain.iter().any(|c| s.vdc_ids.contains(c)))
}

/// A template service has a valid template; other kinds have none.
fn check_template(kind: ServiceKind, template: &str) -> Result<()> {
    match (kind, template.is_empty()) {
        (ServiceKind::Template, true) => Err(Error::invalid(
            "template",
            "a template service needs its orchestration template",
        )),
        (ServiceKind::Template, false) => super::stacks::template::parse(template).map(drop),
        (_, false) => Err(Error::invalid(
            "template",
            "only template services take a template",
        )),
        (_, true) => Ok(()),
    }
}

pub async fn service_kind_list(_app: &App, _p: &Principal) -> Result<Vec<ServiceKindInfo>> {
    Ok(service_kinds())
}

pub async fn service_create(app: &App, p: &Principal, b: ServiceCreate) -> Result<Service> {
    require_global(p, Perm::CatalogWrite)?;
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    validate::description("icon", &b.icon)?;
    validate::description("category", &b.category)?;
    check_template(b.kind, &b.template)?;
    let mut parameters = b.parameters;
    check_form(b.kind, &b.template, &mut parameters)?;
    check_vdcs(app, &b.vdc_ids).await?;
    let now = Utc::now();
    let s = Service {
        id: Uuid::new_v4(),
        name: b.name,
        description: b.description,
        icon: b.icon,
        category: b.category,
        kind: b.kind,
        parameters,
        vdc_ids: b.vdc_ids,
        published: b.published,
        template: b.template,
        created_at: now,
        updated_at: now,
    };
    app.store.service_insert(&s).await?;
    Ok(s)
}

pub async fn service_list(app: &App, p: &Principal, f: ServiceFilter) -> Result<Vec<Service>> {
    let mut out = Vec::new();
    for s in app.store.service_list().await? {
        if f.kind.is_some_and(|k| k != s.kind)
            || f.category.as_ref().is_some_and(|c| *c != s.category)
        {
            continue;
        }
        if service_seen(app, p, &s).await? {
            out.push(s);
        }
    }
    Ok(out)
}

pub async fn service_visible(app: &App, p: &Principal, id: Uuid) -> Result<Service> {
    match app.store.service_get(id).await? {
        Some(s) if service_seen(app, p, &s).await? => Ok(s),
        _ => Err(Error::not_found("service", id)),
    }
}

pub async fn service_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: ServiceUpdate,
) -> Result<Service> {
    let mut s = service_visible(app, p, id).await?;
    require_global(p, Perm::CatalogWrite)?;
    if let Some(n) = b.name {
        validate::name("name", &n)?;
        s.name = n;
    }
    for (field, value, slot) in [
        ("description", b.description, &mut s.description),
        ("icon", b.icon, &mut s.icon),
        ("category", b.category, &mut s.category),
    ] {
        if let Some(v) = value {
            validate::description(field, &v)?;
            *slot = v;
        }
    }
    if let Some(t) = b.template {
        check_template(s.kind, &t)?;
        s.template = t;
    }
    // The form is checked again against a new template even when it stays.
    let mut params = b.parameters.unwrap_or_else(|| s.parameters.clone());
    check_form(s.kind, &s.template, &mut params)?;
    s.parameters = params;
    if let Some(v) = b.vdc_ids {
        check_vdcs(app, &v).await?;
        s.vdc_ids = v;
    }
    if let Some(pb) = b.published {
        s.published = pb;
    }
    app.store.service_update(&s).await?;
    service_visible(app, p, id).await
}

pub async fn service_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    service_visible(app, p, id).await?;
    require_global(p, Perm::CatalogWrite)?;
    app.store.service_delete(id).await
}

/// The values a new request provisions with: the requester's (only where the form lets the
/// requester set them), then defaults and locked values; every required one present.
pub fn request_values(s: &Service, given: &Map<String, Value>) -> Result<Map<String, Value>> {
    let known = fields(s.kind, &s.template)?;
    let mut out = Map::new();
    for (k, v) in given {
        let field = format!("parameters.{k}");
        let Some(def) = s.parameters.iter().find(|d| d.name == *k) else {
            return Err(Error::invalid(
                &field,
                &if known.iter().any(|f| f.name == *k) {
                    format!("the service {:?} does not offer it", s.name)
                } else {
                    format!("{} services have no such parameter", s.kind.as_str())
                },
            ));
        };
        match def.mode {
            ParameterMode::Locked => {
                return Err(Error::invalid(
                    &field,
                    "is locked by the service definition and cannot be changed",
                ))
            }
            ParameterMode::Approver => {
                return Err(Error::invalid(&field, "only an approver may set it"))
            }
            ParameterMode::Requester => {}
        }
        check_value(&field, def, def.kind.unwrap_or(ParameterType::String), v)?;
        out.insert(k.clone(), v.clone());
    }
    for d in &s.parameters {
        if let (false, Some(v)) = (out.contains_key(&d.name), &d.default) {
            out.insert(d.name.clone(), v.clone());
        }
    }
    for r in known.iter().filter(|f| f.required) {
        if !out.contains_key(&r.name) {
            return Err(Error::invalid(
                &format!("parameters.{}", r.name),
                "is required",
            ));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- approval flows

/// Levels and seats: counts, one of user or role per seat, users and roles that exist.
async fn check_levels(app: &App, levels: &[ApprovalLevel], auto: &[AutoApprove]) -> Result<()> {
    if levels.is_empty() || levels.len() > MAX_LEVELS {
        return Err(Error::invalid(
            "levels",
            &format!("must have 1 to {MAX_LEVELS} levels"),
        ));
    }
    for (i, l) in levels.iter().enumerate() {
        validate::name(&format!("levels[{i}].name"), &l.name)?;
        if l.approvers.is_empty() || l.approvers.len() > MAX_SEATS {
            return Err(Error::invalid(
                &format!("levels[{i}].approvers"),
                &format!("must have 1 to {MAX_SEATS} approvers"),
            ));
        }
        for (j, a) in l.approvers.iter().enumerate() {
            let f = format!("levels[{i}].approvers[{j}]");
            match (a.user_id, &a.role) {
                (Some(u), None) => {
                    if app.store.user_get(u).await?.is_none() {
                        return Err(Error::invalid(
                            &format!("{f}.user_id"),
                            &format!("no user {u}"),
                        ));
                    }
                }
                (None, Some(r)) => {
                    if !authz::role(r).is_some_and(|d| d.perms.contains(&Perm::Approve)) {
                        return Err(Error::invalid(
                            &format!("{f}.role"),
                            &format!("{r:?} is not a role that approves (platform_admin, vdc_admin, approver)"),
                        ));
                    }
                }
                _ => return Err(Error::invalid(&f, "names either a user_id or a role")),
            }
            if l.approvers[..j].contains(a) {
                return Err(Error::invalid(&f, "appears twice in the level"));
            }
        }
    }
    for (i, a) in auto.iter().enumerate() {
        validate::name(&format!("auto_approve[{i}].parameter"), &a.parameter)?;
    }
    Ok(())
}

/// The flow when no flow applies: one level, decided by any approver of the requester's
/// project (an `approver` or `vdc_admin` over it, or a platform administrator).
pub fn default_levels() -> Vec<ApprovalLevel> {
    vec![ApprovalLevel {
        name: "审批 approval".into(),
        rule: LevelRule::Any,
        approvers: ["approver", "vdc_admin", authz::PLATFORM_ADMIN]
            .iter()
            .map(|r| Approver {
                user_id: None,
                role: Some(r.to_string()),
            })
            .collect(),
    }]
}

pub async fn flow_create(app: &App, p: &Principal, b: ApprovalFlowCreate) -> Result<ApprovalFlow> {
    if let Some(v) = b.vdc_id {
        // A VDC the caller cannot see does not exist for them.
        if app.store.vdc_get(v).await?.is_none()
            || (!p.has_global(Perm::CatalogWrite) && app.vdc_visible(p, v).await.is_err())
        {
            return Err(Error::invalid("vdc_id", &format!("no VDC {v}")));
        }
    }
    flow_manageable(app, p, b.vdc_id).await?;
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    if let Some(s) = b.service_id {
        if service_visible(app, p, s).await.is_err() {
            return Err(Error::invalid("service_id", &format!("no service {s}")));
        }
    }
    check_levels(app, &b.levels, &b.auto_approve).await?;
    let now = Utc::now();
    let f = ApprovalFlow {
        id: Uuid::new_v4(),
        name: b.name,
        description: b.description,
        service_id: b.service_id,
        vdc_id: b.vdc_id,
        levels: b.levels,
        auto_approve: b.auto_approve,
        created_at: now,
        updated_at: now,
    };
    app.store.flow_insert(&f).await?;
    Ok(f)
}

/// Who may see a flow: catalog administrators and platform-wide approvers every flow; a
/// VDC's administrators and approvers the flows of their VDCs.
async fn flow_seen(app: &App, p: &Principal, f: &ApprovalFlow) -> Result<bool> {
    if p.has_global(Perm::CatalogWrite) || p.visibility(Perm::Approve).all {
        return Ok(true);
    }
    let Some(v) = f.vdc_id else {
        return Ok(false);
    };
    let chain = app.store.vdc_chain(v).await?;
    let t = Target::Vdc { chain: &chain };
    Ok(p.can(Perm::VdcWrite, &t) || p.can(Perm::Approve, &t))
}

/// Who may define a flow: catalog administrators anywhere; a VDC's administrators for
/// their VDC and the VDCs below it (each department sets its own approval chain).
async fn flow_manageable(app: &App, p: &Principal, vdc: Option<Uuid>) -> Result<()> {
    if p.has_global(Perm::CatalogWrite) {
        return Ok(());
    }
    if let Some(v) = vdc {
        let chain = app.store.vdc_chain(v).await?;
        if p.can(Perm::VdcWrite, &Target::Vdc { chain: &chain }) {
            return Ok(());
        }
    }
    Err(Error::forbidden(
        "approval flows are defined by catalog administrators, or by a VDC's administrators for their VDC (vdc_id)",
    ))
}

pub async fn flow_list(app: &App, p: &Principal) -> Result<Vec<ApprovalFlow>> {
    let mut out = Vec::new();
    for f in app.store.flow_list().await? {
        if flow_seen(app, p, &f).await? {
            out.push(f);
        }
    }
    Ok(out)
}

pub async fn flow_view(app: &App, p: &Principal, id: Uuid) -> Result<ApprovalFlow> {
    match app.store.flow_get(id).await? {
        Some(f) if flow_seen(app, p, &f).await? => Ok(f),
        _ => Err(Error::not_found("approval flow", id)),
    }
}

pub async fn flow_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: ApprovalFlowUpdate,
) -> Result<ApprovalFlow> {
    let mut f = flow_view(app, p, id).await?;
    flow_manageable(app, p, f.vdc_id).await?;
    if let Some(n) = b.name {
        validate::name("name", &n)?;
        f.name = n;
    }
    if let Some(d) = b.description {
        validate::description("description", &d)?;
        f.description = d;
    }
    if let Some(l) = b.levels {
        f.levels = l;
    }
    if let Some(a) = b.auto_approve {
        f.auto_approve = a;
    }
    check_levels(app, &f.levels, &f.auto_approve).await?;
    app.store.flow_update(&f).await?;
    flow_view(app, p, id).await
}

pub async fn flow_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let f = flow_view(app, p, id).await?;
    flow_manageable(app, p, f.vdc_id).await?;
    app.store.flow_delete(id).await
}

/// The flow for a request: for its service before for every service; then the nearest
/// VDC of the project's chain before those above it before the platform's.
pub async fn flow_for(
    app: &App,
    service: Option<Uuid>,
    chain: &[Uuid],
) -> Result<Option<ApprovalFlow>> {
    let best = app
        .store
        .flow_candidates(service)
        .await?
        .into_iter()
        .filter_map(|f| {
            let by_service = usize::from(f.service_id.is_none());
            let by_vdc = match f.vdc_id {
                None => chain.len(),
                Some(v) => chain.iter().position(|c| *c == v)?,
            };
            Some(((by_service, by_vdc), f))
        })
        .min_by_key(|(k, _)| *k);
    Ok(best.map(|(_, f)| f))
}
