//! Requests and their orders: submission, decisions level by level, the approver's queue,
//! and provisioning — as the requester, through the same app functions as the direct API,
//! undoing what it made when a step fails.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};
use stratus_api::{
    Approver, Decision, DecisionKind, ElasticIpCreate, InstanceCreate, ListParams, NicRequest,
    OrderResource, Page, ParameterMode, ParameterType, QuotaUpdate, Request, RequestAction,
    RequestCreate, RequestDecide, RequestFilter, RequestLevel, RequestStatus, ServiceKind,
    VdcCreate, VolumeCreate, VolumeExtend, VpcCreate,
};
use uuid::Uuid;

use super::catalog::{check_value, default_levels, flow_for, request_values};
use super::{require_seen, App};
use crate::authz::{GrantScope, Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{Paging, RequestScope};
use crate::validate;

/// How often a decision is retried when another decision landed in between.
const DECIDE_ATTEMPTS: usize = 5;

fn target<'a>(project: Uuid, chain: &'a [Uuid]) -> Target<'a> {
    Target::Project { id: project, chain }
}

/// Whether `p` fills a seat for a request of `project` (VDC ancestry `chain`): the user
/// named, or the role held through a grant on the project, a VDC above it or the platform.
fn fills(p: &Principal, seat: &Approver, project: Uuid, chain: &[Uuid]) -> bool {
    if let Some(u) = seat.user_id {
        return u == p.user_id;
    }
    let Some(role) = &seat.role else {
        return false;
    };
    p.grants.iter().any(|g| {
        g.role.name == role.as_str()
            && match &g.scope {
                GrantScope::Platform => true,
                GrantScope::Vdc { id, .. } => chain.contains(id),
                GrantScope::Project { id, .. } => *id == project,
            }
    })
}

/// The seats of a level `p` fills that no decision has filled yet.
fn open_seats(p: &Principal, l: &RequestLevel, project: Uuid, chain: &[Uuid]) -> Vec<i64> {
    let taken: Vec<i64> = l.decisions.iter().flat_map(|d| d.seats.clone()).collect();
    l.approvers
        .iter()
        .enumerate()
        .filter(|(i, a)| !taken.contains(&(*i as i64)) && fills(p, a, project, chain))
        .map(|(i, _)| i as i64)
        .collect()
}

/// A request the caller may see: their own, one of a project they may read, or one they
/// are (or were) an approver of. Others answer 404.
pub async fn request_visible(
    app: &App,
    p: &Principal,
    id: Uuid,
) -> Result<(Request, i64, Vec<Uuid>)> {
    let (r, version) = app
        .store
        .request_get(id)
        .await?
        .ok_or_else(|| Error::not_found("request", id))?;
    let chain = app.store.vdc_chain(r.vdc_id).await?;
    let seen = r.requester_id == p.user_id
        || p.can(Perm::ResourceRead, &target(r.project_id, &chain))
        || r.levels.iter().any(|l| {
            l.approvers
                .iter()
                .any(|a| fills(p, a, r.project_id, &chain))
        });
    if !seen {
        return Err(Error::not_found("request", id));
    }
    Ok((r, version, chain))
}

/// What a change or release is about: its type, project and name, if the caller may
/// change it (404 when it cannot see it, 403 when it may only look).
async fn resource_of(
    app: &App,
    p: &Principal,
    id: Uuid,
) -> Result<(ServiceKind, Uuid, Uuid, String)> {
    if app.store.instance_get(id).await?.is_some() {
        let (row, _) = super::instances::instance_writable(app, p, id).await?;
        return Ok((
            ServiceKind::Instance,
            row.api.project_id,
            row.api.vdc_id,
            row.api.name,
        ));
    }
    if app.store.volume_get(id).await?.is_some() {
        let (row, _) = super::volumes::volume_writable(app, p, id).await?;
        return Ok((
            ServiceKind::Volume,
            row.api.project_id,
            row.api.vdc_id,
            row.api.name,
        ));
    }
    if app.store.vpc_get(id).await?.is_some() {
        let v = super::networks::vpc_writable(app, p, id).await?;
        return Ok((ServiceKind::Vpc, v.api.project_id, v.api.vdc_id, v.api.name));
    }
    if let Some(e) = app.store.elastic_ip_get(id).await? {
        let chain = app.store.vdc_chain(e.vdc_id).await?;
        if !p.can(Perm::ResourceRead, &target(e.project_id, &chain)) {
            return Err(Error::not_found("resource", id));
        }
        require_seen(
            p,
            Perm::ResourceWrite,
            &target(e.project_id, &chain),
            "elastic IP",
            id,
        )?;
        return Ok((ServiceKind::ElasticIp, e.project_id, e.vdc_id, e.address));
    }
    if app.store.bucket_by_id(id).await?.is_some() {
        let b = super::buckets::bucket_view(app, p, id)
            .await
            .map_err(|_| Error::not_found("resource", id))?;
        let chain = app.store.vdc_chain(b.vdc_id).await?;
        require_seen(
            p,
            Perm::ResourceWrite,
            &target(b.project_id, &chain),
            "bucket",
            id,
        )?;
        return Ok((ServiceKind::Bucket, b.project_id, b.vdc_id, b.name));
    }
    if app.store.stack_get(id).await?.is_some() {
        let s = super::stacks::stack_view(app, p, id)
            .await
            .map_err(|_| Error::not_found("resource", id))?;
        let chain = app.store.vdc_chain(s.vdc_id).await?;
        require_seen(
            p,
            Perm::ResourceWrite,
            &target(s.project_id, &chain),
            "stack",
            id,
        )?;
        return Ok((ServiceKind::Template, s.project_id, s.vdc_id, s.name));
    }
    Err(Error::invalid(
        "resource_id",
        &format!("no instance, volume, VPC, elastic IP, bucket or stack {id}"),
    ))
}

