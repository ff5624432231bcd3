//! S3 bucket policies and ACLs: parse, validate and evaluate them the way AWS S3 does.
//!
//! Pure (no I/O). The S3 endpoint builds a [`RequestContext`] per request, asks
//! [`evaluate`] about the bucket policy and falls back to ownership and [`Acl`] rules
//! when the answer is [`Decision::NotApplicable`]. An explicit [`Decision::Deny`]
//! always wins.
//!
//! Principals are Stratus identities: a user name, an access key id, or
//! `arn:aws:iam::<project-id>:root` for "any user of that project"
//! (`arn:aws:iam::<project-id>:user/<name>` narrows it to one user of the project).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// AWS limits a bucket policy document to 20 KiB.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

const ARN_S3_PREFIX: &str = "arn:aws:s3:::";
const ARN_IAM_PREFIX: &str = "arn:aws:iam::";
const GROUP_ALL_USERS: &str = "acs.amazonaws.com/groups/global/AllUsers";
const GROUP_AUTHENTICATED_USERS: &str = "acs.amazonaws.com/groups/global/AuthenticatedUsers";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid JSON: {0}")]
    Json(String),
    /// `field` is a path into the document, e.g. `Statement[1].Effect`.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A malformed `x-amz-acl` / `x-amz-grant-*` header.
    #[error("{0}")]
    InvalidAcl(String),
    #[error("{0} is not supported")]
    NotSupported(String),
}

impl PolicyError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PolicyError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The AWS S3 error code to answer with.
    pub fn s3_code(&self) -> &'static str {
        match self {
            PolicyError::Json(_) | PolicyError::Invalid { .. } => "MalformedPolicy",
            PolicyError::InvalidAcl(_) => "InvalidArgument",
            PolicyError::NotSupported(_) => "NotImplemented",
        }
    }
}

// ---------------------------------------------------------------------------
// Policy model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// "2012-10-17" or "2008-10-17" (the AWS default when `Version` is absent).
    pub version: String,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

impl Policy {
    /// Policy variables (`${aws:username}`) are only substituted in 2012-10-17 policies.
    fn variables(&self) -> bool {
        self.version == "2012-10-17"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `Principal` (`negated == false`) or `NotPrincipal`; `"*"` is everyone.
    pub principal: Element,
    /// `Action` or `NotAction`, as written (matched case-insensitively).
    pub action: Element,
    /// `Resource` or `NotResource`, as written.
    pub resource: Element,
    /// All must hold (AND).
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A `Principal`/`Action`/`Resource` element or its `Not…` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub negated: bool,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: Operator,
    pub qualifier: Option<SetQualifier>,
    /// `…IfExists`: true when the key is absent.
    pub if_exists: bool,
    pub key: String,
    /// Any may match (OR).
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Null,
}

impl Operator {
    const ALL: [Operator; 26] = [
        Operator::StringEquals,
        Operator::StringNotEquals,
        Operator::StringEqualsIgnoreCase,
        Operator::StringNotEqualsIgnoreCase,
        Operator::StringLike,
        Operator::StringNotLike,
        Operator::NumericEquals,
        Operator::NumericNotEquals,
        Operator::NumericLessThan,
        Operator::NumericLessThanEquals,
        Operator::NumericGreaterThan,
        Operator::NumericGreaterThanEquals,
        Operator::DateEquals,
        Operator::DateNotEquals,
        Operator::DateLessThan,
        Operator::DateLessThanEquals,
        Operator::DateGreaterThan,
        Operator::DateGreaterThanEquals,
        Operator::Bool,
        Operator::IpAddress,
        Operator::NotIpAddress,
        Operator::ArnEquals,
        Operator::ArnNotEquals,
        Operator::ArnLike,
        Operator::ArnNotLike,
        Operator::Null,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::StringEquals => "StringEquals",
            Operator::StringNotEquals => "StringNotEquals",
            Operator::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Operator::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Operator::StringLike => "StringLike",
            Operator::StringNotLike => "StringNotLike",
            Operator::NumericEquals => "NumericEquals",
            Operator::NumericNotEquals => "NumericNotEquals",
            Operator::NumericLessThan => "NumericLessThan",
            Operator::NumericLessThanEquals => "NumericLessThanEquals",
            Operator::NumericGreaterThan => "NumericGreaterThan",
            Operator::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            Operator::DateEquals => "DateEquals",
            Operator::DateNotEquals => "DateNotEquals",
            Operator::DateLessThan => "DateLessThan",
            Operator::DateLessThanEquals => "DateLessThanEquals",
            Operator::DateGreaterThan => "DateGreaterThan",
            Operator::DateGreaterThanEquals => "DateGreaterThanEquals",
            Operator::Bool => "Bool",
            Operator::IpAddress => "IpAddress",
            Operator::NotIpAddress => "NotIpAddress",
            Operator::ArnEquals => "ArnEquals",
            Operator::ArnNotEquals => "ArnNotEquals",
            Operator::ArnLike => "ArnLike",
            Operator::ArnNotLike => "ArnNotLike",
            Operator::Null => "Null",
        }
    }

    /// Negated operators are true when the key is absent (AWS rule).
    fn is_negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NumericNotEquals
                | Operator::DateNotEquals
                | Operator::NotIpAddress
                | Operator::ArnNotEquals
                | Operator::ArnNotLike
        )
    }
}

/// `ForAnyValue:`/`ForAllValues:` prefix, base operator, `IfExists` suffix.
fn parse_operator(name: &str) -> Option<(Option<SetQualifier>, Operator, bool)> {
    let (qualifier, rest) = if let Some(r) = strip_prefix_ci(name, "ForAnyValue:") {
        (Some(SetQualifier::ForAnyValue), r)
    } else if let Some(r) = strip_prefix_ci(name, "ForAllValues:") {
        (Some(SetQualifier::ForAllValues), r)
    } else {
        (None, name)
    };
    let find = |n: &str| {
        Operator::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(n))
    };
    if let Some(op) = find(rest) {
        return Some((qualifier, op, false));
    }
    let split = rest.len().checked_sub("IfExists".len())?;
    let (base, suffix) = (rest.get(..split)?, rest.get(split..)?);
    if !suffix.eq_ignore_ascii_case("IfExists") {
        return None;
    }
    match find(base) {
        Some(Operator::Null) | None => None,
        Some(op) => Some((qualifier, op, true)),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Request context
// ---------------------------------------------------------------------------

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    pub user_name: String,
    pub access_key: Option<String>,
    /// Projects the user belongs to.
    pub project_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `None` = anonymous.
    pub principal: Option<Principal>,
    /// e.g. "s3:GetObject", see [`action_for_operation`].
    pub action: String,
    /// e.g. "arn:aws:s3:::bucket/key", see [`bucket_arn`] and [`object_arn`].
    pub resource: String,
    pub source_ip: Option<IpAddr>,
    pub secure_transport: bool,
    pub now: DateTime<Utc>,
    /// Other condition keys (`s3:prefix`, `s3:x-amz-acl`, `aws:Referer`,
    /// `s3:ExistingObjectTag/<key>`…). Absent keys are simply not present.
    pub values: HashMap<String, Vec<String>>,
}

impl RequestContext {
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        RequestContext {
            principal: None,
            action: action.into(),
            resource: resource.into(),
            source_ip: None,
            secure_transport: false,
            now: Utc::now(),
            values: HashMap::new(),
        }
    }

    /// Values of a condition key: built-in keys first, then [`Self::values`].
    /// Key names are case-insensitive except what follows the first `/`
    /// (`s3:ExistingObjectTag/<key>`).
    pub fn condition_values(&self, key: &str) -> Option<Vec<String>> {
        let builtin = match key.to_ascii_lowercase().as_str() {
            "aws:sourceip" => self.source_ip.map(|ip| vec![ip.to_string()]),
            "aws:securetransport" => Some(vec![self.secure_transport.to_string()]),
            "aws:currenttime" => Some(vec![self.now.to_rfc3339_opts(SecondsFormat::Secs, true)]),
            "aws:epochtime" => Some(vec![self.now.timestamp().to_string()]),
            "aws:username" => self.principal.as_ref().map(|p| vec![p.user_name.clone()]),
            "aws:principaltype" => Some(vec![if self.principal.is_some() {
                "User".to_string()
            } else {
                "Anonymous".to_string()
            }]),
            _ => None,
        };
        if builtin.is_some() {
            return builtin;
        }
        if let Some(v) = self.values.get(key) {
            return Some(v.clone());
        }
        let mut keys: Vec<&String> = self.values.keys().filter(|k| key_eq(k, key)).collect();
        keys.sort();
        keys.first().and_then(|k| self.values.get(*k)).cloned()
    }
}

fn key_eq(a: &str, b: &str) -> bool {
    let (ah, at) = a.split_once('/').unwrap_or((a, ""));
    let (bh, bt) = b.split_once('/').unwrap_or((b, ""));
    ah.eq_ignore_ascii_case(bh) && at == bt && a.contains('/') == b.contains('/')
}

/// `arn:aws:s3:::bucket`
pub fn bucket_arn(bucket: &str) -> String {
    format!("{ARN_S3_PREFIX}{bucket}")
}

/// `arn:aws:s3:::bucket/key`
pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("{ARN_S3_PREFIX}{bucket}/{key}")
}

// ---------------------------------------------------------------------------
// Parsing and validation
// ---------------------------------------------------------------------------

/// Parse and validate a bucket policy for `bucket`. Every error names the field.
pub fn parse_policy(json: &str, bucket: &str) -> Result<Policy, PolicyError> {
    if json.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::invalid(
            "Policy",
            format!("must be at most {MAX_POLICY_BYTES} bytes"),
        ));
    }
    let doc: Value = serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
    let Value::Object(top) = doc else {
        return Err(PolicyError::invalid("Policy", "must be a JSON object"));
    };
    check_fields(&top, "", &["Version", "Id", "Statement"])?;
    let version = match top.get("Version") {
        None => "2008-10-17".to_string(),
        Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => v.clone(),
        Some(_) => {
            return Err(PolicyError::invalid(
                "Version",
                "must be \"2012-10-17\" or \"2008-10-17\"",
            ))
        }
    };
    let id = optional_string(&top, "Id", "Id")?;
    let statements: Vec<&Value> = match top.get("Statement") {
        None => return Err(PolicyError::invalid("Statement", "is required")),
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(PolicyError::invalid("Statement", "must not be empty"))
        }
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => {
            return Err(PolicyError::invalid(
                "Statement",
                "must be an object or a list of objects",
            ))
        }
    };
    let mut sids = HashSet::new();
    let mut parsed = Vec::with_capacity(statements.len());
    for (i, st) in statements.into_iter().enumerate() {
        let field = format!("Statement[{i}]");
        let st = parse_statement(st, &field, bucket)?;
        if let Some(sid) = &st.sid {
            if !sids.insert(sid.clone()) {
                return Err(PolicyError::invalid(
                    format!("{field}.Sid"),
                    format!("duplicate Sid \"{sid}\"; statement ids must be unique"),
                ));
            }
        }
        parsed.push(st);
    }
    Ok(Policy {
        version,
        id,
        statements: parsed,
    })
}

fn check_fields(
    obj: &Map<String, Value>,
    prefix: &str,
    allowed: &[&str],
) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(PolicyError::invalid(
            format!("{prefix}{k}"),
            "unknown field",
        )),
        None => Ok(()),
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, PolicyError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(PolicyError::invalid(field, "must be a string")),
    }
}

