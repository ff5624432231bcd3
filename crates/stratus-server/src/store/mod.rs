//! SQL, and nothing else: methods named `<resource>_<verb>`. Authorization happens in the
//! app layer; the store enforces what the data itself requires (uniqueness, quotas, trees)
//! inside transactions.

mod access_keys;
pub mod alerts;
mod audit;
mod catalog;
mod flavors;
mod grants;
mod hosts;
mod images;
mod instances;
pub mod metering;
mod networks;
mod objects;
mod orgs;
mod projects;
mod quotas;
mod recycle;
pub mod reports;
mod settings;
mod stacks;
pub mod subscriptions;
mod tokens;
mod transfers;
mod users;
mod vdcs;
mod volumes;

pub use access_keys::AccessKeyRow;
pub use audit::AuditRecord;
pub use catalog::{RequestRow, RequestScope};
pub use flavors::{NewFlavor, BUILTIN_FLAVORS};
pub use hosts::Footprint;
pub use images::{ImageRow, NewImage};
pub(crate) use instances::resource_visible;
pub use instances::{
    desired, FlavorSnapshot, InstanceQuery, InstanceRow, NewInstance, Observed, Transition,
};
pub use networks::{NewExternalNetwork, NewPort, NewSubnet, NewVpc, SubnetRow, VpcRow};
pub use objects::{
    new_version_id, BucketRow, BucketSetting, Deleted, NewObject, ObjectRow, ObjectSetting,
    PartRow, UploadRow,
};
pub use quotas::QuotaDelta;
pub use stacks::StackRow;
pub use tokens::SessionRow;
pub use transfers::Move;
pub use users::{NewUser, UserRow};
pub(crate) use vdcs::vdc_visible;
pub use volumes::{
    desired_volume, volume_serial, HostAttachments, NewVolume, Placement, SnapshotRow, VolumeQuery,
    VolumeRow, BUILTIN_VOLUME_TYPES, MAX_ATTACHMENTS, MAX_INSTANCE_VOLUMES, MAX_SNAPSHOTS,
};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Arguments, Row};
use uuid::Uuid;

use crate::db::Db;
use crate::error::Error;

#[derive(Clone)]
pub struct Store {
    pub db: Db,
}

impl Store {
    pub fn new(db: Db) -> Store {
        Store { db }
    }

    /// Rename and/or re-describe a row of `table`; a field left `None` keeps its value.
    /// Returns whether the row exists.
    pub(crate) async fn name_description_update(
        &self,
        table: &str,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(&format!(
            "UPDATE {table} SET name = COALESCE($1, name), description = COALESCE($2, description), \
             updated_at = $3 WHERE id = $4"
        ))
        .bind(name)
        .bind(description)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Times are stored as fixed-width UTC text (microseconds), which sorts correctly as text.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn now_text() -> String {
    time_text(Utc::now())
}

pub(crate) fn col_str(row: &AnyRow, col: &str) -> Result<String, Error> {
    row.try_get::<String, _>(col).map_err(Error::from)
}

pub(crate) fn col_opt_str(row: &AnyRow, col: &str) -> Result<Option<String>, Error> {
    row.try_get::<Option<String>, _>(col).map_err(Error::from)
}

pub(crate) fn col_i64(row: &AnyRow, col: &str) -> Result<i64, Error> {
    row.try_get::<i64, _>(col).map_err(Error::from)
}

pub(crate) fn col_opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>, Error> {
    row.try_get::<Option<i64>, _>(col).map_err(Error::from)
}

pub(crate) fn col_bool(row: &AnyRow, col: &str) -> Result<bool, Error> {
    Ok(col_i64(row, col)? != 0)
}

pub(crate) fn col_uuid(row: &AnyRow, col: &str) -> Result<Uuid, Error> {
    let s = col_str(row, col)?;
    Uuid::parse_str(&s).map_err(|e| Error::internal(format!("column {col}: bad uuid {s:?}: {e}")))
}

pub(crate) fn col_opt_uuid(row: &AnyRow, col: &str) -> Result<Option<Uuid>, Error> {
    match col_opt_str(row, col)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => Uuid::parse_str(&s)
            .map(Some)
            .map_err(|e| Error::internal(format!("column {col}: bad uuid {s:?}: {e}"))),
    }
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::internal(format!("bad stored time {s:?}: {e}")))
}