/// What a change may set, per kind.
fn change_parameters(kind: ServiceKind) -> &'static [(&'static str, ParameterType)] {
    match kind {
        ServiceKind::Instance => &[
            ("flavor", ParameterType::String),
            ("add_elastic_ip", ParameterType::Boolean),
        ],
        ServiceKind::Volume => &[("size_gib", ParameterType::Integer)],
        ServiceKind::Vpc
        | ServiceKind::ElasticIp
        | ServiceKind::Bucket
        | ServiceKind::Vdc
        | ServiceKind::Template => &[],
    }
}

fn change_values(kind: ServiceKind, given: &Map<String, Value>) -> Result<Map<String, Value>> {
    let allowed = change_parameters(kind);
    if allowed.is_empty() {
        return Err(Error::invalid(
            "action",
            &format!(
                "a {} cannot be changed through a request; release it or request a new one",
                kind.as_str()
            ),
        ));
    }
    for (k, v) in given {
        let field = format!("parameters.{k}");
        let Some((_, t)) = allowed.iter().find(|(n, _)| n == k) else {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            return Err(Error::invalid(
                &field,
                &format!("a change of a {} sets {}", kind.as_str(), names.join(", ")),
            ));
        };
        let any = stratus_api::ServiceParameter {
            name: k.clone(),
            label: String::new(),
            mode: ParameterMode::Requester,
            default: None,
            allowed: vec![],
            min: None,
            max: None,
            kind: None,
        };
        check_value(&field, &any, *t, v)?;
    }
    if given.is_empty() {
        return Err(Error::invalid(
            "parameters",
            "a change needs what to change",
        ));
    }
    Ok(given.clone())
}

/// Every auto-approve condition holds (a flow without conditions never auto-approves).
fn auto_approved(
    conds: &[stratus_api::AutoApprove],
    values: &Map<String, Value>,
) -> Option<String> {
    if conds.is_empty() {
        return None;
    }
    let mut why = Vec::new();
    for c in conds {
        let v = match values.get(&c.parameter) {
            Some(v) => v.as_i64()?,
            // `count` defaults to one.
            None if c.parameter == "count" => 1,
            None => return None,
        };
        if v > c.max {
            return None;
        }
        why.push(format!("{} {v} ≤ {}", c.parameter, c.max));
    }
    Some(format!("approved automatically: {}", why.join(", ")))
}

/// A create request's service, project and parameter values (defaults and locks applied),
/// checked as for submitting it.
async fn create_form(
    app: &App,
    p: &Principal,
    b: &RequestCreate,
) -> Result<(
    stratus_api::Service,
    stratus_api::Project,
    Map<String, Value>,
)> {
    let sid = b
        .service_id
        .ok_or_else(|| Error::invalid("service_id", "is required for a create request"))?;
    let pid = b
        .project_id
        .ok_or_else(|| Error::invalid("project_id", "is required for a create request"))?;
    let (project, chain) = app
        .project_visible(p, pid)
        .await
        .map_err(|_| Error::not_found("project", pid))?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(project.id, &chain),
        "project",
        pid,
    )?;
    let s = super::catalog::service_visible(app, p, sid).await?;
    if !super::catalog::service_open_to(&s, &chain) {
        return Err(Error::not_found("service", sid));
    }
    let values = request_values(&s, &b.parameters)?;
    Ok((s, project, values))
}

