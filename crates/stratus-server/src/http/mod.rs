//! The HTTP surface: the router (declared once, with its OpenAPI document) and the one
//! middleware that every request passes — request id, body limit, authentication, rate
//! limiting, metrics, the API call log and the audit log.

pub mod admin;
pub mod billing;
pub mod catalog;
pub mod compute;
pub mod extract;
pub mod identity;
pub mod monitoring;
pub mod networks;
pub mod stacks;
pub mod storage;
pub mod volumes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use stratus_api::AuditResult;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppRef;
use crate::auth::SignedRequest;
use crate::error::{Error, ErrorMessage, REQUEST_ID};
use crate::store::{now_text, AuditRecord};
use extract::Authenticated;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stratus API",
        description = "Stratus government cloud platform: identity, tenancy (organizations, VDCs, projects), quotas, audit, compute, block storage, networking, the service catalog with approvals, and orchestration stacks. \
                       Authenticate with `Authorization: Bearer <token>` from `auth_login`, or sign requests with an access key \
                       (AWS4-HMAC-SHA256, service `stratus`). Errors: `{\"error\": {\"code\", \"message\", \"request_id\"}}`."
    ),
    tags(
        (name = "auth", description = "Sessions, passwords and the password policy"),
        (name = "organizations", description = "Organizations (委办局)"),
        (name = "vdcs", description = "Virtual data centers: a tree of any depth per organization"),
        (name = "projects", description = "Projects, where resources live"),
        (name = "users", description = "User accounts"),
        (name = "grants", description = "Roles and role grants"),
        (name = "quotas", description = "Quotas per VDC and project"),
        (name = "access-keys", description = "Access keys for signed requests"),
        (name = "audit", description = "The audit log"),
        (name = "flavors", description = "Instance flavors: the spec's reference flavors and custom ones"),
        (name = "hosts", description = "Compute hosts and their join tokens"),
        (name = "images", description = "Images (IMS): upload, convert, download, share"),
        (name = "keypairs", description = "SSH key pairs for instances"),
        (name = "instances", description = "Virtual machines (ECS) and their lifecycle"),
        (name = "volumes", description = "Block storage (EVS): volume types, volumes, attach/detach, extend, revert"),
        (name = "snapshots", description = "Volume snapshots"),
        (name = "backups", description = "Volume backups and backup policies"),
        (name = "networks", description = "VPCs, subnets, ports, external networks, peering, topology"),
        (name = "security-groups", description = "Stateful security groups and their rules"),
        (name = "network-acls", description = "Network ACLs: the virtual firewall of subnets"),
        (name = "elastic-ips", description = "Elastic IPs: public addresses bound 1:1 to ports"),
        (name = "buckets", description = "Object storage buckets: usage and quotas (data through the S3 endpoint)"),
        (name = "catalog", description = "The service catalog and approval flows"),
        (name = "requests", description = "Requests for services, changes and releases; their approval and orders"),
        (name = "recycle-bin", description = "Deleted instances and volumes kept for a while, restored or purged"),
        (name = "stacks", description = "Orchestration: templates and the stacks of resources made from them"),
        (name = "billing", description = "Metering (usage records), prices, cost estimates, bills and budgets"),
        (name = "monitoring", description = "Metrics of hosts, guests and the control plane, queried in PromQL"),
        (name = "alerts", description = "Alert rules, the alert center, tickets, maintenance windows and notification channels"),
        (name = "agent", description = "The host agents' protocol (host credentials, not user tokens)"),
        (name = "system", description = "Health, metrics and consistency checks")
    )
)]
struct ApiDoc;

/// A JSON answer (200), and a created (201) or accepted (202) one: what handlers return.
pub(crate) type Ok<T> = crate::error::Result<axum::Json<T>>;
pub(crate) type Created<T> = crate::error::Result<(axum::http::StatusCode, axum::Json<T>)>;