pub(crate) fn col_time(row: &AnyRow, col: &str) -> Result<DateTime<Utc>, Error> {
    parse_time(&col_str(row, col)?)
}

pub(crate) fn col_opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, Error> {
    col_opt_str(row, col)?.map(|s| parse_time(&s)).transpose()
}

/// A value bound into a dynamically built query.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Int(i64),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(s.to_string())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(s)
    }
}
impl From<Uuid> for Arg {
    fn from(u: Uuid) -> Arg {
        Arg::Text(u.to_string())
    }
}
impl From<i64> for Arg {
    fn from(i: i64) -> Arg {
        Arg::Int(i)
    }
}

/// A WHERE clause built from fragments written with `?`, renumbered to `$N` at the end.
#[derive(Debug, Default, Clone)]
pub struct Conds {
    parts: Vec<String>,
    args: Vec<Arg>,
}

impl Conds {
    pub fn new() -> Conds {
        Conds::default()
    }

    /// Add `fragment` (with one `?` per arg) ANDed with the rest.
    pub fn and(
        &mut self,
        fragment: impl Into<String>,
        args: impl IntoIterator<Item = Arg>,
    ) -> &mut Self {
        self.parts.push(fragment.into());
        self.args.extend(args);
        self
    }

    /// `col IN (?, ?, …)`; an empty list matches nothing.
    pub fn in_list(col: &str, n: usize) -> String {
        if n == 0 {
            "1 = 0".to_string()
        } else {
            format!("{col} IN ({})", vec!["?"; n].join(", "))
        }
    }

    /// Render `sql_head WHERE … sql_tail`, numbering the placeholders; returns SQL and args.
    pub fn render(
        &self,
        head: &str,
        tail: &str,
        tail_args: Vec<Arg>,
    ) -> (String, AnyArguments<'static>) {
        let mut sql = String::from(head);
        if !self.parts.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(
                &self
                    .parts
                    .iter()
                    .map(|p| format!("({p})"))
                    .collect::<Vec<_>>()
                    .join(" AND "),
            );
        }
        sql.push(' ');
        sql.push_str(tail);
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for ch in sql.chars() {
            if ch == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(ch);
            }
        }
        let mut args = AnyArguments::default();
        for a in self.args.iter().cloned().chain(tail_args) {
            // Adding a String or i64 to AnyArguments cannot fail.
            let _ = match a {
                Arg::Text(s) => args.add(s),
                Arg::Int(i) => args.add(i),
            };
        }
        (out, args)
    }
}

/// Sorting and paging of a list, validated from the request's `sort`, `limit` and `next`.
#[derive(Debug, Clone)]
pub struct Paging {
    pub column: &'static str,
    pub descending: bool,
    pub limit: i64,
    /// (sort value, id) of the last row of the previous page.
    pub after: Option<(String, String)>,
}