/// What a create request would cost, by today's prices, before it is submitted: the form
/// is checked as for submitting (same errors), then priced for a month (or `hours`, when
/// the body's parameters carry it).
pub async fn request_estimate(
    app: &App,
    p: &Principal,
    b: RequestCreate,
    hours: Option<i64>,
) -> Result<stratus_api::Estimate> {
    if b.action != RequestAction::Create {
        return Err(Error::invalid(
            "action",
            "only a create request has a cost estimate",
        ));
    }
    let (s, _, v) = create_form(app, p, &b).await?;
    let count = int(&v, "count").unwrap_or(1);
    let mut e = stratus_api::EstimateRequest {
        hours,
        ..Default::default()
    };
    match s.kind {
        ServiceKind::Instance => {
            let key = text(&v, "flavor").unwrap_or_default();
            let flavor = app
                .store
                .flavor_list()
                .await?
                .into_iter()
                .find(|f| f.name == key || f.id.to_string() == key)
                .ok_or_else(|| {
                    Error::invalid("parameters.flavor", &format!("no flavor {key:?}"))
                })?;
            e.flavor = Some(flavor.name);
            e.count = Some(count);
        }
        ServiceKind::Volume => {
            for _ in 0..count.clamp(1, 100) {
                e.volumes.push(stratus_api::EstimateVolume {
                    volume_type: text(&v, "volume_type"),
                    size_gib: int(&v, "size_gib").unwrap_or(0),
                });
            }
        }
        ServiceKind::ElasticIp => e.elastic_ips = count,
        // VPCs, VDCs and empty buckets cost nothing up front; a stack's resources are
        // priced as they are metered.
        _ => {}
    }
    super::metering::prices::estimate(app, p, e).await
}

/// A request buying by the month must make something with a monthly price in force.
async fn subscription_check(
    app: &App,
    p: &Principal,
    b: &RequestCreate,
    months: i64,
) -> Result<()> {
    const FIELD: &str = "subscription_months";
    if b.action != RequestAction::Create {
        return Err(Error::invalid(
            FIELD,
            "only a create request buys resources; subscribe an existing one with /v1/subscriptions",
        ));
    }
    super::metering::subscriptions::check_months(FIELD, months)?;
    let e = request_estimate(app, p, b.clone(), None).await?;
    if e.lines.iter().all(|l| l.monthly.is_empty()) {
        return Err(Error::invalid(
            FIELD,
            "no monthly price is in force for what this service makes: it can only be paid as it goes",
        ));
    }
    Ok(())
}

/// Subscribe what a completed create request made; what cannot be (nothing of it has a
/// monthly price, or it is not metered, like a VPC) stays pay-as-you-go, and the request
/// says so.
async fn subscribe_made(app: &App, p: &Principal, r: &mut Request) {
    let Some(months) = r.subscription_months else {
        return;
    };
    let mut payg = Vec::new();
    for made in r.resources.clone() {
        let b = stratus_api::SubscriptionCreate {
            resource_id: made.id,
            months,
        };
        match super::metering::subscriptions::subscribe(app, p, b, Some(r.id)).await {
            Ok(s) => {
                let message = format!(
                    "subscribed {} for {months} months at {} CNY a month",
                    made.name, s.monthly_fee
                );
                audit(
                    app,
                    r,
                    p,
                    "order_subscribe",
                    ("subscriptions", s.id.to_string()),
                    true,
                    message,
                )
                .await;
            }
            Err(e) => payg.push(format!("{} ({e})", made.name)),
        }
    }
    if !payg.is_empty() {
        r.status_reason = format!("pay-as-you-go, not subscribed: {}", payg.join("; "));
    }
}

