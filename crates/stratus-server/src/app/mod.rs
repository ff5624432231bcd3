//! The app layer: authorization, validation and business rules, one module per resource.
//! Functions take the caller's [`Principal`] and never trust anything the store did not say.

pub mod access_keys;
pub mod audit;
pub mod auth;
pub mod buckets;
pub mod catalog;
pub mod flavors;
pub mod grants;
pub mod hosts;
pub mod images;
pub mod instances;
pub mod ipam;
pub mod metering;
pub mod monitoring;
pub mod networks;
pub mod orgs;
pub mod projects;
pub mod quotas;
pub mod recycle;
pub mod requests;
pub mod stacks;
pub mod transfers;
pub mod users;
pub mod vdcs;
pub mod volumes;

use std::sync::Arc;

use stratus_api::{Project, Vdc};
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::authz::{Perm, Principal, Target};
use crate::calllog::CallLog;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// Everything a request may need, shared by all handlers.
pub struct App {
    pub store: Store,
    pub config: Config,
    pub auth: Authenticator,
    /// Seals access-key secrets before they reach the store.
    pub secrets: Arc<crate::secrets::SecretBox>,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    pub calls: CallLog,
    /// Long-poll wake-ups and guest samples for the host agents.
    pub hub: hosts::AgentHub,
    /// Metrics of hosts, guests and the control plane.
    pub tsdb: Arc<stratus_tsdb::Tsdb>,
}

pub type AppRef = Arc<App>;

/// The permission that lets a caller see what a write permission changes. Lacking the write
/// permission but holding this one gives 403; lacking both gives 404.
fn read_of(p: Perm) -> Perm {
    match p {
        Perm::OrgWrite => Perm::OrgRead,
        Perm::VdcWrite => Perm::VdcRead,
        Perm::ProjectWrite => Perm::ProjectRead,
        Perm::QuotaWrite => Perm::QuotaRead,
        Perm::UserWrite => Perm::UserRead,
        Perm::GrantWrite => Perm::GrantRead,
        Perm::PolicyWrite => Perm::PolicyRead,
        Perm::ResourceWrite => Perm::ResourceRead,
        other => other,
    }
}

/// Allow, or answer 403 when the caller can see the object, 404 when it cannot.
pub fn require(
    p: &Principal,
    perm: Perm,
    target: &Target<'_>,
    what: &str,
    id: impl std::fmt::Display,
) -> Result<()> {
    if p.can(perm, target) || p.can(read_of(perm), target) {
        require_seen(p, perm, target, what, id)
    } else {
        Err(Error::not_found(what, id))
    }
}

/// For an object the caller is known to see: 403 without the permission.
pub fn require_seen(
    p: &Principal,
    perm: Perm,
    target: &Target<'_>,
    what: &str,
    id: impl std::fmt::Display,
) -> Result<()> {
    if p.can(perm, target) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "you may not do this to {what} {id} (needs {})",
            perm.as_str()
        )))
    }
}

/// Platform-wide actions: 403 without the permission.
pub fn require_global(p: &Principal, perm: Perm) -> Result<()> {
    if p.has_global(perm) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "this needs the platform-wide permission {}",
            perm.as_str()
        )))
    }
}

/// How long background work waits for one resource to become usable (an instance to run,
/// a volume to be made, an attachment to reach the guest) or to go away.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);
const POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Poll until `f` gives a value (or an error), for at most [`READY_TIMEOUT`].
pub(crate) async fn until<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::conflict(format!(
                "{what} did not happen within {} s",
                READY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The principal of a user acting outside a request (provisioning an approved order as its
/// requester): their grants now, or none when the account is gone or disabled.
pub async fn auth_principal(app: &App, user: Uuid) -> Result<Option<Principal>> {
    Authenticator::principal_load(&app.store, user, "order").await
}

impl App {
    /// A VDC with its ancestry, if it exists and the caller may see it.
    pub async fn vdc_visible(&self, p: &Principal, id: Uuid) -> Result<(Vdc, Vec<Uuid>)> {
        let vdc = self
            .store
            .vdc_get(id)
            .await?
            .ok_or_else(|| Error::not_found("VDC", id))?;
        let chain = self.store.vdc_chain(id).await?;
        if !p.can(Perm::VdcRead, &Target::Vdc { chain: &chain }) {
            return Err(Error::not_found("VDC", id));
        }
        Ok((vdc, chain))
    }

    /// A project with its VDC's ancestry, if it exists and the caller may see it.
    pub async fn project_visible(&self, p: &Principal, id: Uuid) -> Result<(Project, Vec<Uuid>)> {
        let project = self
            .store
            .project_get(id)
            .await?
            .ok_or_else(|| Error::not_found("project", id))?;
        let chain = self.store.vdc_chain(project.vdc_id).await?;
        if !p.can(Perm::ProjectRead, &Target::Project { id, chain: &chain }) {
            return Err(Error::not_found("project", id));
        }
        Ok((project, chain))
    }
}
