//! `stratus stack …`: orchestration templates and the stacks made from them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::catalog_cli::parameters;
use crate::cli::{list_pages, Out, Paging};
use crate::client::Client;

const STACK: &[&str] = &[
    "id",
    "name",
    "status",
    "project_id",
    "status_reason",
    "updated_at",
];
const RESOURCE: &[&str] = &["name", "type", "status", "id", "status_reason"];
const OUTPUT: &[&str] = &["name", "value", "error", "description"];

#[derive(Debug, Subcommand)]
pub enum StackCmd {
    /// Check a template (and parameter values) without making anything: what it declares
    /// and the order its resources are made in, or the error with its line and column.
    Validate {
        #[arg(long)]
        template: PathBuf,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Make a stack from a template file.
    Create {
        name: String,
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        template: PathBuf,
        /// A template parameter; repeat for several.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Keep what was made when the create fails (default: roll back).
        #[arg(long)]
        keep_on_failure: bool,
        /// Wait until the stack is complete (or failed) and show it.
        #[arg(long)]
        wait: bool,
    },
    /// Stacks you may see.
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// A stack's status.
    Show { id: Uuid },
    /// A stack's resources: logical name, type, status and the real resource's id.
    Resources { id: Uuid },
    /// A stack's outputs.
    Outputs { id: Uuid },
    /// The template a stack was last given (printed as written).
    Template { id: Uuid },
    /// Bring a stack to a changed template; parameters not given keep their values.
    Update {
        id: Uuid,
        #[arg(long)]
        template: PathBuf,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Remove a stack and everything it made.
    Delete {
        id: Uuid,
        #[arg(long)]
        wait: bool,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Poll a stack until it rests (or, after a delete, is gone: `None`).
async fn wait_stack(c: &Client, id: &str) -> anyhow::Result<Option<Value>> {
    let path = format!("/v1/stacks/{id}");
    let mut last = String::new();
    loop {
        let s: Value = match c.get(&path, &[]).await {
            Ok(s) => s,
            Err(e) if e.status == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let status = s["status"].as_str().unwrap_or("").to_string();
        if status != last {
            eprintln!("stack {id}: {status}");
            last = status.clone();
        }
        if !["creating", "updating", "deleting", "rolling_back"].contains(&status.as_str()) {
            return Ok(Some(s));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Show what an action started; with --wait, what it came to (an error unless complete).
async fn started(c: &Client, out: &Out, s: Value, wait: bool) -> anyhow::Result<()> {
    if !wait {
        out.value(&s, STACK);
        return Ok(());
    }
    let id = s["id"].as_str().unwrap_or_default().to_string();
    match wait_stack(c, &id).await? {
        None => out.done("Deleted."),
        Some(s) => {
            out.value(&s, STACK);
            if s["status"] != "complete" {
                anyhow::bail!(
                    "stack {}: {}",
                    s["status"].as_str().unwrap_or(""),
                    s["status_reason"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn stack(c: &Client, out: &Out, cmd: StackCmd) -> anyhow::Result<()> {
    match cmd {
        StackCmd::Validate { template, set } => {
            let mut b = json!({"template": read(&template)?});
            if !set.is_empty() {
                b["parameters"] = Value::Object(parameters(&set)?);
            }
            let v: Value = c.post("/v1/templates/validate", &b).await?;
            out.value(&v, &["field", "value"]);
        }
        StackCmd::Create {
            name,
            project,
            template,
            set,
            description,
            keep_on_failure,
            wait,
        } => {
            let b = json!({"name": name, "project_id": project, "template": read(&template)?,
                "parameters": parameters(&set)?, "description": description,
                "on_failure": if keep_on_failure { "keep" } else { "rollback" }});
            let s: Value = c.post("/v1/stacks", &b).await?;
            started(c, out, s, wait).await?;
        }
        StackCmd::List { project, paging } => {
            let q = project
                .map(|p| vec![("project_id", p.to_string())])
                .unwrap_or_default();
            let v = list_pages(c, "/v1/stacks", q, &paging).await?;
            out.value(&v, STACK);
        }
        StackCmd::Show { id } => {
            let v: Value = c.get(&format!("/v1/stacks/{id}"), &[]).await?;
            out.value(&v, STACK);
        }
        StackCmd::Resources { id } => {
            let v: Value = c.get(&format!("/v1/stacks/{id}"), &[]).await?;
            out.value(&v["resources"], RESOURCE);
        }
        StackCmd::Outputs { id } => {
            let v: Value = c.get(&format!("/v1/stacks/{id}"), &[]).await?;
            out.value(&v["outputs"], OUTPUT);
        }
        StackCmd::Template { id } => {
            let v: Value = c.get(&format!("/v1/stacks/{id}/template"), &[]).await?;
            print!("{}", v["template"].as_str().unwrap_or_default());
        }
        StackCmd::Update {
            id,
            template,
            set,
            wait,
        } => {
            let b = json!({"template": read(&template)?, "parameters": parameters(&set)?});
            let s: Value = c.put(&format!("/v1/stacks/{id}"), &b).await?;
            started(c, out, s, wait).await?;
        }
        StackCmd::Delete { id, wait } => {
            let s: Value = c.delete_json(&format!("/v1/stacks/{id}")).await?;
            started(c, out, s, wait).await?;
        }
    }
    Ok(())
}