pub async fn request_create(app: &Arc<App>, p: &Principal, b: RequestCreate) -> Result<Request> {
    validate::description("description", &b.description)?;
    let (kind, service, project, parameters, resource_id) = match b.action {
        RequestAction::Create => {
            if b.resource_id.is_some() {
                return Err(Error::invalid(
                    "resource_id",
                    "a create request makes new resources; use change or release for existing ones",
                ));
            }
            let (s, project, values) = create_form(app, p, &b).await?;
            (s.kind, Some(s), project, values, None)
        }
        RequestAction::Change | RequestAction::Release => {
            if b.service_id.is_some() {
                return Err(Error::invalid(
                    "service_id",
                    "a change or release names its resource_id, not a service",
                ));
            }
            let rid = b.resource_id.ok_or_else(|| {
                Error::invalid("resource_id", "is required for a change or release")
            })?;
            let (kind, pid, _, _) = resource_of(app, p, rid).await?;
            if b.project_id.is_some_and(|x| x != pid) {
                return Err(Error::invalid(
                    "project_id",
                    "is not the resource's project",
                ));
            }
            let values = if b.action == RequestAction::Change {
                change_values(kind, &b.parameters)?
            } else if !b.parameters.is_empty() {
                return Err(Error::invalid("parameters", "a release takes none"));
            } else {
                Map::new()
            };
            let project = app
                .store
                .project_get(pid)
                .await?
                .ok_or_else(|| Error::not_found("project", pid))?;
            (kind, None, project, values, Some(rid))
        }
    };
    if let Some(months) = b.subscription_months {
        subscription_check(app, p, &b, months).await?;
    }
    let chain = app.store.vdc_chain(project.vdc_id).await?;
    let flow = flow_for(app, service.as_ref().map(|s| s.id), &chain).await?;
    let levels = flow
        .as_ref()
        .map(|f| f.levels.clone())
        .unwrap_or_else(default_levels);
    let now = Utc::now();
    let mut r = Request {
        id: Uuid::new_v4(),
        action: b.action,
        service_id: service.as_ref().map(|s| s.id),
        service_name: service
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("{} {}", action_word(b.action), kind.as_str())),
        kind,
        project_id: project.id,
        vdc_id: project.vdc_id,
        requester_id: p.user_id,
        requester_name: p.name.clone(),
        description: b.description,
        parameters,
        resource_id,
        status: RequestStatus::Approving,
        status_reason: String::new(),
        level: 0,
        levels: levels
            .into_iter()
            .map(|l| RequestLevel {
                name: l.name,
                rule: l.rule,
                approvers: l.approvers,
                decisions: vec![],
            })
            .collect(),
        flow_id: flow.as_ref().map(|f| f.id),
        resources: vec![],
        subscription_months: b.subscription_months,
        created_at: now,
        updated_at: now,
    };
    if let (Some(why), Some(first)) = (
        flow.as_ref()
            .and_then(|f| auto_approved(&f.auto_approve, &r.parameters)),
        r.levels.first_mut(),
    ) {
        first.decisions.push(Decision {
            user_id: None,
            user_name: "auto".into(),
            decision: DecisionKind::Approve,
            comment: why,
            parameters: Map::new(),
            seats: vec![],
            at: now,
        });
        r.level = r.levels.len() as i64;
        r.status = RequestStatus::Approved;
    }
    app.store.request_insert(&r).await?;
    if r.status == RequestStatus::Approved {
        start_provisioning(app, r.id);
    }
    Ok(r)
}

fn action_word(a: RequestAction) -> &'static str {
    match a {
        RequestAction::Create => "create",
        RequestAction::Change => "change",
        RequestAction::Release => "release",
    }
}

/// VDC ancestries looked up once per list (its requests mostly share a few VDCs).
#[derive(Default)]
struct Chains(std::collections::HashMap<Uuid, Vec<Uuid>>);

impl Chains {
    async fn of(&mut self, app: &App, vdc: Uuid) -> Result<Vec<Uuid>> {
        if let Some(c) = self.0.get(&vdc) {
            return Ok(c.clone());
        }
        let c = app.store.vdc_chain(vdc).await?;
        self.0.insert(vdc, c.clone());
        Ok(c)
    }
}

pub async fn request_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: RequestFilter,
) -> Result<Page<Request>> {
    let paging = Paging::parse(
        q.sort.as_deref(),
        q.limit,
        q.next.as_deref(),
        &["created_at"],
    )?;
    let vis = p.visibility(Perm::ResourceRead);
    let scope = RequestScope {
        all: vis.all,
        user: p.user_id,
        vdcs: &vis.vdcs,
        projects: &vis.projects,
    };
    // The store's scope is the caller's own requests, those of the projects they may read
    // (which covers every role that approves), and those naming them as an approver.
    let (items, next) = app
        .store
        .request_list(
            &scope,
            f.status,
            f.project_id,
            f.mine.unwrap_or(false),
            &paging,
        )
        .await?;
    Ok(Page { items, next })
}

pub async fn request_view(app: &App, p: &Principal, id: Uuid) -> Result<Request> {
    Ok(request_visible(app, p, id).await?.0)
}

/// Requests waiting for the caller's decision: at a level where the caller fills a seat
/// not yet filled, never the caller's own.
pub async fn approval_queue(app: &App, p: &Principal) -> Result<Vec<Request>> {
    let mut roles: Vec<String> = p.grants.iter().map(|g| g.role.name.to_string()).collect();
    roles.sort();
    roles.dedup();
    let mut out = Vec::new();
    let mut chains = Chains::default();
    for r in app.store.request_queue(p.user_id, &roles).await? {
        let chain = chains.of(app, r.vdc_id).await?;
        let Some(level) = r.levels.get(r.level as usize) else {
            continue;
        };
        if !open_seats(p, level, r.project_id, &chain).is_empty() {
            out.push(r);
        }
    }
    Ok(out)
}

