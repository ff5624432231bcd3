//! Built-in roles, their permissions, and the check every app function makes.
//!
//! A grant gives a role on the platform, on a VDC (and so on every VDC and project below it)
//! or on one project. The three platform roles are the separation of duties (三员分立):
//! the platform admin runs the structure and resources, the security admin runs accounts,
//! grants and policies, the auditor reads the audit log; one person holds at most one of them
//! and nobody grants themselves anything.

use std::collections::HashSet;

use stratus_api::{Role, ScopeType};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    OrgRead,
    OrgWrite,
    VdcRead,
    VdcWrite,
    ProjectRead,
    ProjectWrite,
    QuotaRead,
    QuotaWrite,
    UserRead,
    UserWrite,
    GrantRead,
    GrantWrite,
    PolicyRead,
    PolicyWrite,
    AccessKeyAdmin,
    AuditRead,
    SystemRead,
    ResourceRead,
    ResourceWrite,
    Approve,
    FlavorWrite,
    /// Hosts: join tokens, enable/disable, remove.
    HostWrite,
    /// Public images.
    ImagePublish,
    /// The service catalog and approval flows.
    CatalogWrite,
    /// Usage records, bills and budgets of the scope.
    BillingRead,
    /// The price list and the platform's report schedules.
    PriceWrite,
    /// Platform alert rules, silences and notification channels; acknowledging any alert.
    AlertWrite,
}

impl Perm {
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::OrgRead => "org.read",
            Perm::OrgWrite => "org.write",
            Perm::VdcRead => "vdc.read",
            Perm::VdcWrite => "vdc.write",
            Perm::ProjectRead => "project.read",
            Perm::ProjectWrite => "project.write",
            Perm::QuotaRead => "quota.read",
            Perm::QuotaWrite => "quota.write",
            Perm::UserRead => "user.read",
            Perm::UserWrite => "user.write",
            Perm::GrantRead => "grant.read",
            Perm::GrantWrite => "grant.write",
            Perm::PolicyRead => "policy.read",
            Perm::PolicyWrite => "policy.write",
            Perm::AccessKeyAdmin => "accesskey.admin",
            Perm::AuditRead => "audit.read",
            Perm::SystemRead => "system.read",
            Perm::ResourceRead => "resource.read",
            Perm::ResourceWrite => "resource.write",
            Perm::Approve => "request.approve",
            Perm::FlavorWrite => "flavor.write",
            Perm::HostWrite => "host.write",
            Perm::ImagePublish => "image.publish",
            Perm::CatalogWrite => "catalog.write",
            Perm::BillingRead => "billing.read",
            Perm::PriceWrite => "price.write",
            Perm::AlertWrite => "alert.write",
        }
    }
}

#[derive(Debug)]
pub struct RoleDef {
    pub name: &'static str,
    pub description: &'static str,
    pub scopes: &'static [ScopeType],
    pub perms: &'static [Perm],
}

use Perm::*;
const PLATFORM: &[ScopeType] = &[ScopeType::Platform];
const TENANT: &[ScopeType] = &[ScopeType::Vdc, ScopeType::Project];

pub const PLATFORM_ADMIN: &str = "platform_admin";
pub const SECURITY_ADMIN: &str = "security_admin";
pub const AUDITOR: &str = "auditor";
/// Roles of which one user may hold at most one (三员分立).
pub const SEPARATED_ROLES: [&str; 3] = [PLATFORM_ADMIN, SECURITY_ADMIN, AUDITOR];