fn parse_statement(v: &Value, field: &str, bucket: &str) -> Result<Statement, PolicyError> {
    let Value::Object(obj) = v else {
        return Err(PolicyError::invalid(field, "must be an object"));
    };
    check_fields(
        obj,
        &format!("{field}."),
        &[
            "Sid",
            "Effect",
            "Principal",
            "NotPrincipal",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
        ],
    )?;
    let sid = optional_string(obj, "Sid", &format!("{field}.Sid"))?;
    let effect = match obj.get("Effect") {
        None => {
            return Err(PolicyError::invalid(
                format!("{field}.Effect"),
                "is required",
            ))
        }
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(_) => {
            return Err(PolicyError::invalid(
                format!("{field}.Effect"),
                "must be Allow or Deny",
            ))
        }
    };

    let (negated, name, value) = pick(obj, field, "Principal", "NotPrincipal")?;
    let principal = Element {
        negated,
        values: parse_principal(value, &format!("{field}.{name}"))?,
    };

    let (negated, name, value) = pick(obj, field, "Action", "NotAction")?;
    let mut actions = Vec::new();
    for (f, a) in string_list(value, &format!("{field}.{name}"))? {
        validate_action(&a, &f)?;
        actions.push(a);
    }
    let action = Element {
        negated,
        values: actions,
    };

    let (negated, name, value) = pick(obj, field, "Resource", "NotResource")?;
    let mut resources = Vec::new();
    for (f, r) in string_list(value, &format!("{field}.{name}"))? {
        validate_resource(&r, &f, bucket)?;
        resources.push(r);
    }
    let resource = Element {
        negated,
        values: resources,
    };

    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c, &format!("{field}.Condition"))?,
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

/// Exactly one of `X` / `NotX`.
fn pick<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    name: &'static str,
    not_name: &'static str,
) -> Result<(bool, &'static str, &'a Value), PolicyError> {
    match (obj.get(name), obj.get(not_name)) {
        (Some(v), None) => Ok((false, name, v)),
        (None, Some(v)) => Ok((true, not_name, v)),
        (Some(_), Some(_)) => Err(PolicyError::invalid(
            field,
            format!("must not have both {name} and {not_name}"),
        )),
        (None, None) => Err(PolicyError::invalid(
            format!("{field}.{name}"),
            format!("is required (or {not_name})"),
        )),
    }
}

/// A string or a non-empty list of strings, each with its field path.
fn string_list(v: &Value, field: &str) -> Result<Vec<(String, String)>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![(field.to_string(), s.clone())]),
        Value::Array(list) if list.is_empty() => {
            Err(PolicyError::invalid(field, "must not be empty"))
        }
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok((format!("{field}[{i}]"), s.clone())),
                _ => Err(PolicyError::invalid(
                    format!("{field}[{i}]"),
                    "must be a string",
                )),
            })
            .collect(),
        _ => Err(PolicyError::invalid(
            field,
            "must be a string or a list of strings",
        )),
    }
}

fn parse_principal(v: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(vec!["*".to_string()]),
        Value::Object(obj) if !obj.is_empty() => {
            let mut out = Vec::new();
            for (kind, ids) in obj {
                let f = format!("{field}.{kind}");
                if kind != "AWS" {
                    return Err(PolicyError::invalid(
                        f,
                        "is not supported; use \"*\" or {\"AWS\": ...}",
                    ));
                }
                for (f, id) in string_list(ids, &f)? {
                    if id.trim().is_empty() || id.chars().any(char::is_control) || id.trim() != id {
                        return Err(PolicyError::invalid(f, "invalid principal"));
                    }
                    if id.starts_with(ARN_IAM_PREFIX) && parse_iam_arn(&id).is_none() {
                        return Err(PolicyError::invalid(
                            f,
                            format!(
                                "invalid principal \"{id}\"; expected arn:aws:iam::<project-id>:root \
                                 or arn:aws:iam::<project-id>:user/<name>"
                            ),
                        ));
                    }
                    out.push(id);
                }
            }
            Ok(out)
        }
        _ => Err(PolicyError::invalid(
            field,
            "must be \"*\" or {\"AWS\": \"<id>\" | [\"<id>\", ...]}",
        )),
    }
}

enum IamArn<'a> {
    ProjectRoot(&'a str),
    ProjectUser(&'a str, &'a str),
}

fn parse_iam_arn(id: &str) -> Option<IamArn<'_>> {
    let rest = id.strip_prefix(ARN_IAM_PREFIX)?;
    let (project, what) = rest.split_once(':')?;
    if project.is_empty() {
        return None;
    }
    if what == "root" {
        return Some(IamArn::ProjectRoot(project));
    }
    match what.strip_prefix("user/") {
        Some(user) if !user.is_empty() => Some(IamArn::ProjectUser(project, user)),
        _ => None,
    }
}

fn validate_action(a: &str, field: &str) -> Result<(), PolicyError> {
    if a == "*" {
        return Ok(());
    }
    let Some(name) = strip_prefix_ci(a, "s3:") else {
        return Err(PolicyError::invalid(
            field,
            format!("Policy has invalid action \"{a}\"; bucket policies only take s3: actions"),
        ));
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?' || c == '-')
    {
        return Err(PolicyError::invalid(
            field,
            format!("Policy has invalid action \"{a}\""),
        ));
    }
    let wildcard = name.contains(['*', '?']);
    if !wildcard && !KNOWN_ACTIONS.iter().any(|k| k.eq_ignore_ascii_case(a)) {
        return Err(PolicyError::invalid(
            field,
            format!("Policy has invalid action \"{a}\": unknown S3 action"),
        ));
    }
    Ok(())
}

fn validate_resource(r: &str, field: &str, bucket: &str) -> Result<(), PolicyError> {
    if r == "*" {
        return Ok(());
    }
    let in_bucket = r.strip_prefix(ARN_S3_PREFIX).is_some_and(|rest| {
        let bucket_part = rest.split_once('/').map_or(rest, |(b, _)| b);
        glob(&literal_tokens(bucket_part, true), bucket, false)
    });
    if in_bucket {
        Ok(())
    } else {
        Err(PolicyError::invalid(
            field,
            format!(
                "Policy has invalid resource \"{r}\": must be {ARN_S3_PREFIX}{bucket} or \
                 {ARN_S3_PREFIX}{bucket}/<key pattern>"
            ),
        ))
    }
}

fn parse_conditions(v: &Value, field: &str) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else {
        return Err(PolicyError::invalid(
            field,
            "must be an object {\"<operator>\": {\"<key>\": <values>}}",
        ));
    };
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let f = format!("{field}.{op_name}");
        let Some((qualifier, operator, if_exists)) = parse_operator(op_name) else {
            return Err(PolicyError::invalid(
                f,
                format!("unknown condition operator \"{op_name}\""),
            ));
        };
        let Value::Object(keys) = keys else {
            return Err(PolicyError::invalid(
                f,
                "must be an object {\"<key>\": <values>}",
            ));
        };
        if keys.is_empty() {
            return Err(PolicyError::invalid(f, "must not be empty"));
        }
        for (key, values) in keys {
            let kf = format!("{f}.{key}");
            if key.trim().is_empty() {
                return Err(PolicyError::invalid(kf, "condition key must not be empty"));
            }
            let values = condition_values(values, &kf)?;
            for (i, value) in values.iter().enumerate() {
                let vf = if values.len() == 1 {
                    kf.clone()
                } else {
                    format!("{kf}[{i}]")
                };
                validate_condition_value(operator, value, &vf)?;
            }
            out.push(Condition {
                operator,
                qualifier,
                if_exists,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

fn condition_values(v: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    let scalar = |v: &Value, f: &str| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(PolicyError::invalid(
            f,
            "must be a string, number or boolean",
        )),
    };
    match v {
        Value::Array(list) if list.is_empty() => {
            Err(PolicyError::invalid(field, "must not be empty"))
        }
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, item)| scalar(item, &format!("{field}[{i}]")))
            .collect(),
        other => Ok(vec![scalar(other, field)?]),
    }
}

fn validate_condition_value(op: Operator, value: &str, field: &str) -> Result<(), PolicyError> {
    use Operator::*;
    let ok = match op {
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => parse_number(value).is_some(),
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => parse_date(value).is_some(),
        Bool | Null => parse_bool(value).is_some(),
        IpAddress | NotIpAddress => Cidr::parse(value).is_some(),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let expected = match op {
        Bool | Null => "true or false",
        IpAddress | NotIpAddress => "an IPv4 or IPv6 address or CIDR block",
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => "an RFC 3339 date (2026-01-31T00:00:00Z) or epoch seconds",
        _ => "a number",
    };
    Err(PolicyError::invalid(
        field,
        format!(
            "invalid value \"{value}\" for {}: expected {expected}",
            op.as_str()
        ),
    ))
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(d.with_timezone(&Utc));
    }
    let secs: i64 = s.trim().parse().ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// An IPv4 or IPv6 network. IPv4 is kept apart from IPv6 (no cross-family matches,
/// except that IPv4-mapped IPv6 sources are treated as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|n| *n <= max)?
            }
            Some(_) => return None,
        };
        Some(Cidr { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, addr, width) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(a)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.prefix);
        (net ^ addr).checked_shr(shift).unwrap_or(0) == 0
    }
}

// ---------------------------------------------------------------------------
// Wildcards and policy variables
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Star,
    One,
}

fn literal_tokens(pattern: &str, wildcards: bool) -> Vec<Tok> {
    pattern
        .chars()
        .map(|c| match c {
            '*' if wildcards => Tok::Star,
            '?' if wildcards => Tok::One,
            c => Tok::Lit(c),
        })
        .collect()
}

/// Compile a pattern, substituting `${key}` policy variables from `cx` (when given).
/// Substituted text is literal. `None` when a variable is absent or multi-valued:
/// the pattern then matches nothing.
fn tokens(pattern: &str, wildcards: bool, cx: Option<&RequestContext>) -> Option<Vec<Tok>> {
    let Some(cx) = cx else {
        return Some(literal_tokens(pattern, wildcards));
    };
    let mut out = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("${") {
            if let Some(end) = rest.find('}') {
                let name = rest.get(2..end).unwrap_or("").trim();
                match name {
                    "*" => out.push(Tok::Lit('*')),
                    "?" => out.push(Tok::Lit('?')),
                    "$" => out.push(Tok::Lit('$')),
                    key => match cx.condition_values(key).as_deref() {
                        Some([one]) => out.extend(one.chars().map(Tok::Lit)),
                        _ => return None,
                    },
                }
                rest = rest.get(end + 1..).unwrap_or("");
                continue;
            }
        }
        out.push(match c {
            '*' if wildcards => Tok::Star,
            '?' if wildcards => Tok::One,
            c => Tok::Lit(c),
        });
        rest = rest.get(c.len_utf8()..).unwrap_or("");
    }
    Some(out)
}

