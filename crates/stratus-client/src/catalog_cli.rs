//! `stratus catalog|request|approval|order`: the service catalog, requests, the approver's
//! desk and orders.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Map, Value};
use stratus_api::*;
use uuid::Uuid;

use crate::cli::{list_pages, opt, to_value, Out, Paging};
use crate::client::Client;

const SERVICE: &[&str] = &["id", "name", "kind", "category", "published", "description"];
const KIND: &[&str] = &["kind", "description"];
const FLOW: &[&str] = &["id", "name", "service_id", "vdc_id", "level_count"];
const REQUEST: &[&str] = &[
    "id",
    "service_name",
    "action",
    "status",
    "progress",
    "requester_name",
    "project_id",
    "created_at",
];
const ORDER: &[&str] = &[
    "id",
    "service_name",
    "status",
    "made",
    "status_reason",
    "updated_at",
];

#[derive(Debug, Subcommand)]
pub enum CatalogCmd {
    /// The services you may request.
    List {
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        kind: Option<String>,
    },
    /// One service with its request form.
    Show {
        id: Uuid,
    },
    /// The kinds of service and the parameters each knows.
    Kinds,
    /// Publish a service (catalog administrators). The form is a JSON file: a list of
    /// {"name", "label", "mode": requester|approver|locked, "default", "allowed", "min", "max"}.
    Create {
        #[arg(long)]
        name: String,
        /// instance, volume, vpc, elastic_ip, bucket or vdc.
        #[arg(long)]
        kind: String,
        #[arg(long, default_value = "")]
        category: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "")]
        icon: String,
        #[arg(long)]
        form: Option<PathBuf>,
        /// Only these VDCs (and their sub-VDCs) see it; repeat for several.
        #[arg(long = "vdc")]
        vdcs: Vec<Uuid>,
        /// Create it hidden from requesters.
        #[arg(long)]
        unpublished: bool,
    },
    /// Change a service; --form and --vdc replace what they name.
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        form: Option<PathBuf>,
        #[arg(long = "vdc")]
        vdcs: Vec<Uuid>,
        /// Open to every VDC again.
        #[arg(long, conflicts_with = "vdcs")]
        all_vdcs: bool,
        #[arg(long, conflicts_with = "unpublish")]
        publish: bool,
        #[arg(long)]
        unpublish: bool,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestCmd {
    /// Request a catalog service for a project: --set name=value for each parameter.
    Submit {
        #[arg(long)]
        service: Uuid,
        #[arg(long)]
        project: Uuid,
        /// A parameter: name=value (numbers and true/false as such; anything else text).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Why it is needed.
        #[arg(long, default_value = "")]
        description: String,
        /// Buy what it makes by the month (包年包月) for this many months (1–36), at the
        /// monthly prices in force; default: pay as you go.
        #[arg(long, value_name = "MONTHS")]
        subscription_months: Option<i64>,
        /// Wait until it is provisioned, rejected or failed.
        #[arg(long)]
        wait: bool,
    },
    /// Request a change of an instance (--set flavor=…) or a volume (--set size_gib=…).
    Change {
        #[arg(long)]
        resource: Uuid,
        #[arg(long = "set", value_name = "NAME=VALUE", required = true)]
        set: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        wait: bool,
    },
    /// Request the release (deletion) of an instance, volume, VPC or elastic IP.
    Release {
        #[arg(long)]
        resource: Uuid,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        wait: bool,
    },
    /// Requests you may see (--mine: only your own).
    List {
        #[arg(long)]
        mine: bool,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// A request with its levels, decisions and what it made.
    Show { id: Uuid },
    /// Withdraw a request not yet being provisioned.
    Cancel { id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCmd {
    /// Requests waiting for your decision.
    #[command(visible_alias = "list")]
    Queue,
    /// Approve at the request's current level (--set for approver parameters).
    Approve {
        id: Uuid,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Reject: the request ends and nothing is provisioned.
    Reject {
        id: Uuid,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approval flows (catalog administrators).
    #[command(subcommand)]
    Flow(FlowCmd),
}

#[derive(Debug, Subcommand)]
pub enum FlowCmd {
    List,
    Show {
        id: Uuid,
    },
    /// Define a flow. The levels are a JSON file: a list of {"name", "rule": any|all,
    /// "approvers": [{"user_id": …} | {"role": "vdc_admin"}, …]}.
    Create {
        #[arg(long)]
        name: String,
        /// Only for this service (default: every service).
        #[arg(long)]
        service: Option<Uuid>,
        /// Only for requests from this VDC and below (default: everywhere).
        #[arg(long)]
        vdc: Option<Uuid>,
        #[arg(long)]
        levels: PathBuf,
        /// Approve automatically when PARAM ≤ MAX (repeat: all must hold).
        #[arg(long = "auto-approve", value_name = "PARAM<=MAX")]
        auto_approve: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace a flow's levels or conditions.
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        levels: Option<PathBuf>,
        #[arg(long = "auto-approve", value_name = "PARAM<=MAX")]
        auto_approve: Vec<String>,
        /// Remove the auto-approve conditions.
        #[arg(long, conflicts_with = "auto_approve")]
        no_auto_approve: bool,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrderCmd {
    /// Orders (approved requests) and what they made.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    Show {
        id: Uuid,
    },
}

/// `name=value` pairs into a JSON object: numbers, booleans and JSON literals as such.
pub(crate) fn parameters(set: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for s in set {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set {s}: expected NAME=VALUE"))?;
        let value = match serde_json::from_str::<Value>(v) {
            Ok(j @ (Value::Number(_) | Value::Bool(_))) => j,
            _ => Value::String(v.to_string()),
        };
        m.insert(k.to_string(), value);
    }
    Ok(m)
}

fn read_json(path: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn auto_approve(specs: &[String]) -> anyhow::Result<Vec<Value>> {
    specs
        .iter()
        .map(|s| {
            let (p, max) = s
                .split_once("<=")
                .ok_or_else(|| anyhow::anyhow!("--auto-approve {s}: expected PARAM<=MAX"))?;
            let max: i64 = max
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--auto-approve {s}: MAX is not an integer"))?;
            Ok(json!({"parameter": p.trim(), "max": max}))
        })
        .collect()
}

/// Requests with two fields for tables: `progress` (the level awaiting decisions, as
/// "n/total") and `made` (the resources provisioned, by name).
fn request_rows(v: &Value) -> Value {
    let mut v = v.clone();
    let fix = |r: &mut Value| {
        let total = r["levels"].as_array().map(Vec::len).unwrap_or(0);
        r["progress"] = if r["status"] == "approving" {
            json!(format!("{}/{total}", r["level"].as_i64().unwrap_or(0) + 1))
        } else {
            json!("")
        };
        let names: Vec<String> = r["resources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        r["made"] = json!(names.join(","));
    };
    match &mut v {
        Value::Array(a) => a.iter_mut().for_each(fix),
        Value::Object(o) if o.contains_key("items") => {
            if let Some(a) = o.get_mut("items").and_then(Value::as_array_mut) {
                a.iter_mut().for_each(fix);
            }
        }
        other => fix(other),
    }
    v
}

/// Poll a request until it is no longer pending or provisioning.
async fn wait_request(c: &Client, id: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/requests/{id}");
    let mut last = String::new();
    loop {
        let r: Value = c.get(&path, &[]).await?;
        let status = r["status"].as_str().unwrap_or("").to_string();
        if status != last {
            eprintln!("request {id}: {status}");
            last = status.clone();
        }
        if !["approving", "approved", "provisioning"].contains(&status.as_str()) {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn submitted(c: &Client, out: &Out, r: Value, wait: bool) -> anyhow::Result<()> {
    let r = if wait {
        let id = r["id"].as_str().unwrap_or_default().to_string();
        wait_request(c, &id).await?
    } else {
        r
    };
    out.value(&request_rows(&r), REQUEST);
    if wait && r["status"] != "completed" {
        anyhow::bail!(
            "request {}: {}",
            r["status"].as_str().unwrap_or(""),
            r["status_reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn catalog(c: &Client, out: &Out, cmd: CatalogCmd) -> anyhow::Result<()> {
    match cmd {
        CatalogCmd::List { category, kind } => {
            let mut q = Vec::new();
            if let Some(x) = category {
                q.push(("category", x));
            }
            if let Some(k) = kind {
                q.push(("kind", k));
            }
            let v: Value = c.get("/v1/services", &q).await?;
            out.value(&v, SERVICE)
        }
        CatalogCmd::Show { id } => {
            let v: Value = c.get(&format!("/v1/services/{id}"), &[]).await?;
            out.value(&v, SERVICE)
        }
        CatalogCmd::Kinds => {
            let v: Value = c.get("/v1/service-kinds", &[]).await?;
            out.value(&v, KIND)
        }
        CatalogCmd::Create {
            name,
            kind,
            category,
            description,
            icon,
            form,
            vdcs,
            unpublished,
        } => {
            let mut b = json!({"name": name, "kind": kind, "category": category,
                "description": description, "icon": icon, "vdc_ids": vdcs,
                "published": !unpublished});
            if let Some(f) = form {
                b["parameters"] = read_json(&f)?;
            }
            let v: Value = c.post("/v1/services", &b).await?;
            out.value(&v, SERVICE)
        }
        CatalogCmd::Update {
            id,
            name,
            category,
            description,
            form,
            vdcs,
            all_vdcs,
            publish,
            unpublish,
        } => {
            let mut b = to_value(&ServiceUpdate {
                name,
                description,
                category,
                ..ServiceUpdate::default()
            });
            if let Some(f) = form {
                b["parameters"] = read_json(&f)?;
            }
            if !vdcs.is_empty() || all_vdcs {
                b["vdc_ids"] = json!(vdcs);
            }
            if publish || unpublish {
                b["published"] = json!(publish);
            }
            let v: Value = c.patch(&format!("/v1/services/{id}"), &b).await?;
            out.value(&v, SERVICE)
        }
        CatalogCmd::Delete { id } => {
            c.delete(&format!("/v1/services/{id}")).await?;
            out.done("Deleted.")
        }
    }
    Ok(())
}

pub(crate) async fn request(c: &Client, out: &Out, cmd: RequestCmd) -> anyhow::Result<()> {
    match cmd {
        RequestCmd::Submit {
            service,
            project,
            set,
            description,
            subscription_months,
            wait,
        } => {
            let mut b = json!({"service_id": service, "project_id": project,
                "parameters": parameters(&set)?, "description": description});
            if let Some(m) = subscription_months {
                b["subscription_months"] = json!(m);
            }
            let r: Value = c.post("/v1/requests", &b).await?;
            submitted(c, out, r, wait).await?
        }
        RequestCmd::Change {
            resource,
            set,
            description,
            wait,
        } => {
            let b = json!({"action": "change", "resource_id": resource,
                "parameters": parameters(&set)?, "description": description});
            let r: Value = c.post("/v1/requests", &b).await?;
            submitted(c, out, r, wait).await?
        }
        RequestCmd::Release {
            resource,
            description,
            wait,
        } => {
            let b =
                json!({"action": "release", "resource_id": resource, "description": description});
            let r: Value = c.post("/v1/requests", &b).await?;
            submitted(c, out, r, wait).await?
        }
        RequestCmd::List {
            mine,
            status,
            project,
            paging,
        } => {
            let mut q = opt("project_id", project);
            if mine {
                q.push(("mine", "true".into()));
            }
            if let Some(s) = status {
                q.push(("status", s));
            }
            let v = list_pages(c, "/v1/requests", q, &paging).await?;
            out.value(&request_rows(&v), REQUEST)
        }
        RequestCmd::Show { id } => {
            let v: Value = c.get(&format!("/v1/requests/{id}"), &[]).await?;
            out.value(&request_rows(&v), REQUEST)
        }
        RequestCmd::Cancel { id } => {
            let v: Value = c
                .post(&format!("/v1/requests/{id}/cancel"), &json!({}))
                .await?;
            out.value(&request_rows(&v), REQUEST)
        }
    }
    Ok(())
}

pub(crate) async fn approval(c: &Client, out: &Out, cmd: ApprovalCmd) -> anyhow::Result<()> {
    match cmd {
        ApprovalCmd::Queue => {
            let v: Value = c.get("/v1/approvals", &[]).await?;
            out.value(&request_rows(&v), REQUEST)
        }
        ApprovalCmd::Approve { id, comment, set } => {
            let b = json!({"comment": comment, "parameters": parameters(&set)?});
            let v: Value = c.post(&format!("/v1/requests/{id}/approve"), &b).await?;
            out.value(&request_rows(&v), REQUEST)
        }
        ApprovalCmd::Reject { id, comment } => {
            let v: Value = c
                .post(
                    &format!("/v1/requests/{id}/reject"),
                    &json!({"comment": comment}),
                )
                .await?;
            out.value(&request_rows(&v), REQUEST)
        }
        ApprovalCmd::Flow(f) => flow(c, out, f).await?,
    }
    Ok(())
}

async fn flow(c: &Client, out: &Out, cmd: FlowCmd) -> anyhow::Result<()> {
    let levels_count = |v: &Value| {
        let mut v = v.clone();
        let fix = |f: &mut Value| {
            let n = f["levels"].as_array().map(Vec::len).unwrap_or(0);
            f["level_count"] = json!(n);
        };
        match &mut v {
            Value::Array(a) => a.iter_mut().for_each(fix),
            other => fix(other),
        }
        v
    };
    match cmd {
        FlowCmd::List => {
            let v: Value = c.get("/v1/approval-flows", &[]).await?;
            out.value(&levels_count(&v), FLOW)
        }
        FlowCmd::Show { id } => {
            let v: Value = c.get(&format!("/v1/approval-flows/{id}"), &[]).await?;
            out.value(&levels_count(&v), FLOW)
        }
        FlowCmd::Create {
            name,
            service,
            vdc,
            levels,
            auto_approve: auto,
            description,
        } => {
            let b = json!({"name": name, "service_id": service, "vdc_id": vdc,
                "levels": read_json(&levels)?, "auto_approve": auto_approve(&auto)?,
                "description": description});
            let v: Value = c.post("/v1/approval-flows", &b).await?;
            out.value(&levels_count(&v), FLOW)
        }
        FlowCmd::Update {
            id,
            name,
            levels,
            auto_approve: auto,
            no_auto_approve,
        } => {
            let mut b = to_value(&ApprovalFlowUpdate {
                name,
                ..ApprovalFlowUpdate::default()
            });
            if let Some(l) = levels {
                b["levels"] = read_json(&l)?;
            }
            if !auto.is_empty() || no_auto_approve {
                b["auto_approve"] = json!(auto_approve(&auto)?);
            }
            let v: Value = c.patch(&format!("/v1/approval-flows/{id}"), &b).await?;
            out.value(&levels_count(&v), FLOW)
        }
        FlowCmd::Delete { id } => {
            c.delete(&format!("/v1/approval-flows/{id}")).await?;
            out.done("Deleted.")
        }
    }
    Ok(())
}

pub(crate) async fn order(c: &Client, out: &Out, cmd: OrderCmd) -> anyhow::Result<()> {
    match cmd {
        OrderCmd::List {
            status,
            project,
            paging,
        } => {
            let mut q = opt("project_id", project);
            if let Some(s) = status {
                q.push(("status", s));
            }
            let v = list_pages(c, "/v1/requests", q, &paging).await?;
            // Orders are the requests that got past approval.
            let mut v = request_rows(&v);
            if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
                items.retain(|r| {
                    ["approved", "provisioning", "completed", "failed"]
                        .contains(&r["status"].as_str().unwrap_or(""))
                });
            }
            out.value(&v, ORDER)
        }
        OrderCmd::Show { id } => {
            let v: Value = c.get(&format!("/v1/requests/{id}"), &[]).await?;
            out.value(&request_rows(&v), ORDER)
        }
    }
    Ok(())
}