pub const ROLES: &[RoleDef] = &[
    RoleDef {
        name: PLATFORM_ADMIN,
        description: "系统管理员: organizations, VDCs, projects, quotas and all resources; no accounts, no audit log",
        scopes: PLATFORM,
        perms: &[
            OrgRead, OrgWrite, VdcRead, VdcWrite, ProjectRead, ProjectWrite, QuotaRead, QuotaWrite, UserRead, GrantRead,
            SystemRead, ResourceRead, ResourceWrite, Approve, FlavorWrite, HostWrite, ImagePublish, CatalogWrite,
            BillingRead, PriceWrite, AlertWrite,
        ],
    },
    RoleDef {
        name: "operator",
        description: "运维管理员: hosts, monitoring and the alert center of the whole platform; sees every resource, changes none",
        scopes: PLATFORM,
        perms: &[OrgRead, VdcRead, ProjectRead, QuotaRead, SystemRead, ResourceRead, HostWrite, AlertWrite],
    },
    RoleDef {
        name: SECURITY_ADMIN,
        description: "安全管理员: users, role grants, access keys and the password policy; no resources, no audit log",
        scopes: PLATFORM,
        perms: &[
            OrgRead, VdcRead, ProjectRead, UserRead, UserWrite, GrantRead, GrantWrite, PolicyRead, PolicyWrite,
            AccessKeyAdmin,
        ],
    },
    RoleDef {
        name: AUDITOR,
        description: "审计管理员: reads and exports the audit log; changes nothing",
        scopes: PLATFORM,
        perms: &[AuditRead, OrgRead, VdcRead, ProjectRead, UserRead, GrantRead],
    },
    RoleDef {
        name: "vdc_admin",
        description: "VDC 管理员: users, grants, sub-VDCs, projects, quotas and resources of this VDC and below",
        scopes: &[ScopeType::Vdc],
        perms: &[
            OrgRead, VdcRead, VdcWrite, ProjectRead, ProjectWrite, QuotaRead, QuotaWrite, UserRead, UserWrite, GrantRead,
            GrantWrite, ResourceRead, ResourceWrite, Approve, BillingRead,
        ],
    },
    RoleDef {
        name: "approver",
        description: "审批人: approves requests in this scope and sees its resources",
        scopes: TENANT,
        perms: &[OrgRead, VdcRead, ProjectRead, QuotaRead, ResourceRead, Approve, BillingRead],
    },
    RoleDef {
        name: "member",
        description: "成员: creates and manages resources in this scope, within quotas",
        scopes: TENANT,
        perms: &[OrgRead, VdcRead, ProjectRead, QuotaRead, ResourceRead, ResourceWrite, BillingRead],
    },
    RoleDef {
        name: "viewer",
        description: "只读: sees the resources of this scope",
        scopes: TENANT,
        perms: &[OrgRead, VdcRead, ProjectRead, QuotaRead, ResourceRead, BillingRead],
    },
];

pub fn role(name: &str) -> Option<&'static RoleDef> {
    ROLES.iter().find(|r| r.name == name)
}

pub fn role_view(r: &RoleDef) -> Role {
    Role {
        name: r.name.to_string(),
        description: r.description.to_string(),
        scopes: r.scopes.to_vec(),
        permissions: r.perms.iter().map(|p| p.as_str().to_string()).collect(),
    }
}

/// Where a grant applies. For VDC and project grants the organization is remembered so the
/// caller can see the organization its VDCs belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantScope {
    Platform,
    Vdc {
        id: Uuid,
        org_id: Uuid,
    },
    Project {
        id: Uuid,
        vdc_id: Uuid,
        org_id: Uuid,
    },
}

#[derive(Debug, Clone)]
pub struct GrantRef {
    pub role: &'static RoleDef,
    pub scope: GrantScope,
}

/// What an operation touches, with the VDC ancestry (self first) the check needs.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    Platform,
    /// A VDC or something owned by it; `chain` is the VDC and its ancestors.
    Vdc {
        chain: &'a [Uuid],
    },
    /// A project or something owned by it; `chain` is its VDC and that VDC's ancestors.
    Project {
        id: Uuid,
        chain: &'a [Uuid],
    },
}

/// The set of scopes where a permission holds, for filtering lists in SQL.
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    pub all: bool,
    /// Subtree roots.
    pub vdcs: Vec<Uuid>,
    pub projects: Vec<Uuid>,
    /// Organizations of those VDCs and projects.
    pub orgs: Vec<Uuid>,
}