pub(crate) fn created<T>(v: T) -> Created<T> {
    Ok((axum::http::StatusCode::CREATED, axum::Json(v)))
}

pub(crate) fn accepted<T>(v: T) -> Created<T> {
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(v)))
}

/// Names the account in the audit log when the request had none (a login attempt).
#[derive(Clone)]
pub struct AuditActor(pub String);

/// (method, route template) → operation id, read from the OpenAPI document.
struct Operations(HashMap<(Method, String), String>);

/// Operations callable without credentials.
const PUBLIC: [&str; 3] = ["auth_login", "health_view", "metrics_view"];

/// Operations whose body is streamed to the handler instead of read here (large uploads).
const STREAMING: [&str; 2] = ["image_upload", "agent_image_upload"];

/// The host agents' protocol: authenticated by the handler with the host's credential,
/// not rate limited per source address, and (being heartbeats) kept out of the call log.
fn agent_operation(op: &str) -> bool {
    op.starts_with("agent_")
}
const AGENT_QUIET: [&str; 2] = ["agent_desired", "agent_report"];
/// Largest agent report: 64 KiB of console output for each of hundreds of instances.
const AGENT_MAX_BODY: usize = 64 << 20;

fn api_router() -> OpenApiRouter<AppRef> {
    use admin::*;
    use identity::*;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth_login))
        .routes(routes!(auth_logout))
        .routes(routes!(auth_whoami))
        .routes(routes!(auth_password_change))
        .routes(routes!(password_policy_view, password_policy_update))
        .routes(routes!(org_list, org_create))
        .routes(routes!(org_view, org_update, org_delete))
        .routes(routes!(vdc_list, vdc_create))
        .routes(routes!(vdc_view, vdc_update, vdc_delete))
        .routes(routes!(vdc_quota_view, vdc_quota_update))
        .routes(routes!(project_list, project_create))
        .routes(routes!(project_view, project_update, project_delete))
        .routes(routes!(project_quota_view, project_quota_update))
        .routes(routes!(user_list, user_create))
        .routes(routes!(user_view, user_update, user_delete))
        .routes(routes!(user_password_reset))
        .routes(routes!(user_unlock))
        .routes(routes!(role_list))
        .routes(routes!(grant_list, grant_create))
        .routes(routes!(grant_delete))
        .routes(routes!(access_key_list, access_key_create))
        .routes(routes!(access_key_update, access_key_delete))
        .routes(routes!(audit_list))
        .routes(routes!(audit_export))
        .routes(routes!(quota_consistency_check))
        .routes(routes!(flavor_list, flavor_create))
        .routes(routes!(flavor_view, flavor_delete))
        .routes(routes!(compute::host_list))
        .routes(routes!(
            compute::host_view,
            compute::host_update,
            compute::host_delete
        ))
        .routes(routes!(compute::join_token_create))
        .routes(routes!(compute::image_list, compute::image_create))
        .routes(routes!(
            compute::image_view,
            compute::image_update,
            compute::image_delete
        ))
        .routes(routes!(compute::image_upload, compute::image_download))
        .routes(routes!(compute::keypair_list, compute::keypair_create))
        .routes(routes!(compute::keypair_view, compute::keypair_delete))
        .routes(routes!(compute::instance_list, compute::instance_create))
        .routes(routes!(
            compute::instance_view,
            compute::instance_update,
            compute::instance_delete
        ))
        .routes(routes!(compute::instance_action))
        .routes(routes!(compute::instance_tasks))
        .routes(routes!(compute::instance_console_log))
        .routes(routes!(compute::instance_remote_console))
        .routes(routes!(compute::instance_metrics))
        .routes(routes!(compute::instance_image_create))
        .routes(routes!(
            volumes::volume_type_list,
            volumes::volume_type_create
        ))
        .routes(routes!(volumes::volume_type_delete))
        .routes(routes!(volumes::volume_list, volumes::volume_create))
        .routes(routes!(
            volumes::volume_view,
            volumes::volume_update,
            volumes::volume_delete
        ))
        .routes(routes!(volumes::volume_attach))
        .routes(routes!(volumes::volume_detach))
        .routes(routes!(volumes::volume_extend))
        .routes(routes!(volumes::volume_revert))
        .routes(routes!(volumes::snapshot_list, volumes::snapshot_create))
        .routes(routes!(
            volumes::snapshot_view,
            volumes::snapshot_update,
            volumes::snapshot_delete
        ))
        .routes(routes!(volumes::backup_list, volumes::backup_create))
        .routes(routes!(volumes::backup_view, volumes::backup_delete))
        .routes(routes!(
            volumes::backup_policy_list,
            volumes::backup_policy_create
        ))
        .routes(routes!(
            volumes::backup_policy_view,
            volumes::backup_policy_update,
            volumes::backup_policy_delete
        ))
        .routes(routes!(volumes::backup_policy_run))
        .routes(routes!(
            networks::external_network_list,
            networks::external_network_create
        ))
        .routes(routes!(networks::external_network_delete))
        .routes(routes!(networks::vpc_list, networks::vpc_create))
        .routes(routes!(
            networks::vpc_view,
            networks::vpc_update,
            networks::vpc_delete
        ))
        .routes(routes!(networks::vpc_topology))
        .routes(routes!(networks::subnet_list, networks::subnet_create))
        .routes(routes!(
            networks::subnet_view,
            networks::subnet_update,
            networks::subnet_delete
        ))
        .routes(routes!(networks::port_list, networks::port_create))
        .routes(routes!(
            networks::port_view,
            networks::port_update,
            networks::port_delete
        ))
        .routes(routes!(
            networks::security_group_list,
            networks::security_group_create
        ))
        .routes(routes!(
            networks::security_group_view,
            networks::security_group_delete
        ))
        .routes(routes!(networks::security_group_rule_create))
        .routes(routes!(networks::security_group_rule_delete))
        .routes(routes!(networks::acl_list, networks::acl_create))
        .routes(routes!(
            networks::acl_view,
            networks::acl_update,
            networks::acl_delete
        ))
        .routes(routes!(
            networks::elastic_ip_list,
            networks::elastic_ip_create
        ))
        .routes(routes!(
            networks::elastic_ip_view,
            networks::elastic_ip_delete
        ))
        .routes(routes!(networks::elastic_ip_bind))
        .routes(routes!(networks::peering_list, networks::peering_create))
        .routes(routes!(networks::peering_view, networks::peering_delete))
        .routes(routes!(networks::peering_accept))
        .routes(routes!(networks::peering_reject))
        .routes(routes!(storage::bucket_list))
        .routes(routes!(storage::bucket_view))
        .routes(routes!(storage::bucket_quota_update))
        .routes(routes!(catalog::service_kind_list))
        .routes(routes!(catalog::service_list, catalog::service_create))
        .routes(routes!(
            catalog::service_view,
            catalog::service_update,
            catalog::service_delete
        ))
        .routes(routes!(
            catalog::approval_flow_list,
            catalog::approval_flow_create
        ))
        .routes(routes!(
            catalog::approval_flow_view,
            catalog::approval_flow_update,
            catalog::approval_flow_delete
        ))
        .routes(routes!(catalog::request_list, catalog::request_create))
        .routes(routes!(catalog::request_view))
        .routes(routes!(catalog::request_approve))
        .routes(routes!(catalog::request_reject))
        .routes(routes!(catalog::request_cancel))
        .routes(routes!(catalog::approval_queue))
        .routes(routes!(stacks::template_validate))
        .routes(routes!(stacks::stack_list, stacks::stack_create))
        .routes(routes!(
            stacks::stack_view,
            stacks::stack_update,
            stacks::stack_delete
        ))
        .routes(routes!(stacks::stack_template))
        .routes(routes!(billing::meter_list))
        .routes(routes!(billing::usage_list))
        .routes(routes!(billing::usage_status))
        .routes(routes!(billing::price_list, billing::price_create))
        .routes(routes!(
            billing::price_view,
            billing::price_update,
            billing::price_delete
        ))
        .routes(routes!(billing::price_estimate))
        .routes(routes!(billing::request_estimate))
        .routes(routes!(billing::bill_view))
        .routes(routes!(
            billing::budget_view,
            billing::budget_set,
            billing::budget_delete
        ))
        .routes(routes!(billing::billing_event_list))
        .routes(routes!(billing::report_resources))
        .routes(routes!(billing::report_list))
        .routes(routes!(billing::report_view))
        .routes(routes!(
            billing::report_schedule_list,
            billing::report_schedule_create
        ))
        .routes(routes!(billing::report_schedule_delete))
        .routes(routes!(
            billing::subscription_list,
            billing::subscription_create
        ))
        .routes(routes!(
            billing::subscription_view,
            billing::subscription_cancel
        ))
        .routes(routes!(billing::subscription_renew))
        .routes(routes!(monitoring::metrics_query_range))
        .routes(routes!(monitoring::metrics_query))
        .routes(routes!(monitoring::metrics_push))
        .routes(routes!(monitoring::alert_rule_templates))
        .routes(routes!(
            monitoring::alert_rule_list,
            monitoring::alert_rule_create
        ))
        .routes(routes!(
            monitoring::alert_rule_view,
            monitoring::alert_rule_update,
            monitoring::alert_rule_delete
        ))
        .routes(routes!(monitoring::alert_list, monitoring::alert_post))
        .routes(routes!(monitoring::alert_groups))
        .routes(routes!(monitoring::alert_view))
        .routes(routes!(monitoring::alert_ack))
        .routes(routes!(monitoring::alert_notifications))
        .routes(routes!(monitoring::alert_ticket))
        .routes(routes!(monitoring::ticket_list, monitoring::ticket_create))
        .routes(routes!(monitoring::ticket_view, monitoring::ticket_update))
        .routes(routes!(monitoring::ticket_transition))
        .routes(routes!(monitoring::ticket_comment))
        .routes(routes!(
            monitoring::silence_list,
            monitoring::silence_create
        ))
        .routes(routes!(monitoring::silence_end))
        .routes(routes!(
            monitoring::channel_list,
            monitoring::channel_create
        ))
        .routes(routes!(
            monitoring::channel_view,
            monitoring::channel_delete
        ))
        .routes(routes!(monitoring::channel_deliveries))
        .routes(routes!(admin::resource_transfer))
        .routes(routes!(admin::recycle_list))
        .routes(routes!(admin::recycle_restore))
        .routes(routes!(admin::recycle_purge))
        .routes(routes!(compute::agent_join))
        .routes(routes!(compute::agent_desired))
        .routes(routes!(compute::agent_report))
        .routes(routes!(
            compute::agent_image_download,
            compute::agent_image_upload
        ))
        .routes(routes!(health_view))
        .routes(routes!(metrics_view))
}

