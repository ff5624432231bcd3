//! `stratus usage|price|bill|budget|report …`: metering records, the price list, cost estimates,
//! bills and budgets.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::cli::Out;
use crate::client::Client;

const RECORD: &[&str] = &[
    "period_start",
    "resource_type",
    "resource_id",
    "meter",
    "spec",
    "quantity",
    "unit",
    "amount",
    "rated",
    "gap",
];
const PRICE: &[&str] = &[
    "id",
    "meter",
    "spec",
    "billing",
    "unit_price",
    "unit",
    "effective_from",
    "effective_to",
];
const ESTIMATE: &[&str] = &[
    "meter",
    "spec",
    "quantity_per_hour",
    "unit",
    "unit_price",
    "amount",
    "monthly",
];
const LINE: &[&str] = &[
    "resource_type",
    "resource_id",
    "meter",
    "spec",
    "quantity",
    "unit",
    "unit_price",
    "amount",
];
const BUDGET: &[&str] = &["vdc_id", "monthly_limit", "spent", "percent", "updated_by"];
const SUBSCRIPTION: &[&str] = &[
    "id",
    "resource_type",
    "resource_id",
    "months",
    "starts_at",
    "ends_at",
    "monthly_fee",
    "status",
];
const EVENT: &[&str] = &["at", "vdc_id", "kind", "month", "spent", "monthly_limit"];
const SCHEDULE: &[&str] = &[
    "id",
    "name",
    "period",
    "vdc_id",
    "last_period_end",
    "created_by",
];
const REPORT: &[&str] = &[
    "id",
    "name",
    "vdc_id",
    "period_start",
    "period_end",
    "generated_at",
];

/// Whose usage or bill: at most one.
#[derive(Debug, Args)]
pub struct Scope {
    #[arg(long)]
    project: Option<Uuid>,
    /// The VDC and everything below it.
    #[arg(long)]
    vdc: Option<Uuid>,
    /// A whole organization (the management unit).
    #[arg(long)]
    org: Option<Uuid>,
    /// One resource (a service instance): what it has cost so far.
    #[arg(long)]
    resource: Option<Uuid>,
}

impl Scope {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (k, v) in [
            ("project_id", self.project),
            ("vdc_id", self.vdc),
            ("org_id", self.org),
            ("resource_id", self.resource),
        ] {
            if let Some(v) = v {
                q.push((k, v.to_string()));
            }
        }
        q
    }
}

#[derive(Debug, Subcommand)]
pub enum UsageCmd {
    /// Usage records (话单), oldest first.
    List {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        meter: Option<String>,
        /// Hours starting at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Hours starting before this time.
        #[arg(long)]
        to: Option<String>,
        /// Records after this id (paging).
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Print the documented CSV instead.
        #[arg(long)]
        csv: bool,
    },
    /// How far metering has got (closed, priced and exported hours).
    Status,
    /// The meters and their units.
    Meters,
}

