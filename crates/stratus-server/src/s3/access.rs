//! Who may do what in object storage.
//!
//! A bucket belongs to a project. Callers with a role on that project (or a VDC above it)
//! may read (`resource.read`) or change (`resource.write`) it, exactly as for every other
//! resource. Beyond that, the bucket policy and the ACLs may grant others — including
//! anonymous callers — and an explicit Deny in the policy overrides everything, owners
//! included (AWS's evaluation order).

use std::net::{IpAddr, SocketAddr};

use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};
use uuid::Uuid;

use super::policy;
use crate::app::AppRef;
use crate::authz::{GrantScope, Perm, Principal, Target};
use crate::store::BucketRow;

/// The authenticated caller of an S3 request, for the operations to read.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub access_key: Option<String>,
    /// The project the access key is bound to, if any.
    pub key_project: Option<Uuid>,
    pub source_ip: Option<IpAddr>,
}

impl Caller {
    pub fn name(&self) -> String {
        self.principal
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "anonymous".into())
    }

    /// The policy language's view of the caller.
    pub fn policy_principal(&self) -> Option<policy::Principal> {
        let p = self.principal.as_ref()?;
        let mut project_ids: Vec<String> = p
            .grants
            .iter()
            .filter_map(|g| match &g.scope {
                GrantScope::Project { id, .. } => Some(id.to_string()),
                _ => None,
            })
            .collect();
        if let Some(k) = self.key_project {
            project_ids.push(k.to_string());
        }
        Some(policy::Principal {
            user_name: p.name.clone(),
            access_key: self.access_key.clone(),
            project_ids,
        })
    }
}

pub struct Access {
    pub app: AppRef,
    pub requests: std::sync::Arc<RequestCounts>,
}

/// Requests per bucket since the last flush: (reads, writes).
#[derive(Default)]
pub struct RequestCounts(std::sync::Mutex<std::collections::HashMap<String, (i64, i64)>>);

impl RequestCounts {
    fn count(&self, bucket: &str, read: bool) {
        if let Ok(mut m) = self.0.lock() {
            let e = m.entry(bucket.to_string()).or_default();
            if read {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }

    /// Write the counts to the store (a bucket deleted meanwhile just loses its counts).
    pub async fn flush(&self, app: &AppRef) {
        let taken = match self.0.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return,
        };
        for (bucket, (r, w)) in taken {
            if let Err(e) = app.store.bucket_count_requests(&bucket, r, w).await {
                tracing::warn!(error = %e, bucket, "cannot record bucket request counts");
            }
        }
    }
}

/// Operations that only read.
fn reads(op: &str) -> bool {
    op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List")
}

/// Whether the caller holds `perm` on the project that owns `b`.
pub async fn owner_can(app: &AppRef, caller: &Caller, b: &BucketRow, perm: Perm) -> bool {
    let Some(p) = &caller.principal else {
        return false;
    };
    let Ok(chain) = app.store.vdc_chain(b.vdc_id).await else {
        return false;
    };
    p.can(
        perm,
        &Target::Project {
            id: b.project_id,
            chain: &chain,
        },
    )
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let source_ip = cx
            .extensions_mut()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let mut caller = Caller {
            principal: None,
            access_key: None,
            key_project: None,
            source_ip,
        };
        if let Some(creds) = cx.credentials() {
            let ak = creds.access_key.clone();
            let (principal, project) = self
                .app
                .auth
                .key_principal(&self.app.store, &ak)
                .await
                .map_err(|e| s3_error!(InternalError, "{e}"))?
                .ok_or_else(|| s3_error!(AccessDenied, "the key or its user is disabled"))?;
            caller.principal = Some(principal);
            caller.access_key = Some(ak);
            caller.key_project = project;
        }
        let op = cx.s3_op().name().to_string();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        let decision = self
            .decide(&caller, &op, bucket.as_deref(), key.as_deref(), cx)
            .await;
        if let (Some(b), Ok(())) = (&bucket, &decision) {
            self.requests.count(b, reads(&op));
        }
        cx.extensions_mut().insert(caller);
        decision
    }
}

