//! Orchestration stacks (spec 8.3.3.5): the resources of one template, made in dependency
//! order — each wave of independent resources at once — through the same app functions as
//! the direct API, with the rights of whoever started the action and within the project's
//! quota. Every resource is recorded the moment it exists, so a failure (or a restart) knows
//! what to remove. Updates change what can change in place, make what is new and remove
//! what the template no longer names; deletes go in reverse dependency order.

mod resources;
pub mod template;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::{Map, Value};
use stratus_api::{
    ListParams, OnFailure, Page, Stack, StackCreate, StackFilter, StackOutput, StackResource,
    StackResourceStatus, StackStatus, StackTemplate, StackUpdate, TemplateInfo, TemplateParameter,
    TemplateResourceInfo, TemplateValidate,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use template::{canonical, Scope, Template};

use super::audit::Background;
use super::{require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{Paging, StackRow};
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];

/// What the template declares, for the validate call and the catalog's template services.
pub fn info(t: &Template) -> TemplateInfo {
    TemplateInfo {
        description: t.description.clone(),
        parameters: t
            .params
            .iter()
            .map(|p| TemplateParameter {
                name: p.name.clone(),
                kind: p.kind.as_str().into(),
                description: p.description.clone(),
                default: p.default.clone(),
                allowed_values: p.allowed.clone(),
                min: p.min,
                max: p.max,
            })
            .collect(),
        resources: t
            .resources
            .iter()
            .map(|r| TemplateResourceInfo {
                name: r.name.clone(),
                kind: r.kind.type_name().into(),
                depends_on: r.depends_on.clone(),
            })
            .collect(),
        outputs: t.outputs.iter().map(|o| o.name.clone()).collect(),
        waves: t.waves.clone(),
    }
}

pub async fn template_validate(
    _app: &App,
    _p: &Principal,
    b: TemplateValidate,
) -> Result<TemplateInfo> {
    let t = template::parse(&b.template)?;
    if let Some(given) = &b.parameters {
        template::parameter_values(&t, given)?;
    }
    Ok(info(&t))
}

async fn stack_seen(app: &App, p: &Principal, id: Uuid) -> Result<(StackRow, Vec<Uuid>)> {
    let row = app
        .store
        .stack_get(id)
        .await?
        .ok_or_else(|| Error::not_found("stack", id))?;
    let chain = app.store.vdc_chain(row.api.vdc_id).await?;
    let target = Target::Project {
        id: row.api.project_id,
        chain: &chain,
    };
    if !p.can(Perm::ResourceRead, &target) {
        return Err(Error::not_found("stack", id));
    }
    Ok((row, chain))
}

async fn stack_writable(app: &App, p: &Principal, id: Uuid) -> Result<StackRow> {
    let (row, chain) = stack_seen(app, p, id).await?;
    let target = Target::Project {
        id: row.api.project_id,
        chain: &chain,
    };
    require_seen(p, Perm::ResourceWrite, &target, "stack", id)?;
    if row.api.status.busy() {
        return Err(Error::conflict(format!(
            "stack {id} is {}; wait for it to finish",
            row.api.status.as_str()
        )));
    }
    Ok(row)
}

pub async fn stack_view(app: &App, p: &Principal, id: Uuid) -> Result<Stack> {
    Ok(stack_seen(app, p, id).await?.0.api)
}

pub async fn stack_template(app: &App, p: &Principal, id: Uuid) -> Result<StackTemplate> {
    let row = stack_seen(app, p, id).await?.0;
    Ok(StackTemplate {
        stack_id: id,
        template: row.template,
        parameters: row.api.parameters,
    })
}

pub async fn stack_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: StackFilter,
) -> Result<Page<Stack>> {
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
        .stack_list(&vis, f.project_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

fn pending(r: &template::Res) -> StackResource {
    StackResource {
        name: r.name.clone(),
        kind: r.kind.type_name().into(),
        id: None,
        status: StackResourceStatus::Pending,
        status_reason: String::new(),
        properties: Map::new(),
        attributes: Map::new(),
        depends_on: r.depends_on.clone(),
    }
}

/// Check a create and write the stack `creating`, with its resources pending.
async fn prepare_create(app: &App, p: &Principal, b: StackCreate) -> Result<StackRow> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let t = template::parse(&b.template)?;
    let parameters = template::parameter_values(&t, &b.parameters)?;
    let (project, vdc) = super::networks::writable_project(app, p, b.project_id).await?;
    let now = chrono::Utc::now();
    let row = StackRow {
        api: Stack {
            id: Uuid::new_v4(),
            name: b.name,
            description: b.description,
            project_id: project,
            vdc_id: vdc,
            status: StackStatus::Creating,
            status_reason: String::new(),
            on_failure: b.on_failure,
            parameters,
            resources: t.resources.iter().map(pending).collect(),
            outputs: vec![],
            created_by: p.user_id,
            created_at: now,
            updated_at: now,
        },
        template: b.template,
        actor: p.user_id,
        version: 0,
    };
    app.store.stack_insert(&row).await?;
    Ok(row)
}

/// Make a stack: answers at once with it `creating`; its resources follow.
pub async fn stack_create(app: &Arc<App>, p: &Principal, b: StackCreate) -> Result<Stack> {
    let row = prepare_create(app, p, b).await?;
    let out = row.api.clone();
    start(app, p.clone(), row, Job::Create);
    Ok(out)
}

/// Make a stack and wait for it (an approved order of a template service). A create that
/// fails is rolled back and its record removed; the reason is the error.
pub async fn stack_create_now(app: &App, p: &Principal, b: StackCreate) -> Result<Stack> {
    let row = prepare_create(app, p, b).await?;
    let id = row.api.id;
    runner(app, p.clone(), row).job(Job::Create).await?;
    let row = app
        .store
        .stack_get(id)
        .await?
        .ok_or_else(|| Error::internal(format!("stack {id} vanished")))?;
    match row.api.status {
        StackStatus::Complete => Ok(row.api),
        StackStatus::RolledBack => {
            app.store.stack_remove(id).await?;
            Err(Error::conflict(row.api.status_reason))
        }
        _ => Err(Error::conflict(format!(
            "stack {id}: {}",
            row.api.status_reason
        ))),
    }
}

/// Check that what changes between two templates can change in place: the resource's type
/// stays, and every property that differs is one its type can update.
fn check_changes(
    old: &Template,
    old_params: &Map<String, Value>,
    new: &Template,
    new_params: &Map<String, Value>,
    records: &[StackResource],
) -> Result<()> {
    for r in &new.resources {
        let Some(rec) = records.iter().find(|x| x.name == r.name && x.id.is_some()) else {
            continue;
        };
        if rec.kind != r.kind.type_name() {
            return Err(template::err(
                r.at,
                &format!("resources.{}.type", r.name),
                &format!(
                    "cannot change from {} to {}; give the resource a new name to replace it",
                    rec.kind,
                    r.kind.type_name()
                ),
            ));
        }
        let Some(o) = old.resource(&r.name) else {
            continue;
        };
        for def in r.kind.props() {
            let a = o.props.get(def.name).map(|e| canonical(e, old_params));
            let b = r.props.get(def.name).map(|e| canonical(e, new_params));
            if a != b && !def.updatable {
                let can: Vec<&str> = r
                    .kind
                    .props()
                    .iter()
                    .filter(|p| p.updatable)
                    .map(|p| p.name)
                    .collect();
                let at = r.props.get(def.name).map_or(r.at, |e| e.at);
                return Err(template::err(
                    at,
                    &format!("resources.{}.properties.{}", r.name, def.name),
                    &if can.is_empty() {
                        format!(
                            "cannot be changed in place (nothing of a {} can); give the resource a new name to replace it",
                            r.kind.type_name()
                        )
                    } else {
                        format!(
                            "cannot be changed in place (a {} can change {}); give the resource a new name to replace it",
                            r.kind.type_name(),
                            can.join(", ")
                        )
                    },
                ));
            }
        }
    }
    Ok(())
}

/// Bring a stack to a new template; answers at once with it `updating`.
pub async fn stack_update(
    app: &Arc<App>,
    p: &Principal,
    id: Uuid,
    b: StackUpdate,
) -> Result<Stack> {
    let mut row = stack_writable(app, p, id).await?;
    let t = template::parse(&b.template)?;
    // Values not given keep the ones in force, where the new template still takes them.
    let mut given: Map<String, Value> = row
        .api
        .parameters
        .iter()
        .filter(|(k, _)| t.param(k).is_some() && !b.parameters.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    given.extend(b.parameters);
    let parameters = template::parameter_values(&t, &given)?;
    if let Ok(old) = template::parse(&row.template) {
        check_changes(
            &old,
            &row.api.parameters,
            &t,
            &parameters,
            &row.api.resources,
        )?;
    }
    // Template order first; what the template no longer names after, to be removed.
    let mut records: Vec<StackResource> = t
        .resources
        .iter()
        .map(|r| {
            row.api
                .resources
                .iter()
                .find(|x| x.name == r.name)
                .cloned()
                .unwrap_or_else(|| pending(r))
        })
        .collect();
    records.extend(
        row.api
            .resources
            .iter()
            .filter(|x| t.resource(&x.name).is_none())
            .cloned(),
    );
    row.api.resources = records;
    row.api.parameters = parameters;
    row.api.status = StackStatus::Updating;
    row.api.status_reason = String::new();
    row.template = b.template;
    row.actor = p.user_id;
    if !app.store.stack_update(&row).await? {
        return Err(Error::conflict(format!(
            "stack {id} changed meanwhile; try again"
        )));
    }
    row.version += 1;
    let out = row.api.clone();
    start(app, p.clone(), row, Job::Update);
    Ok(out)
}

async fn prepare_delete(app: &App, p: &Principal, id: Uuid) -> Result<StackRow> {
    let mut row = stack_writable(app, p, id).await?;
    row.api.status = StackStatus::Deleting;
    row.api.status_reason = String::new();
    row.actor = p.user_id;
    if !app.store.stack_update(&row).await? {
        return Err(Error::conflict(format!(
            "stack {id} changed meanwhile; try again"
        )));
    }
    row.version += 1;
    Ok(row)
}

/// Remove a stack and everything it made, in reverse dependency order; answers at once
/// with it `deleting`. It disappears when the last resource is gone.
pub async fn stack_delete(app: &Arc<App>, p: &Principal, id: Uuid) -> Result<Stack> {
    let row = prepare_delete(app, p, id).await?;
    let out = row.api.clone();
    start(app, p.clone(), row, Job::Delete);
    Ok(out)
}

/// Remove a stack and wait until it is gone (an order undone or released).
pub async fn stack_delete_now(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let row = prepare_delete(app, p, id).await?;
    runner(app, p.clone(), row).job(Job::Delete).await?;
    match app.store.stack_get(id).await? {
        None => Ok(()),
        Some(row) => Err(Error::conflict(format!(
            "stack {id}: {}",
            row.api.status_reason
        ))),
    }
}

/// Take up stacks a restart interrupted: deletes and rollbacks go on; an interrupted create
/// rolls back (or stays failed, when its owner asked to keep what failed); an interrupted
/// update is failed with what it made recorded.
pub async fn resume(app: &Arc<App>) -> Result<()> {
    for id in app.store.stacks_busy().await? {
        let Some(mut row) = app.store.stack_get(id).await? else {
            continue;
        };
        let note = "interrupted by a restart of the control plane";
        let job = match (row.api.status, row.api.on_failure) {
            (StackStatus::Deleting, _) => Some(Job::Delete),
            (StackStatus::RollingBack, _) => Some(Job::Rollback),
            (StackStatus::Creating, OnFailure::Rollback) => {
                row.api.status = StackStatus::RollingBack;
                row.api.status_reason = format!("{note} while creating");
                Some(Job::Rollback)
            }
            _ => None,
        };
        for r in &mut row.api.resources {
            if matches!(
                r.status,
                StackResourceStatus::Creating
                    | StackResourceStatus::Updating
                    | StackResourceStatus::Deleting
            ) {
                r.status = StackResourceStatus::Failed;
                r.status_reason = note.into();
            }
        }
        let principal = super::auth_principal(app, row.actor).await?;
        let (Some(job), Some(p)) = (job, principal) else {
            row.api.status = StackStatus::Failed;
            row.api.status_reason = format!("{note}; update or delete the stack to go on");
            app.store.stack_update(&row).await?;
            continue;
        };
        if !app.store.stack_update(&row).await? {
            continue;
        }
        row.version += 1;
        start(app, p, row, job);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Create,
    Update,
    Delete,
    Rollback,
}

fn runner(app: &App, p: Principal, row: StackRow) -> Run<'_> {
    let id = row.api.id;
    Run {
        app,
        ctx: Background {
            method: "STACK",
            request_id: format!("stack-{id}"),
            path: format!("/v1/stacks/{id}"),
            vdc_id: row.api.vdc_id,
        },
        p,
        project: row.api.project_id,
        state: Mutex::new(row),
    }
}

/// Run an action in the background.
fn start(app: &Arc<App>, p: Principal, row: StackRow, job: Job) {
    let app = app.clone();
    tokio::spawn(async move {
        let id = row.api.id;
        if let Err(e) = runner(&app, p, row).job(job).await {
            tracing::error!(stack = %id, error = %e, ?job, "stack action stopped");
        }
    });
}

/// One action on one stack, running.
pub(crate) struct Run<'a> {
    pub app: &'a App,
    pub p: Principal,
    /// The stack's project (it never changes).
    pub project: Uuid,
    ctx: Background,
    state: Mutex<StackRow>,
}

impl Run<'_> {
    pub fn request_id(&self) -> &str {
        &self.ctx.request_id
    }

    /// Change the stack and write it at once.
    async fn save(&self, f: impl FnOnce(&mut Stack)) -> Result<()> {
        let mut s = self.state.lock().await;
        f(&mut s.api);
        if !self.app.store.stack_update(&s).await? {
            return Err(Error::conflict(format!(
                "stack {} was changed by someone else meanwhile",
                s.api.id
            )));
        }
        s.version += 1;
        Ok(())
    }

    async fn set(&self, name: &str, f: impl FnOnce(&mut StackResource)) -> Result<()> {
        self.save(|s| {
            if let Some(r) = s.resources.iter_mut().find(|r| r.name == name) {
                f(r)
            }
        })
        .await
    }

    async fn snapshot(&self) -> (Stack, String) {
        let s = self.state.lock().await;
        (s.api.clone(), s.template.clone())
    }

    async fn audit(&self, operation: &str, r: &StackResource, ok: bool, message: String) {
        let object = (
            r.kind.as_str(),
            r.id.map(|i| i.to_string()).unwrap_or_default(),
        );
        super::audit::background(self.app, &self.ctx, &self.p, operation, object, ok, message).await
    }

    async fn job(&self, job: Job) -> Result<()> {
        let (stack, text) = self.snapshot().await;
        let t = match template::parse(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                // Only possible for a template stored by an older version; delete still works.
                tracing::warn!(stack = %stack.id, error = %e, "stored template no longer parses");
                None
            }
        };
        match (job, t) {
            (Job::Create, Some(t)) => {
                let outcome = self.make_waves(&t, &stack.parameters).await;
                self.finish_create(&t, outcome).await
            }
            (Job::Update, Some(t)) => {
                let removed: Vec<String> = stack
                    .resources
                    .iter()
                    .filter(|r| t.resource(&r.name).is_none())
                    .map(|r| r.name.clone())
                    .collect();
                let outcome = match self.make_waves(&t, &stack.parameters).await {
                    Ok(()) => self.remove(&removed).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let outputs = self.outputs(&t).await;
                self.save(|s| {
                    s.outputs = outputs;
                    match outcome {
                        Ok(()) => {
                            s.status = StackStatus::Complete;
                            s.status_reason = String::new();
                        }
                        Err(e) => {
                            s.status = StackStatus::Failed;
                            s.status_reason = format!("update failed: {e}");
                        }
                    }
                })
                .await
            }
            (Job::Create | Job::Update, None) => {
                self.save(|s| {
                    s.status = StackStatus::Failed;
                    s.status_reason = "the stored template does not parse".into();
                })
                .await
            }
            (Job::Rollback, _) => {
                let all = self.names().await;
                let outcome = self.remove(&all).await;
                self.save(|s| match outcome {
                    Ok(n) => {
                        s.status = StackStatus::RolledBack;
                        s.status_reason = format!("{}; rolled back ({n} removed)", s.status_reason);
                    }
                    Err(e) => {
                        s.status = StackStatus::Failed;
                        s.status_reason = format!("{}; rollback failed: {e}", s.status_reason);
                    }
                })
                .await
            }
            (Job::Delete, _) => {
                let all = self.names().await;
                match self.remove(&all).await {
                    Ok(_) => self.app.store.stack_remove(stack.id).await,
                    Err(e) => {
                        self.save(|s| {
                            s.status = StackStatus::Failed;
                            s.status_reason = format!("delete failed: {e}");
                        })
                        .await
                    }
                }
            }
        }
    }

    async fn names(&self) -> Vec<String> {
        let s = self.state.lock().await;
        s.api.resources.iter().map(|r| r.name.clone()).collect()
    }

    async fn finish_create(&self, t: &Template, outcome: Result<()>) -> Result<()> {
        match outcome {
            Ok(()) => {
                let outputs = self.outputs(t).await;
                self.save(|s| {
                    s.outputs = outputs;
                    s.status = StackStatus::Complete;
                    s.status_reason = String::new();
                })
                .await
            }
            Err(e) => {
                let (stack, _) = self.snapshot().await;
                if stack.on_failure == OnFailure::Keep {
                    let outputs = self.outputs(t).await;
                    return self
                        .save(|s| {
                            s.outputs = outputs;
                            s.status = StackStatus::Failed;
                            s.status_reason = e.to_string();
                        })
                        .await;
                }
                self.save(|s| {
                    s.status = StackStatus::RollingBack;
                    s.status_reason = e.to_string();
                })
                .await?;
                Box::pin(self.job(Job::Rollback)).await
            }
        }
    }

    /// The made resources' attributes by name, for resolving references.
    async fn made(&self) -> BTreeMap<String, Map<String, Value>> {
        let s = self.state.lock().await;
        s.api
            .resources
            .iter()
            .filter(|r| r.id.is_some() && r.status == StackResourceStatus::Complete)
            .map(|r| (r.name.clone(), r.attributes.clone()))
            .collect()
    }

    async fn outputs(&self, t: &Template) -> Vec<StackOutput> {
        let (stack, _) = self.snapshot().await;
        let made = self.made().await;
        let scope = Scope {
            params: &stack.parameters,
            made: &made,
        };
        t.outputs
            .iter()
            .map(|o| {
                let (value, error) = match template::resolve(&o.value, &scope) {
                    Ok(v) => (v, None),
                    Err(e) => (Value::Null, Some(e)),
                };
                StackOutput {
                    name: o.name.clone(),
                    description: o.description.clone(),
                    value,
                    error,
                }
            })
            .collect()
    }

    /// Make (or bring up to date) every resource of the template, wave by wave; the first
    /// failure of a wave stops the next waves, once the wave's others are done.
    async fn make_waves(&self, t: &Template, params: &Map<String, Value>) -> Result<()> {
        for wave in &t.waves {
            let results = join_all(wave.iter().map(|name| self.bring(t, params, name))).await;
            if let Some(e) = results.into_iter().find_map(|r| r.err()) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// One resource: made when it does not exist yet, changed when its properties differ,
    /// left alone otherwise.
    async fn bring(&self, t: &Template, params: &Map<String, Value>, name: &str) -> Result<()> {
        let res = t
            .resource(name)
            .ok_or_else(|| Error::internal(format!("no resource {name} in the template")))?;
        let made = self.made().await;
        let scope = Scope {
            params,
            made: &made,
        };
        let mut props = Map::new();
        for (k, e) in &res.props {
            let v = template::resolve(e, &scope).map_err(Error::conflict)?;
            if !v.is_null() {
                props.insert(k.clone(), v);
            }
        }
        let (stack, _) = self.snapshot().await;
        let record = stack.resources.iter().find(|r| r.name == name).cloned();
        let kind = res.kind;
        let what = format!("resource {name} ({})", kind.type_name());
        match record.and_then(|r| r.id.map(|id| (id, r))) {
            Some((id, rec)) => {
                let changed: Vec<String> = kind
                    .props()
                    .iter()
                    .filter(|d| rec.properties.get(d.name) != props.get(d.name))
                    .map(|d| d.name.to_string())
                    .collect();
                if changed.is_empty() && rec.status == StackResourceStatus::Complete {
                    return Ok(());
                }
                self.set(name, |r| {
                    r.status = StackResourceStatus::Updating;
                    r.status_reason = String::new();
                    r.depends_on = res.depends_on.clone();
                })
                .await?;
                let outcome =
                    resources::change(self, kind, id, &rec.properties, &props, &changed).await;
                self.settled(name, &what, "stack_resource_update", outcome, props)
                    .await
            }
            None => {
                let display = default_name(&stack.name, name, kind);
                self.set(name, |r| {
                    r.status = StackResourceStatus::Creating;
                    r.status_reason = String::new();
                    r.properties = props.clone();
                    r.depends_on = res.depends_on.clone();
                })
                .await?;
                let outcome = async {
                    let id = resources::create(self, kind, &display, &props).await?;
                    self.set(name, |r| r.id = Some(id)).await?;
                    resources::settle(self, kind, id, &props).await
                }
                .await;
                self.settled(name, &what, "stack_resource_create", outcome, props)
                    .await
            }
        }
    }

    /// Record how making or changing a resource went.
    async fn settled(
        &self,
        name: &str,
        what: &str,
        operation: &str,
        outcome: Result<Map<String, Value>>,
        props: Map<String, Value>,
    ) -> Result<()> {
        match outcome {
            Ok(attrs) => {
                self.set(name, |r| {
                    r.status = StackResourceStatus::Complete;
                    r.properties = props;
                    r.attributes = attrs;
                })
                .await?;
                let rec = self.record(name).await;
                self.audit(
                    operation,
                    &rec,
                    true,
                    format!("{what} of the stack is ready"),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                self.set(name, |r| {
                    r.status = StackResourceStatus::Failed;
                    r.status_reason = reason.clone();
                })
                .await?;
                let rec = self.record(name).await;
                self.audit(operation, &rec, false, format!("{what}: {reason}"))
                    .await;
                Err(Error::conflict(format!("{what} failed: {reason}")))
            }
        }
    }

    async fn record(&self, name: &str) -> StackResource {
        let s = self.state.lock().await;
        s.api
            .resources
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or_else(|| StackResource {
                name: name.into(),
                kind: String::new(),
                id: None,
                status: StackResourceStatus::Failed,
                status_reason: String::new(),
                properties: Map::new(),
                attributes: Map::new(),
                depends_on: vec![],
            })
    }

    /// Remove these resources, those nothing else left depends on first, and drop their
    /// records; how many real resources went.
    async fn remove(&self, names: &[String]) -> Result<usize> {
        let (stack, _) = self.snapshot().await;
        let mut left: Vec<StackResource> = stack
            .resources
            .into_iter()
            .filter(|r| names.contains(&r.name))
            .collect();
        let mut n = 0;
        while !left.is_empty() {
            let mut ready: Vec<StackResource> = left
                .iter()
                .filter(|r| !left.iter().any(|o| o.depends_on.contains(&r.name)))
                .cloned()
                .collect();
            if ready.is_empty() {
                // Not possible for records of a valid template; do not loop for ever.
                ready = left.clone();
            }
            let results = join_all(ready.iter().map(|r| self.remove_one(r))).await;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(true) => n += 1,
                    Ok(false) => {}
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            left.retain(|r| !ready.iter().any(|x| x.name == r.name));
        }
        Ok(n)
    }

    async fn remove_one(&self, r: &StackResource) -> Result<bool> {
        let Some(id) = r.id else {
            self.save(|s| s.resources.retain(|x| x.name != r.name))
                .await?;
            return Ok(false);
        };
        let what = format!("resource {} ({})", r.name, r.kind);
        let kind = template::Kind::parse(&r.kind)
            .ok_or_else(|| Error::internal(format!("{what}: unknown type")))?;
        self.set(&r.name, |x| {
            x.status = StackResourceStatus::Deleting;
            x.status_reason = String::new();
        })
        .await?;
        match resources::remove(self, kind, id, &r.properties).await {
            Ok(()) => {
                self.save(|s| s.resources.retain(|x| x.name != r.name))
                    .await?;
                self.audit("stack_resource_delete", r, true, format!("{what} removed"))
                    .await;
                Ok(true)
            }
            Err(e) => {
                let reason = e.to_string();
                self.set(&r.name, |x| {
                    x.status = StackResourceStatus::Failed;
                    x.status_reason = reason.clone();
                })
                .await?;
                self.audit(
                    "stack_resource_delete",
                    r,
                    false,
                    format!("{what}: {reason}"),
                )
                .await;
                Err(Error::conflict(format!("removing {what} failed: {reason}")))
            }
        }
    }
}

/// The name a resource gets when its template gives none: `<stack>-<resource>`, cut to the
/// longest name allowed; buckets, whose names are global and DNS-like, in lower case.
fn default_name(stack: &str, resource: &str, kind: template::Kind) -> String {
    let full = format!("{stack}-{resource}");
    if kind == template::Kind::Bucket {
        let s: String = full
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(63)
            .collect();
        s.trim_matches('-').to_string()
    } else {
        full.chars().take(validate::NAME_MAX).collect()
    }
}
