//! Bucket lifecycle rules (spec 5.2.2.2 (5)) and the worker that applies them: expire
//! current objects after N days or on a date, expire noncurrent versions N days after they
//! were replaced, remove expired delete markers, abort multipart uploads left unfinished.
//!
//! The worker takes "now" as an argument, so tests drive it with a clock of their own.

use chrono::{DateTime, Duration, Utc};
use s3s::dto::{
    AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration,
};
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::storage::FsBlobStore;
use crate::app::AppRef;
use crate::store::BucketRow;

/// One rule, as stored (JSON) with the bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    pub prefix: String,
    /// All of these tags must be on the object (`key=value` pairs).
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    pub expiration_days: Option<i32>,
    pub expiration_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expired_object_delete_marker: bool,
    pub noncurrent_days: Option<i32>,
    pub abort_multipart_days: Option<i32>,
}

fn to_chrono(t: &s3s::dto::Timestamp) -> DateTime<Utc> {
    let odt = time::OffsetDateTime::from(t.clone());
    DateTime::from_timestamp(odt.unix_timestamp(), odt.nanosecond()).unwrap_or_default()
}

/// Validate S3's lifecycle configuration into rules; at most 1000, as S3 allows.
pub fn rules_from_dto(rules: &[LifecycleRule]) -> S3Result<Vec<Rule>> {
    if rules.is_empty() || rules.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "a lifecycle configuration has 1 to 1000 rules"
        ));
    }
    let mut out = Vec::with_capacity(rules.len());
    for (n, r) in rules.iter().enumerate() {
        let mut rule = Rule {
            id: r.id.clone().unwrap_or_else(|| format!("rule-{}", n + 1)),
            enabled: r.status.as_str() == ExpirationStatus::ENABLED,
            prefix: r.prefix.clone().unwrap_or_default(),
            ..Default::default()
        };
        if let Some(f) = &r.filter {
            if let Some(p) = &f.prefix {
                rule.prefix = p.clone();
            }
            if let Some(t) = &f.tag {
                rule.tags.push((
                    t.key.clone().unwrap_or_default(),
                    t.value.clone().unwrap_or_default(),
                ));
            }
            if let Some(and) = &f.and {
                if let Some(p) = &and.prefix {
                    rule.prefix = p.clone();
                }
                for t in and.tags.iter().flatten() {
                    rule.tags.push((
                        t.key.clone().unwrap_or_default(),
                        t.value.clone().unwrap_or_default(),
                    ));
                }
            }
        }
        if let Some(e) = &r.expiration {
            rule.expiration_days = e.days;
            rule.expiration_date = e.date.as_ref().map(to_chrono);
            rule.expired_object_delete_marker = e.expired_object_delete_marker.unwrap_or(false);
            if e.days.is_some_and(|d| d <= 0) {
                return Err(s3_error!(
                    InvalidArgument,
                    "Expiration Days must be a positive integer"
                ));
            }
        }
        rule.noncurrent_days = r
            .noncurrent_version_expiration
            .as_ref()
            .and_then(|n| n.noncurrent_days);
        rule.abort_multipart_days = r
            .abort_incomplete_multipart_upload
            .as_ref()
            .and_then(|a| a.days_after_initiation);
        if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
            || r.noncurrent_version_transitions
                .as_ref()
                .is_some_and(|t| !t.is_empty())
        {
            return Err(s3_error!(
                NotImplemented,
                "storage class transitions: there is one storage class"
            ));
        }
        if rule.expiration_days.is_none()
            && rule.expiration_date.is_none()
            && !rule.expired_object_delete_marker
            && rule.noncurrent_days.is_none()
            && rule.abort_multipart_days.is_none()
        {
            return Err(s3_error!(InvalidRequest, "rule {} has no action", rule.id));
        }
        out.push(rule);
    }
    Ok(out)
}

impl Rule {
    pub fn to_dto(&self) -> LifecycleRule {
        LifecycleRule {
            id: Some(self.id.clone()),
            status: ExpirationStatus::from_static(if self.enabled {
                ExpirationStatus::ENABLED
            } else {
                ExpirationStatus::DISABLED
            }),
            filter: Some(LifecycleRuleFilter {
                prefix: Some(self.prefix.clone()),
                ..Default::default()
            }),
            expiration: (self.expiration_days.is_some()
                || self.expiration_date.is_some()
                || self.expired_object_delete_marker)
                .then(|| LifecycleExpiration {
                    days: self.expiration_days,
                    date: self
                        .expiration_date
                        .map(|d| s3s::dto::Timestamp::from(std::time::SystemTime::from(d))),
                    expired_object_delete_marker: self.expired_object_delete_marker.then_some(true),
                }),
            noncurrent_version_expiration: self.noncurrent_days.map(|d| {
                NoncurrentVersionExpiration {
                    noncurrent_days: Some(d),
                    newer_noncurrent_versions: None,
                }
            }),
            abort_incomplete_multipart_upload: self.abort_multipart_days.map(|d| {
                AbortIncompleteMultipartUpload {
                    days_after_initiation: Some(d),
                }
            }),
            prefix: None,
            noncurrent_version_transitions: None,
            transitions: None,
        }
    }