impl Access {
    async fn decide(
        &self,
        caller: &Caller,
        op: &str,
        bucket: Option<&str>,
        key: Option<&str>,
        cx: &S3AccessContext<'_>,
    ) -> S3Result<()> {
        let Some(bucket) = bucket else {
            // ListBuckets: every authenticated caller, filtered to what they may see.
            return match caller.principal {
                Some(_) => Ok(()),
                None => Err(s3_error!(
                    AccessDenied,
                    "sign the request with an access key"
                )),
            };
        };
        let row = self
            .app
            .store
            .bucket_get(bucket)
            .await
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let Some(b) = row else {
            // CreateBucket needs a caller; anything else answers NoSuchBucket itself.
            return match (op, &caller.principal) {
                (_, Some(_)) => Ok(()),
                _ => Err(s3_error!(AccessDenied)),
            };
        };
        if op == "CreateBucket" {
            // The name is taken: the operation answers BucketAlreadyExists/OwnedByYou.
            return Ok(());
        }
        let has_version = cx
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("versionId=")));
        let action = policy::action_for_operation_versioned(op, has_version);
        let resource = match key {
            Some(k) => format!("arn:aws:s3:::{bucket}/{k}"),
            None => format!("arn:aws:s3:::{bucket}"),
        };
        // 1. The bucket policy: an explicit Deny ends it; an Allow grants.
        let mut allowed_by_policy = false;
        if let Some(text) = &b.policy {
            if let Ok(pol) = policy::parse_policy(text, &b.name) {
                let mut values = std::collections::HashMap::new();
                for (name, header) in [
                    ("s3:x-amz-acl", "x-amz-acl"),
                    ("aws:Referer", "referer"),
                    ("aws:UserAgent", "user-agent"),
                ] {
                    if let Some(v) = cx.headers().get(header).and_then(|v| v.to_str().ok()) {
                        values.insert(name.to_string(), vec![v.to_string()]);
                    }
                }
                if let Some(q) = cx.uri().query() {
                    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                        if matches!(k.as_ref(), "prefix" | "delimiter" | "max-keys") {
                            values.insert(format!("s3:{k}"), vec![v.to_string()]);
                        }
                    }
                }
                if let Some(p) = &caller.principal {
                    values.insert("aws:username".into(), vec![p.name.clone()]);
                }
                let rc = policy::RequestContext {
                    principal: caller.policy_principal(),
                    action: action.to_string(),
                    resource: resource.clone(),
                    source_ip: caller.source_ip,
                    // TLS terminates in front of Stratus when it is used at all.
                    secure_transport: cx
                        .headers()
                        .get("x-forwarded-proto")
                        .is_some_and(|v| v == "https"),
                    now: chrono::Utc::now(),
                    values,
                };
                match policy::evaluate(&pol, &rc) {
                    policy::Decision::Deny => {
                        return Err(s3_error!(AccessDenied, "denied by the bucket policy"))
                    }
                    policy::Decision::Allow => allowed_by_policy = true,
                    policy::Decision::NotApplicable => {}
                }
            }
        }
        // 2. The owning project's roles.
        let perm = if reads(op) {
            Perm::ResourceRead
        } else {
            Perm::ResourceWrite
        };
        if allowed_by_policy || owner_can(&self.app, caller, &b, perm).await {
            return Ok(());
        }
        // 3. ACLs: the object's for object reads and ACL reads/writes, the bucket's otherwise.
        // Object reads and object ACL changes consult the object's ACL; writes into the
        // bucket and multipart bookkeeping consult the bucket's.
        let on_object = key.is_some() && ((reads(op) && op != "ListParts") || op == "PutObjectAcl");
        if let Some(need) = policy::acl_permission_for_action(action, on_object) {
            let acl_text = if on_object {
                match key {
                    Some(k) => self
                        .app
                        .store
                        .object_get(b.id, k, None)
                        .await
                        .ok()
                        .flatten()
                        .map(|o| o.acl)
                        .unwrap_or_default(),
                    None => String::new(),
                }
            } else {
                b.acl.clone()
            };
            if let Ok(acl) = serde_json::from_str::<policy::Acl>(&acl_text) {
                let who = caller.policy_principal();
                if acl.allows(who.as_ref(), &b.project_id.to_string(), need) {
                    return Ok(());
                }
            }
        }
        Err(s3_error!(AccessDenied))
    }
}