/// The OpenAPI document, as committed at `openapi/stratus.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

pub fn openapi_json() -> String {
    openapi().to_pretty_json().unwrap_or_default() + "\n"
}

fn operations(doc: &utoipa::openapi::OpenApi) -> Operations {
    let mut map = HashMap::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ];
        for (m, op) in methods {
            if let Some(id) = op.as_ref().and_then(|o| o.operation_id.clone()) {
                map.insert((m, path.clone()), id);
            }
        }
    }
    Operations(map)
}

pub fn router(app: AppRef) -> Router {
    let (router, doc) = api_router().split_for_parts();
    let ops = Arc::new(operations(&doc));
    let doc_json = Arc::new(openapi_json());
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let d = doc_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        (*d).clone(),
                    )
                }
            }),
        )
        .fallback(|| async { Error::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            Error::MethodNotAllowed("this endpoint does not accept that method".into())
        })
        .layer(axum::middleware::from_fn_with_state(
            (app.clone(), ops),
            middleware,
        ))
        .with_state(app)
}

/// The `{id}` of the route, read from the actual path.
fn path_id(template: &str, path: &str) -> Option<String> {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == "{id}")
        .map(|(_, v)| v.to_string())
}

async fn middleware(
    State((app, ops)): State<(AppRef, Arc<Operations>)>,
    req: Request,
    next: Next,
) -> Response {
    let request_id = Uuid::new_v4().simple().to_string();
    REQUEST_ID
        .scope(request_id.clone(), handle(app, ops, req, next, request_id))
        .await
}