/// Approve or reject at the request's current level.
pub async fn request_decide(
    app: &Arc<App>,
    p: &Principal,
    id: Uuid,
    kind: DecisionKind,
    b: RequestDecide,
) -> Result<Request> {
    validate::description("comment", &b.comment)?;
    if kind == DecisionKind::Reject && !b.parameters.is_empty() {
        return Err(Error::invalid(
            "parameters",
            "are set by approving, not rejecting",
        ));
    }
    for _ in 0..DECIDE_ATTEMPTS {
        let (mut r, version, chain) = request_visible(app, p, id).await?;
        if r.status != RequestStatus::Approving {
            return Err(Error::conflict(format!(
                "the request is {}, not awaiting approval",
                r.status.as_str()
            )));
        }
        if r.requester_id == p.user_id {
            return Err(Error::forbidden("you cannot decide your own request"));
        }
        let at = r.level as usize;
        let Some(level) = r.levels.get(at) else {
            return Err(Error::internal("request level out of range"));
        };
        let seats = open_seats(p, level, r.project_id, &chain);
        if seats.is_empty() {
            let here = format!("level {} ({})", at + 1, level.name);
            if level.decisions.iter().any(|d| d.user_id == Some(p.user_id)) {
                return Err(Error::conflict(format!(
                    "you have already decided at {here}"
                )));
            }
            let elsewhere: Vec<String> = r
                .levels
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    l.approvers
                        .iter()
                        .any(|a| fills(p, a, r.project_id, &chain))
                })
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            return Err(Error::forbidden(if elsewhere.is_empty() {
                format!("you are not an approver at {here}")
            } else {
                format!(
                    "you approve at level {} of this request; it is at {here}",
                    elsewhere.join(", ")
                )
            }));
        }
        // Approvers set only what the form leaves to them.
        if !b.parameters.is_empty() {
            let service = match r.service_id {
                Some(s) => app.store.service_get(s).await?,
                None => None,
            };
            for (k, v) in &b.parameters {
                let field = format!("parameters.{k}");
                let def = service
                    .as_ref()
                    .and_then(|s| s.parameters.iter().find(|d| d.name == *k))
                    .filter(|d| d.mode == ParameterMode::Approver)
                    .ok_or_else(|| Error::invalid(&field, "is not a parameter approvers set"))?;
                check_value(&field, def, def.kind.unwrap_or(ParameterType::String), v)?;
                r.parameters.insert(k.clone(), v.clone());
            }
        }
        let now = Utc::now();
        let lv = &mut r.levels[at];
        lv.decisions.push(Decision {
            user_id: Some(p.user_id),
            user_name: p.name.clone(),
            decision: kind,
            comment: b.comment.clone(),
            parameters: b.parameters.clone(),
            seats,
            at: now,
        });
        if kind == DecisionKind::Reject {
            r.status = RequestStatus::Rejected;
            r.status_reason = format!(
                "rejected by {} at level {} ({}){}",
                p.name,
                at + 1,
                lv.name,
                if b.comment.is_empty() {
                    String::new()
                } else {
                    format!(": {}", b.comment)
                }
            );
        } else {
            let filled: std::collections::HashSet<i64> =
                lv.decisions.iter().flat_map(|d| d.seats.clone()).collect();
            let passed = match lv.rule {
                stratus_api::LevelRule::Any => true,
                stratus_api::LevelRule::All => filled.len() == lv.approvers.len(),
            };
            if passed {
                r.level += 1;
                if r.level as usize == r.levels.len() {
                    r.status = RequestStatus::Approved;
                }
            }
        }
        if app.store.request_update(&r, version).await? {
            if r.status == RequestStatus::Approved {
                start_provisioning(app, r.id);
            }
            return Ok(r);
        }
    }
    Err(Error::conflict(
        "the request kept changing while deciding: try again",
    ))
}

/// Withdraw a request not yet being provisioned (the requester, or whoever may change the
/// project's resources).
pub async fn request_cancel(app: &App, p: &Principal, id: Uuid) -> Result<Request> {
    for _ in 0..DECIDE_ATTEMPTS {
        let (mut r, version, chain) = request_visible(app, p, id).await?;
        if r.requester_id != p.user_id {
            require_seen(
                p,
                Perm::ResourceWrite,
                &target(r.project_id, &chain),
                "request",
                id,
            )?;
        }
        if !matches!(r.status, RequestStatus::Approving | RequestStatus::Approved) {
            return Err(Error::conflict(format!(
                "the request is {}: only a pending request can be cancelled",
                r.status.as_str()
            )));
        }
        r.status = RequestStatus::Cancelled;
        r.status_reason = format!("cancelled by {}", p.name);
        if app.store.request_update(&r, version).await? {
            return Ok(r);
        }
    }
    Err(Error::conflict("the request kept changing: try again"))
}

// ---------------------------------------------------------------- provisioning

fn start_provisioning(app: &Arc<App>, id: Uuid) {
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = provision(&app, id).await {
            tracing::error!(request = %id, error = %e, "provisioning a request failed");
        }
    });
}