    fn matches(&self, key: &str, tags: &str) -> bool {
        if !key.starts_with(&self.prefix) {
            return false;
        }
        let have: Vec<(String, String)> = url::form_urlencoded::parse(tags.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        self.tags.iter().all(|t| have.contains(t))
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub expired: u64,
    pub noncurrent_removed: u64,
    pub markers_removed: u64,
    pub uploads_aborted: u64,
}

/// Apply every bucket's rules as of `now`.
pub async fn run_once(
    app: &AppRef,
    blobs: &FsBlobStore,
    now: DateTime<Utc>,
) -> crate::error::Result<Applied> {
    let mut total = Applied::default();
    for b in app.store.bucket_list().await? {
        let Some(text) = &b.lifecycle else {
            continue;
        };
        let Ok(rules) = serde_json::from_str::<Vec<Rule>>(text) else {
            continue;
        };
        let mut chain = vec![b.project_id];
        chain.extend(app.store.vdc_chain(b.vdc_id).await?);
        for r in rules.iter().filter(|r| r.enabled) {
            apply_rule(app, &b, &chain, r, now, &mut total).await?;
        }
    }
    super::service::collect_garbage(app, blobs).await;
    Ok(total)
}

async fn apply_rule(
    app: &AppRef,
    b: &BucketRow,
    chain: &[Uuid],
    r: &Rule,
    now: DateTime<Utc>,
    total: &mut Applied,
) -> crate::error::Result<()> {
    // Walk every version under the prefix, key by key, newest first.
    let mut after = String::new();
    loop {
        let rows = app
            .store
            .object_versions(b.id, &r.prefix, &after, 1000)
            .await?;
        if rows.is_empty() {
            break;
        }
        let last_key = rows.last().map(|o| o.key.clone()).unwrap_or_default();
        let complete = rows.len() < 1000;
        let mut i = 0;
        while i < rows.len() {
            let key = rows[i].key.clone();
            if !complete && key == last_key && i > 0 {
                // The last key may continue on the next page: take it whole next time.
                break;
            }
            let versions: Vec<_> = rows[i..]
                .iter()
                .take_while(|o| o.key == key)
                .cloned()
                .collect();
            i += versions.len();
            let current = &versions[0];
            // Current version: expiration by age or date (a delete marker for versioned
            // buckets, removal otherwise).
            if current.is_latest && !current.delete_marker && r.matches(&key, &current.tags) {
                let age_ok = r.expiration_days.is_some_and(|d| {
                    parse_time(&current.last_modified)
                        .is_some_and(|t| t + Duration::days(d as i64) <= now)
                });
                let date_ok = r.expiration_date.is_some_and(|d| d <= now);
                if age_ok || date_ok {
                    app.store.object_delete(b, chain, &key, None).await?;
                    total.expired += 1;
                    continue;
                }
            }
            // Noncurrent versions: N days after the version that replaced them.
            if let Some(days) = r.noncurrent_days {
                for w in versions.windows(2) {
                    let (newer, older) = (&w[0], &w[1]);
                    if older.delete_marker || !r.matches(&key, &older.tags) {
                        continue;
                    }
                    if parse_time(&newer.last_modified)
                        .is_some_and(|t| t + Duration::days(days as i64) <= now)
                    {
                        app.store
                            .object_delete(b, chain, &key, Some(&older.version_id))
                            .await?;
                        total.noncurrent_removed += 1;
                    }
                }
            }
            // A delete marker with nothing behind it any more.
            if r.expired_object_delete_marker && versions.len() == 1 && current.delete_marker {
                app.store
                    .object_delete(b, chain, &key, Some(&current.version_id))
                    .await?;
                total.markers_removed += 1;
            }
        }
        if complete {
            break;
        }
        // Resume at the first key not handled (object_versions starts at >= after); a key
        // with more versions than a page was handled in part and is passed over.
        after = if i >= rows.len() {
            format!("{last_key}\u{0}")
        } else {
            last_key
        };
    }
    if let Some(days) = r.abort_multipart_days {
        for u in app.store.upload_list(b.id, &r.prefix, 10_000).await? {
            if parse_time(&u.initiated_at).is_some_and(|t| t + Duration::days(days as i64) <= now) {
                app.store.upload_abort(&u.id).await?;
                total.uploads_aborted += 1;
            }
        }
    }
    Ok(())
}

/// Run the rules every `interval` until `stop`.
pub fn spawn_worker(
    app: AppRef,
    blobs: std::sync::Arc<FsBlobStore>,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match run_once(&app, &blobs, Utc::now()).await {
                Ok(a) if a != Applied::default() => tracing::info!(?a, "lifecycle rules applied"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "lifecycle pass failed"),
            }
        }
    });
}