/// What the middleware knows about a request before the handler runs.
struct Call {
    request_id: String,
    method: Method,
    path: String,
    template: Option<String>,
    operation: String,
    source_ip: String,
    started: Instant,
}

impl Call {
    fn mutating(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }
}

/// The whole body, refused past `max` bytes (signature checks need it in memory anyway).
async fn read_body(
    headers: &axum::http::HeaderMap,
    body: Body,
    max: usize,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Error::PayloadTooLarge(max));
    }
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| Error::PayloadTooLarge(max))
}

/// The caller named by the Authorization header, if any.
async fn authenticate(
    app: &AppRef,
    call: &Call,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Option<Authenticated>, Error> {
    let Some(header) = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    if let Some(token) = header.strip_prefix("Bearer ") {
        let token = token.trim().to_string();
        let principal = app.auth.bearer(&app.store, &token).await?;
        return Ok(Some(Authenticated {
            principal,
            token: Some(token),
        }));
    }
    if header.starts_with(stratus_api::sigv4::ALGORITHM) {
        let signed = SignedRequest {
            authorization: header,
            method: call.method.as_str(),
            raw_path: &call.path,
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body,
            streaming: STREAMING.contains(&call.operation.as_str()),
        };
        let (principal, key) = app.auth.signed(&app.store, signed).await?;
        if app.auth.should_touch(&key) {
            let store = app.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.access_key_touch(&key).await {
                    tracing::debug!(error = %e, "cannot record access key use");
                }
            });
        }
        return Ok(Some(Authenticated {
            principal,
            token: None,
        }));
    }
    Err(Error::Unauthenticated(
        "authorization: use Bearer <token> or AWS4-HMAC-SHA256".into(),
    ))
}