/// After a restart: approved requests are provisioned; one that was being provisioned has
/// what it made undone and is marked failed (its steps cannot be resumed safely).
pub async fn resume(app: &Arc<App>) -> Result<()> {
    // Both lists before anything starts: an order started here is not an interrupted one.
    let interrupted = app.store.requests_in(RequestStatus::Provisioning).await?;
    let approved = app.store.requests_in(RequestStatus::Approved).await?;
    for id in interrupted {
        let Some((mut r, version)) = app.store.request_get(id).await? else {
            continue;
        };
        let undone = match super::auth_principal(app, actor_of(&r)).await? {
            Some(p) => undo(app, &p, &r).await,
            None => 0,
        };
        r.status = RequestStatus::Failed;
        r.status_reason = format!(
            "interrupted by a restart of the control plane; {undone} of {} resources made undone",
            r.resources.len()
        );
        if r.action == RequestAction::Create {
            r.resources.clear();
        }
        app.store.request_update(&r, version).await?;
    }
    for id in approved {
        start_provisioning(app, id);
    }
    Ok(())
}

/// Give what a failed create made back (newest first); how many went.
async fn undo(app: &App, p: &Principal, r: &Request) -> usize {
    if r.action != RequestAction::Create {
        return 0;
    }
    let mut n = 0;
    for res in r.resources.iter().rev() {
        let done = match res.kind.as_str() {
            "instance" => {
                super::instances::instance_delete(app, p, res.id, &format!("order-{}", r.id)).await
            }
            "volume" => super::volumes::volume_delete(app, p, res.id, false).await,
            "vpc" => super::networks::vpc_delete(app, p, res.id).await,
            "elastic_ip" => super::networks::elastic_ip_delete(app, p, res.id).await,
            "bucket" => super::buckets::bucket_delete(app, p, res.id).await,
            "vdc" => super::vdcs::vdc_delete(app, p, res.id).await,
            "stack" => super::stacks::stack_delete_now(app, p, res.id).await,
            _ => Ok(()),
        };
        match done {
            Ok(()) => n += 1,
            Err(e) => {
                tracing::warn!(request = %r.id, resource = %res.id, error = %e, "cannot undo")
            }
        }
    }
    n
}

async fn audit(
    app: &App,
    r: &Request,
    p: &Principal,
    operation: &str,
    object: (&str, String),
    ok: bool,
    message: String,
) {
    let ctx = super::audit::Background {
        method: "ORDER",
        request_id: format!("order-{}", r.id),
        path: format!("/v1/requests/{}", r.id),
        vdc_id: r.vdc_id,
    };
    super::audit::background(app, &ctx, p, operation, object, ok, message).await
}