/// `*` = any run of characters (including `/`), `?` = exactly one character.
fn glob(pattern: &[Tok], s: &str, ignore_case: bool) -> bool {
    let s: Vec<char> = s.chars().collect();
    let eq = |a: char, b: char| a == b || (ignore_case && a.to_lowercase().eq(b.to_lowercase()));
    let (mut pi, mut si) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while si < s.len() {
        match pattern.get(pi) {
            Some(Tok::Star) => {
                backtrack = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(Tok::One) => {
                pi += 1;
                si += 1;
                continue;
            }
            Some(Tok::Lit(c)) if eq(*c, s[si]) => {
                pi += 1;
                si += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((star, from)) => {
                pi = star + 1;
                si = from + 1;
                backtrack = Some((star, from + 1));
            }
            None => return false,
        }
    }
    pattern.iter().skip(pi).all(|t| *t == Tok::Star)
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// An explicit Deny statement matched.
    Deny,
    /// No statement matched: fall back to ownership and ACLs.
    NotApplicable,
}

/// Explicit Deny wins over Allow; no matching statement = NotApplicable.
pub fn evaluate(policy: &Policy, cx: &RequestContext) -> Decision {
    let mut decision = Decision::NotApplicable;
    for st in &policy.statements {
        if statement_matches(st, cx, policy.variables()) {
            match st.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => decision = Decision::Allow,
            }
        }
    }
    decision
}

fn statement_matches(st: &Statement, cx: &RequestContext, variables: bool) -> bool {
    let principal_hit = st
        .principal
        .values
        .iter()
        .any(|id| principal_matches(id, cx.principal.as_ref()));
    if principal_hit == st.principal.negated {
        return false;
    }
    let action_hit = st
        .action
        .values
        .iter()
        .any(|a| glob(&literal_tokens(a, true), &cx.action, true));
    if action_hit == st.action.negated {
        return false;
    }
    let vars = variables.then_some(cx);
    let resource_hit =
        st.resource.values.iter().any(|r| {
            r == "*" || tokens(r, true, vars).is_some_and(|t| glob(&t, &cx.resource, false))
        });
    if resource_hit == st.resource.negated {
        return false;
    }
    st.conditions.iter().all(|c| condition_holds(c, cx, vars))
}

fn principal_matches(id: &str, who: Option<&Principal>) -> bool {
    if id == "*" {
        return true;
    }
    let Some(p) = who else {
        return false;
    };
    let in_project = |project: &str| p.project_ids.iter().any(|x| x == project);
    if id.starts_with(ARN_IAM_PREFIX) {
        return match parse_iam_arn(id) {
            Some(IamArn::ProjectRoot(project)) => in_project(project),
            Some(IamArn::ProjectUser(project, user)) => p.user_name == user && in_project(project),
            None => false,
        };
    }
    p.user_name == id || p.access_key.as_deref() == Some(id)
}

fn condition_holds(c: &Condition, cx: &RequestContext, vars: Option<&RequestContext>) -> bool {
    let present = cx.condition_values(&c.key).filter(|v| !v.is_empty());
    if c.operator == Operator::Null {
        let want_absent = c.values.iter().any(|v| parse_bool(v) == Some(true));
        return present.is_none() == want_absent;
    }
    let negated = c.operator.is_negated();
    let Some(context) = present else {
        return c.if_exists
            || c.qualifier == Some(SetQualifier::ForAllValues)
            || (c.qualifier.is_none() && negated);
    };
    let pred = |cv: &String| {
        c.values
            .iter()
            .any(|pv| value_matches(c.operator, pv, cv, vars))
            != negated
    };
    match c.qualifier {
        None if negated => context.iter().all(pred),
        None | Some(SetQualifier::ForAnyValue) => context.iter().any(pred),
        Some(SetQualifier::ForAllValues) => context.iter().all(pred),
    }
}

/// The positive form of `op`: does context value `cv` match policy value `pv`?
fn value_matches(op: Operator, pv: &str, cv: &str, vars: Option<&RequestContext>) -> bool {
    use Operator::*;
    let string = |wildcards: bool, ignore_case: bool| {
        tokens(pv, wildcards, vars).is_some_and(|t| glob(&t, cv, ignore_case))
    };
    match op {
        StringEquals | StringNotEquals => string(false, false),
        StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => string(false, true),
        StringLike | StringNotLike | ArnEquals | ArnNotEquals | ArnLike | ArnNotLike => {
            string(true, false)
        }
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => {
            let (Some(c), Some(p)) = (parse_number(cv), parse_number(pv)) else {
                return false;
            };
            let Some(ord) = c.partial_cmp(&p) else {
                return false;
            };
            compare(op, ord)
        }
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => match (parse_date(cv), parse_date(pv)) {
            (Some(c), Some(p)) => compare(op, c.cmp(&p)),
            _ => false,
        },
        Bool => parse_bool(pv).is_some() && parse_bool(pv) == parse_bool(cv),
        IpAddress | NotIpAddress => match (Cidr::parse(pv), cv.trim().parse::<IpAddr>()) {
            (Some(net), Ok(ip)) => net.contains(ip),
            _ => false,
        },
        Null => false,
    }
}

/// `ord` is context value compared to policy value.
fn compare(op: Operator, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    use Operator::*;
    match op {
        NumericEquals | NumericNotEquals | DateEquals | DateNotEquals => ord == Equal,
        NumericLessThan | DateLessThan => ord == Less,
        NumericLessThanEquals | DateLessThanEquals => ord != Greater,
        NumericGreaterThan | DateGreaterThan => ord == Greater,
        NumericGreaterThanEquals | DateGreaterThanEquals => ord != Less,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Operations → actions
// ---------------------------------------------------------------------------

/// Every S3 action name a policy may mention (exact names are checked against it;
/// patterns with `*`/`?` are not).
pub const KNOWN_ACTIONS: &[&str] = &[
    "s3:AbortMultipartUpload",
    "s3:BypassGovernanceRetention",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketOwnershipControls",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucketWebsite",
    "s3:DeleteObject",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectVersionTagging",
    "s3:GetAccelerateConfiguration",
    "s3:GetAnalyticsConfiguration",
    "s3:GetBucketAcl",
    "s3:GetBucketCORS",
    "s3:GetBucketLocation",
    "s3:GetBucketLogging",
    "s3:GetBucketNotification",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketRequestPayment",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetBucketWebsite",
    "s3:GetEncryptionConfiguration",
    "s3:GetIntelligentTieringConfiguration",
    "s3:GetInventoryConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetMetricsConfiguration",
    "s3:GetObject",
    "s3:GetObjectAcl",
    "s3:GetObjectAttributes",
    "s3:GetObjectLegalHold",
    "s3:GetObjectRetention",
    "s3:GetObjectTagging",
    "s3:GetObjectTorrent",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionAttributes",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectVersionTorrent",
    "s3:GetReplicationConfiguration",
    "s3:ListAllMyBuckets",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListBucketVersions",
    "s3:ListMultipartUploadParts",
    "s3:ObjectOwnerOverrideToBucketOwner",
    "s3:PutAccelerateConfiguration",
    "s3:PutAnalyticsConfiguration",
    "s3:PutBucketAcl",
    "s3:PutBucketCORS",
    "s3:PutBucketLogging",
    "s3:PutBucketNotification",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketRequestPayment",
    "s3:PutBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutBucketWebsite",
    "s3:PutEncryptionConfiguration",
    "s3:PutIntelligentTieringConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutMetricsConfiguration",
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionAcl",
    "s3:PutObjectVersionTagging",
    "s3:PutReplicationConfiguration",
    "s3:ReplicateDelete",
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:RestoreObject",
];

/// S3 operations (as s3s names them) and the policy action each needs.
/// Operations absent here map to "s3:Unknown".
pub const S3_OPERATIONS: &[(&str, &str)] = &[
    ("AbortMultipartUpload", "s3:AbortMultipartUpload"),
    ("CompleteMultipartUpload", "s3:PutObject"),
    ("CopyObject", "s3:PutObject"),
    ("CreateBucket", "s3:CreateBucket"),
    ("CreateMultipartUpload", "s3:PutObject"),
    ("DeleteBucket", "s3:DeleteBucket"),
    (
        "DeleteBucketAnalyticsConfiguration",
        "s3:PutAnalyticsConfiguration",
    ),
    ("DeleteBucketCors", "s3:PutBucketCORS"),
    ("DeleteBucketEncryption", "s3:PutEncryptionConfiguration"),
    (
        "DeleteBucketIntelligentTieringConfiguration",
        "s3:PutIntelligentTieringConfiguration",
    ),
    (
        "DeleteBucketInventoryConfiguration",
        "s3:PutInventoryConfiguration",
    ),
    ("DeleteBucketLifecycle", "s3:PutLifecycleConfiguration"),
    (
        "DeleteBucketMetricsConfiguration",
        "s3:PutMetricsConfiguration",
    ),
    (
        "DeleteBucketOwnershipControls",
        "s3:PutBucketOwnershipControls",
    ),
    ("DeleteBucketPolicy", "s3:DeleteBucketPolicy"),
    ("DeleteBucketReplication", "s3:PutReplicationConfiguration"),
    ("DeleteBucketTagging", "s3:PutBucketTagging"),
    ("DeleteBucketWebsite", "s3:DeleteBucketWebsite"),
    ("DeleteObject", "s3:DeleteObject"),
    ("DeleteObjectTagging", "s3:DeleteObjectTagging"),
    ("DeleteObjects", "s3:DeleteObject"),
    ("DeletePublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    (
        "GetBucketAccelerateConfiguration",
        "s3:GetAccelerateConfiguration",
    ),
    ("GetBucketAcl", "s3:GetBucketAcl"),
    (
        "GetBucketAnalyticsConfiguration",
        "s3:GetAnalyticsConfiguration",
    ),
    ("GetBucketCors", "s3:GetBucketCORS"),
    ("GetBucketEncryption", "s3:GetEncryptionConfiguration"),
    (
        "GetBucketIntelligentTieringConfiguration",
        "s3:GetIntelligentTieringConfiguration",
    ),
    (
        "GetBucketInventoryConfiguration",
        "s3:GetInventoryConfiguration",
    ),
    ("GetBucketLifecycle", "s3:GetLifecycleConfiguration"),
    (
        "GetBucketLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
    ),
    ("GetBucketLocation", "s3:GetBucketLocation"),
    ("GetBucketLogging", "s3:GetBucketLogging"),
    (
        "GetBucketMetricsConfiguration",
        "s3:GetMetricsConfiguration",
    ),
    ("GetBucketNotification", "s3:GetBucketNotification"),
    (
        "GetBucketNotificationConfiguration",
        "s3:GetBucketNotification",
    ),
    (
        "GetBucketOwnershipControls",
        "s3:GetBucketOwnershipControls",
    ),
    ("GetBucketPolicy", "s3:GetBucketPolicy"),
    ("GetBucketPolicyStatus", "s3:GetBucketPolicyStatus"),
    ("GetBucketReplication", "s3:GetReplicationConfiguration"),
    ("GetBucketRequestPayment", "s3:GetBucketRequestPayment"),
    ("GetBucketTagging", "s3:GetBucketTagging"),
    ("GetBucketVersioning", "s3:GetBucketVersioning"),
    ("GetBucketWebsite", "s3:GetBucketWebsite"),
    ("GetObject", "s3:GetObject"),
    ("GetObjectAcl", "s3:GetObjectAcl"),
    ("GetObjectAttributes", "s3:GetObjectAttributes"),
    ("GetObjectLegalHold", "s3:GetObjectLegalHold"),
    (
        "GetObjectLockConfiguration",
        "s3:GetBucketObjectLockConfiguration",
    ),
    ("GetObjectRetention", "s3:GetObjectRetention"),
    ("GetObjectTagging", "s3:GetObjectTagging"),
    ("GetObjectTorrent", "s3:GetObjectTorrent"),
    ("GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
    ("HeadBucket", "s3:ListBucket"),
    ("HeadObject", "s3:GetObject"),
    (
        "ListBucketAnalyticsConfigurations",
        "s3:GetAnalyticsConfiguration",
    ),
    (
        "ListBucketIntelligentTieringConfigurations",
        "s3:GetIntelligentTieringConfiguration",
    ),
    (
        "ListBucketInventoryConfigurations",
        "s3:GetInventoryConfiguration",
    ),
    (
        "ListBucketMetricsConfigurations",
        "s3:GetMetricsConfiguration",
    ),
    ("ListBuckets", "s3:ListAllMyBuckets"),
    ("ListMultipartUploads", "s3:ListBucketMultipartUploads"),
    ("ListObjectVersions", "s3:ListBucketVersions"),
    ("ListObjects", "s3:ListBucket"),
    ("ListObjectsV2", "s3:ListBucket"),
    ("ListParts", "s3:ListMultipartUploadParts"),
    (
        "PutBucketAccelerateConfiguration",
        "s3:PutAccelerateConfiguration",
    ),
    ("PutBucketAcl", "s3:PutBucketAcl"),
    (
        "PutBucketAnalyticsConfiguration",
        "s3:PutAnalyticsConfiguration",
    ),
    ("PutBucketCors", "s3:PutBucketCORS"),
    ("PutBucketEncryption", "s3:PutEncryptionConfiguration"),
    (
        "PutBucketIntelligentTieringConfiguration",
        "s3:PutIntelligentTieringConfiguration",
    ),
    (
        "PutBucketInventoryConfiguration",
        "s3:PutInventoryConfiguration",
    ),
    ("PutBucketLifecycle", "s3:PutLifecycleConfiguration"),
    (
        "PutBucketLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
    ),
    ("PutBucketLogging", "s3:PutBucketLogging"),
    (
        "PutBucketMetricsConfiguration",
        "s3:PutMetricsConfiguration",
    ),
    ("PutBucketNotification", "s3:PutBucketNotification"),
    (
        "PutBucketNotificationConfiguration",
        "s3:PutBucketNotification",
    ),
    (
        "PutBucketOwnershipControls",
        "s3:PutBucketOwnershipControls",
    ),
    ("PutBucketPolicy", "s3:PutBucketPolicy"),
    ("PutBucketReplication", "s3:PutReplicationConfiguration"),
    ("PutBucketRequestPayment", "s3:PutBucketRequestPayment"),
    ("PutBucketTagging", "s3:PutBucketTagging"),
    ("PutBucketVersioning", "s3:PutBucketVersioning"),
    ("PutBucketWebsite", "s3:PutBucketWebsite"),
    ("PutObject", "s3:PutObject"),
    ("PutObjectAcl", "s3:PutObjectAcl"),
    ("PutObjectLegalHold", "s3:PutObjectLegalHold"),
    (
        "PutObjectLockConfiguration",
        "s3:PutBucketObjectLockConfiguration",
    ),
    ("PutObjectRetention", "s3:PutObjectRetention"),
    ("PutObjectTagging", "s3:PutObjectTagging"),
    ("PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    ("RestoreObject", "s3:RestoreObject"),
    ("SelectObjectContent", "s3:GetObject"),
    ("UploadPart", "s3:PutObject"),
    ("UploadPartCopy", "s3:PutObject"),
];

/// The policy action an S3 operation needs ("GetObject" → "s3:GetObject").
/// Unknown operations → "s3:Unknown" (which no policy can name, so only `*`-style
/// patterns such as `s3:*` match it).
pub fn action_for_operation(op: &str) -> &'static str {
    S3_OPERATIONS
        .iter()
        .find(|(name, _)| *name == op)
        .map_or("s3:Unknown", |(_, action)| action)
}

/// Like [`action_for_operation`], for requests that name a `versionId`
/// ("GetObject" → "s3:GetObjectVersion", "DeleteObject" → "s3:DeleteObjectVersion"…).
pub fn action_for_operation_versioned(op: &str, has_version_id: bool) -> &'static str {
    if has_version_id {
        let versioned = match op {
            "GetObject" | "HeadObject" => Some("s3:GetObjectVersion"),
            "DeleteObject" => Some("s3:DeleteObjectVersion"),
            "GetObjectAcl" => Some("s3:GetObjectVersionAcl"),
            "PutObjectAcl" => Some("s3:PutObjectVersionAcl"),
            "GetObjectTagging" => Some("s3:GetObjectVersionTagging"),
            "PutObjectTagging" => Some("s3:PutObjectVersionTagging"),
            "DeleteObjectTagging" => Some("s3:DeleteObjectVersionTagging"),
            "GetObjectAttributes" => Some("s3:GetObjectVersionAttributes"),
            "GetObjectTorrent" => Some("s3:GetObjectVersionTorrent"),
            _ => None,
        };
        if let Some(action) = versioned {
            return action;
        }
    }
    action_for_operation(op)
}

// ---------------------------------------------------------------------------
// ACLs
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CannedAcl {
    Private,
    PublicRead,
    PublicReadWrite,
    AuthenticatedRead,
    BucketOwnerRead,
    BucketOwnerFullControl,
}

impl CannedAcl {
    pub const ALL: [CannedAcl; 6] = [
        CannedAcl::Private,
        CannedAcl::PublicRead,
        CannedAcl::PublicReadWrite,
        CannedAcl::AuthenticatedRead,
        CannedAcl::BucketOwnerRead,
        CannedAcl::BucketOwnerFullControl,
    ];

    /// The `x-amz-acl` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CannedAcl::Private => "private",
            CannedAcl::PublicRead => "public-read",
            CannedAcl::PublicReadWrite => "public-read-write",
            CannedAcl::AuthenticatedRead => "authenticated-read",
            CannedAcl::BucketOwnerRead => "bucket-owner-read",
            CannedAcl::BucketOwnerFullControl => "bucket-owner-full-control",
        }
    }
}

impl FromStr for CannedAcl {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(acl) = CannedAcl::ALL.into_iter().find(|a| a.as_str() == s.trim()) {
            return Ok(acl);
        }
        match s.trim() {
            "aws-exec-read" | "log-delivery-write" => Err(PolicyError::NotSupported(format!(
                "x-amz-acl: canned ACL \"{}\"",
                s.trim()
            ))),
            other => Err(PolicyError::InvalidAcl(format!(
                "x-amz-acl: unknown canned ACL \"{other}\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

impl Permission {
    /// The name used in ACL XML ("READ_ACP").
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::ReadAcp => "READ_ACP",
            Permission::WriteAcp => "WRITE_ACP",
            Permission::FullControl => "FULL_CONTROL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Grantee {
    /// The project owning the bucket/object.
    Owner,
    /// Any user of this project.
    Project(String),
    /// A user name (or access key id).
    User(String),
    /// Everyone, anonymous included.
    AllUsers,
    /// Any authenticated caller.
    AuthenticatedUsers,
}

impl Grantee {
    fn includes(&self, who: Option<&Principal>, owner_project: &str) -> bool {
        let in_project =
            |project: &str| who.is_some_and(|p| p.project_ids.iter().any(|x| x == project));
        match self {
            Grantee::Owner => in_project(owner_project),
            Grantee::Project(project) => in_project(project),
            Grantee::User(name) => who.is_some_and(|p| {
                p.user_name == *name || p.access_key.as_deref() == Some(name.as_str())
            }),
            Grantee::AllUsers => true,
            Grantee::AuthenticatedUsers => who.is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Acl {
    pub grants: Vec<(Grantee, Permission)>,
}

impl Acl {
    /// Objects in Stratus are owned by the bucket's project, so `bucket-owner-read`
    /// and `bucket-owner-full-control` amount to `private` here; see
    /// [`Acl::canned_with_bucket_owner`] when the owners differ.
    pub fn canned(acl: CannedAcl) -> Acl {
        use Grantee::*;
        use Permission::*;
        let grants = match acl {
            CannedAcl::Private | CannedAcl::BucketOwnerRead | CannedAcl::BucketOwnerFullControl => {
                vec![(Owner, FullControl)]
            }
            CannedAcl::PublicRead => vec![(Owner, FullControl), (AllUsers, Read)],
            CannedAcl::PublicReadWrite => {
                vec![(Owner, FullControl), (AllUsers, Read), (AllUsers, Write)]
            }
            CannedAcl::AuthenticatedRead => vec![(Owner, FullControl), (AuthenticatedUsers, Read)],
        };
        Acl { grants }
    }

    /// An object ACL when the object owner differs from the bucket owner: the
    /// `bucket-owner-*` ACLs then also grant READ / FULL_CONTROL to that project.
    pub fn canned_with_bucket_owner(acl: CannedAcl, bucket_owner_project: &str) -> Acl {
        let mut out = Acl::canned(acl);
        let project = Grantee::Project(bucket_owner_project.to_string());
        match acl {
            CannedAcl::BucketOwnerRead => out.grants.push((project, Permission::Read)),
            CannedAcl::BucketOwnerFullControl => {
                out.grants.push((project, Permission::FullControl))
            }
            _ => {}
        }
        out
    }

    /// Build an ACL from the `x-amz-grant-read`, `-write`, `-read-acp`, `-write-acp`
    /// and `-full-control` header values. Each is a comma-separated list of
    /// `id="<user name>"`, `id="arn:aws:iam::<project-id>:root"` or
    /// `uri="http://acs.amazonaws.com/groups/global/AllUsers|AuthenticatedUsers"`.
    /// As in AWS, the grants replace the ACL: the owner keeps only its implicit
    /// READ_ACP/WRITE_ACP unless it is granted more.
    pub fn from_grant_headers(
        read: Option<&str>,
        write: Option<&str>,
        read_acp: Option<&str>,
        write_acp: Option<&str>,
        full_control: Option<&str>,
    ) -> Result<Acl, PolicyError> {
        let headers = [
            ("x-amz-grant-read", read, Permission::Read),
            ("x-amz-grant-write", write, Permission::Write),
            ("x-amz-grant-read-acp", read_acp, Permission::ReadAcp),
            ("x-amz-grant-write-acp", write_acp, Permission::WriteAcp),
            (
                "x-amz-grant-full-control",
                full_control,
                Permission::FullControl,
            ),
        ];
        let mut grants = Vec::new();
        for (header, value, perm) in headers {
            let Some(value) = value else { continue };
            for grantee in parse_grantees(header, value)? {
                if !grants.contains(&(grantee.clone(), perm)) {
                    grants.push((grantee, perm));
                }
            }
        }
        Ok(Acl { grants })
    }

    /// Does this ACL give `who` (`None` = anonymous) `perm`? FULL_CONTROL implies
    /// every permission; the owner always has READ_ACP and WRITE_ACP (as in AWS).
    pub fn allows(&self, who: Option<&Principal>, owner_project: &str, perm: Permission) -> bool {
        if matches!(perm, Permission::ReadAcp | Permission::WriteAcp)
            && Grantee::Owner.includes(who, owner_project)
        {
            return true;
        }
        self.grants.iter().any(|(grantee, granted)| {
            (*granted == perm || *granted == Permission::FullControl)
                && grantee.includes(who, owner_project)
        })
    }
}

fn parse_grantees(header: &str, value: &str) -> Result<Vec<Grantee>, PolicyError> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if quoted {
        return Err(PolicyError::InvalidAcl(format!(
            "{header}: unterminated quote"
        )));
    }
    items.push(current);

    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        let Some((kind, v)) = item.split_once('=') else {
            return Err(PolicyError::InvalidAcl(format!(
                "{header}: expected id=\"…\" or uri=\"…\", got \"{item}\""
            )));
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(v);
        if v.is_empty() {
            return Err(PolicyError::InvalidAcl(format!(
                "{header}: empty grantee in \"{item}\""
            )));
        }
        let grantee = match kind.trim().to_ascii_lowercase().as_str() {
            "id" => match parse_iam_arn(v) {
                Some(IamArn::ProjectRoot(project)) => Grantee::Project(project.to_string()),
                Some(IamArn::ProjectUser(_, user)) => Grantee::User(user.to_string()),
                None if v.starts_with(ARN_IAM_PREFIX) => {
                    return Err(PolicyError::InvalidAcl(format!(
                        "{header}: invalid grantee id \"{v}\""
                    )))
                }
                None => Grantee::User(v.to_string()),
            },
            "uri" => {
                let group = v
                    .strip_prefix("http://")
                    .or_else(|| v.strip_prefix("https://"))
                    .unwrap_or(v);
                if group == GROUP_ALL_USERS {
                    Grantee::AllUsers
                } else if group == GROUP_AUTHENTICATED_USERS {
                    Grantee::AuthenticatedUsers
                } else if group.starts_with("acs.amazonaws.com/groups/") {
                    return Err(PolicyError::NotSupported(format!(
                        "{header}: grantee group \"{v}\""
                    )));
                } else {
                    return Err(PolicyError::InvalidAcl(format!(
                        "{header}: unknown grantee group \"{v}\""
                    )));
                }
            }
            "emailaddress" => {
                return Err(PolicyError::NotSupported(format!(
                    "{header}: emailAddress grantees"
                )))
            }
            other => {
                return Err(PolicyError::InvalidAcl(format!(
                    "{header}: unknown grantee type \"{other}\""
                )))
            }
        };
        out.push(grantee);
    }
    Ok(out)
}

/// The permission an action needs on the bucket ACL (`on_object == false`) or on
/// the object ACL (`on_object == true`); `None` when that ACL cannot grant it
/// (only the owner, or a bucket policy, can).
pub fn acl_permission_for_action(action: &str, on_object: bool) -> Option<Permission> {
    let name = strip_prefix_ci(action, "s3:")?.to_ascii_lowercase();
    if on_object {
        match name.as_str() {
            "getobject"
            | "getobjectversion"
            | "getobjecttorrent"
            | "getobjectversiontorrent"
            | "getobjectattributes"
            | "getobjectversionattributes" => Some(Permission::Read),
            "getobjectacl" | "getobjectversionacl" => Some(Permission::ReadAcp),
            "putobjectacl" | "putobjectversionacl" => Some(Permission::WriteAcp),
            _ => None,
        }
    } else {
        match name.as_str() {
            "listbucket"
            | "listbucketversions"
            | "listbucketmultipartuploads"
            | "listmultipartuploadparts" => Some(Permission::Read),
            "putobject" | "deleteobject" | "deleteobjectversion" | "abortmultipartupload" => {
                Some(Permission::Write)
            }
            "getbucketacl" => Some(Permission::ReadAcp),
            "putbucketacl" => Some(Permission::WriteAcp),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "photos";

    fn user(name: &str, projects: &[&str]) -> Principal {
        Principal {
            user_name: name.to_string(),
            access_key: Some(format!("AK-{name}")),
            project_ids: projects.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn cx(who: Option<Principal>, action: &str, key: Option<&str>) -> RequestContext {
        let resource = match key {
            Some(k) => object_arn(B, k),
            None => bucket_arn(B),
        };
        let mut cx = RequestContext::new(action, resource);
        cx.principal = who;
        cx.secure_transport = true;
        cx
    }

    fn policy(statements: &str) -> Policy {
        let json = format!(r#"{{"Version": "2012-10-17", "Statement": {statements}}}"#);
        match parse_policy(&json, B) {
            Ok(p) => p,
            Err(e) => panic!("policy should parse: {e}\n{json}"),
        }
    }

    fn parse_err(json: &str) -> String {
        match parse_policy(json, B) {
            Ok(p) => panic!("expected an error, parsed {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn stmt_err(statements: &str) -> String {
        parse_err(&format!(
            r#"{{"Version": "2012-10-17", "Statement": {statements}}}"#
        ))
    }

    const PUBLIC_READ: &str = r#"{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
        "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::photos/*"}"#;

    // --- parsing ---------------------------------------------------------

    #[test]
    fn parses_a_full_policy() {
        let p = policy(&format!(
            r#"[{PUBLIC_READ}, {{"Effect": "Deny", "NotPrincipal": {{"AWS": ["alice", "arn:aws:iam::p1:root"]}},
                "NotAction": "s3:List*", "NotResource": ["arn:aws:s3:::photos"],
                "Condition": {{"StringLikeIfExists": {{"s3:prefix": ["a/*", "b/*"]}}, "Bool": {{"aws:SecureTransport": false}}}}}}]"#
        ));
        assert_eq!(p.version, "2012-10-17");
        assert_eq!(p.statements.len(), 2);
        assert_eq!(p.statements[0].sid.as_deref(), Some("PublicRead"));
        assert_eq!(p.statements[0].principal.values, vec!["*"]);
        let deny = &p.statements[1];
        assert_eq!(deny.effect, Effect::Deny);
        assert!(deny.principal.negated && deny.action.negated && deny.resource.negated);
        assert_eq!(deny.principal.values, vec!["alice", "arn:aws:iam::p1:root"]);
        assert_eq!(deny.conditions.len(), 2);
        let find = |op| deny.conditions.iter().find(|c| c.operator == op);
        let like = find(Operator::StringLike).unwrap_or_else(|| panic!("{deny:?}"));
        assert!(like.if_exists);
        assert_eq!(like.key, "s3:prefix");
        assert_eq!(like.values, vec!["a/*", "b/*"]);
        let secure = find(Operator::Bool).unwrap_or_else(|| panic!("{deny:?}"));
        assert!(!secure.if_exists);
        assert_eq!(secure.values, vec!["false"]);
    }

    #[test]
    fn single_statement_object_and_default_version() {
        let p = match parse_policy(&format!(r#"{{"Id": "x", "Statement": {PUBLIC_READ}}}"#), B) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.version, "2008-10-17");
        assert_eq!(p.id.as_deref(), Some("x"));
        assert_eq!(p.statements.len(), 1);
        let p = policy(
            r#"{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "*"}"#,
        );
        assert_eq!(p.statements[0].principal.values, vec!["*"]);
    }

    #[test]
    fn bad_json_is_reported() {
        let e = parse_err("{\"Statement\": [");
        assert!(e.starts_with("invalid JSON:"), "{e}");
        assert_eq!(
            PolicyError::Json(String::new()).s3_code(),
            "MalformedPolicy"
        );
        assert_eq!(parse_err("[]"), "Policy: must be a JSON object");
        assert_eq!(
            parse_err(&"x".repeat(MAX_POLICY_BYTES + 1)),
            format!("Policy: must be at most {MAX_POLICY_BYTES} bytes")
        );
    }

    #[test]
    fn top_level_errors_are_named() {
        assert_eq!(
            parse_err(r#"{"Version": "2013-01-01", "Statement": []}"#),
            "Version: must be \"2012-10-17\" or \"2008-10-17\""
        );
        assert_eq!(
            parse_err(r#"{"Version": "2012-10-17"}"#),
            "Statement: is required"
        );
        assert_eq!(
            parse_err(r#"{"Version": "2012-10-17", "Statement": []}"#),
            "Statement: must not be empty"
        );
        assert_eq!(
            parse_err(r#"{"Version": "2012-10-17", "Statement": [], "Extra": 1}"#),
            "Extra: unknown field"
        );
        assert_eq!(
            parse_err(r#"{"Version": "2012-10-17", "Id": 5, "Statement": []}"#),
            "Id: must be a string"
        );
    }

    #[test]
    fn statement_errors_are_named() {
        assert_eq!(
            stmt_err(&format!(
                r#"[{PUBLIC_READ}, {{"Effect": "Permit", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}}]"#
            )),
            "Statement[1].Effect: must be Allow or Deny"
        );
        assert_eq!(
            stmt_err(r#"[{"Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]"#),
            "Statement[0].Effect: is required"
        );
        assert_eq!(
            stmt_err(r#"[{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]"#),
            "Statement[0].Principal: is required (or NotPrincipal)"
        );
        assert_eq!(
            stmt_err(r#"[{"Effect": "Allow", "Principal": "*", "Resource": "*"}]"#),
            "Statement[0].Action: is required (or NotAction)"
        );
        assert_eq!(
            stmt_err(
                r#"[{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "NotAction": "s3:*", "Resource": "*"}]"#
            ),
            "Statement[0]: must not have both Action and NotAction"
        );
        assert_eq!(
            stmt_err(r#"[{"Effect": "Allow", "Principal": "*", "Action": [], "Resource": "*"}]"#),
            "Statement[0].Action: must not be empty"
        );
        assert_eq!(
            stmt_err(
                r#"[{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", 3], "Resource": "*"}]"#
            ),
            "Statement[0].Action[1]: must be a string"
        );
        assert_eq!(
            stmt_err(
                r#"[{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*", "Foo": 1}]"#
            ),
            "Statement[0].Foo: unknown field"
        );
        assert_eq!(stmt_err(r#"["x"]"#), "Statement[0]: must be an object");
        assert_eq!(
            stmt_err(&format!("[{PUBLIC_READ}, {PUBLIC_READ}]")),
            "Statement[1].Sid: duplicate Sid \"PublicRead\"; statement ids must be unique"
        );
    }

    #[test]
    fn principal_errors() {
        assert_eq!(
            stmt_err(
                r#"[{"Effect": "Allow", "Principal": "alice", "Action": "s3:*", "Resource": "*"}]"#
            ),
            "Statement[0].Principal: must be \"*\" or {\"AWS\": \"<id>\" | [\"<id>\", ...]}"
        );
        assert_eq!(
            stmt_err(
                r#"[{"Effect": "Allow", "Principal": {"Service": "x"}, "Action": "s3:*", "Resource": "*"}]"#
            ),
            "Statement[0].Principal.Service: is not supported; use \"*\" or {\"AWS\": ...}"
        );
        assert!(stmt_err(
            r#"[{"Effect": "Allow", "Principal": {"AWS": ["alice", "arn:aws:iam::p1:group/x"]}, "Action": "s3:*", "Resource": "*"}]"#
        )
        .starts_with("Statement[0].Principal.AWS[1]: invalid principal"));
        assert_eq!(
            stmt_err(
                r#"[{"Effect": "Allow", "Principal": {"AWS": " "}, "Action": "s3:*", "Resource": "*"}]"#
            ),
            "Statement[0].Principal.AWS: invalid principal"
        );
    }

    #[test]
    fn action_errors() {
        let e = stmt_err(
            r#"[{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "ec2:RunInstances"], "Resource": "*"}]"#,
        );
        assert!(
            e.starts_with("Statement[0].Action[1]: Policy has invalid action \"ec2:RunInstances\""),
            "{e}"
        );
        let e = stmt_err(
            r#"[{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObjects", "Resource": "*"}]"#,
        );
        assert_eq!(
            e,
            "Statement[0].Action: Policy has invalid action \"s3:GetObjects\": unknown S3 action"
        );
        // Case-insensitive, wildcards are not checked against the list.
        policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": ["S3:getobject", "s3:Get*", "s3:*Acl", "*"], "Resource": "*"}"#,
        );
    }

    #[test]
    fn resource_outside_the_bucket_is_rejected() {
        let e = stmt_err(
            r#"[{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::photos/*", "arn:aws:s3:::other/*"]}]"#,
        );
        assert!(
            e.starts_with(
                "Statement[0].Resource[1]: Policy has invalid resource \"arn:aws:s3:::other/*\""
            ),
            "{e}"
        );
        for bad in [
            "arn:aws:s3:::photos2",
            "arn:aws:s3:::photo",
            "photos/*",
            "arn:aws:iam::p:root",
            "arn:aws:s3:::",
        ] {
            let e = stmt_err(&format!(
                r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "NotResource": "{bad}"}}"#
            ));
            assert!(
                e.starts_with("Statement[0].NotResource: Policy has invalid resource"),
                "{bad}: {e}"
            );
        }
        for good in [
            "*",
            "arn:aws:s3:::photos",
            "arn:aws:s3:::photos/*",
            "arn:aws:s3:::photos/a/b/*",
            "arn:aws:s3:::pho*",
            "arn:aws:s3:::*/*",
            "arn:aws:s3:::photo?/x",
        ] {
            policy(&format!(
                r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "{good}"}}"#
            ));
        }
    }

    #[test]
    fn condition_errors() {
        let cond = |c: &str| {
            stmt_err(&format!(
                r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {c}}}"#
            ))
        };
        assert_eq!(
            cond(r#"{"StringEqualz": {"s3:prefix": "a"}}"#),
            "Statement[0].Condition.StringEqualz: unknown condition operator \"StringEqualz\""
        );
        assert_eq!(
            cond(r#"{"NullIfExists": {"s3:prefix": "true"}}"#),
            "Statement[0].Condition.NullIfExists: unknown condition operator \"NullIfExists\""
        );
        assert_eq!(
            cond(r#"{"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "10.0.0.0/33"]}}"#),
            "Statement[0].Condition.IpAddress.aws:SourceIp[1]: invalid value \"10.0.0.0/33\" for IpAddress: expected an IPv4 or IPv6 address or CIDR block"
        );
        assert!(
            cond(r#"{"NumericLessThan": {"s3:max-keys": "ten"}}"#).contains("expected a number")
        );
        assert!(cond(r#"{"DateLessThan": {"aws:CurrentTime": "tomorrow"}}"#).contains("RFC 3339"));
        assert!(
            cond(r#"{"Bool": {"aws:SecureTransport": "yes"}}"#).contains("expected true or false")
        );
        assert_eq!(
            cond(r#"{"StringEquals": {"s3:prefix": []}}"#),
            "Statement[0].Condition.StringEquals.s3:prefix: must not be empty"
        );
        assert_eq!(
            cond(r#"{"StringEquals": {"s3:prefix": {"a": 1}}}"#),
            "Statement[0].Condition.StringEquals.s3:prefix: must be a string, number or boolean"
        );
        assert_eq!(
            cond(r#"{"StringEquals": "x"}"#),
            "Statement[0].Condition.StringEquals: must be an object {\"<key>\": <values>}"
        );
        // Unknown keys are fine; qualifiers and case-insensitive operator names too.
        policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*",
            "Condition": {"stringequals": {"x:whatever": 1}, "ForAllValues:StringLike": {"s3:RequestObjectTagKeys": "a*"},
                          "ForAnyValue:StringEqualsIfExists": {"k": "v"}}}"#,
        );
    }

    // --- evaluation ------------------------------------------------------

    #[test]
    fn allow_for_principal_action_resource() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": {"AWS": ["alice", "AK-bob", "arn:aws:iam::p1:root", "arn:aws:iam::p2:user/dave"]},
                "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::photos/*"}"#,
        );
        let get = |who: Option<Principal>| evaluate(&p, &cx(who, "s3:GetObject", Some("a.jpg")));
        assert_eq!(get(Some(user("alice", &[]))), Decision::Allow);
        assert_eq!(get(Some(user("bob", &[]))), Decision::Allow, "access key");
        assert_eq!(
            get(Some(user("carol", &["p0", "p1"]))),
            Decision::Allow,
            "project root"
        );
        assert_eq!(
            get(Some(user("dave", &["p2"]))),
            Decision::Allow,
            "project user"
        );
        assert_eq!(get(Some(user("dave", &["p3"]))), Decision::NotApplicable);
        assert_eq!(get(Some(user("eve", &["p2"]))), Decision::NotApplicable);
        assert_eq!(get(None), Decision::NotApplicable, "anonymous");
        let alice = Some(user("alice", &[]));
        assert_eq!(
            evaluate(&p, &cx(alice.clone(), "s3:DeleteObject", Some("a"))),
            Decision::NotApplicable
        );
        assert_eq!(
            evaluate(&p, &cx(alice, "s3:GetObject", None)),
            Decision::NotApplicable,
            "bucket ARN is not bucket/*"
        );
    }

    #[test]
    fn star_principal_includes_anonymous() {
        let p = policy(&format!("[{PUBLIC_READ}]"));
        assert_eq!(
            evaluate(&p, &cx(None, "s3:GetObject", Some("x"))),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&p, &cx(Some(user("u", &[])), "s3:GetObject", Some("x"))),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:PutObject", Some("x"))),
            Decision::NotApplicable
        );
    }

    #[test]
    fn explicit_deny_beats_allow() {
        let p = policy(
            r#"[{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"]},
                {"Effect": "Deny", "Principal": {"AWS": "mallory"}, "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::photos/*"}]"#,
        );
        let m = Some(user("mallory", &[]));
        assert_eq!(
            evaluate(&p, &cx(m.clone(), "s3:DeleteObject", Some("x"))),
            Decision::Deny
        );
        assert_eq!(
            evaluate(&p, &cx(m, "s3:GetObject", Some("x"))),
            Decision::Allow
        );
        // Order does not matter.
        let mut reversed = p.clone();
        reversed.statements.reverse();
        assert_eq!(
            evaluate(
                &reversed,
                &cx(Some(user("mallory", &[])), "s3:DeleteObject", Some("x"))
            ),
            Decision::Deny
        );
    }

    #[test]
    fn not_action_not_resource_not_principal() {
        let p = policy(
            r#"{"Effect": "Deny", "Principal": "*", "NotAction": ["s3:Get*", "s3:ListBucket"], "Resource": "*"}"#,
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:PutObject", Some("x"))),
            Decision::Deny
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:GetObject", Some("x"))),
            Decision::NotApplicable
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:ListBucket", None)),
            Decision::NotApplicable
        );

        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::photos/private/*"}"#,
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:GetObject", Some("public/a"))),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:GetObject", Some("private/a"))),
            Decision::NotApplicable
        );

        let p = policy(
            r#"{"Effect": "Deny", "NotPrincipal": {"AWS": ["admin", "arn:aws:iam::ops:root"]}, "Action": "s3:DeleteObject", "Resource": "*"}"#,
        );
        let del = |who| evaluate(&p, &cx(who, "s3:DeleteObject", Some("x")));
        assert_eq!(del(Some(user("admin", &[]))), Decision::NotApplicable);
        assert_eq!(
            del(Some(user("someone", &["ops"]))),
            Decision::NotApplicable
        );
        assert_eq!(del(Some(user("someone", &["dev"]))), Decision::Deny);
        assert_eq!(
            del(None),
            Decision::Deny,
            "anonymous is not in NotPrincipal"
        );
    }

    #[test]
    fn action_wildcards_are_case_insensitive() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": ["s3:Get*", "S3:LIST?UCKET"], "Resource": "*"}"#,
        );
        for action in [
            "s3:GetObject",
            "s3:GetObjectAcl",
            "s3:getbucketpolicy",
            "s3:ListBucket",
        ] {
            assert_eq!(
                evaluate(&p, &cx(None, action, Some("k"))),
                Decision::Allow,
                "{action}"
            );
        }
        for action in ["s3:PutObject", "s3:ListBucketVersions", "s3:Unknown"] {
            assert_eq!(
                evaluate(&p, &cx(None, action, Some("k"))),
                Decision::NotApplicable,
                "{action}"
            );
        }
        let all =
            policy(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}"#);
        assert_eq!(
            evaluate(&all, &cx(None, "s3:Unknown", None)),
            Decision::Allow
        );
    }

    #[test]
    fn resource_wildcards() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": ["arn:aws:s3:::photos/logs/*", "arn:aws:s3:::photos/img-?.png"]}"#,
        );
        let get = |key: &str| evaluate(&p, &cx(None, "s3:GetObject", Some(key)));
        assert_eq!(get("logs/2026/x"), Decision::Allow);
        assert_eq!(get("logs/"), Decision::Allow);
        assert_eq!(get("logs2/x"), Decision::NotApplicable);
        assert_eq!(
            get("Logs/x"),
            Decision::NotApplicable,
            "resources are case-sensitive"
        );
        assert_eq!(get("img-1.png"), Decision::Allow);
        assert_eq!(
            get("img-é.png"),
            Decision::Allow,
            "? is one character, not one byte"
        );
        assert_eq!(get("img-12.png"), Decision::NotApplicable);
        assert_eq!(get("img-.png"), Decision::NotApplicable);
    }

    #[test]
    fn glob_matching() {
        let m = |p: &str, s: &str| glob(&literal_tokens(p, true), s, false);
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("*a*a*a", "aaaa"));
        assert!(!m("a?", "a"));
        assert!(m("a**", "a"));
        assert!(!m("", "a"));
        assert!(glob(&literal_tokens("ÄB*", true), "äbc", true));
        assert!(
            !glob(&literal_tokens("a*", false), "ab", false),
            "no wildcards: literal *"
        );
    }

    #[test]
    fn ip_conditions_v4_and_v6() {
        let p = policy(
            r#"[{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
                 "Condition": {"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32", "203.0.113.7"]}}},
                {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
                 "Condition": {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32", "203.0.113.7", "198.51.100.0/24"]}}}]"#,
        );
        let from = |ip: Option<&str>| {
            let mut c = cx(None, "s3:GetObject", Some("k"));
            c.source_ip = ip.and_then(|s| s.parse().ok());
            evaluate(&p, &c)
        };
        assert_eq!(from(Some("192.0.2.200")), Decision::Allow);
        assert_eq!(
            from(Some("::ffff:192.0.2.1")),
            Decision::Allow,
            "IPv4-mapped"
        );
        assert_eq!(from(Some("2001:db8:ffff::1")), Decision::Allow);
        assert_eq!(from(Some("203.0.113.7")), Decision::Allow, "single address");
        assert_eq!(from(Some("203.0.113.8")), Decision::Deny);
        assert_eq!(from(Some("2001:db9::1")), Decision::Deny);
        assert_eq!(
            from(Some("198.51.100.9")),
            Decision::NotApplicable,
            "in the deny exemption, not allowed"
        );
        assert_eq!(
            from(None),
            Decision::Deny,
            "NotIpAddress holds when the key is absent"
        );

        let net = |s: &str| Cidr::parse(s).unwrap_or_else(|| panic!("{s}"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| panic!("{s}"));
        assert!(net("0.0.0.0/0").contains(ip("255.1.2.3")));
        assert!(
            !net("0.0.0.0/0").contains(ip("::1")),
            "no cross-family match"
        );
        assert!(net("::/0").contains(ip("fe80::1")));
        assert!(net("10.1.2.3/31").contains(ip("10.1.2.2")));
        assert!(!net("10.1.2.3/32").contains(ip("10.1.2.2")));
        assert!(net("2001:db8::1/128").contains(ip("2001:db8::1")));
        for bad in [
            "10.0.0.0/",
            "10.0.0/8",
            "::/129",
            "10.0.0.0/+8",
            "x",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn deny_unless_https() {
        let p = policy(&format!(
            r#"[{PUBLIC_READ}, {{"Sid": "HttpsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"],
                "Condition": {{"Bool": {{"aws:SecureTransport": "false"}}}}}}]"#
        ));
        let mut c = cx(None, "s3:GetObject", Some("k"));
        assert_eq!(evaluate(&p, &c), Decision::Allow);
        c.secure_transport = false;
        assert_eq!(evaluate(&p, &c), Decision::Deny);
        // JSON boolean false works the same.
        let p = policy(
            r#"{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": false}}}"#,
        );
        assert_eq!(evaluate(&p, &c), Decision::Deny);
    }

    #[test]
    fn string_like_on_prefix_and_if_exists() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": {"AWS": "alice"}, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::photos",
                "Condition": {"StringLike": {"s3:prefix": ["home/alice/*", "shared/"]}}}"#,
        );
        let list = |prefix: Option<&str>| {
            let mut c = cx(Some(user("alice", &[])), "s3:ListBucket", None);
            if let Some(prefix) = prefix {
                c.values.insert("s3:prefix".into(), vec![prefix.into()]);
            }
            evaluate(&p, &c)
        };
        assert_eq!(list(Some("home/alice/docs/")), Decision::Allow);
        assert_eq!(list(Some("shared/")), Decision::Allow);
        assert_eq!(list(Some("home/bob/")), Decision::NotApplicable);
        assert_eq!(
            list(None),
            Decision::NotApplicable,
            "absent key: StringLike is false"
        );

        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": "*",
                "Condition": {"StringLikeIfExists": {"S3:Prefix": "pub/*"}, "NumericLessThanEqualsIfExists": {"s3:max-keys": 100}}}"#,
        );
        let list = |vals: &[(&str, &str)]| {
            let mut c = cx(None, "s3:ListBucket", None);
            for (k, v) in vals {
                c.values.insert(k.to_string(), vec![v.to_string()]);
            }
            evaluate(&p, &c)
        };
        assert_eq!(list(&[]), Decision::Allow, "IfExists: absent keys are true");
        assert_eq!(list(&[("s3:prefix", "pub/x")]), Decision::Allow);
        assert_eq!(list(&[("s3:prefix", "priv/x")]), Decision::NotApplicable);
        assert_eq!(list(&[("s3:max-keys", "1000")]), Decision::NotApplicable);
        assert_eq!(
            list(&[("s3:max-keys", "100"), ("s3:prefix", "pub/")]),
            Decision::Allow
        );
    }

    #[test]
    fn negated_operators_and_null_with_absent_keys() {
        let check = |cond: &str, vals: &[(&str, &str)]| {
            let p = policy(&format!(
                r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {cond}}}"#
            ));
            let mut c = cx(None, "s3:PutObject", Some("k"));
            for (k, v) in vals {
                c.values.insert(k.to_string(), vec![v.to_string()]);
            }
            evaluate(&p, &c) == Decision::Allow
        };
        let not_eq =
            r#"{"StringNotEquals": {"s3:x-amz-acl": ["public-read", "public-read-write"]}}"#;
        assert!(check(not_eq, &[]));
        assert!(check(not_eq, &[("s3:x-amz-acl", "private")]));
        assert!(!check(not_eq, &[("s3:x-amz-acl", "public-read")]));
        let eq = r#"{"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}"#;
        assert!(!check(eq, &[]));
        assert!(check(eq, &[("s3:x-amz-acl", "bucket-owner-full-control")]));
        assert!(!check(eq, &[("s3:x-amz-acl", "Bucket-Owner-Full-Control")]));
        let eq_ci = r#"{"StringEqualsIgnoreCase": {"s3:x-amz-acl": "bucket-owner-full-control"}}"#;
        assert!(check(
            eq_ci,
            &[("s3:x-amz-acl", "Bucket-Owner-Full-Control")]
        ));
        let not_like = r#"{"StringNotLike": {"aws:Referer": "https://evil.example/*"}}"#;
        assert!(check(not_like, &[]));
        assert!(check(
            not_like,
            &[("aws:Referer", "https://good.example/x")]
        ));
        assert!(!check(
            not_like,
            &[("aws:referer", "https://evil.example/x")]
        ));
        let null = r#"{"Null": {"s3:x-amz-server-side-encryption": "true"}}"#;
        assert!(check(null, &[]));
        assert!(!check(
            null,
            &[("s3:x-amz-server-side-encryption", "AES256")]
        ));
        let tag = r#"{"StringEquals": {"s3:ExistingObjectTag/Class": "public"}}"#;
        assert!(check(tag, &[("s3:ExistingObjectTag/Class", "public")]));
        assert!(check(tag, &[("S3:existingobjecttag/Class", "public")]));
        assert!(
            !check(tag, &[("s3:ExistingObjectTag/class", "public")]),
            "tag keys are case-sensitive"
        );
        let numeric = r#"{"NumericGreaterThan": {"s3:max-keys": "10"}, "NumericLessThan": {"s3:max-keys": 20.5}}"#;
        assert!(check(numeric, &[("s3:max-keys", "20")]));
        assert!(
            !check(numeric, &[("s3:max-keys", "10")]),
            "AND across operators"
        );
        assert!(!check(numeric, &[("s3:max-keys", "lots")]));
        assert!(check(
            r#"{"NumericEquals": {"s3:max-keys": 5}}"#,
            &[("s3:max-keys", "5.0")]
        ));
        assert!(check(
            r#"{"NumericGreaterThanEquals": {"s3:max-keys": 5}}"#,
            &[("s3:max-keys", "5")]
        ));
        assert!(!check(
            r#"{"NumericNotEquals": {"s3:max-keys": 5}}"#,
            &[("s3:max-keys", "5")]
        ));
    }

    #[test]
    fn set_qualifiers() {
        let p = policy(
            r#"[{"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": "*",
                 "Condition": {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "env"]}}},
                {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "*",
                 "Condition": {"ForAnyValue:StringLike": {"s3:RequestObjectTagKeys": "secret*"}}}]"#,
        );
        let put = |keys: &[&str]| {
            let mut c = cx(None, "s3:PutObject", Some("k"));
            c.values.insert(
                "s3:RequestObjectTagKeys".into(),
                keys.iter().map(|k| k.to_string()).collect(),
            );
            evaluate(&p, &c)
        };
        assert_eq!(put(&["team"]), Decision::Allow);
        assert_eq!(put(&["team", "env"]), Decision::Allow);
        assert_eq!(put(&["team", "owner"]), Decision::NotApplicable);
        assert_eq!(put(&["team", "secret-x"]), Decision::Deny);
        assert_eq!(
            put(&[]),
            Decision::Allow,
            "ForAllValues holds on an empty set; ForAnyValue does not"
        );
    }

    #[test]
    fn date_conditions() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
                "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
                              "DateLessThan": {"aws:CurrentTime": "2026-02-01T00:00:00+01:00"}}}"#,
        );
        let at = |t: &str| {
            let mut c = cx(None, "s3:GetObject", Some("k"));
            c.now = parse_date(t).unwrap_or_else(|| panic!("{t}"));
            evaluate(&p, &c)
        };
        assert_eq!(at("2026-01-15T12:00:00Z"), Decision::Allow);
        assert_eq!(
            at("2026-01-01T00:00:00Z"),
            Decision::NotApplicable,
            "strictly greater"
        );
        assert_eq!(at("2025-12-31T23:59:59Z"), Decision::NotApplicable);
        assert_eq!(
            at("2026-01-31T22:59:59Z"),
            Decision::Allow,
            "offset honoured"
        );
        assert_eq!(at("2026-01-31T23:00:00Z"), Decision::NotApplicable);
        // Epoch seconds are accepted too, and aws:EpochTime is provided.
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*",
            "Condition": {"DateLessThanEquals": {"aws:EpochTime": 1767225600}}}"#,
        );
        let mut c = cx(None, "s3:GetObject", Some("k"));
        c.now = parse_date("2026-01-01T00:00:00Z").unwrap_or_default();
        assert_eq!(evaluate(&p, &c), Decision::Allow);
        c.now += chrono::Duration::seconds(1);
        assert_eq!(evaluate(&p, &c), Decision::NotApplicable);
    }

    #[test]
    fn policy_variables() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "arn:aws:s3:::photos/home/${aws:username}/*"}"#,
        );
        let get =
            |who: Option<Principal>, key: &str| evaluate(&p, &cx(who, "s3:GetObject", Some(key)));
        assert_eq!(
            get(Some(user("alice", &[])), "home/alice/x"),
            Decision::Allow
        );
        assert_eq!(
            get(Some(user("alice", &[])), "home/bob/x"),
            Decision::NotApplicable
        );
        assert_eq!(
            get(Some(user("a*", &[])), "home/abc/x"),
            Decision::NotApplicable,
            "substituted text is literal"
        );
        assert_eq!(
            get(None, "home//x"),
            Decision::NotApplicable,
            "absent variable matches nothing"
        );
        // 2008-10-17 policies take ${...} literally.
        let json = r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::photos/${aws:username}"}}"#;
        let old = parse_policy(json, B).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            evaluate(
                &old,
                &cx(
                    Some(user("alice", &[])),
                    "s3:GetObject",
                    Some("${aws:username}")
                )
            ),
            Decision::Allow
        );
        // Condition values are substituted too.
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": "*",
            "Condition": {"StringLike": {"s3:prefix": "${aws:username}/${*}*"}}}"#,
        );
        let mut c = cx(Some(user("bob", &[])), "s3:ListBucket", None);
        c.values.insert("s3:prefix".into(), vec!["bob/*x".into()]);
        assert_eq!(evaluate(&p, &c), Decision::Allow);
        c.values.insert("s3:prefix".into(), vec!["bob/x".into()]);
        assert_eq!(
            evaluate(&p, &c),
            Decision::NotApplicable,
            "${{*}} is a literal *"
        );
    }

    #[test]
    fn builtin_keys() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:username": ["alice", "bob"], "aws:PrincipalType": "User"}}}"#,
        );
        assert_eq!(
            evaluate(&p, &cx(Some(user("bob", &[])), "s3:GetObject", Some("k"))),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&p, &cx(Some(user("eve", &[])), "s3:GetObject", Some("k"))),
            Decision::NotApplicable
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:GetObject", Some("k"))),
            Decision::NotApplicable
        );
    }

    // --- operations ------------------------------------------------------

    #[test]
    fn action_mapping() {
        let expected = [
            ("GetObject", "s3:GetObject"),
            ("HeadObject", "s3:GetObject"),
            ("PutObject", "s3:PutObject"),
            ("CopyObject", "s3:PutObject"),
            ("CreateMultipartUpload", "s3:PutObject"),
            ("UploadPart", "s3:PutObject"),
            ("UploadPartCopy", "s3:PutObject"),
            ("CompleteMultipartUpload", "s3:PutObject"),
            ("AbortMultipartUpload", "s3:AbortMultipartUpload"),
            ("ListParts", "s3:ListMultipartUploadParts"),
            ("ListMultipartUploads", "s3:ListBucketMultipartUploads"),
            ("DeleteObject", "s3:DeleteObject"),
            ("DeleteObjects", "s3:DeleteObject"),
            ("ListObjects", "s3:ListBucket"),
            ("ListObjectsV2", "s3:ListBucket"),
            ("HeadBucket", "s3:ListBucket"),
            ("ListObjectVersions", "s3:ListBucketVersions"),
            ("ListBuckets", "s3:ListAllMyBuckets"),
            ("GetObjectAcl", "s3:GetObjectAcl"),
            ("PutObjectAcl", "s3:PutObjectAcl"),
            ("GetBucketAcl", "s3:GetBucketAcl"),
            ("PutBucketAcl", "s3:PutBucketAcl"),
            ("GetBucketPolicy", "s3:GetBucketPolicy"),
            ("PutBucketPolicy", "s3:PutBucketPolicy"),
            ("DeleteBucketPolicy", "s3:DeleteBucketPolicy"),
            ("GetBucketPolicyStatus", "s3:GetBucketPolicyStatus"),
            ("GetBucketVersioning", "s3:GetBucketVersioning"),
            ("PutBucketVersioning", "s3:PutBucketVersioning"),
            (
                "GetBucketLifecycleConfiguration",
                "s3:GetLifecycleConfiguration",
            ),
            (
                "PutBucketLifecycleConfiguration",
                "s3:PutLifecycleConfiguration",
            ),
            ("DeleteBucketLifecycle", "s3:PutLifecycleConfiguration"),
            ("GetBucketLocation", "s3:GetBucketLocation"),
            ("CreateBucket", "s3:CreateBucket"),
            ("DeleteBucket", "s3:DeleteBucket"),
            ("GetObjectTagging", "s3:GetObjectTagging"),
            ("PutObjectTagging", "s3:PutObjectTagging"),
            ("DeleteObjectTagging", "s3:DeleteObjectTagging"),
            ("GetBucketTagging", "s3:GetBucketTagging"),
            ("PutBucketTagging", "s3:PutBucketTagging"),
            ("DeleteBucketTagging", "s3:PutBucketTagging"),
            ("GetBucketCors", "s3:GetBucketCORS"),
            ("PutBucketCors", "s3:PutBucketCORS"),
            ("DeleteBucketCors", "s3:PutBucketCORS"),
            ("GetBucketEncryption", "s3:GetEncryptionConfiguration"),
            (
                "GetObjectLockConfiguration",
                "s3:GetBucketObjectLockConfiguration",
            ),
            ("SelectObjectContent", "s3:GetObject"),
            ("NoSuchOperation", "s3:Unknown"),
            ("getobject", "s3:Unknown"),
        ];
        for (op, action) in expected {
            assert_eq!(action_for_operation(op), action, "{op}");
            assert_eq!(action_for_operation_versioned(op, false), action, "{op}");
        }
        let versioned = [
            ("GetObject", "s3:GetObjectVersion"),
            ("HeadObject", "s3:GetObjectVersion"),
            ("DeleteObject", "s3:DeleteObjectVersion"),
            ("GetObjectAcl", "s3:GetObjectVersionAcl"),
            ("PutObjectAcl", "s3:PutObjectVersionAcl"),
            ("GetObjectTagging", "s3:GetObjectVersionTagging"),
            ("PutObjectTagging", "s3:PutObjectVersionTagging"),
            ("DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
            ("GetObjectAttributes", "s3:GetObjectVersionAttributes"),
            ("PutObject", "s3:PutObject"),
            ("ListObjectVersions", "s3:ListBucketVersions"),
        ];
        for (op, action) in versioned {
            assert_eq!(action_for_operation_versioned(op, true), action, "{op}");
        }
    }

    #[test]
    fn operation_table_is_consistent() {
        let mut seen = HashSet::new();
        for (op, action) in S3_OPERATIONS {
            assert!(seen.insert(*op), "{op} listed twice");
            assert!(
                KNOWN_ACTIONS.contains(action),
                "{op} → {action} is not a known action"
            );
            assert_eq!(action_for_operation(op), *action);
        }
        for action in KNOWN_ACTIONS {
            assert!(validate_action(action, "a").is_ok(), "{action}");
        }
        let versioned = [
            "GetObject",
            "DeleteObject",
            "GetObjectAcl",
            "PutObjectTagging",
            "GetObjectTorrent",
        ];
        for op in versioned {
            assert!(
                KNOWN_ACTIONS.contains(&action_for_operation_versioned(op, true)),
                "{op}"
            );
        }
        // Every mapped action is nameable in a policy.
        let every = KNOWN_ACTIONS
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(",");
        policy(&format!(
            r#"{{"Effect": "Allow", "Principal": "*", "Action": [{every}], "Resource": "*"}}"#
        ));
    }

    // --- ACLs ------------------------------------------------------------

    fn parse_canned(s: &str) -> CannedAcl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn canned_acl_names() {
        for acl in CannedAcl::ALL {
            assert_eq!(parse_canned(acl.as_str()), acl);
        }
        assert_eq!(
            "public".parse::<CannedAcl>(),
            Err(PolicyError::InvalidAcl(
                "x-amz-acl: unknown canned ACL \"public\"".into()
            ))
        );
        let e = "log-delivery-write".parse::<CannedAcl>();
        assert!(matches!(e, Err(PolicyError::NotSupported(_))), "{e:?}");
        assert_eq!(
            PolicyError::InvalidAcl(String::new()).s3_code(),
            "InvalidArgument"
        );
    }

    #[test]
    fn canned_acls_allow_what_aws_allows() {
        let owner = user("o", &["proj"]);
        let other = user("x", &["elsewhere"]);
        let cases = [
            (CannedAcl::Private, [true, true, false, false, false, false]),
            (
                CannedAcl::PublicRead,
                [true, true, true, false, true, false],
            ),
            (
                CannedAcl::PublicReadWrite,
                [true, true, true, true, true, true],
            ),
            (
                CannedAcl::AuthenticatedRead,
                [true, true, true, false, false, false],
            ),
            (
                CannedAcl::BucketOwnerRead,
                [true, true, false, false, false, false],
            ),
            (
                CannedAcl::BucketOwnerFullControl,
                [true, true, false, false, false, false],
            ),
        ];
        for (canned, [o_read, o_write, x_read, x_write, anon_read, anon_write]) in cases {
            let acl = Acl::canned(canned);
            let a = |who: Option<&Principal>, p| acl.allows(who, "proj", p);
            assert_eq!(a(Some(&owner), Permission::Read), o_read, "{canned:?}");
            assert_eq!(a(Some(&owner), Permission::Write), o_write, "{canned:?}");
            assert!(a(Some(&owner), Permission::WriteAcp), "{canned:?}");
            assert_eq!(a(Some(&other), Permission::Read), x_read, "{canned:?}");
            assert_eq!(a(Some(&other), Permission::Write), x_write, "{canned:?}");
            assert!(!a(Some(&other), Permission::ReadAcp), "{canned:?}");
            assert_eq!(a(None, Permission::Read), anon_read, "{canned:?}");
            assert_eq!(a(None, Permission::Write), anon_write, "{canned:?}");
        }
    }

    #[test]
    fn public_read_lets_anonymous_get_object_and_authenticated_read_does_not() {
        let action = action_for_operation("GetObject");
        let perm = acl_permission_for_action(action, true);
        assert_eq!(perm, Some(Permission::Read));
        let perm = perm.unwrap_or(Permission::FullControl);
        assert!(Acl::canned(CannedAcl::PublicRead).allows(None, "proj", perm));
        assert!(!Acl::canned(CannedAcl::AuthenticatedRead).allows(None, "proj", perm));
        assert!(Acl::canned(CannedAcl::AuthenticatedRead).allows(
            Some(&user("x", &[])),
            "proj",
            perm
        ));
    }

    #[test]
    fn bucket_owner_canned_acls_with_a_different_bucket_owner() {
        let acl = Acl::canned_with_bucket_owner(CannedAcl::BucketOwnerRead, "bucket-proj");
        let bucket_user = user("b", &["bucket-proj"]);
        assert!(acl.allows(Some(&bucket_user), "obj-proj", Permission::Read));
        assert!(!acl.allows(Some(&bucket_user), "obj-proj", Permission::Write));
        let acl = Acl::canned_with_bucket_owner(CannedAcl::BucketOwnerFullControl, "bucket-proj");
        assert!(acl.allows(Some(&bucket_user), "obj-proj", Permission::WriteAcp));
        let acl = Acl::canned_with_bucket_owner(CannedAcl::PublicRead, "bucket-proj");
        assert_eq!(acl, Acl::canned(CannedAcl::PublicRead));
    }

    #[test]
    fn grant_headers() {
        let acl = Acl::from_grant_headers(
            Some(r#"uri="http://acs.amazonaws.com/groups/global/AllUsers", id="alice""#),
            Some(r#"id="arn:aws:iam::p9:root""#),
            Some(r#"uri="http://acs.amazonaws.com/groups/global/AuthenticatedUsers""#),
            None,
            Some(r#"id=bob, id="arn:aws:iam::p1:user/carol""#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            acl.grants,
            vec![
                (Grantee::AllUsers, Permission::Read),
                (Grantee::User("alice".into()), Permission::Read),
                (Grantee::Project("p9".into()), Permission::Write),
                (Grantee::AuthenticatedUsers, Permission::ReadAcp),
                (Grantee::User("bob".into()), Permission::FullControl),
                (Grantee::User("carol".into()), Permission::FullControl),
            ]
        );
        let p9 = user("z", &["p9"]);
        assert!(acl.allows(None, "own", Permission::Read));
        assert!(!acl.allows(None, "own", Permission::ReadAcp));
        assert!(acl.allows(Some(&p9), "own", Permission::Write));
        assert!(acl.allows(Some(&p9), "own", Permission::ReadAcp));
        assert!(!acl.allows(Some(&p9), "own", Permission::WriteAcp));
        assert!(acl.allows(Some(&user("bob", &[])), "own", Permission::WriteAcp));
        assert!(
            acl.allows(Some(&user("x", &["own"])), "own", Permission::WriteAcp),
            "owner keeps WRITE_ACP"
        );
        assert!(
            !acl.allows(Some(&user("x", &["own"])), "own", Permission::Write),
            "grants replace the ACL"
        );
        // Quoted commas and duplicates.
        let acl = Acl::from_grant_headers(Some(r#"id="a,b", id="a,b""#), None, None, None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            acl.grants,
            vec![(Grantee::User("a,b".into()), Permission::Read)]
        );
    }

    #[test]
    fn grant_header_errors() {
        let read = |v: &str| Acl::from_grant_headers(Some(v), None, None, None, None);
        let e = read(r#"emailAddress="a@example.com""#);
        assert_eq!(
            e,
            Err(PolicyError::NotSupported(
                "x-amz-grant-read: emailAddress grantees".into()
            ))
        );
        assert_eq!(e.map_err(|e| e.s3_code()), Err("NotImplemented"));
        for bad in [
            "alice",
            "id=\"\"",
            "id=\"x\",",
            "foo=\"x\"",
            "uri=\"http://example.com/group\"",
            "id=\"unterminated",
            "id=\"arn:aws:iam::p:group/x\"",
        ] {
            assert!(
                matches!(read(bad), Err(PolicyError::InvalidAcl(_))),
                "{bad}: {:?}",
                read(bad)
            );
        }
        assert!(matches!(
            read(r#"uri="http://acs.amazonaws.com/groups/s3/LogDelivery""#),
            Err(PolicyError::NotSupported(_))
        ));
    }

    #[test]
    fn acl_serde_round_trip() {
        let acl = Acl {
            grants: vec![
                (Grantee::Owner, Permission::FullControl),
                (Grantee::Project("p".into()), Permission::ReadAcp),
                (Grantee::User("u".into()), Permission::Write),
                (Grantee::AllUsers, Permission::Read),
                (Grantee::AuthenticatedUsers, Permission::WriteAcp),
            ],
        };
        let json = serde_json::to_string(&acl).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"grants":[[{"type":"owner"},"FULL_CONTROL"],[{"type":"project","id":"p"},"READ_ACP"],[{"type":"user","id":"u"},"WRITE"],[{"type":"all_users"},"READ"],[{"type":"authenticated_users"},"WRITE_ACP"]]}"#
        );
        let back: Acl = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, acl);
        let canned: CannedAcl =
            serde_json::from_str("\"public-read\"").unwrap_or(CannedAcl::Private);
        assert_eq!(canned, CannedAcl::PublicRead);
    }

    #[test]
    fn acl_permission_for_actions() {
        use Permission::*;
        let cases = [
            ("s3:GetObject", true, Some(Read)),
            ("s3:GetObjectVersion", true, Some(Read)),
            ("s3:GetObject", false, None),
            ("s3:GetObjectAcl", true, Some(ReadAcp)),
            ("s3:PutObjectAcl", true, Some(WriteAcp)),
            ("s3:PutObjectVersionAcl", true, Some(WriteAcp)),
            ("s3:PutObject", true, None),
            ("s3:PutObject", false, Some(Write)),
            ("s3:DeleteObject", false, Some(Write)),
            ("s3:DeleteObjectVersion", false, Some(Write)),
            ("s3:AbortMultipartUpload", false, Some(Write)),
            ("s3:ListBucket", false, Some(Read)),
            ("s3:ListBucketVersions", false, Some(Read)),
            ("s3:ListBucketMultipartUploads", false, Some(Read)),
            ("s3:ListMultipartUploadParts", false, Some(Read)),
            ("s3:GetBucketAcl", false, Some(ReadAcp)),
            ("s3:PutBucketAcl", false, Some(WriteAcp)),
            ("s3:PutBucketPolicy", false, None),
            ("s3:GetBucketPolicy", false, None),
            ("s3:DeleteBucket", false, None),
            ("s3:PutBucketVersioning", false, None),
            ("s3:Unknown", false, None),
            ("S3:GETOBJECT", true, Some(Read)),
            ("GetObject", true, None),
        ];
        for (action, on_object, want) in cases {
            assert_eq!(
                acl_permission_for_action(action, on_object),
                want,
                "{action} {on_object}"
            );
        }
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let inputs = [
            "", "null", "\"x\"", "{\"Statement\": null}", "{\"Statement\": [null]}",
            "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": {}, \"Action\": \"s3:*\", \"Resource\": \"*\"}}",
            "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\", \"Action\": \"s3:*\", \"Resource\": \"*\", \"Condition\": {\"IfExists\": {}}}}",
            "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\", \"Action\": \"s3:*\", \"Resource\": \"*\", \"Condition\": {\"ForAnyValue:\": {\"a\": 1}}}}",
            "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\", \"Action\": \"s3:\", \"Resource\": \"*\"}}",
        ];
        for input in inputs {
            assert!(parse_policy(input, B).is_err(), "{input}");
        }
        assert!(parse_operator("é").is_none());
        assert!(parse_operator("StringLikeIfExistsé").is_none());
        assert!(parse_operator("éIfExists").is_none());
        let p = policy(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::photos/${é}${}${aws:username"}"#,
        );
        assert_eq!(
            evaluate(&p, &cx(None, "s3:GetObject", Some("x"))),
            Decision::NotApplicable
        );
        assert!(tokens("${aws:username", true, Some(&cx(None, "a", None))).is_some());
    }
}
