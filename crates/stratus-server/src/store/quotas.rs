//! Quota accounting. Every VDC and project has one row per resource; `used` at a VDC is the
//! sum of everything below it. Charging happens inside the caller's transaction with one
//! conditional UPDATE per level, so concurrent creates can never pass a limit together.

use std::collections::HashMap;

use sqlx::{Any, Transaction};
use stratus_api::{
    ConsistencyReport, QuotaLevel, QuotaLine, QuotaMismatch, QuotaResource, ScopeType,
};
use uuid::Uuid;

use super::Store;
use crate::error::{Error, Result};

/// A change of usage: positive when a resource is created or grows, negative when it goes.
#[derive(Debug, Clone, Copy)]
pub struct QuotaDelta {
    pub resource: QuotaResource,
    pub amount: i64,
}

type Tx = Transaction<'static, Any>;

impl Store {
    pub(crate) async fn quota_rows_create(
        tx: &mut Tx,
        scope_type: ScopeType,
        id: Uuid,
    ) -> Result<()> {
        for r in QuotaResource::ALL {
            sqlx::query("INSERT INTO quotas (scope_id, scope_type, resource, limit_value, used) VALUES ($1, $2, $3, -1, 0)")
                .bind(id.to_string())
                .bind(scope_type.as_str())
                .bind(r.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn quota_adjust(
        tx: &mut Tx,
        scope: &str,
        resource: &str,
        delta: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE quotas SET used = used + $1 WHERE scope_id = $2 AND resource = $3")
            .bind(delta)
            .bind(scope)
            .bind(resource)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Add `delta` to one level's usage only if it stays within that level's limit.
    pub(crate) async fn quota_adjust_checked(
        tx: &mut Tx,
        scope: &str,
        resource: &str,
        delta: i64,
    ) -> Result<()> {
        if delta <= 0 {
            return Self::quota_adjust(tx, scope, resource, delta).await;
        }
        let done = sqlx::query(
            "UPDATE quotas SET used = used + $1
             WHERE scope_id = $2 AND resource = $3 AND (limit_value < 0 OR used + $1 <= limit_value)",
        )
        .bind(delta)
        .bind(scope)
        .bind(resource)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            let row: Option<(String, i64, i64)> =
                sqlx::query_as("SELECT scope_type, limit_value, used FROM quotas WHERE scope_id = $1 AND resource = $2")
                    .bind(scope)
                    .bind(resource)
                    .fetch_optional(&mut **tx)
                    .await?;
            return Err(match row {
                Some((st, limit, used)) => Error::QuotaExceeded(format!(
                    "{resource}: quota of {st} {scope} exceeded (limit {limit}, used {used}, requested {delta})"
                )),
                None => Error::internal(format!("no quota row for {scope}/{resource}")),
            });
        }
        Ok(())
    }

    /// Charge (or refund) usage at every level of `chain` (the owner first, then each
    /// ancestor VDC) inside the caller's transaction. Fails with `QuotaExceeded` naming the
    /// level whose limit would be passed; the caller's rollback then undoes every level.
    pub async fn quota_charge(tx: &mut Tx, chain: &[Uuid], deltas: &[QuotaDelta]) -> Result<()> {
        for d in deltas.iter().filter(|d| d.amount != 0) {
            for scope in chain {
                Self::quota_adjust_checked(tx, &scope.to_string(), d.resource.as_str(), d.amount)
                    .await?;
            }
        }
        Ok(())
    }

    /// Limits and usage of each level (`levels` owner first, then ancestors).
    pub async fn quota_view(
        &self,
        levels: &[(ScopeType, Uuid, String)],
    ) -> Result<Vec<QuotaLevel>> {
        let mut out = Vec::with_capacity(levels.len());
        for (st, id, name) in levels {
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT resource, limit_value, used FROM quotas WHERE scope_id = $1",
            )
            .bind(id.to_string())
            .fetch_all(&self.db.read)
            .await?;
            let mut lines: Vec<QuotaLine> = rows
                .into_iter()
                .filter_map(|(r, limit, used)| {
                    QuotaResource::parse(&r).map(|resource| QuotaLine {
                        resource,
                        limit: (limit >= 0).then_some(limit),
                        used,
                        available: None,
                    })
                })
                .collect();
            lines.sort_by_key(|l| l.resource);
            out.push(QuotaLevel {
                scope_type: *st,
                scope_id: *id,
                name: name.clone(),
                lines,
            });
        }
        // Headroom at a level is the least headroom of it and everything above it.
        let mut above: HashMap<QuotaResource, i64> = HashMap::new();
        for level in out.iter_mut().rev() {
            for line in &mut level.lines {
                let own = line.limit.map(|l| (l - line.used).max(0));
                let inherited = above.get(&line.resource).copied();
                let avail = match (own, inherited) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                line.available = avail;
                if let Some(a) = avail {
                    above.insert(line.resource, a);
                }
            }
        }
        Ok(out)
    }

    /// Set limits at one level. `ancestors` are the VDCs above it, nearest first. A limit may
    /// not go below the level's usage, above any ancestor's limit, or below any limit set
    /// further down the tree.
    pub async fn quota_update(
        &self,
        scope_type: ScopeType,
        scope: Uuid,
        ancestors: &[Uuid],
        limits: &[(QuotaResource, Option<i64>)],
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let sid = scope.to_string();
        for (resource, limit) in limits {
            let field = format!("limits.{}", resource.as_str());
            let value = limit.unwrap_or(-1);
            if let Some(v) = limit {
                if *v < 0 {
                    return Err(Error::invalid(
                        &field,
                        "must be zero or more (null for unlimited)",
                    ));
                }
                if *v > 1_000_000_000_000 {
                    return Err(Error::invalid(&field, "is too large"));
                }
                let (used,): (i64,) =
                    sqlx::query_as("SELECT used FROM quotas WHERE scope_id = $1 AND resource = $2")
                        .bind(&sid)
                        .bind(resource.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                if *v < used {
                    return Err(Error::invalid(
                        &field,
                        &format!("{v} is below current usage {used}"),
                    ));
                }
                for anc in ancestors {
                    let (al,): (i64,) = sqlx::query_as(
                        "SELECT limit_value FROM quotas WHERE scope_id = $1 AND resource = $2",
                    )
                    .bind(anc.to_string())
                    .bind(resource.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    if al >= 0 && *v > al {
                        return Err(Error::invalid(
                            &field,
                            &format!("{v} is above the limit {al} of ancestor VDC {anc}"),
                        ));
                    }
                }
                if scope_type == ScopeType::Vdc {
                    // Any VDC or project further down with a higher limit? One indexed query.
                    let above: Option<(String, i64)> = sqlx::query_as(
                        "SELECT scope_id, limit_value FROM quotas
                         WHERE resource = $1 AND limit_value > $2 AND scope_id <> $3
                           AND (scope_id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = $3)
                                OR scope_id IN (SELECT id FROM projects WHERE vdc_id IN
                                                (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = $3)))
                         LIMIT 1",
                    )
                    .bind(resource.as_str())
                    .bind(*v)
                    .bind(&sid)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((b, bl)) = above {
                        return Err(Error::invalid(
                            &field,
                            &format!("{v} is below the limit {bl} already set on {b}, which is inside this one"),
                        ));
                    }
                }
            }
            sqlx::query("UPDATE quotas SET limit_value = $1 WHERE scope_id = $2 AND resource = $3")
                .bind(value)
                .bind(&sid)
                .bind(resource.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Recount usage from the real resources and compare with every stored counter.
    /// A project's usage is what its resources add up to; a VDC's is its projects' and child
    /// VDCs' usage plus, for `projects`, the projects directly in it.
    pub async fn quota_consistency_check(&self) -> Result<ConsistencyReport> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT scope_id, scope_type, resource, used FROM quotas")
                .fetch_all(&self.db.read)
                .await?;
        let mut recorded: HashMap<(String, String), i64> = HashMap::new();
        for (scope, _, res, used) in &rows {
            recorded.insert((scope.clone(), res.clone()), *used);
        }
        // Actual usage of projects, recounted from each resource kind's records.
        let mut actual: HashMap<(String, String), i64> = HashMap::new();
        let projects: Vec<(String, String)> = sqlx::query_as("SELECT id, vdc_id FROM projects")
            .fetch_all(&self.db.read)
            .await?;
        let vdc_links: Vec<(String, String)> =
            sqlx::query_as("SELECT ancestor_id, descendant_id FROM vdc_closure")
                .fetch_all(&self.db.read)
                .await?;
        let mut ancestors_of: HashMap<String, Vec<String>> = HashMap::new();
        for (a, d) in vdc_links {
            ancestors_of.entry(d).or_default().push(a);
        }
        let mut counted: HashMap<(String, String), i64> = HashMap::new();
        for (pid, n, vcpus, mem) in self.instance_usage().await? {
            counted.insert((pid.clone(), QuotaResource::Instances.as_str().into()), n);
            counted.insert((pid.clone(), QuotaResource::Vcpus.as_str().into()), vcpus);
            counted.insert((pid, QuotaResource::MemoryGib.as_str().into()), mem);
        }
        let (volumes, snapshots) = self.volume_usage().await?;
        for (pid, n, gib) in volumes {
            counted.insert((pid.clone(), QuotaResource::Volumes.as_str().into()), n);
            counted.insert((pid, QuotaResource::StorageGib.as_str().into()), gib);
        }
        for (pid, n) in snapshots {
            counted.insert((pid, QuotaResource::Snapshots.as_str().into()), n);
        }
        for (pid, res, n) in self.network_usage().await? {
            counted.insert((pid, res.as_str().into()), n);
        }
        for (pid, n) in self.image_usage().await? {
            counted.insert((pid, QuotaResource::Images.as_str().into()), n);
        }
        for (pid, objects, bytes, buckets) in self.object_usage().await? {
            counted.insert(
                (pid.clone(), QuotaResource::Objects.as_str().into()),
                objects,
            );
            counted.insert(
                (
                    pid.clone(),
                    QuotaResource::ObjectStorageBytes.as_str().into(),
                ),
                bytes,
            );
            counted.insert((pid, QuotaResource::Buckets.as_str().into()), buckets);
        }
        for (pid, vdc) in &projects {
            for r in QuotaResource::ALL {
                let key = (pid.clone(), r.as_str().to_string());
                let n = counted.get(&key).copied().unwrap_or(0);
                actual.insert(key, n);
            }
            // Every ancestor VDC (the project's VDC included) counts this project and its usage.
            for anc in ancestors_of.get(vdc).map(Vec::as_slice).unwrap_or(&[]) {
                *actual
                    .entry((anc.clone(), QuotaResource::Projects.as_str().to_string()))
                    .or_default() += 1;
                for r in QuotaResource::ALL
                    .iter()
                    .filter(|r| **r != QuotaResource::Projects)
                {
                    let add = actual
                        .get(&(pid.clone(), r.as_str().to_string()))
                        .copied()
                        .unwrap_or(0);
                    *actual
                        .entry((anc.clone(), r.as_str().to_string()))
                        .or_default() += add;
                }
            }
        }
        let mut mismatches = Vec::new();
        for ((scope, res), used) in &recorded {
            let want = actual
                .get(&(scope.clone(), res.clone()))
                .copied()
                .unwrap_or(0);
            if want != *used {
                if let (Ok(scope_id), Some(resource)) =
                    (Uuid::parse_str(scope), QuotaResource::parse(res))
                {
                    mismatches.push(QuotaMismatch {
                        scope_id,
                        resource,
                        recorded: *used,
                        actual: want,
                    });
                }
            }
        }
        mismatches.sort_by_key(|m| (m.scope_id, m.resource));
        Ok(ConsistencyReport {
            counters_checked: recorded.len() as i64,
            mismatches,
        })
    }
}