impl Visibility {
    pub fn is_empty(&self) -> bool {
        !self.all && self.vdcs.is_empty() && self.projects.is_empty()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub name: String,
    pub vdc_id: Option<Uuid>,
    pub grants: Vec<GrantRef>,
    pub auth_method: &'static str,
}

impl Principal {
    /// The platform acting on its own (scheduled work such as purging the recycle bin): no
    /// user, no grants — it may do nothing through permission checks.
    pub fn system(name: &str) -> Principal {
        Principal {
            user_id: Uuid::nil(),
            name: name.into(),
            vdc_id: None,
            grants: vec![],
            auth_method: "system",
        }
    }

    pub fn has_global(&self, p: Perm) -> bool {
        self.grants
            .iter()
            .any(|g| g.scope == GrantScope::Platform && g.role.perms.contains(&p))
    }

    pub fn can(&self, p: Perm, target: &Target<'_>) -> bool {
        self.grants.iter().any(|g| {
            g.role.perms.contains(&p)
                && match (&g.scope, target) {
                    (GrantScope::Platform, _) => true,
                    (
                        GrantScope::Vdc { id, .. },
                        Target::Vdc { chain } | Target::Project { chain, .. },
                    ) => chain.contains(id),
                    (GrantScope::Project { id, .. }, Target::Project { id: target, .. }) => {
                        id == target
                    }
                    _ => false,
                }
        })
    }

    pub fn visibility(&self, p: Perm) -> Visibility {
        let mut v = Visibility::default();
        let mut orgs = HashSet::new();
        for g in self.grants.iter().filter(|g| g.role.perms.contains(&p)) {
            match &g.scope {
                GrantScope::Platform => v.all = true,
                GrantScope::Vdc { id, org_id } => {
                    v.vdcs.push(*id);
                    orgs.insert(*org_id);
                }
                GrantScope::Project { id, org_id, .. } => {
                    v.projects.push(*id);
                    orgs.insert(*org_id);
                }
            }
        }
        v.orgs = orgs.into_iter().collect();
        v
    }

    pub fn holds_role(&self, role: &str) -> bool {
        self.grants.iter().any(|g| g.role.name == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_roles_do_not_overlap_in_duties() {
        let sec = role(SECURITY_ADMIN).unwrap();
        let aud = role(AUDITOR).unwrap();
        let adm = role(PLATFORM_ADMIN).unwrap();
        assert!(!sec.perms.contains(&AuditRead) && !adm.perms.contains(&AuditRead));
        assert!(!aud.perms.iter().any(|p| p.as_str().ends_with(".write")));
        assert!(!adm.perms.contains(&UserWrite) && !adm.perms.contains(&GrantWrite));
        assert!(!sec.perms.contains(&ResourceWrite) && !sec.perms.contains(&VdcWrite));
    }

    #[test]
    fn vdc_grant_inherits_downward_only() {
        let (top, mid, leaf, other) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let p = Principal {
            user_id: Uuid::new_v4(),
            name: "u".into(),
            vdc_id: None,
            grants: vec![GrantRef {
                role: role("member").unwrap(),
                scope: GrantScope::Vdc {
                    id: mid,
                    org_id: other,
                },
            }],
            auth_method: "token",
        };
        assert!(p.can(
            ResourceWrite,
            &Target::Vdc {
                chain: &[leaf, mid, top]
            }
        ));
        assert!(p.can(
            ResourceWrite,
            &Target::Project {
                id: other,
                chain: &[mid, top]
            }
        ));
        assert!(!p.can(ResourceWrite, &Target::Vdc { chain: &[top] }));
        assert!(!p.can(
            VdcWrite,
            &Target::Vdc {
                chain: &[leaf, mid, top]
            }
        ));
        assert!(!p.can(ResourceRead, &Target::Platform));
    }
}
