//! `stratus` client commands. Every command prints a table by default, or `-o json|yaml`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use stratus_api::*;
use uuid::Uuid;

use crate::client::{Auth, Client};
use crate::compute_cli::{self, HostCmd, ImageCmd, KeypairCmd, ServerCmd};
use crate::output::{self, Format};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// API endpoint (default from STRATUS_ENDPOINT or the config file, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "STRATUS_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with a password and keep the session token in the config file.
    Login {
        /// Login name.
        #[arg(long, short = 'u')]
        name: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// End the session and forget the token.
    Logout,
    /// Show who you are logged in as, and your grants.
    Whoami,
    /// Change your own password (prompts; or two lines on stdin with --stdin).
    Passwd {
        #[arg(long)]
        stdin: bool,
    },
    /// Organizations (委办局).
    #[command(subcommand)]
    Org(OrgCmd),
    /// Virtual data centers.
    #[command(subcommand)]
    Vdc(VdcCmd),
    /// Projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// User accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Built-in roles.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Role grants on the platform, a VDC or a project.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Quotas of a VDC or project.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Your access keys for signed requests.
    #[command(subcommand)]
    Accesskey(AccessKeyCmd),
    /// The audit log (auditor).
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The password and login policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Instance flavors.
    #[command(subcommand)]
    Flavor(FlavorCmd),
    /// Instances (virtual machines).
    #[command(subcommand)]
    Server(ServerCmd),
    /// Disk images to boot instances from.
    #[command(subcommand)]
    Image(ImageCmd),
    /// SSH public keys for instances.
    #[command(subcommand)]
    Keypair(KeypairCmd),
    /// Compute hosts and join tokens (operators).
    #[command(subcommand)]
    Host(HostCmd),
    /// Block storage volumes (EVS): create, attach, extend, revert, types.
    #[command(subcommand)]
    Volume(crate::volume_cli::VolumeCmd),
    /// Volume snapshots.
    #[command(subcommand)]
    Snapshot(crate::volume_cli::SnapshotCmd),
    /// Volume backups: make, restore, delete.
    #[command(subcommand)]
    Backup(crate::volume_cli::BackupCmd),
    /// Scheduled backups that keep a number of copies.
    #[command(subcommand)]
    BackupPolicy(crate::volume_cli::BackupPolicyCmd),
    /// Virtual private clouds (networks of a project, with their router).
    #[command(subcommand)]
    Vpc(crate::net_cli::VpcCmd),
    /// Subnets of a VPC: address ranges with DHCP.
    #[command(subcommand)]
    Subnet(crate::net_cli::SubnetCmd),
    /// Ports: NICs with fixed addresses.
    #[command(subcommand)]
    Port(crate::net_cli::PortCmd),
    /// Security groups and their rules (stateful, per NIC).
    #[command(subcommand)]
    Secgroup(crate::net_cli::SecgroupCmd),
    /// Network ACLs: the virtual firewall of subnets.
    #[command(subcommand)]
    Acl(crate::net_cli::AclCmd),
    /// Elastic IPs: public addresses bound 1:1 to instances.
    #[command(subcommand)]
    Eip(crate::net_cli::EipCmd),
    /// VPC peering: private routes between two VPCs.
    #[command(subcommand)]
    Peering(crate::net_cli::PeeringCmd),
    /// External networks and their public pools (operators).
    #[command(subcommand)]
    ExternalNetwork(crate::net_cli::ExternalNetworkCmd),
    /// Object storage buckets: usage and quotas (data goes through the S3 endpoint).
    #[command(subcommand)]
    Bucket(compute_cli::BucketCmd),
    /// The service catalog: what departments may request, and its forms.
    #[command(subcommand)]
    Catalog(crate::catalog_cli::CatalogCmd),
    /// Requests for services, changes and releases; follow or withdraw them.
    #[command(subcommand)]
    Request(crate::catalog_cli::RequestCmd),
    /// The approver's desk (`stratus approval queue`) and approval flows.
    #[command(subcommand)]
    Approval(crate::catalog_cli::ApprovalCmd),
    /// Orders: approved requests and what provisioning made.
    #[command(subcommand)]
    Order(crate::catalog_cli::OrderCmd),
    /// Orchestration: stacks of resources made from YAML templates.
    #[command(subcommand)]
    Stack(crate::stack_cli::StackCmd),
    /// Usage records (话单): what each resource used, hour by hour.
    #[command(subcommand)]
    Usage(crate::billing_cli::UsageCmd),
    /// The price list and cost estimates.
    #[command(subcommand)]
    Price(crate::billing_cli::PriceCmd),
    /// Bills of a project, VDC, organization or resource, for a month or any period.
    #[command(subcommand)]
    Bill(crate::billing_cli::BillCmd),
    /// VDC monthly budgets and the alerts they raise.
    #[command(subcommand)]
    Budget(crate::billing_cli::BudgetCmd),
    /// Monthly subscriptions (包年包月) of resources.
    #[command(subcommand)]
    Subscription(crate::billing_cli::SubscriptionCmd),
    /// Resource reports per VDC and pool, now or on a schedule.
    #[command(subcommand)]
    Report(crate::billing_cli::ReportCmd),
    /// Metrics: PromQL queries and custom metrics pushed for a project.
    #[command(subcommand)]
    Metrics(crate::monitor_cli::MetricsCmd),
    /// The alert center: alerts, rules, maintenance windows and notification channels.
    #[command(subcommand)]
    Alert(crate::monitor_cli::AlertCmd),
    /// Tickets (工单): operations work, worked to closure.
    #[command(subcommand)]
    Ticket(crate::monitor_cli::TicketCmd),
    /// Hand an instance, volume, elastic IP or bucket to another project; its quota moves
    /// with it (VDC and platform administrators).
    Transfer {
        /// The resource's id.
        resource: Uuid,
        /// The project it goes to.
        #[arg(long)]
        to_project: Uuid,
    },
    /// The recycle bin: deleted instances, volumes and buckets kept for a while.
    #[command(subcommand)]
    Recycle(RecycleCmd),
    /// Recount quota usage from the real resources and report counters that disagree.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum FlavorCmd {
    /// Flavors you may use.
    List,
    Show {
        id: Uuid,
    },
    /// Add a custom flavor (platform admin); --vdc restricts it (repeatable).
    Create {
        name: String,
        #[arg(long)]
        vcpus: i64,
        /// Memory in MiB.
        #[arg(long)]
        memory_mib: i64,
        /// Root disk in GiB.
        #[arg(long)]
        disk_gib: i64,
        #[arg(long = "vdc")]
        vdcs: Vec<Uuid>,
        #[arg(long, default_value = "")]
        description: String,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecycleCmd {
    /// What the bin holds, with who deleted it and when it is purged.
    List {
        #[arg(long)]
        project: Option<Uuid>,
    },
    /// Give a resource back, as it was (an instance stays stopped).
    Restore { id: Uuid },
    /// Delete a resource in the bin for good, now.
    Purge { id: Uuid },
}

#[derive(Debug, Args)]
pub struct Paging {
    /// Page size (1–1000).
    #[arg(long)]
    limit: Option<u32>,
    /// Sort by name or created_at (prefix - to reverse).
    #[arg(long)]
    sort: Option<String>,
    /// Only names containing this text.
    #[arg(long)]
    name: Option<String>,
    /// Follow `next` cursors and print every page.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    List(#[command(flatten)] Paging),
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    Show {
        id: Uuid,
    },
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum VdcCmd {
    List {
        #[arg(long)]
        org: Option<Uuid>,
        #[arg(long)]
        parent: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create a top-level VDC (--org) or a child VDC (--parent).
    Create {
        name: String,
        #[arg(long, required_unless_present = "parent")]
        org: Option<Uuid>,
        #[arg(long)]
        parent: Option<Uuid>,
        #[arg(long, default_value = "")]
        description: String,
    },
    Show {
        id: Uuid,
    },
    /// Rename, describe or move (--parent) a VDC.
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        parent: Option<Uuid>,
    },
    Delete {
        id: Uuid,
    },
    /// Print the VDC tree you can see, with projects.
    Tree {
        #[arg(long)]
        org: Option<Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    List {
        #[arg(long)]
        vdc: Option<Uuid>,
        #[arg(long)]
        org: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    Create {
        name: String,
        #[arg(long)]
        vdc: Uuid,
        #[arg(long, default_value = "")]
        description: String,
    },
    Show {
        id: Uuid,
    },
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    List {
        #[arg(long)]
        vdc: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create a user (the password is prompted, or read from stdin with --password-stdin).
    Create {
        name: String,
        #[arg(long)]
        vdc: Option<Uuid>,
        #[arg(long, default_value = "")]
        display_name: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    Show {
        id: Uuid,
    },
    Update {
        id: Uuid,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    Delete {
        id: Uuid,
    },
    /// Set a new password for a user.
    ResetPassword {
        id: Uuid,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lift a lockout.
    Unlock {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    List,
}

#[derive(Debug, Subcommand)]
pub enum GrantCmd {
    List {
        #[arg(long)]
        user: Option<Uuid>,
        #[arg(long)]
        scope: Option<Uuid>,
    },
    /// Grant a role on the platform (neither --vdc nor --project), a VDC or a project.
    Create {
        #[arg(long)]
        user: Uuid,
        #[arg(long)]
        role: String,
        #[arg(long, conflicts_with = "project")]
        vdc: Option<Uuid>,
        #[arg(long)]
        project: Option<Uuid>,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct QuotaScope {
    #[arg(long)]
    vdc: Option<Uuid>,
    #[arg(long)]
    project: Option<Uuid>,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Limit / used / available at the scope and every VDC above it.
    Show(#[command(flatten)] QuotaScope),
    /// Set limits: RESOURCE=N, or RESOURCE=unlimited.
    Set {
        #[command(flatten)]
        scope: QuotaScope,
        #[arg(required = true)]
        limits: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCmd {
    /// Your keys (or another user's, for the security administrator).
    List {
        #[arg(long)]
        user: Option<Uuid>,
    },
    /// Create a key; the secret is printed once.
    Create {
        #[arg(long, default_value = "")]
        description: String,
        /// Bind the key to a project: S3 buckets it creates belong there.
        #[arg(long)]
        project: Option<Uuid>,
    },
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// Login name.
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    vdc: Option<Uuid>,
    /// Operation id, e.g. vdc_create.
    #[arg(long)]
    operation: Option<String>,
    /// success, failure or denied.
    #[arg(long)]
    result: Option<String>,
}

impl AuditArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let pairs = [
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("user", self.user.clone()),
            ("vdc_id", self.vdc.map(|v| v.to_string())),
            ("operation", self.operation.clone()),
            ("result", self.result.clone()),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                q.push((k, v));
            }
        }
        q
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    List {
        #[command(flatten)]
        filter: AuditArgs,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Export every matching event as CSV.
    Export {
        #[command(flatten)]
        filter: AuditArgs,
        /// Write to this file instead of standard output.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    Show,
    /// Change some fields of the policy (security administrator).
    Set {
        #[arg(long)]
        min_length: Option<u32>,
        #[arg(long)]
        require_upper: Option<bool>,
        #[arg(long)]
        require_lower: Option<bool>,
        #[arg(long)]
        require_digit: Option<bool>,
        #[arg(long)]
        require_symbol: Option<bool>,
        #[arg(long)]
        max_failed_logins: Option<u32>,
        #[arg(long)]
        lockout_minutes: Option<u32>,
        #[arg(long)]
        session_minutes: Option<u32>,
    },
}

fn read_secret(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    Ok(rpassword::prompt_password(prompt)?)
}

pub(crate) struct Out {
    pub(crate) format: Format,
}

impl Out {
    pub(crate) fn value(&self, v: &Value, columns: &[&str]) {
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
            Format::Yaml => print!("{}", output::yaml(v)),
            Format::Table => {
                let rows: Vec<Value> = match v {
                    Value::Array(a) => a.clone(),
                    Value::Object(o) if o.contains_key("items") => {
                        o["items"].as_array().cloned().unwrap_or_default()
                    }
                    other => {
                        // One object: a two-column field/value table.
                        let rows: Vec<Value> = other
                            .as_object()
                            .map(|o| {
                                o.iter()
                                    .map(|(k, v)| json!({"field": k, "value": v}))
                                    .collect()
                            })
                            .unwrap_or_default();
                        print!("{}", output::table(&rows, &["field", "value"]));
                        return;
                    }
                };
                print!("{}", output::table(&rows, columns));
            }
        }
    }

    pub(crate) fn is_table(&self) -> bool {
        self.format == Format::Table
    }

    pub(crate) fn done(&self, msg: &str) {
        if self.format == Format::Table {
            println!("{msg}");
        }
    }
}

pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Fetch one page or, with `--all`, follow `next` until the end.
pub(crate) async fn list_pages(
    c: &Client,
    path: &str,
    mut q: Vec<(&'static str, String)>,
    p: &Paging,
) -> anyhow::Result<Value> {
    if let Some(l) = p.limit {
        q.push(("limit", l.to_string()));
    }
    if let Some(s) = &p.sort {
        q.push(("sort", s.clone()));
    }
    if let Some(n) = &p.name {
        q.push(("name", n.clone()));
    }
    let mut items = Vec::new();
    loop {
        let page: Page<Value> = c.get(path, &q).await?;
        items.extend(page.items);
        match page.next {
            Some(n) if p.all => {
                q.retain(|(k, _)| *k != "next");
                q.push(("next", n));
            }
            next => {
                let mut v = json!({ "items": items });
                if let Some(n) = next {
                    v["next"] = json!(n);
                }
                return Ok(v);
            }
        }
    }
}

pub(crate) fn opt(k: &'static str, v: Option<Uuid>) -> Vec<(&'static str, String)> {
    v.map(|v| vec![(k, v.to_string())]).unwrap_or_default()
}

pub async fn run(global: GlobalArgs, cmd: Command) -> anyhow::Result<()> {
    let mut settings = Settings::load()?;
    if let Some(e) = &global.endpoint {
        settings.endpoint = Some(e.clone());
    }
    let c = Client::new(&settings.endpoint(), settings.auth());
    let out = Out {
        format: global.output,
    };
    const ORG: &[&str] = &["id", "name", "description", "created_at"];
    const VDC: &[&str] = &["id", "name", "level", "parent_id", "org_id"];
    const PROJECT: &[&str] = &["id", "name", "vdc_id", "description"];
    const USER: &[&str] = &["id", "name", "display_name", "vdc_id", "enabled", "locked"];
    const GRANT: &[&str] = &["id", "user_id", "role", "scope_type", "scope_id"];
    const KEY: &[&str] = &["id", "description", "enabled", "created_at", "last_used_at"];
    match cmd {
        Command::Login {
            name,
            password_stdin,
        } => {
            let password = read_secret("Password: ", password_stdin)?;
            let anon = Client::new(&settings.endpoint(), Auth::None);
            let r: LoginResponse = anon
                .post("/v1/auth/login", &LoginRequest { name, password })
                .await?;
            settings.token = Some(r.token.clone());
            let path = settings.save()?;
            out.done(&format!(
                "Logged in as {} until {} (token saved in {}).",
                r.user.name,
                r.expires_at,
                path.display()
            ));
            if out.format != Format::Table {
                out.value(&to_value(&r.user), &[]);
            }
        }
        Command::Logout => {
            if matches!(c.auth, Auth::Token(_)) {
                c.call::<Value>(reqwest::Method::POST, "/v1/auth/logout", &[], None::<&()>)
                    .await?;
            }
            settings.token = None;
            settings.save()?;
            out.done("Logged out.");
        }
        Command::Whoami => {
            let w: WhoAmI = c.get("/v1/auth/whoami", &[]).await?;
            if out.format == Format::Table {
                println!("{} ({}) via {}", w.user.name, w.user.id, w.auth_method);
                print!(
                    "{}",
                    output::table(
                        &to_value(&w.grants).as_array().cloned().unwrap_or_default(),
                        GRANT
                    )
                );
            } else {
                out.value(&to_value(&w), &[]);
            }
        }
        Command::Passwd { stdin } => {
            let current_password = read_secret("Current password: ", stdin)?;
            let new_password = read_secret("New password: ", stdin)?;
            c.call::<Value>(
                reqwest::Method::POST,
                "/v1/auth/password",
                &[],
                Some(&PasswordChange {
                    current_password,
                    new_password,
                }),
            )
            .await?;
            settings.token = None;
            settings.save()?;
            out.done("Password changed; log in again.");
        }
        Command::Org(cmd) => match cmd {
            OrgCmd::List(p) => {
                out.value(&list_pages(&c, "/v1/organizations", vec![], &p).await?, ORG)
            }
            OrgCmd::Create { name, description } => {
                let o: Organization = c
                    .post(
                        "/v1/organizations",
                        &OrganizationCreate { name, description },
                    )
                    .await?;
                out.value(&to_value(&o), ORG)
            }
            OrgCmd::Show { id } => out.value(
                &c.get::<Value>(&format!("/v1/organizations/{id}"), &[])
                    .await?,
                ORG,
            ),
            OrgCmd::Update {
                id,
                name,
                description,
            } => {
                let o: Value = c
                    .patch(
                        &format!("/v1/organizations/{id}"),
                        &OrganizationUpdate { name, description },
                    )
                    .await?;
                out.value(&o, ORG)
            }
            OrgCmd::Delete { id } => {
                c.delete(&format!("/v1/organizations/{id}")).await?;
                out.done(&format!("Deleted organization {id}."))
            }
        },
        Command::Vdc(cmd) => match cmd {
            VdcCmd::List {
                org,
                parent,
                paging,
            } => {
                let mut q = opt("org_id", org);
                q.extend(opt("parent_id", parent));
                out.value(&list_pages(&c, "/v1/vdcs", q, &paging).await?, VDC)
            }
            VdcCmd::Create {
                name,
                org,
                parent,
                description,
            } => {
                let v: Value = c
                    .post(
                        "/v1/vdcs",
                        &VdcCreate {
                            org_id: org,
                            parent_id: parent,
                            name,
                            description,
                        },
                    )
                    .await?;
                out.value(&v, VDC)
            }
            VdcCmd::Show { id } => {
                out.value(&c.get::<Value>(&format!("/v1/vdcs/{id}"), &[]).await?, VDC)
            }
            VdcCmd::Update {
                id,
                name,
                description,
                parent,
            } => {
                let v: Value = c
                    .patch(
                        &format!("/v1/vdcs/{id}"),
                        &VdcUpdate {
                            name,
                            description,
                            parent_id: parent,
                        },
                    )
                    .await?;
                out.value(&v, VDC)
            }
            VdcCmd::Delete { id } => {
                c.delete(&format!("/v1/vdcs/{id}")).await?;
                out.done(&format!("Deleted VDC {id}."))
            }
            VdcCmd::Tree { org } => {
                let all = Paging {
                    limit: Some(1000),
                    sort: Some("name".into()),
                    name: None,
                    all: true,
                };
                let vdcs: Vec<Vdc> = serde_json::from_value(
                    list_pages(&c, "/v1/vdcs", opt("org_id", org), &all).await?["items"].clone(),
                )?;
                let projects: Vec<Project> = serde_json::from_value(
                    list_pages(&c, "/v1/projects", opt("org_id", org), &all).await?["items"]
                        .clone(),
                )?;
                if out.format != Format::Table {
                    out.value(&json!({"vdcs": vdcs, "projects": projects}), &[]);
                } else {
                    print!("{}", render_tree(&vdcs, &projects));
                }
            }
        },
        Command::Project(cmd) => match cmd {
            ProjectCmd::List { vdc, org, paging } => {
                let mut q = opt("vdc_id", vdc);
                q.extend(opt("org_id", org));
                out.value(&list_pages(&c, "/v1/projects", q, &paging).await?, PROJECT)
            }
            ProjectCmd::Create {
                name,
                vdc,
                description,
            } => {
                let v: Value = c
                    .post(
                        "/v1/projects",
                        &ProjectCreate {
                            vdc_id: vdc,
                            name,
                            description,
                        },
                    )
                    .await?;
                out.value(&v, PROJECT)
            }
            ProjectCmd::Show { id } => out.value(
                &c.get::<Value>(&format!("/v1/projects/{id}"), &[]).await?,
                PROJECT,
            ),
            ProjectCmd::Update {
                id,
                name,
                description,
            } => {
                let v: Value = c
                    .patch(
                        &format!("/v1/projects/{id}"),
                        &ProjectUpdate { name, description },
                    )
                    .await?;
                out.value(&v, PROJECT)
            }
            ProjectCmd::Delete { id } => {
                c.delete(&format!("/v1/projects/{id}")).await?;
                out.done(&format!("Deleted project {id}."))
            }
        },
        Command::User(cmd) => match cmd {
            UserCmd::List { vdc, paging } => out.value(
                &list_pages(&c, "/v1/users", opt("vdc_id", vdc), &paging).await?,
                USER,
            ),
            UserCmd::Create {
                name,
                vdc,
                display_name,
                email,
                password_stdin,
            } => {
                let password = read_secret(&format!("Password for {name}: "), password_stdin)?;
                let body = UserCreate {
                    name,
                    password,
                    vdc_id: vdc,
                    display_name,
                    email,
                    description: String::new(),
                };
                out.value(&c.post::<Value>("/v1/users", &body).await?, USER)
            }
            UserCmd::Show { id } => out.value(
                &c.get::<Value>(&format!("/v1/users/{id}"), &[]).await?,
                USER,
            ),
            UserCmd::Update {
                id,
                display_name,
                email,
                description,
                enable,
                disable,
            } => {
                let enabled = if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                };
                let v: Value = c
                    .patch(
                        &format!("/v1/users/{id}"),
                        &UserUpdate {
                            display_name,
                            email,
                            description,
                            enabled,
                        },
                    )
                    .await?;
                out.value(&v, USER)
            }
            UserCmd::Delete { id } => {
                c.delete(&format!("/v1/users/{id}")).await?;
                out.done(&format!("Deleted user {id}."))
            }
            UserCmd::ResetPassword { id, password_stdin } => {
                let password = read_secret("New password: ", password_stdin)?;
                c.call::<Value>(
                    reqwest::Method::POST,
                    &format!("/v1/users/{id}/password"),
                    &[],
                    Some(&PasswordReset { password }),
                )
                .await?;
                out.done("Password reset; the user's sessions have ended.")
            }
            UserCmd::Unlock { id } => {
                let v: Value = c
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/users/{id}/unlock"),
                        &[],
                        None::<&()>,
                    )
                    .await?;
                out.value(&v, USER)
            }
        },
        Command::Role(RoleCmd::List) => out.value(
            &c.get::<Value>("/v1/roles", &[]).await?,
            &["name", "scopes", "description"],
        ),
        Command::Grant(cmd) => match cmd {
            GrantCmd::List { user, scope } => {
                let mut q = opt("user_id", user);
                q.extend(opt("scope_id", scope));
                out.value(&c.get::<Value>("/v1/grants", &q).await?, GRANT)
            }
            GrantCmd::Create {
                user,
                role,
                vdc,
                project,
            } => {
                let (scope_type, scope_id) = match (vdc, project) {
                    (Some(v), _) => (ScopeType::Vdc, Some(v)),
                    (_, Some(p)) => (ScopeType::Project, Some(p)),
                    _ => (ScopeType::Platform, None),
                };
                let v: Value = c
                    .post(
                        "/v1/grants",
                        &GrantCreate {
                            user_id: user,
                            role,
                            scope_type,
                            scope_id,
                        },
                    )
                    .await?;
                out.value(&v, GRANT)
            }
            GrantCmd::Delete { id } => {
                c.delete(&format!("/v1/grants/{id}")).await?;
                out.done(&format!("Deleted grant {id}."))
            }
        },
        Command::Quota(cmd) => {
            let (scope, limits) = match cmd {
                QuotaCmd::Show(s) => (s, None),
                QuotaCmd::Set { scope, limits } => (scope, Some(limits)),
            };
            let path = match (scope.vdc, scope.project) {
                (Some(v), _) => format!("/v1/vdcs/{v}/quota"),
                (_, Some(p)) => format!("/v1/projects/{p}/quota"),
                _ => anyhow::bail!("give --vdc or --project"),
            };
            let view: QuotaView = match limits {
                None => c.get(&path, &[]).await?,
                Some(limits) => {
                    c.put(
                        &path,
                        &QuotaUpdate {
                            limits: parse_limits(&limits)?,
                        },
                    )
                    .await?
                }
            };
            if out.format == Format::Table {
                print!("{}", render_quota(&view));
            } else {
                out.value(&to_value(&view), &[]);
            }
        }
        Command::Accesskey(cmd) => match cmd {
            AccessKeyCmd::List { user } => out.value(
                &c.get::<Value>("/v1/access-keys", &opt("user_id", user))
                    .await?,
                KEY,
            ),
            AccessKeyCmd::Create {
                description,
                project,
            } => {
                let k: AccessKeyCreated = c
                    .post(
                        "/v1/access-keys",
                        &AccessKeyCreate {
                            description,
                            project_id: project,
                        },
                    )
                    .await?;
                if out.format == Format::Table {
                    println!("Access key: {}\nSecret key: {}\nThe secret is shown only now; store it safely.", k.access_key.id, k.secret_access_key);
                } else {
                    out.value(&to_value(&k), &[]);
                }
            }
            AccessKeyCmd::Enable { id } => {
                let v: Value = c
                    .patch(
                        &format!("/v1/access-keys/{id}"),
                        &AccessKeyUpdate {
                            enabled: Some(true),
                            description: None,
                        },
                    )
                    .await?;
                out.value(&v, KEY)
            }
            AccessKeyCmd::Disable { id } => {
                let v: Value = c
                    .patch(
                        &format!("/v1/access-keys/{id}"),
                        &AccessKeyUpdate {
                            enabled: Some(false),
                            description: None,
                        },
                    )
                    .await?;
                out.value(&v, KEY)
            }
            AccessKeyCmd::Delete { id } => {
                c.delete(&format!("/v1/access-keys/{id}")).await?;
                out.done(&format!("Deleted access key {id}."))
            }
        },
        Command::Audit(cmd) => match cmd {
            AuditCmd::List { filter, limit } => {
                let mut q = filter.query();
                q.push(("limit", limit.to_string()));
                let page: Value = c.get("/v1/audit-events", &q).await?;
                out.value(
                    &page,
                    &[
                        "at",
                        "user_name",
                        "source_ip",
                        "operation",
                        "object_id",
                        "result",
                        "status",
                        "duration_ms",
                    ],
                )
            }
            AuditCmd::Export { filter, file } => {
                let raw = c
                    .send_raw(
                        reqwest::Method::GET,
                        "/v1/audit-events/export",
                        &filter.query(),
                        None,
                    )
                    .await?;
                if raw.status >= 300 {
                    anyhow::bail!(
                        "export refused (HTTP {}): {}",
                        raw.status,
                        String::from_utf8_lossy(&raw.body)
                    );
                }
                match file {
                    Some(f) => {
                        std::fs::write(&f, &raw.body)?;
                        eprintln!("Wrote {} bytes to {}.", raw.body.len(), f.display());
                    }
                    None => print!("{}", String::from_utf8_lossy(&raw.body)),
                }
            }
        },
        Command::Policy(cmd) => {
            let mut p: PasswordPolicy = c.get("/v1/password-policy", &[]).await?;
            if let PolicyCmd::Set {
                min_length,
                require_upper,
                require_lower,
                require_digit,
                require_symbol,
                max_failed_logins,
                lockout_minutes,
                session_minutes,
            } = cmd
            {
                p.min_length = min_length.unwrap_or(p.min_length);
                p.require_upper = require_upper.unwrap_or(p.require_upper);
                p.require_lower = require_lower.unwrap_or(p.require_lower);
                p.require_digit = require_digit.unwrap_or(p.require_digit);
                p.require_symbol = require_symbol.unwrap_or(p.require_symbol);
                p.max_failed_logins = max_failed_logins.unwrap_or(p.max_failed_logins);
                p.lockout_minutes = lockout_minutes.unwrap_or(p.lockout_minutes);
                p.session_minutes = session_minutes.unwrap_or(p.session_minutes);
                p = c.put("/v1/password-policy", &p).await?;
            }
            out.value(&to_value(&p), &[])
        }
        Command::Flavor(cmd) => {
            const FLAVOR: &[&str] = &[
                "id",
                "name",
                "vcpus",
                "memory_mib",
                "disk_gib",
                "builtin",
                "vdc_ids",
            ];
            match cmd {
                FlavorCmd::List => out.value(&c.get::<Value>("/v1/flavors", &[]).await?, FLAVOR),
                FlavorCmd::Show { id } => out.value(
                    &c.get::<Value>(&format!("/v1/flavors/{id}"), &[]).await?,
                    FLAVOR,
                ),
                FlavorCmd::Create {
                    name,
                    vcpus,
                    memory_mib,
                    disk_gib,
                    vdcs,
                    description,
                } => {
                    let body = FlavorCreate {
                        name,
                        description,
                        vcpus,
                        memory_mib,
                        disk_gib,
                        vdc_ids: vdcs,
                    };
                    out.value(&c.post::<Value>("/v1/flavors", &body).await?, FLAVOR)
                }
                FlavorCmd::Delete { id } => {
                    c.delete(&format!("/v1/flavors/{id}")).await?;
                    out.done(&format!("Deleted flavor {id}."))
                }
            }
        }
        Command::Server(cmd) => compute_cli::server(&c, &out, cmd).await?,
        Command::Image(cmd) => compute_cli::image(&c, &out, cmd).await?,
        Command::Keypair(cmd) => compute_cli::keypair(&c, &out, cmd).await?,
        Command::Host(cmd) => compute_cli::host(&c, &out, cmd).await?,
        Command::Bucket(cmd) => compute_cli::bucket(&c, &out, cmd).await?,
        Command::Volume(cmd) => crate::volume_cli::volume(&c, &out, cmd).await?,
        Command::Catalog(cmd) => crate::catalog_cli::catalog(&c, &out, cmd).await?,
        Command::Request(cmd) => crate::catalog_cli::request(&c, &out, cmd).await?,
        Command::Approval(cmd) => crate::catalog_cli::approval(&c, &out, cmd).await?,
        Command::Order(cmd) => crate::catalog_cli::order(&c, &out, cmd).await?,
        Command::Stack(cmd) => crate::stack_cli::stack(&c, &out, cmd).await?,
        Command::Usage(cmd) => crate::billing_cli::usage(&c, &out, cmd).await?,
        Command::Price(cmd) => crate::billing_cli::price(&c, &out, cmd).await?,
        Command::Bill(cmd) => crate::billing_cli::bill(&c, &out, cmd).await?,
        Command::Budget(cmd) => crate::billing_cli::budget(&c, &out, cmd).await?,
        Command::Metrics(cmd) => crate::monitor_cli::metrics(&c, &out, cmd).await?,
        Command::Alert(cmd) => crate::monitor_cli::alert(&c, &out, cmd).await?,
        Command::Ticket(cmd) => crate::monitor_cli::ticket(&c, &out, cmd).await?,
        Command::Subscription(cmd) => crate::billing_cli::subscription(&c, &out, cmd).await?,
        Command::Report(cmd) => crate::billing_cli::report(&c, &out, cmd).await?,
        Command::Vpc(cmd) => crate::net_cli::vpc(&c, &out, cmd).await?,
        Command::Subnet(cmd) => crate::net_cli::subnet(&c, &out, cmd).await?,
        Command::Port(cmd) => crate::net_cli::port(&c, &out, cmd).await?,
        Command::Secgroup(cmd) => crate::net_cli::secgroup(&c, &out, cmd).await?,
        Command::Acl(cmd) => crate::net_cli::acl(&c, &out, cmd).await?,
        Command::Eip(cmd) => crate::net_cli::eip(&c, &out, cmd).await?,
        Command::Peering(cmd) => crate::net_cli::peering(&c, &out, cmd).await?,
        Command::ExternalNetwork(cmd) => crate::net_cli::external_network(&c, &out, cmd).await?,
        Command::Snapshot(cmd) => crate::volume_cli::snapshot(&c, &out, cmd).await?,
        Command::Backup(cmd) => crate::volume_cli::backup(&c, &out, cmd).await?,
        Command::BackupPolicy(cmd) => crate::volume_cli::backup_policy(&c, &out, cmd).await?,
        Command::Transfer {
            resource,
            to_project,
        } => {
            let v: Value = c
                .post(
                    "/v1/transfers",
                    &serde_json::json!({"resource_id": resource, "project_id": to_project}),
                )
                .await?;
            out.value(
                &v,
                &[
                    "type",
                    "resource_id",
                    "name",
                    "from_project_id",
                    "to_project_id",
                ],
            );
        }
        Command::Recycle(cmd) => {
            const COLS: &[&str] = &["id", "type", "name", "deleted_by", "deleted_at", "purge_at"];
            match cmd {
                RecycleCmd::List { project } => {
                    let q = project
                        .map(|p| vec![("project_id", p.to_string())])
                        .unwrap_or_default();
                    let v: Value = c.get("/v1/recycle-bin", &q).await?;
                    out.value(&v, COLS);
                }
                RecycleCmd::Restore { id } => {
                    let v: Value = c
                        .post(
                            &format!("/v1/recycle-bin/{id}/restore"),
                            &serde_json::json!({}),
                        )
                        .await?;
                    out.value(&v, COLS);
                }
                RecycleCmd::Purge { id } => {
                    c.delete(&format!("/v1/recycle-bin/{id}")).await?;
                    out.done("Purged.");
                }
            }
        }
        Command::Check => {
            let r: ConsistencyReport = c.get("/v1/system/quota-consistency", &[]).await?;
            if out.format == Format::Table {
                println!(
                    "{} counters checked, {} mismatches",
                    r.counters_checked,
                    r.mismatches.len()
                );
                print!(
                    "{}",
                    output::table(
                        &to_value(&r.mismatches)
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                        &["scope_id", "resource", "recorded", "actual"]
                    )
                );
            } else {
                out.value(&to_value(&r), &[]);
            }
            if !r.mismatches.is_empty() {
                anyhow::bail!("usage counters disagree with the resources");
            }
        }
    }
    Ok(())
}

/// `vcpus=10 memory_gib=unlimited` → limits.
pub fn parse_limits(args: &[String]) -> anyhow::Result<BTreeMap<QuotaResource, Option<i64>>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{a}: write RESOURCE=N or RESOURCE=unlimited"))?;
        let r = QuotaResource::parse(k).ok_or_else(|| {
            let names: Vec<&str> = QuotaResource::ALL.iter().map(|r| r.as_str()).collect();
            anyhow::anyhow!("{k}: unknown resource; one of {}", names.join(", "))
        })?;
        let n = if v == "unlimited" {
            None
        } else {
            Some(
                v.parse::<i64>()
                    .map_err(|_| anyhow::anyhow!("{k}: {v} is not a number"))?,
            )
        };
        out.insert(r, n);
    }
    Ok(out)
}

fn render_quota(view: &QuotaView) -> String {
    let mut out = String::new();
    for level in &view.levels {
        out.push_str(&format!(
            "{} {} ({})\n",
            level.scope_type.as_str(),
            level.name,
            level.scope_id
        ));
        let rows: Vec<Value> = level
            .lines
            .iter()
            .map(|l| {
                json!({
                    "resource": l.resource.as_str(),
                    "limit": l.limit.map(|v| v.to_string()).unwrap_or_else(|| "unlimited".into()),
                    "used": l.used,
                    "available": l.available.map(|v| v.to_string()).unwrap_or_else(|| "unlimited".into()),
                })
            })
            .collect();
        for line in output::table(&rows, &["resource", "limit", "used", "available"]).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// An indented tree: VDCs by level, projects under their VDC.
pub fn render_tree(vdcs: &[Vdc], projects: &[Project]) -> String {
    let ids: std::collections::HashSet<Uuid> = vdcs.iter().map(|v| v.id).collect();
    let mut out = String::new();
    fn walk(out: &mut String, vdcs: &[Vdc], projects: &[Project], parent: Uuid, depth: usize) {
        for p in projects.iter().filter(|p| p.vdc_id == parent) {
            out.push_str(&format!(
                "{}• {} (project {})\n",
                "  ".repeat(depth),
                p.name,
                p.id
            ));
        }
        for v in vdcs.iter().filter(|v| v.parent_id == Some(parent)) {
            out.push_str(&format!(
                "{}{} (VDC L{} {})\n",
                "  ".repeat(depth),
                v.name,
                v.level,
                v.id
            ));
            walk(out, vdcs, projects, v.id, depth + 1);
        }
    }
    // Roots: top-level VDCs, or the highest VDCs the caller can see.
    for root in vdcs
        .iter()
        .filter(|v| v.parent_id.is_none_or(|p| !ids.contains(&p)))
    {
        out.push_str(&format!(
            "{} (VDC L{} {})\n",
            root.name, root.level, root.id
        ));
        walk(&mut out, vdcs, projects, root.id, 1);
    }
    out
}