async fn handle(
    app: AppRef,
    ops: Arc<Operations>,
    req: Request,
    next: Next,
    request_id: String,
) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let call = Call {
        operation: template
            .as_ref()
            .and_then(|t| ops.0.get(&(req.method().clone(), t.clone())).cloned())
            .unwrap_or_else(|| "unknown".to_string()),
        source_ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string())
            .unwrap_or_default(),
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        template,
        request_id,
        started: Instant::now(),
    };
    let (mut parts, body) = req.into_parts();
    let streaming = STREAMING.contains(&call.operation.as_str());
    let agent = agent_operation(&call.operation);
    let mut body = Some(body);
    let mut caller: Option<Authenticated> = None;
    let mut logged_body = serde_json::Value::Null;
    let admitted = async {
        let bytes = if streaming {
            Bytes::new()
        } else {
            let b = body.take().unwrap_or_else(Body::empty);
            // An agent's report carries every instance's new console output.
            let max = if agent {
                app.config.max_body_bytes.max(AGENT_MAX_BODY)
            } else {
                app.config.max_body_bytes
            };
            read_body(&parts.headers, b, max).await?
        };
        if agent {
            return Ok(bytes);
        }
        match authenticate(&app, &call, &parts, &bytes).await {
            Ok(a) => caller = a,
            // Stale credentials do not stop a login or a health check.
            Err(e) if PUBLIC.contains(&call.operation.as_str()) => {
                tracing::debug!(error = %e, "ignoring bad credentials")
            }
            Err(e) => return Err(e),
        }
        let account = caller
            .as_ref()
            .map(|a| a.principal.name.clone())
            .unwrap_or_else(|| format!("ip:{}", call.source_ip));
        app.limiter.check(&account).map_err(Error::RateLimited)?;
        Ok(bytes)
    }
    .await;
    let mut response = match admitted {
        Err(e) => e.into_response(),
        Ok(bytes) => {
            if call.mutating() {
                logged_body = crate::calllog::redact(&bytes);
            }
            if let Some(a) = &caller {
                parts.extensions.insert(a.clone());
            }
            let b = if streaming {
                body.take().unwrap_or_else(Body::empty)
            } else {
                Body::from(bytes)
            };
            next.run(Request::from_parts(parts, b)).await
        }
    };
    let status = response.status().as_u16();
    let error = response
        .extensions()
        .get::<ErrorMessage>()
        .map(|m| m.0.clone())
        .unwrap_or_default();
    let elapsed = call.started.elapsed();
    app.metrics
        .observe(&call.operation, status, elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&call.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let principal = caller.map(|a| a.principal);
    if AGENT_QUIET.contains(&call.operation.as_str()) {
        return response;
    }
    app.calls.record(serde_json::json!({
        "at": now_text(),
        "request_id": call.request_id,
        "operation": call.operation,
        "method": call.method.as_str(),
        "path": call.path,
        "account": principal.as_ref().map(|p| p.name.clone()).unwrap_or_else(|| format!("ip:{}", call.source_ip)),
        "source_ip": call.source_ip,
        "status": status,
        "duration_ms": elapsed.as_secs_f64() * 1000.0,
        "error": error,
        "request": logged_body,
    }));
    if call.mutating() && call.operation != "unknown" {
        response = audit(&app, call, principal, response, error).await;
    }
    response
}