impl Paging {
    /// `sortable` lists the columns a client may sort by; the first is the default.
    pub fn parse(
        sort: Option<&str>,
        limit: Option<u32>,
        next: Option<&str>,
        sortable: &[&'static str],
    ) -> Result<Paging, Error> {
        let limit = match limit {
            None => 100,
            Some(n @ 1..=1000) => n as i64,
            Some(_) => return Err(Error::invalid("limit", "must be between 1 and 1000")),
        };
        let (descending, name) = match sort {
            None => (false, sortable[0]),
            Some(s) => match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s),
            },
        };
        let column = sortable
            .iter()
            .copied()
            .find(|c| *c == name)
            .ok_or_else(|| {
                Error::invalid(
                    "sort",
                    &format!(
                        "must be one of {} (prefix - to reverse)",
                        sortable.join(", ")
                    ),
                )
            })?;
        let after = match next {
            None => None,
            Some(cursor) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(cursor)
                    .map_err(|_| Error::invalid("next", "is not a cursor this server issued"))?;
                let pair: (String, String, String) = serde_json::from_slice(&raw)
                    .map_err(|_| Error::invalid("next", "is not a cursor this server issued"))?;
                if pair.0 != column {
                    return Err(Error::invalid("next", "was issued for another sort order"));
                }
                Some((pair.1, pair.2))
            }
        };
        Ok(Paging {
            column,
            descending,
            limit,
            after,
        })
    }

    /// Add the cursor condition and return the ORDER BY … LIMIT tail with its argument.
    pub fn apply(&self, conds: &mut Conds, id_col: &str) -> (String, Vec<Arg>) {
        self.apply_to(conds, "", id_col)
    }

    /// [`Paging::apply`] for a query whose columns need a table prefix (`i.`).
    pub fn apply_to(&self, conds: &mut Conds, prefix: &str, id_col: &str) -> (String, Vec<Arg>) {
        let op = if self.descending { "<" } else { ">" };
        let col = format!("{prefix}{}", self.column);
        if let Some((v, id)) = &self.after {
            conds.and(
                format!("({col}, {id_col}) {op} (?, ?)"),
                [Arg::from(v.as_str()), Arg::from(id.as_str())],
            );
        }
        let dir = if self.descending { "DESC" } else { "ASC" };
        // One extra row tells whether another page exists.
        (
            format!("ORDER BY {col} {dir}, {id_col} {dir} LIMIT ?"),
            vec![Arg::Int(self.limit + 1)],
        )
    }

    pub fn page<T: Sortable>(&self, items: Vec<T>) -> (Vec<T>, Option<String>) {
        self.finish(items, |t| (t.sort_value(self.column), t.id_text()))
    }

    /// Trim the extra row and build the `next` cursor from the last row kept.
    pub fn finish<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> (String, String),
    ) -> (Vec<T>, Option<String>) {
        if items.len() as i64 <= self.limit {
            return (items, None);
        }
        items.truncate(self.limit as usize);
        let next = items.last().map(|last| {
            let (v, id) = key(last);
            let raw = serde_json::to_vec(&(self.column, v, id)).unwrap_or_default();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        });
        (items, next)
    }
}

/// `name LIKE ?` matching a literal substring (wildcards in the text are escaped).
pub const NAME_LIKE: &str = "name LIKE ? ESCAPE '\\'";

pub fn like_contains(text: &str) -> Arg {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Arg::Text(format!("%{escaped}%"))
}

/// Objects that lists sort by `name` or `created_at`, then `id`.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    r: &AnyRow,
    col: &str,
) -> crate::error::Result<T> {
    serde_json::from_str(&col_str(r, col)?)
        .map_err(|e| Error::internal(format!("column {col} holds bad JSON: {e}")))
}

pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub trait Sortable {
    fn sort_value(&self, column: &str) -> String;
    fn id_text(&self) -> String;
}

macro_rules! sortable {
    ($($t:ty),*) => {$(
        impl Sortable for $t {
            fn sort_value(&self, column: &str) -> String {
                match column {
                    "name" => self.name.clone(),
                    _ => time_text(self.created_at),
                }
            }
            fn id_text(&self) -> String {
                self.id.to_string()
            }
        }
    )*};
}
sortable!(
    stratus_api::Organization,
    stratus_api::Vdc,
    stratus_api::Project,
    stratus_api::User,
    stratus_api::Instance,
    stratus_api::Image,
    stratus_api::Volume,
    stratus_api::Snapshot,
    stratus_api::Backup,
    stratus_api::BackupPolicy,
    stratus_api::Vpc,
    stratus_api::Stack,
    stratus_api::Subnet,
    stratus_api::Port,
    stratus_api::SecurityGroup,
    stratus_api::NetworkAcl
);

/// True when the error is a unique-constraint violation (on either backend).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation))
        .unwrap_or(false)
}

pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| matches!(d.kind(), sqlx::error::ErrorKind::ForeignKeyViolation))
        .unwrap_or(false)
}