fn text(v: &Map<String, Value>, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn int(v: &Map<String, Value>, k: &str) -> Option<i64> {
    v.get(k).and_then(Value::as_i64)
}

/// The numbered names of `count` resources (`name` alone for one).
fn unit_name(name: &str, i: i64, count: i64) -> String {
    if count > 1 {
        format!("{name}-{i}")
    } else {
        name.to_string()
    }
}

/// One resource of a create, made; its record.
async fn make_one(
    app: &App,
    p: &Principal,
    r: &Request,
    i: i64,
    count: i64,
) -> Result<OrderResource> {
    let v = &r.parameters;
    let rid = format!("order-{}", r.id);
    let name = text(v, "name").unwrap_or_default();
    Ok(match r.kind {
        ServiceKind::Instance => {
            let b = InstanceCreate {
                name: unit_name(&name, i, count),
                description: r.description.clone(),
                project_id: r.project_id,
                flavor: text(v, "flavor").unwrap_or_default(),
                image: text(v, "image").unwrap_or_default(),
                boot_volume_id: None,
                volume_ids: vec![],
                nics: match text(v, "subnet_id") {
                    Some(s) => vec![NicRequest {
                        subnet_id: Some(Uuid::parse_str(&s).map_err(|_| {
                            Error::invalid("parameters.subnet_id", "is not a UUID")
                        })?),
                        port_id: None,
                        ip: None,
                        security_group_ids: None,
                    }],
                    None => vec![],
                },
                availability_zone: text(v, "availability_zone"),
                key_name: text(v, "key_name"),
                user_data: text(v, "user_data"),
                count: Some(1),
            };
            let made = super::instances::instance_create(app, p, b, &rid).await?;
            let m = made
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("instance create returned nothing"))?;
            OrderResource {
                kind: "instance".into(),
                id: m.id,
                name: m.name,
            }
        }
        ServiceKind::Volume => {
            let b = VolumeCreate {
                name: unit_name(&name, i, count),
                description: r.description.clone(),
                project_id: r.project_id,
                size_gib: int(v, "size_gib"),
                volume_type: text(v, "volume_type"),
                availability_zone: text(v, "availability_zone"),
                shareable: false,
                snapshot_id: None,
                backup_id: None,
                image: None,
                count: Some(1),
            };
            let made = super::volumes::volume_create(app, p, b).await?;
            let m = made
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("volume create returned nothing"))?;
            OrderResource {
                kind: "volume".into(),
                id: m.id,
                name: m.name,
            }
        }
        ServiceKind::Vpc => {
            let b = VpcCreate {
                project_id: r.project_id,
                name,
                description: r.description.clone(),
                cidr: text(v, "cidr").unwrap_or_default(),
                availability_zone: text(v, "availability_zone"),
                snat: v.get("snat").and_then(Value::as_bool).unwrap_or(false),
            };
            let m = super::networks::vpc_create(app, p, b).await?;
            OrderResource {
                kind: "vpc".into(),
                id: m.id,
                name: m.name,
            }
        }
        ServiceKind::ElasticIp => {
            let net = match text(v, "external_network_id") {
                Some(s) => Some(Uuid::parse_str(&s).map_err(|_| {
                    Error::invalid("parameters.external_network_id", "is not a UUID")
                })?),
                None => None,
            };
            let b = ElasticIpCreate {
                project_id: r.project_id,
                external_network_id: net,
                description: r.description.clone(),
            };
            let m = super::networks::elastic_ip_create(app, p, b).await?;
            OrderResource {
                kind: "elastic_ip".into(),
                id: m.id,
                name: m.address,
            }
        }
        ServiceKind::Bucket => {
            let m = super::buckets::bucket_create(app, p, r.project_id, &name).await?;
            OrderResource {
                kind: "bucket".into(),
                id: m.id,
                name: m.name,
            }
        }
        ServiceKind::Template => {
            // The template as the service holds it when provisioning starts.
            let service = match r.service_id {
                Some(s) => app.store.service_get(s).await?,
                None => None,
            }
            .ok_or_else(|| Error::conflict("the template service is gone"))?;
            let mut parameters = v.clone();
            parameters.remove("name");
            let b = stratus_api::StackCreate {
                project_id: r.project_id,
                name: name.clone(),
                description: r.description.clone(),
                template: service.template,
                parameters,
                on_failure: stratus_api::OnFailure::Rollback,
            };
            let s = super::stacks::stack_create_now(app, p, b).await?;
            OrderResource {
                kind: "stack".into(),
                id: s.id,
                name: s.name,
            }
        }
        ServiceKind::Vdc => {
            let parent = app
                .store
                .project_get(r.project_id)
                .await?
                .ok_or_else(|| Error::not_found("project", r.project_id))?
                .vdc_id;
            let vdc = super::vdcs::vdc_create(
                app,
                p,
                VdcCreate {
                    org_id: None,
                    parent_id: Some(parent),
                    name,
                    description: r.description.clone(),
                },
            )
            .await?;
            let limits: std::collections::BTreeMap<_, _> = super::catalog::VDC_QUOTAS
                .iter()
                .filter_map(|(k, res)| int(v, k).map(|n| (*res, Some(n))))
                .collect();
            if !limits.is_empty() {
                if let Err(e) =
                    super::quotas::vdc_quota_update(app, p, vdc.id, QuotaUpdate { limits }).await
                {
                    // The VDC is not recorded in the order yet: it goes here.
                    let _ = super::vdcs::vdc_delete(app, p, vdc.id).await;
                    return Err(e);
                }
            }
            OrderResource {
                kind: "vdc".into(),
                id: vdc.id,
                name: vdc.name,
            }
        }
    })
}

/// A change or release, done: the resource, and an address a change added to it.
async fn change_one(
    app: &App,
    p: &Principal,
    r: &Request,
) -> Result<(OrderResource, Option<OrderResource>)> {
    let id = r
        .resource_id
        .ok_or_else(|| Error::internal("change without a resource"))?;
    let rid = format!("order-{}", r.id);
    let (kind, project, _, name) = resource_of(app, p, id).await?;
    let mut added = None;
    let v = &r.parameters;
    match (r.action, kind) {
        (RequestAction::Release, ServiceKind::Instance) => {
            super::instances::instance_delete(app, p, id, &rid).await?
        }
        (RequestAction::Release, ServiceKind::Volume) => {
            super::volumes::volume_delete(app, p, id, false).await?
        }
        (RequestAction::Release, ServiceKind::Vpc) => {
            super::networks::vpc_delete(app, p, id).await?
        }
        (RequestAction::Release, ServiceKind::ElasticIp) => {
            super::networks::elastic_ip_delete(app, p, id).await?
        }
        (RequestAction::Release, ServiceKind::Bucket) => {
            super::buckets::bucket_delete(app, p, id).await?
        }
        (RequestAction::Release, ServiceKind::Template) => {
            super::stacks::stack_delete_now(app, p, id).await?
        }
        (_, ServiceKind::Instance) => {
            if let Some(flavor) = text(v, "flavor") {
                super::instances::instance_resize_restarting(app, p, id, &flavor, &rid).await?
            }
            if v.get("add_elastic_ip").and_then(Value::as_bool) == Some(true) {
                let b = ElasticIpCreate {
                    project_id: project,
                    external_network_id: None,
                    description: format!("for instance {name} (request {})", r.id),
                };
                let e = super::networks::elastic_ip_create(app, p, b).await?;
                let bind = stratus_api::ElasticIpBind {
                    port_id: None,
                    instance_id: Some(id),
                };
                if let Err(err) = super::networks::elastic_ip_bind(app, p, e.id, bind).await {
                    // Not recorded anywhere yet: it goes here.
                    let _ = super::networks::elastic_ip_delete(app, p, e.id).await;
                    return Err(err);
                }
                added = Some(OrderResource {
                    kind: "elastic_ip".into(),
                    id: e.id,
                    name: e.address,
                });
            }
        }
        (_, ServiceKind::Volume) => {
            let b = VolumeExtend {
                size_gib: int(v, "size_gib").unwrap_or_default(),
            };
            super::volumes::volume_extend(app, p, id, b).await?;
        }
        (_, k) => {
            return Err(Error::invalid(
                "action",
                &format!("a {} cannot be changed", k.as_str()),
            ))
        }
    }
    Ok((
        OrderResource {
            kind: kind.as_str().into(),
            id,
            name,
        },
        added,
    ))
}