#[derive(Debug, Subcommand)]
pub enum PriceCmd {
    /// The price list (optionally only what is in force at a time).
    List {
        #[arg(long)]
        meter: Option<String>,
        #[arg(long)]
        at: Option<String>,
    },
    /// Add a price (management unit).
    Create {
        /// e.g. vcpu_hours (see `stratus usage meters`).
        meter: String,
        /// Yuan per unit, e.g. 0.05.
        unit_price: String,
        /// A flavor or volume type; empty: every spec without its own price.
        #[arg(long, default_value = "")]
        spec: String,
        /// payg (per unit used) or monthly (per unit of rate and month).
        #[arg(long, default_value = "payg")]
        billing: String,
        /// The meter's unit, as a check.
        #[arg(long)]
        unit: Option<String>,
        /// From (RFC 3339; default now).
        #[arg(long)]
        from: Option<String>,
        /// Until (RFC 3339; default open-ended).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// End a price's period.
    End {
        id: Uuid,
        /// RFC 3339.
        #[arg(long)]
        at: String,
    },
    /// Delete a price nothing was rated with.
    Delete { id: Uuid },
    /// What resources would cost by today's prices.
    Estimate {
        /// Instances of this flavor.
        #[arg(long)]
        flavor: Option<String>,
        #[arg(long)]
        count: Option<i64>,
        /// A volume as TYPE:GIB (e.g. high:100); repeat for several.
        #[arg(long = "volume", value_name = "TYPE:GIB")]
        volumes: Vec<String>,
        #[arg(long, default_value_t = 0)]
        elastic_ips: i64,
        #[arg(long, default_value_t = 0)]
        object_storage_gib: i64,
        /// For how many hours (default a month, 730).
        #[arg(long)]
        hours: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BillCmd {
    /// A bill: a month (default the current one) or any period, for a scope (default the
    /// platform, for the management unit).
    Show {
        #[command(flatten)]
        scope: Scope,
        /// YYYY-MM.
        #[arg(long)]
        month: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Print CSV, or a printable HTML page, instead of the table.
        #[arg(long, value_parser = ["csv", "html"])]
        export: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BudgetCmd {
    /// A VDC's monthly budget and what is spent of it.
    Show {
        vdc: Uuid,
    },
    /// Set a VDC's monthly budget in yuan; 80% and 100% raise billing events.
    Set {
        vdc: Uuid,
        monthly_limit: String,
    },
    Delete {
        vdc: Uuid,
    },
    /// Budget thresholds crossed.
    Events {
        #[arg(long)]
        vdc: Option<Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionCmd {
    /// Buy whole calendar months (包年包月) of a metered resource at today's monthly
    /// prices; the fee is charged once per covered month.
    Create {
        /// The instance, volume, elastic IP, … to subscribe.
        resource: Uuid,
        /// Months, 1 to 36 (12 for a year).
        #[arg(long, default_value_t = 1)]
        months: i64,
    },
    /// Subscriptions you can see, newest first.
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long)]
        resource: Option<Uuid>,
        /// Only those running now (begun, not expired, cancelled or ended).
        #[arg(long)]
        active: bool,
    },
    Show {
        id: Uuid,
    },
    /// Add months after its end, at the prices it was bought at.
    Renew {
        id: Uuid,
        #[arg(long)]
        months: i64,
    },
    /// End it with the current hour; months not begun are not charged.
    Cancel {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Resource totals and usage per VDC (and per pool for the platform), made now.
    Resources {
        /// The VDC (with everything below it); default the platform.
        #[arg(long)]
        vdc: Option<Uuid>,
        /// The last complete daily, weekly, monthly (default) or quarterly period.
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Print CSV instead.
        #[arg(long)]
        csv: bool,
    },
    /// Make a report every period once it has ended (parameters set once).
    Schedule {
        name: String,
        /// daily, weekly, monthly or quarterly.
        #[arg(long)]
        period: String,
        #[arg(long)]
        vdc: Option<Uuid>,
    },
    /// The report schedules you may see.
    Schedules,
    /// Stop a schedule (its reports stay).
    Unschedule { id: Uuid },
    /// Reports made on a schedule.
    List,
    /// One report made on a schedule.
    Show {
        id: Uuid,
        #[arg(long)]
        csv: bool,
    },
}

const ROW: &[&str] = &[
    "name",
    "level",
    "vcpus",
    "memory_gib",
    "storage_gib",
    "instances",
    "instances_opened",
    "vcpu_hours",
    "cost",
];

fn show_report(out: &Out, v: &Value) {
    if out.is_table() {
        println!(
            "Report {} to {}:",
            v["period_start"].as_str().unwrap_or(""),
            v["period_end"].as_str().unwrap_or("")
        );
        out.value(&v["rows"], ROW);
        if v["pools"].as_array().is_some_and(|p| !p.is_empty()) {
            println!("\nResource pools:");
            out.value(
                &v["pools"],
                &[
                    "availability_zone",
                    "hosts_up",
                    "hosts",
                    "vcpus_allocated",
                    "vcpus_capacity",
                    "memory_mib_allocated",
                    "memory_mib_capacity",
                ],
            );
        }
    } else {
        out.value(v, &[]);
    }
}

pub(crate) async fn report(c: &Client, out: &Out, cmd: ReportCmd) -> anyhow::Result<()> {
    match cmd {
        ReportCmd::Resources {
            vdc,
            period,
            from,
            to,
            csv,
        } => {
            let mut q = Vec::new();
            opt(&mut q, "vdc_id", vdc.map(|v| v.to_string()));
            opt(&mut q, "period", period);
            opt(&mut q, "from", from);
            opt(&mut q, "to", to);
            if csv {
                q.push(("format", "csv".into()));
                print!("{}", c.get_text("/v1/reports/resources", &q).await?);
            } else {
                let v: Value = c.get("/v1/reports/resources", &q).await?;
                show_report(out, &v);
            }
        }
        ReportCmd::Schedule { name, period, vdc } => {
            let v: Value = c
                .post(
                    "/v1/report-schedules",
                    &json!({"name": name, "period": period, "vdc_id": vdc}),
                )
                .await?;
            out.value(&v, SCHEDULE);
        }
        ReportCmd::Schedules => {
            let v: Value = c.get("/v1/report-schedules", &[]).await?;
            out.value(&v, SCHEDULE);
        }
        ReportCmd::Unschedule { id } => {
            c.delete(&format!("/v1/report-schedules/{id}")).await?;
            out.done("Deleted.");
        }
        ReportCmd::List => {
            let v: Value = c.get("/v1/reports", &[]).await?;
            out.value(&v, REPORT);
        }
        ReportCmd::Show { id, csv } => {
            let path = format!("/v1/reports/{id}");
            if csv {
                print!(
                    "{}",
                    c.get_text(&path, &[("format", "csv".to_string())]).await?
                );
            } else {
                let v: Value = c.get(&path, &[]).await?;
                show_report(out, &v);
            }
        }
    }
    Ok(())
}

fn opt(q: &mut Vec<(&'static str, String)>, k: &'static str, v: Option<String>) {
    if let Some(v) = v {
        q.push((k, v));
    }
}

pub(crate) async fn usage(c: &Client, out: &Out, cmd: UsageCmd) -> anyhow::Result<()> {
    match cmd {
        UsageCmd::List {
            scope,
            meter,
            from,
            to,
            after,
            limit,
            csv,
        } => {
            let mut q = scope.query();
            opt(&mut q, "meter", meter);
            opt(&mut q, "from", from);
            opt(&mut q, "to", to);
            opt(&mut q, "after", after.map(|a| a.to_string()));
            q.push(("limit", limit.to_string()));
            if csv {
                q.push(("format", "csv".into()));
                print!("{}", c.get_text("/v1/usage", &q).await?);
            } else {
                let v: Value = c.get("/v1/usage", &q).await?;
                out.value(&v, RECORD);
            }
        }
        UsageCmd::Status => {
            let v: Value = c.get("/v1/usage/status", &[]).await?;
            out.value(&v, &["field", "value"]);
        }
        UsageCmd::Meters => {
            let v: Value = c.get("/v1/meters", &[]).await?;
            out.value(
                &v,
                &["name", "unit", "resource_type", "spec", "description"],
            );
        }
    }
    Ok(())
}

pub(crate) async fn price(c: &Client, out: &Out, cmd: PriceCmd) -> anyhow::Result<()> {
    match cmd {
        PriceCmd::List { meter, at } => {
            let mut q = Vec::new();
            opt(&mut q, "meter", meter);
            opt(&mut q, "at", at);
            let v: Value = c.get("/v1/prices", &q).await?;
            out.value(&v, PRICE);
        }
        PriceCmd::Create {
            meter,
            unit_price,
            spec,
            billing,
            unit,
            from,
            to,
            description,
        } => {
            let b = json!({"meter": meter, "unit_price": unit_price, "spec": spec,
                "billing": billing, "unit": unit, "effective_from": from, "effective_to": to,
                "description": description});
            let v: Value = c.post("/v1/prices", &b).await?;
            out.value(&v, PRICE);
        }
        PriceCmd::End { id, at } => {
            let v: Value = c
                .patch(&format!("/v1/prices/{id}"), &json!({"effective_to": at}))
                .await?;
            out.value(&v, PRICE);
        }
        PriceCmd::Delete { id } => {
            c.delete(&format!("/v1/prices/{id}")).await?;
            out.done("Deleted.");
        }
        PriceCmd::Estimate {
            flavor,
            count,
            volumes,
            elastic_ips,
            object_storage_gib,
            hours,
        } => {
            let mut vols = Vec::new();
            for v in &volumes {
                let (t, g) = v
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("--volume {v}: want TYPE:GIB, e.g. high:100"))?;
                let g: i64 = g
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--volume {v}: {g:?} is not a whole GiB"))?;
                vols.push(json!({"volume_type": t, "size_gib": g}));
            }
            let b = json!({"flavor": flavor, "count": count, "volumes": vols,
                "elastic_ips": elastic_ips, "object_storage_gib": object_storage_gib,
                "hours": hours});
            let v: Value = c.post("/v1/prices/estimate", &b).await?;
            if out.is_table() {
                out.value(&v["lines"], ESTIMATE);
                println!(
                    "\nPay-as-you-go: {} CNY per hour, {} CNY for {} hours",
                    v["hourly"].as_str().unwrap_or(""),
                    v["total"].as_str().unwrap_or(""),
                    v["hours"]
                );
                if let Some(m) = v["monthly_subscription"].as_str() {
                    println!("Monthly subscription: {m} CNY per month");
                }
                if let Some(u) = v["unpriced"].as_array().filter(|u| !u.is_empty()) {
                    let names: Vec<&str> = u.iter().filter_map(Value::as_str).collect();
                    println!("No price (free now): {}", names.join(", "));
                }
            } else {
                out.value(&v, &[]);
            }
        }
    }
    Ok(())
}

pub(crate) async fn bill(c: &Client, out: &Out, cmd: BillCmd) -> anyhow::Result<()> {
    let BillCmd::Show {
        scope,
        month,
        from,
        to,
        export,
    } = cmd;
    let mut q = scope.query();
    opt(&mut q, "month", month);
    opt(&mut q, "from", from);
    opt(&mut q, "to", to);
    if let Some(f) = export {
        q.push(("format", f));
        print!("{}", c.get_text("/v1/bills", &q).await?);
        return Ok(());
    }
    let v: Value = c.get("/v1/bills", &q).await?;
    if out.is_table() {
        println!(
            "Bill for {} {} ({}), {} to {}: {} CNY{}",
            v["scope"].as_str().unwrap_or(""),
            v["scope_name"].as_str().unwrap_or(""),
            v["scope_id"].as_str().unwrap_or("-"),
            v["period_start"].as_str().unwrap_or(""),
            v["period_end"].as_str().unwrap_or(""),
            v["total"].as_str().unwrap_or(""),
            if v["final"] == true {
                ""
            } else {
                " (so far; hours still open)"
            }
        );
        for (title, key) in [("VDCs", "vdcs"), ("Projects", "projects")] {
            if v[key].as_array().is_some_and(|a| !a.is_empty()) {
                println!("\n{title}:");
                out.value(&v[key], &["name", "id", "total"]);
            }
        }
        println!("\nLine items:");
        out.value(&v["lines"], LINE);
    } else {
        out.value(&v, &[]);
    }
    Ok(())
}

pub(crate) async fn budget(c: &Client, out: &Out, cmd: BudgetCmd) -> anyhow::Result<()> {
    match cmd {
        BudgetCmd::Show { vdc } => {
            let v: Value = c.get(&format!("/v1/vdcs/{vdc}/budget"), &[]).await?;
            out.value(&v, BUDGET);
        }
        BudgetCmd::Set { vdc, monthly_limit } => {
            let v: Value = c
                .put(
                    &format!("/v1/vdcs/{vdc}/budget"),
                    &json!({"monthly_limit": monthly_limit}),
                )
                .await?;
            out.value(&v, BUDGET);
        }
        BudgetCmd::Delete { vdc } => {
            c.delete(&format!("/v1/vdcs/{vdc}/budget")).await?;
            out.done("Deleted.");
        }
        BudgetCmd::Events { vdc } => {
            let mut q = Vec::new();
            opt(&mut q, "vdc_id", vdc.map(|v| v.to_string()));
            let v: Value = c.get("/v1/billing-events", &q).await?;
            out.value(&v, EVENT);
        }
    }
    Ok(())
}

pub(crate) async fn subscription(
    c: &Client,
    out: &Out,
    cmd: SubscriptionCmd,
) -> anyhow::Result<()> {
    let v: Value = match cmd {
        SubscriptionCmd::Create { resource, months } => {
            c.post(
                "/v1/subscriptions",
                &json!({"resource_id": resource, "months": months}),
            )
            .await?
        }
        SubscriptionCmd::List {
            project,
            resource,
            active,
        } => {
            let mut q = Vec::new();
            opt(&mut q, "project_id", project.map(|v| v.to_string()));
            opt(&mut q, "resource_id", resource.map(|v| v.to_string()));
            opt(&mut q, "active", active.then(|| "true".to_string()));
            c.get("/v1/subscriptions", &q).await?
        }
        SubscriptionCmd::Show { id } => c.get(&format!("/v1/subscriptions/{id}"), &[]).await?,
        SubscriptionCmd::Renew { id, months } => {
            c.post(
                &format!("/v1/subscriptions/{id}/renew"),
                &json!({"months": months}),
            )
            .await?
        }
        SubscriptionCmd::Cancel { id } => c.delete_json(&format!("/v1/subscriptions/{id}")).await?,
    };
    out.value(&v, SUBSCRIPTION);
    Ok(())
}
