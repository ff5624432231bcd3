//! Monthly subscriptions (包年包月): the rows, their monthly fee records, and how the
//! meter ends or moves them with their resource.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::instances::Tx;
use super::{col_i64, col_opt_uuid, col_str, col_time, col_uuid, time_text, Arg, Conds, Store};
use crate::error::{Error, Result};

/// The meter a subscription's fee is recorded under, one record per covered month.
pub const FEE_METER: &str = "subscription_months";

/// One meter a subscription covers, as stored (quantities and money in millionths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubLine {
    pub meter: String,
    pub spec: String,
    pub per_hour: i64,
    pub price_id: Uuid,
    pub monthly_unit: i64,
}

#[derive(Debug, Clone)]
pub struct SubRow {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub resource_type: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub org_id: Uuid,
    pub months: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub lines: Vec<SubLine>,
    pub monthly_fee: i64,
    pub status: String,
    pub request_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl SubRow {
    /// The line covering `meter`/`spec`, if any.
    pub fn line(&self, meter: &str, spec: &str) -> Option<&SubLine> {
        self.lines
            .iter()
            .find(|l| l.meter == meter && l.spec == spec)
    }

    pub fn covers(&self, hour: DateTime<Utc>) -> bool {
        self.starts_at <= hour && hour < self.ends_at
    }
}

const SUB_COLS: &str = "id, resource_id, resource_type, project_id, vdc_id, org_id, months, \
    starts_at, ends_at, lines, monthly_fee, status, request_id, created_by, created_at";

fn sub_from_row(r: &AnyRow) -> Result<SubRow> {
    let lines: Vec<SubLine> = serde_json::from_str(&col_str(r, "lines")?)
        .map_err(|e| Error::internal(format!("subscription lines: {e}")))?;
    Ok(SubRow {
        id: col_uuid(r, "id")?,
        resource_id: col_uuid(r, "resource_id")?,
        resource_type: col_str(r, "resource_type")?,
        project_id: col_uuid(r, "project_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        org_id: col_uuid(r, "org_id")?,
        months: col_i64(r, "months")?,
        starts_at: col_time(r, "starts_at")?,
        ends_at: col_time(r, "ends_at")?,
        lines,
        monthly_fee: col_i64(r, "monthly_fee")?,
        status: col_str(r, "status")?,
        request_id: col_opt_uuid(r, "request_id")?,
        created_by: col_str(r, "created_by")?,
        created_at: col_time(r, "created_at")?,
    })
}

/// The months `[from + i, from + i + 1)` for `i` in `0..months`.
pub fn fee_months(from: DateTime<Utc>, months: i64) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let at = |i: i64| {
        from.checked_add_months(Months::new(i as u32))
            .ok_or_else(|| Error::invalid("months", "runs past the calendar"))
    };
    (0..months).map(|i| Ok((at(i)?, at(i + 1)?))).collect()
}

impl Store {
    /// Record a new subscription and its monthly fees, unless the resource already has one
    /// covering any of its hours.
    pub async fn subscription_insert(&self, s: &SubRow, zone: &str, region: &str) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let clash: Option<String> = sqlx::query_scalar(
            "SELECT ends_at FROM subscriptions WHERE resource_id = $1 AND ends_at > $2 \
             AND starts_at < $3 LIMIT 1",
        )
        .bind(s.resource_id.to_string())
        .bind(time_text(s.starts_at))
        .bind(time_text(s.ends_at))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(until) = clash {
            return Err(Error::conflict(format!(
                "the resource is already subscribed until {until}: renew that subscription instead"
            )));
        }
        sqlx::query(&format!(
            "INSERT INTO subscriptions ({SUB_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(s.id.to_string())
        .bind(s.resource_id.to_string())
        .bind(&s.resource_type)
        .bind(s.project_id.to_string())
        .bind(s.vdc_id.to_string())
        .bind(s.org_id.to_string())
        .bind(s.months)
        .bind(time_text(s.starts_at))
        .bind(time_text(s.ends_at))
        .bind(serde_json::to_string(&s.lines).map_err(|e| Error::internal(e.to_string()))?)
        .bind(s.monthly_fee)
        .bind(&s.status)
        .bind(s.request_id.map(|r| r.to_string()))
        .bind(&s.created_by)
        .bind(time_text(s.created_at))
        .execute(&mut *tx)
        .await?;
        Store::subscription_fees_tx(&mut tx, s, s.starts_at, s.months, zone, region).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One rated fee record per month from `from`, in the month it covers.
    async fn subscription_fees_tx(
        tx: &mut Tx,
        s: &SubRow,
        from: DateTime<Utc>,
        months: i64,
        zone: &str,
        region: &str,
    ) -> Result<()> {
        for (start, end) in fee_months(from, months)? {
            sqlx::query(
                "INSERT INTO usage_records (period_start, period_end, org_id, vdc_id, project_id, \
                 vpc_id, region, zone, resource_type, resource_id, meter, spec, unit, quantity, gap, \
                 rated, price_id, unit_price, amount, subscription_id) \
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $9, $10, $11, 'month', $12, 0, 1, NULL, \
                 $13, $13, $11)",
            )
            .bind(time_text(start))
            .bind(time_text(end))
            .bind(s.org_id.to_string())
            .bind(s.vdc_id.to_string())
            .bind(s.project_id.to_string())
            .bind(region)
            .bind(zone)
            .bind(&s.resource_type)
            .bind(s.resource_id.to_string())
            .bind(FEE_METER)
            .bind(s.id.to_string())
            .bind(stratus_api::MICRO)
            .bind(s.monthly_fee)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub async fn subscription_get(&self, id: Uuid) -> Result<Option<SubRow>> {
        let row = sqlx::query(&format!(
            "SELECT {SUB_COLS} FROM subscriptions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(sub_from_row).transpose()
    }

    pub async fn subscription_list(&self, c: &mut Conds) -> Result<Vec<SubRow>> {
        let (sql, args) = c.render(
            &format!("SELECT {SUB_COLS} FROM subscriptions"),
            " ORDER BY created_at DESC, id LIMIT 5000",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(sub_from_row).collect()
    }

    /// Subscriptions covering any hour of `[from, to)`.
    pub async fn subscriptions_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SubRow>> {
        let mut c = Conds::new();
        c.and(
            "starts_at < ? AND ends_at > ?",
            [Arg::from(time_text(to)), Arg::from(time_text(from))],
        );
        self.subscription_list(&mut c).await
    }

    pub(crate) async fn subscriptions_covering_tx(
        tx: &mut Tx,
        hour: DateTime<Utc>,
    ) -> Result<Vec<SubRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUB_COLS} FROM subscriptions WHERE starts_at <= $1 AND ends_at > $1"
        ))
        .bind(time_text(hour))
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(sub_from_row).collect()
    }

    /// Add `months` after the current end of an active subscription, with their fees.
    pub async fn subscription_renew(
        &self,
        id: Uuid,
        months: i64,
        now: DateTime<Utc>,
        region: &str,
    ) -> Result<SubRow> {
        let mut tx = self.db.write.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {SUB_COLS} FROM subscriptions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut s) = row.as_ref().map(sub_from_row).transpose()? else {
            return Err(Error::not_found("subscription", id));
        };
        if s.status != "active" || s.ends_at <= now {
            return Err(Error::conflict(
                "only a subscription still running can be renewed; subscribe again instead",
            ));
        }
        if s.months + months > 120 {
            return Err(Error::invalid(
                "months",
                "a subscription runs at most 120 months",
            ));
        }
        let zone: Option<String> = sqlx::query_scalar(
            "SELECT zone FROM usage_records WHERE subscription_id = $1 AND meter = $2 LIMIT 1",
        )
        .bind(id.to_string())
        .bind(FEE_METER)
        .fetch_optional(&mut *tx)
        .await?;
        let from = s.ends_at;
        let ends = fee_months(from, months)?
            .last()
            .map(|m| m.1)
            .unwrap_or(from);
        Store::subscription_fees_tx(&mut tx, &s, from, months, &zone.unwrap_or_default(), region)
            .await?;
        sqlx::query("UPDATE subscriptions SET ends_at = $1, months = months + $2 WHERE id = $3")
            .bind(time_text(ends))
            .bind(months)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        s.ends_at = ends;
        s.months += months;
        Ok(s)
    }

    /// End a subscription early with the hour it is in: fees of months not begun are
    /// removed, the month begun stays charged.
    pub async fn subscription_cancel(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let n =
            Store::subscriptions_end_tx(&mut tx, "id", &id.to_string(), at, "cancelled").await?;
        if n == 0 {
            return Err(Error::conflict("the subscription has already ended"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// End the subscriptions (by `id` or `resource_id`) still running at `at`.
    pub(crate) async fn subscriptions_end_tx(
        tx: &mut Tx,
        key: &str,
        value: &str,
        at: DateTime<Utc>,
        status: &str,
    ) -> Result<u64> {
        let end = super::metering::hour_floor(at) + chrono::Duration::hours(1);
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM subscriptions WHERE {key} = $1 AND ends_at > $2"
        ))
        .bind(value)
        .bind(time_text(at))
        .fetch_all(&mut **tx)
        .await?;
        for id in &ids {
            // Months starting after the end were not begun: their fee goes.
            sqlx::query(
                "DELETE FROM usage_records WHERE subscription_id = $1 AND meter = $2 \
                 AND period_start >= $3",
            )
            .bind(id)
            .bind(FEE_METER)
            .bind(time_text(end))
            .execute(&mut **tx)
            .await?;
            // A subscription that had not started yet ends where it would have begun.
            sqlx::query(
                "UPDATE subscriptions SET status = $1, \
                 ends_at = CASE WHEN starts_at > $2 THEN starts_at ELSE $2 END WHERE id = $3",
            )
            .bind(status)
            .bind(time_text(end))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(ids.len() as u64)
    }

    /// A transferred resource takes its running subscriptions and their fees not yet
    /// begun to its new owner.
    pub(crate) async fn subscriptions_move_tx(
        tx: &mut Tx,
        resource: &str,
        at: DateTime<Utc>,
        owner: (&str, &str, &str),
    ) -> Result<()> {
        let (project, vdc, org) = owner;
        sqlx::query(
            "UPDATE subscriptions SET project_id = $1, vdc_id = $2, org_id = $3 \
             WHERE resource_id = $4 AND ends_at > $5",
        )
        .bind(project)
        .bind(vdc)
        .bind(org)
        .bind(resource)
        .bind(time_text(at))
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE usage_records SET project_id = $1, vdc_id = $2, org_id = $3 \
             WHERE resource_id = $4 AND meter = $5 AND period_start > $6",
        )
        .bind(project)
        .bind(vdc)
        .bind(org)
        .bind(resource)
        .bind(FEE_METER)
        .bind(time_text(at))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