/// Record a mutating call. The answer leaves only after its audit record is committed, so a
/// client that saw the answer can always find the record.
async fn audit(
    app: &AppRef,
    call: Call,
    principal: Option<crate::authz::Principal>,
    mut response: Response,
    message: String,
) -> Response {
    let status = response.status().as_u16();
    let mut object_id = call
        .template
        .as_deref()
        .and_then(|t| path_id(t, &call.path))
        .unwrap_or_default();
    // Created objects are named in the (small) response body.
    if object_id.is_empty() && status < 300 {
        let (rparts, rbody) = response.into_parts();
        let rbytes = axum::body::to_bytes(rbody, 1 << 20)
            .await
            .unwrap_or_default();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&rbytes) {
            let id = v
                .get("id")
                .or_else(|| v.pointer("/access_key/id"))
                .or_else(|| v.pointer("/user/id"))
                .or_else(|| v.pointer("/0/id"))
                .or_else(|| v.get("host_id"));
            object_id = id.and_then(|i| i.as_str()).unwrap_or_default().to_string();
        }
        response = Response::from_parts(rparts, Body::from(rbytes));
    }
    let actor = response
        .extensions()
        .get::<AuditActor>()
        .map(|a| a.0.clone());
    let result = match status {
        200..=399 => AuditResult::Success,
        401 | 403 | 423 | 429 => AuditResult::Denied,
        _ => AuditResult::Failure,
    };
    let record = AuditRecord {
        at: now_text(),
        user_id: principal.as_ref().map(|p| p.user_id),
        user_name: principal
            .as_ref()
            .map(|p| p.name.clone())
            .or(actor)
            .unwrap_or_default(),
        vdc_id: principal.as_ref().and_then(|p| p.vdc_id),
        object_type: call
            .path
            .trim_start_matches("/v1/")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        object_id,
        result,
        status,
        duration_us: call.started.elapsed().as_micros() as i64,
        message,
        request_id: call.request_id,
        source_ip: call.source_ip,
        method: call.method.to_string(),
        path: call.path,
        operation: call.operation,
    };
    if let Err(e) = app.store.audit_insert(&record).await {
        tracing::error!(error = %e, request_id = record.request_id, operation = record.operation, "cannot write the audit record");
    }
    response
}
