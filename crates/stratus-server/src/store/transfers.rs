//! Moving a resource to another project: its row and its quota, in one transaction.

use uuid::Uuid;

use super::{QuotaDelta, Store};
use crate::error::{Error, Result};

/// What a move needs: the resource's table and the condition it must still meet (checked in
/// the same statement that moves it, so nothing can attach to it in between).
pub struct Move<'a> {
    pub table: &'static str,
    pub guard: &'static str,
    pub id: Uuid,
    /// The old and new owner chains: the project first, then its VDC and the VDCs above.
    pub from: &'a [Uuid],
    pub to: &'a [Uuid],
    pub to_vdc: Uuid,
    /// The quota the resource holds.
    pub quota: Vec<QuotaDelta>,
}

impl Store {
    pub async fn resource_move(&self, m: Move<'_>) -> Result<()> {
        let (Some(from), Some(to)) = (m.from.first(), m.to.first()) else {
            return Err(Error::internal("a move without owners"));
        };
        let mut tx = self.db.write.begin().await?;
        let done = sqlx::query(&format!(
            "UPDATE {table} SET project_id = $1, vdc_id = $2 WHERE id = $3 AND project_id = $4 AND ({guard})",
            table = m.table,
            guard = m.guard
        ))
        .bind(to.to_string())
        .bind(m.to_vdc.to_string())
        .bind(m.id.to_string())
        .bind(from.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::conflict(format!(
                "{} changed while being transferred; look at it and try again",
                m.id
            )));
        }
        let back: Vec<QuotaDelta> = m
            .quota
            .iter()
            .map(|d| QuotaDelta {
                resource: d.resource,
                amount: -d.amount,
            })
            .collect();
        Store::quota_charge(&mut tx, m.from, &back).await?;
        Store::quota_charge(&mut tx, m.to, &m.quota).await?;
        // Usage from now on is the new owner's.
        let kind = match m.table {
            "instances" => "instance",
            "volumes" => "volume",
            "elastic_ips" => "elastic_ip",
            "buckets" => "bucket",
            other => other,
        };
        super::instances::metering_event(
            &mut tx,
            kind,
            m.id,
            *to,
            m.to_vdc,
            "transferred",
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