/// Whose rights provision a request: the requester's, except for a VDC, which is made by
/// the last approver (creating VDCs is an administrator's right; the approval is the
/// decision to use it). An automatically approved VDC request is made as the requester.
fn actor_of(r: &Request) -> Uuid {
    if r.kind == ServiceKind::Vdc {
        if let Some(u) = r
            .levels
            .iter()
            .rev()
            .flat_map(|l| l.decisions.iter().rev())
            .find_map(|d| d.user_id.filter(|_| d.decision == DecisionKind::Approve))
        {
            return u;
        }
    }
    r.requester_id
}

/// Provision an approved request as its requester (see [`actor_of`]).
async fn provision(app: &Arc<App>, id: Uuid) -> Result<()> {
    let Some((mut r, mut version)) = app.store.request_get(id).await? else {
        return Ok(());
    };
    if r.status != RequestStatus::Approved {
        return Ok(());
    }
    r.status = RequestStatus::Provisioning;
    if !app.store.request_update(&r, version).await? {
        // Cancelled (or started elsewhere) in between.
        return Ok(());
    }
    version += 1;
    let actor = actor_of(&r);
    let Some(p) = super::auth_principal(app, actor).await? else {
        r.status = RequestStatus::Failed;
        r.status_reason = if actor == r.requester_id {
            "the requester's account is gone or disabled".into()
        } else {
            "the approver's account is gone or disabled".into()
        };
        app.store.request_update(&r, version).await?;
        return Ok(());
    };
    let outcome: Result<()> = async {
        if r.action == RequestAction::Create {
            // A template's own parameter named `count` is the stack's, not a unit count.
            let count = if r.kind == ServiceKind::Template {
                1
            } else {
                int(&r.parameters, "count").unwrap_or(1)
            };
            if !(1..=100).contains(&count) {
                return Err(Error::invalid(
                    "parameters.count",
                    "must be between 1 and 100",
                ));
            }
            for i in 1..=count {
                let made = make_one(app, &p, &r, i, count).await.map_err(|e| {
                    Error::conflict(format!("{} {i} of {count}: {}", r.kind.as_str(), e))
                })?;
                audit(
                    app,
                    &r,
                    &p,
                    "order_provision",
                    (&made.kind, made.id.to_string()),
                    true,
                    format!("made {} for request {}", made.name, r.id),
                )
                .await;
                r.resources.push(made);
                // Recorded before the next step: a crash leaves a list of what to undo. (The
                // last one is recorded with the outcome.)
                if i < count {
                    if !app.store.request_update(&r, version).await? {
                        return Err(Error::internal("the request changed while provisioning"));
                    }
                    version += 1;
                }
            }
        } else {
            let (done, added) = change_one(app, &p, &r).await?;
            audit(
                app,
                &r,
                &p,
                &format!("order_{}", action_word(r.action)),
                (&done.kind, done.id.to_string()),
                true,
                format!(
                    "{} {} for request {}",
                    action_word(r.action),
                    done.name,
                    r.id
                ),
            )
            .await;
            r.resources.push(done);
            r.resources.extend(added);
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            r.status = RequestStatus::Completed;
            r.status_reason = String::new();
            if r.action == RequestAction::Create {
                subscribe_made(app, &p, &mut r).await;
            }
        }
        Err(e) => {
            let made = r.resources.len();
            let undone = undo(app, &p, &r).await;
            r.status = RequestStatus::Failed;
            r.status_reason = if made > 0 {
                format!("{e}; the {made} resources made before are undone ({undone} removed)")
            } else {
                e.to_string()
            };
            audit(
                app,
                &r,
                &p,
                "order_provision",
                ("requests", r.id.to_string()),
                false,
                r.status_reason.clone(),
            )
            .await;
            if r.action == RequestAction::Create {
                r.resources.clear();
            }
        }
    }
    app.store.request_update(&r, version).await?;
    Ok(())
}
