//! `stratus metrics|alert|ticket …`: PromQL queries, pushed metrics, alert rules, the
//! alert center, maintenance windows, notification channels and tickets.

use clap::Subcommand;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::cli::Out;
use crate::client::Client;

const RULE: &[&str] = &[
    "id",
    "name",
    "severity",
    "for",
    "expr",
    "project_id",
    "enabled",
    "last_error",
];
const TEMPLATE: &[&str] = &["key", "name", "severity", "for", "expr"];
const ALERT: &[&str] = &[
    "id",
    "name",
    "severity",
    "state",
    "source",
    "count",
    "started_at",
    "acknowledged_by",
    "suppressed",
    "summary",
];
const TICKET: &[&str] = &[
    "id",
    "state",
    "priority",
    "assignee",
    "title",
    "alert_id",
    "updated_at",
];
const GROUP: &[&str] = &["key", "firing", "unacknowledged"];
const SILENCE: &[&str] = &[
    "id",
    "matchers",
    "starts_at",
    "ends_at",
    "comment",
    "created_by",
];
const CHANNEL: &[&str] = &[
    "id",
    "name",
    "kind",
    "target",
    "min_severity",
    "vdc_id",
    "max_per_hour",
];
const DELIVERY: &[&str] = &[
    "id",
    "alert_id",
    "event",
    "status",
    "attempts",
    "created_at",
    "last_error",
];

