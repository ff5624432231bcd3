//! The HTTP surface: the router (declared once, with its OpenAPI document) and the one
//! middleware that every request passes — request id, body limit, authentication, rate
//! limiting, metrics, the API call log and the audit log.

pub mod admin;
pub mod extract;
pub mod identity;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
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
        description = "Stratus government cloud platform: identity, tenancy (organizations, VDCs, projects), quotas and audit. \
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
        (name = "system", description = "Health, metrics and consistency checks")
    )
)]
struct ApiDoc;

/// Names the account in the audit log when the request had none (a login attempt).
#[derive(Clone)]
pub struct AuditActor(pub String);

/// (method, route template) → operation id, read from the OpenAPI document.
struct Operations(HashMap<(Method, String), String>);

/// Operations callable without credentials.
const PUBLIC: [&str; 3] = ["auth_login", "health_view", "metrics_view"];

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
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().copied();
    let started = Instant::now();
    let request_id = Uuid::new_v4().simple().to_string();
    REQUEST_ID
        .scope(
            request_id.clone(),
            handle(app, ops, peer, req, next, started, request_id.clone()),
        )
        .await
}

async fn handle(
    app: AppRef,
    ops: Arc<Operations>,
    peer: Option<ConnectInfo<SocketAddr>>,
    req: Request,
    next: Next,
    started: Instant,
    request_id: String,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let operation = template
        .as_ref()
        .and_then(|t| ops.0.get(&(method.clone(), t.clone())).cloned())
        .unwrap_or_else(|| "unknown".to_string());
    let source_ip = peer
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_default();
    let mutating = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );

    let (mut parts, body) = req.into_parts();
    let max = app.config.max_body_bytes;
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = if declared.is_some_and(|n| n > max) {
        Err(Error::PayloadTooLarge(max))
    } else {
        axum::body::to_bytes(body, max)
            .await
            .map_err(|_| Error::PayloadTooLarge(max))
    };

    let mut principal = None;
    let mut account = format!("ip:{source_ip}");
    let outcome: Result<bytes_alias::Bytes, Error> = match bytes {
        Err(e) => Err(e),
        Ok(bytes) => {
            let authz = parts
                .headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let auth = match authz {
                None => Ok(None),
                Some(h) if h.starts_with("Bearer ") => {
                    let token = h["Bearer ".len()..].trim().to_string();
                    app.auth
                        .bearer(&app.store, &token)
                        .await
                        .map(|p| Some((p, Some(token))))
                }
                Some(h) if h.starts_with(stratus_api::sigv4::ALGORITHM) => app
                    .auth
                    .signed(
                        &app.store,
                        SignedRequest {
                            authorization: h,
                            method: method.as_str(),
                            raw_path: &path,
                            raw_query: &query,
                            headers: &parts.headers,
                            body: &bytes,
                        },
                    )
                    .await
                    .map(|(p, key)| {
                        let store = app.store.clone();
                        tokio::spawn(async move {
                            let _ = store.access_key_touch(&key).await;
                        });
                        Some((p, None))
                    }),
                Some(_) => Err(Error::Unauthenticated(
                    "authorization: use Bearer <token> or AWS4-HMAC-SHA256".into(),
                )),
            };
            match auth {
                Ok(Some((p, token))) => {
                    account = p.name.clone();
                    principal = Some(p.clone());
                    parts.extensions.insert(Authenticated {
                        principal: p,
                        token,
                    });
                    Ok(bytes)
                }
                Ok(None) => Ok(bytes),
                Err(e) if PUBLIC.contains(&operation.as_str()) => {
                    tracing::debug!(error = %e, "ignoring bad credentials on a public endpoint");
                    Ok(bytes)
                }
                Err(e) => Err(e),
            }
        }
    };
    let outcome = outcome.and_then(|bytes| match app.limiter.check(&account) {
        Ok(()) => Ok(bytes),
        Err(retry) => Err(Error::RateLimited(retry)),
    });

    let request_body_for_log;
    let mut response = match outcome {
        Err(e) => {
            request_body_for_log = serde_json::Value::Null;
            e.into_response()
        }
        Ok(bytes) => {
            request_body_for_log = if mutating {
                crate::calllog::redact(&bytes)
            } else {
                serde_json::Value::Null
            };
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    let status = response.status().as_u16();
    let error = response
        .extensions()
        .get::<ErrorMessage>()
        .map(|m| m.0.clone())
        .unwrap_or_default();
    let elapsed = started.elapsed();
    app.metrics
        .observe(&operation, status, elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    app.calls.record(serde_json::json!({
        "at": now_text(),
        "request_id": request_id,
        "operation": operation,
        "method": method.as_str(),
        "path": path,
        "account": account,
        "source_ip": source_ip,
        "status": status,
        "duration_ms": elapsed.as_secs_f64() * 1000.0,
        "error": error,
        "request": request_body_for_log,
    }));

    if !mutating || operation == "unknown" {
        return response;
    }
    // Created objects are named in the response body; buffer it (it is small) to read the id.
    let mut object_id = template
        .as_deref()
        .and_then(|t| path_id(t, &path))
        .unwrap_or_default();
    if object_id.is_empty() && status < 300 {
        let (rparts, rbody) = response.into_parts();
        let rbytes = axum::body::to_bytes(rbody, 1 << 20)
            .await
            .unwrap_or_default();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&rbytes) {
            let id = v
                .get("id")
                .or_else(|| v.pointer("/access_key/id"))
                .or_else(|| v.pointer("/user/id"));
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
    let object_type = path
        .trim_start_matches("/v1/")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let record = AuditRecord {
        at: now_text(),
        request_id,
        user_id: principal.as_ref().map(|p| p.user_id),
        user_name: principal
            .as_ref()
            .map(|p| p.name.clone())
            .or(actor)
            .unwrap_or_default(),
        vdc_id: principal.as_ref().and_then(|p| p.vdc_id),
        source_ip,
        method: method.to_string(),
        path,
        operation,
        object_type,
        object_id,
        result,
        status,
        duration_us: elapsed.as_micros() as i64,
        message: error,
    };
    // The answer leaves only after its audit record is committed, so a client that saw the
    // answer can always find the record.
    if let Err(e) = app.store.audit_insert(&record).await {
        tracing::error!(error = %e, request_id = record.request_id, operation = record.operation, "cannot write the audit record");
    }
    response
}

mod bytes_alias {
    pub use axum::body::Bytes;
}