#[derive(Debug, Subcommand)]
pub enum MetricsCmd {
    /// Evaluate PromQL: at one time, or over a range with --start/--end/--step.
    Query {
        query: String,
        /// Instant query time (RFC 3339 or Unix seconds; default now).
        #[arg(long)]
        time: Option<String>,
        /// Range query start (default an hour before --end).
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        /// Range query step (`15s`, `1m`; default 60 s). Giving any range flag makes it a range query.
        #[arg(long)]
        step: Option<String>,
    },
    /// Push one sample of a custom metric for a project.
    Push {
        #[arg(long)]
        project: Uuid,
        name: String,
        value: f64,
        /// A label as NAME=VALUE; repeat for several.
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// The alert center: alerts you can see, newest first.
    List {
        /// firing or resolved.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        project: Option<Uuid>,
        /// The VDC and the VDCs below it.
        #[arg(long)]
        vdc: Option<Uuid>,
        #[arg(long)]
        host: Option<Uuid>,
        /// Only alerts nobody has acknowledged.
        #[arg(long)]
        unacked: bool,
        #[arg(long)]
        limit: Option<u32>,
    },
    Show {
        id: Uuid,
    },
    /// Acknowledge (claim) an alert.
    Ack {
        id: Uuid,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Firing alerts counted by severity, source, name, vdc_id, project_id or host_id.
    Groups {
        #[arg(long, default_value = "severity")]
        by: String,
    },
    /// What was sent about an alert.
    Notifications {
        id: Uuid,
    },
    /// Make a ticket of an alert.
    Ticket {
        id: Uuid,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Alert rules.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Maintenance windows that keep matching alerts quiet.
    #[command(subcommand)]
    Silence(SilenceCmd),
    /// Where alerts are told: webhooks and programs.
    #[command(subcommand)]
    Channel(ChannelCmd),
}

#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    List,
    /// Ready-made rules for the common cases.
    Templates,
    Show {
        id: Uuid,
    },
    /// A rule: every series EXPR returns for --for is an alert.
    Create {
        name: String,
        /// PromQL, e.g. 'rate(stratus_instance_cpu_seconds_total[1m]) > 0.9'.
        expr: String,
        /// critical, major, minor or info.
        #[arg(long, default_value = "major")]
        severity: String,
        /// How long the condition must hold (`0s`, `5m`).
        #[arg(long = "for", default_value = "0s")]
        for_: String,
        /// A tenant rule of this project; without it a platform rule (operators).
        #[arg(long)]
        project: Option<Uuid>,
        /// The alert text; `{{ $value }}` and `{{ $labels.x }}` are filled in.
        #[arg(long, default_value = "")]
        summary: String,
        /// A label added to its alerts as NAME=VALUE; repeat for several.
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
    },
    /// Turn a rule off or on.
    Enable {
        id: Uuid,
        #[arg(long)]
        off: bool,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum SilenceCmd {
    List,
    /// Silence alerts whose labels match every --match until --until.
    Create {
        /// NAME=VALUE (e.g. host_id=…, alertname=…); repeat for several.
        #[arg(long = "match", value_name = "NAME=VALUE", required = true)]
        matchers: Vec<String>,
        /// RFC 3339.
        #[arg(long)]
        until: String,
        /// RFC 3339; default now.
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        project: Option<Uuid>,
    },
    /// End a silence now.
    End {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCmd {
    List,
    /// A webhook URL or (platform only) a program run with the notice on its stdin.
    Create {
        name: String,
        /// webhook or command.
        #[arg(long, default_value = "webhook")]
        kind: String,
        /// The URL or the program's absolute path.
        target: String,
        #[arg(long)]
        min_severity: Option<String>,
        /// A VDC's channel (its alerts and those below); default a platform channel.
        #[arg(long)]
        vdc: Option<Uuid>,
        #[arg(long)]
        max_per_hour: Option<i64>,
    },
    Delete {
        id: Uuid,
    },
    /// A channel's recent deliveries.
    Deliveries {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum TicketCmd {
    /// Tickets you can see, newest first.
    List {
        /// open, claimed, in_progress, resolved or closed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        project: Option<Uuid>,
        /// Only tickets not closed.
        #[arg(long)]
        open: bool,
    },
    /// A ticket with its history.
    Show {
        id: Uuid,
    },
    Create {
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        /// critical, major (default), minor or info.
        #[arg(long)]
        priority: Option<String>,
        /// A tenant's ticket; default a platform ticket.
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Move a ticket: claimed, in_progress, resolved, closed (or open, in_progress again).
    Move {
        id: Uuid,
        state: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Assign a ticket to an account (empty: nobody).
    Assign {
        id: Uuid,
        assignee: String,
    },
    Comment {
        id: Uuid,
        body: String,
    },
}

pub(crate) async fn ticket(c: &Client, out: &Out, cmd: TicketCmd) -> anyhow::Result<()> {
    let v: Value = match cmd {
        TicketCmd::List {
            state,
            assignee,
            project,
            open,
        } => {
            let mut q = Vec::new();
            add(&mut q, "state", state);
            add(&mut q, "assignee", assignee);
            add(&mut q, "project_id", project.map(|v| v.to_string()));
            add(&mut q, "open", open.then(|| "true".to_string()));
            c.get("/v1/tickets", &q).await?
        }
        TicketCmd::Show { id } => c.get(&format!("/v1/tickets/{id}"), &[]).await?,
        TicketCmd::Create {
            title,
            description,
            priority,
            project,
            assignee,
        } => {
            c.post(
                "/v1/tickets",
                &json!({"title": title, "description": description, "priority": priority,
                    "project_id": project, "assignee": assignee}),
            )
            .await?
        }
        TicketCmd::Move { id, state, comment } => {
            c.post(
                &format!("/v1/tickets/{id}/transition"),
                &json!({"state": state, "comment": comment}),
            )
            .await?
        }
        TicketCmd::Assign { id, assignee } => {
            c.patch(&format!("/v1/tickets/{id}"), &json!({"assignee": assignee}))
                .await?
        }
        TicketCmd::Comment { id, body } => {
            c.post(
                &format!("/v1/tickets/{id}/comments"),
                &json!({"body": body}),
            )
            .await?
        }
    };
    out.value(&v, TICKET);
    Ok(())
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<Map<String, Value>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .ok_or_else(|| anyhow::anyhow!("{what} {s:?}: expected NAME=VALUE"))
        })
        .collect()
}

fn add(q: &mut Vec<(&'static str, String)>, k: &'static str, v: Option<String>) {
    if let Some(v) = v {
        q.push((k, v));
    }
}

pub(crate) async fn metrics(c: &Client, out: &Out, cmd: MetricsCmd) -> anyhow::Result<()> {
    match cmd {
        MetricsCmd::Query {
            query,
            time,
            start,
            end,
            step,
        } => {
            let range = start.is_some() || end.is_some() || step.is_some();
            let mut q = vec![("query", query)];
            let v: Value = if range {
                add(&mut q, "start", start);
                add(&mut q, "end", end);
                add(&mut q, "step", step);
                c.get("/v1/metrics/query_range", &q).await?
            } else {
                add(&mut q, "time", time);
                c.get("/v1/metrics/query", &q).await?
            };
            if out.is_table() {
                // One row per series: its labels, and its value or how many points.
                let rows: Vec<Value> = v["result"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|s| {
                                let labels = s["metric"]
                                    .as_object()
                                    .map(|m| {
                                        m.iter()
                                            .map(|(k, v)| {
                                                format!("{k}={}", v.as_str().unwrap_or_default())
                                            })
                                            .collect::<Vec<_>>()
                                            .join(",")
                                    })
                                    .unwrap_or_default();
                                let value = match s["values"].as_array() {
                                    Some(vs) => json!(format!("{} points", vs.len())),
                                    None => s["value"][1].clone(),
                                };
                                json!({"series": labels, "value": value})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.value(&Value::Array(rows), &["series", "value"]);
            } else {
                out.value(&v, &[]);
            }
        }
        MetricsCmd::Push {
            project,
            name,
            value,
            labels,
        } => {
            let v: Value = c
                .post(
                    "/v1/metrics/push",
                    &json!({"project_id": project, "samples": [
                        {"name": name, "value": value, "labels": pairs(&labels, "--label")?}]}),
                )
                .await?;
            out.value(&v, &[]);
        }
    }
    Ok(())
}

pub(crate) async fn alert(c: &Client, out: &Out, cmd: AlertCmd) -> anyhow::Result<()> {
    match cmd {
        AlertCmd::List {
            state,
            severity,
            source,
            project,
            vdc,
            host,
            unacked,
            limit,
        } => {
            let mut q = Vec::new();
            add(&mut q, "state", state);
            add(&mut q, "severity", severity);
            add(&mut q, "source", source);
            add(&mut q, "project_id", project.map(|v| v.to_string()));
            add(&mut q, "vdc_id", vdc.map(|v| v.to_string()));
            add(&mut q, "host_id", host.map(|v| v.to_string()));
            add(&mut q, "acknowledged", unacked.then(|| "false".to_string()));
            add(&mut q, "limit", limit.map(|v| v.to_string()));
            let v: Value = c.get("/v1/alerts", &q).await?;
            out.value(&v, ALERT);
        }
        AlertCmd::Show { id } => {
            let v: Value = c.get(&format!("/v1/alerts/{id}"), &[]).await?;
            out.value(&v, ALERT);
        }
        AlertCmd::Ack { id, comment } => {
            let v: Value = c
                .post(
                    &format!("/v1/alerts/{id}/ack"),
                    &json!({"comment": comment}),
                )
                .await?;
            out.value(&v, ALERT);
        }
        AlertCmd::Groups { by } => {
            let v: Value = c.get("/v1/alert-groups", &[("by", by)]).await?;
            out.value(&v, GROUP);
        }
        AlertCmd::Notifications { id } => {
            let v: Value = c
                .get(&format!("/v1/alerts/{id}/notifications"), &[])
                .await?;
            out.value(&v, DELIVERY);
        }
        AlertCmd::Ticket {
            id,
            assignee,
            description,
        } => {
            let v: Value = c
                .post(
                    &format!("/v1/alerts/{id}/ticket"),
                    &json!({"assignee": assignee, "description": description}),
                )
                .await?;
            out.value(&v, TICKET);
        }
        AlertCmd::Rule(cmd) => rule(c, out, cmd).await?,
        AlertCmd::Silence(cmd) => silence(c, out, cmd).await?,
        AlertCmd::Channel(cmd) => channel(c, out, cmd).await?,
    }
    Ok(())
}

async fn rule(c: &Client, out: &Out, cmd: RuleCmd) -> anyhow::Result<()> {
    match cmd {
        RuleCmd::List => {
            let v: Value = c.get("/v1/alert-rules", &[]).await?;
            out.value(&v, RULE);
        }
        RuleCmd::Templates => {
            let v: Value = c.get("/v1/alert-rule-templates", &[]).await?;
            out.value(&v, TEMPLATE);
        }
        RuleCmd::Show { id } => {
            let v: Value = c.get(&format!("/v1/alert-rules/{id}"), &[]).await?;
            out.value(&v, RULE);
        }
        RuleCmd::Create {
            name,
            expr,
            severity,
            for_,
            project,
            summary,
            labels,
        } => {
            let v: Value = c
                .post(
                    "/v1/alert-rules",
                    &json!({"name": name, "expr": expr, "severity": severity, "for": for_,
                        "project_id": project, "summary": summary,
                        "labels": pairs(&labels, "--label")?}),
                )
                .await?;
            out.value(&v, RULE);
        }
        RuleCmd::Enable { id, off } => {
            let v: Value = c
                .patch(&format!("/v1/alert-rules/{id}"), &json!({"enabled": !off}))
                .await?;
            out.value(&v, RULE);
        }
        RuleCmd::Delete { id } => {
            c.delete(&format!("/v1/alert-rules/{id}")).await?;
            out.done("Deleted.");
        }
    }
    Ok(())
}

async fn silence(c: &Client, out: &Out, cmd: SilenceCmd) -> anyhow::Result<()> {
    match cmd {
        SilenceCmd::List => {
            let v: Value = c.get("/v1/silences", &[]).await?;
            out.value(&v, SILENCE);
        }
        SilenceCmd::Create {
            matchers,
            until,
            from,
            comment,
            project,
        } => {
            let v: Value = c
                .post(
                    "/v1/silences",
                    &json!({"matchers": pairs(&matchers, "--match")?, "ends_at": until,
                        "starts_at": from, "comment": comment, "project_id": project}),
                )
                .await?;
            out.value(&v, SILENCE);
        }
        SilenceCmd::End { id } => {
            c.delete(&format!("/v1/silences/{id}")).await?;
            out.done("Ended.");
        }
    }
    Ok(())
}

async fn channel(c: &Client, out: &Out, cmd: ChannelCmd) -> anyhow::Result<()> {
    match cmd {
        ChannelCmd::List => {
            let v: Value = c.get("/v1/notify-channels", &[]).await?;
            out.value(&v, CHANNEL);
        }
        ChannelCmd::Create {
            name,
            kind,
            target,
            min_severity,
            vdc,
            max_per_hour,
        } => {
            let v: Value = c
                .post(
                    "/v1/notify-channels",
                    &json!({"name": name, "kind": kind, "target": target,
                        "min_severity": min_severity, "vdc_id": vdc, "max_per_hour": max_per_hour}),
                )
                .await?;
            out.value(&v, CHANNEL);
        }
        ChannelCmd::Delete { id } => {
            c.delete(&format!("/v1/notify-channels/{id}")).await?;
            out.done("Deleted.");
        }
        ChannelCmd::Deliveries { id } => {
            let v: Value = c
                .get(&format!("/v1/notify-channels/{id}/deliveries"), &[])
                .await?;
            out.value(&v, DELIVERY);
        }
    }
    Ok(())
}
