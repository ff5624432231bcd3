//! The template language: a small YAML subset in the spirit of Heat's HOT — `parameters`,
//! `resources` with `properties` and `depends_on`, `outputs`, and the functions
//! `get_param`, `get_resource` and `get_attr`. Parsing keeps every node's line and column,
//! so each error names the field and where it is. `docs/stacks.md` is the reference.

use std::collections::{BTreeMap, BTreeSet};

use marked_yaml::loader::LoadError;
use marked_yaml::{LoaderOptions, Node};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Templates larger than this are refused before parsing.
pub const TEMPLATE_MAX: usize = 256 * 1024;
/// At most this many resources in one template.
pub const RESOURCES_MAX: usize = 200;

/// Where a node starts (1-based).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

fn key_loc(k: &marked_yaml::types::MarkedScalarNode) -> Loc {
    k.span()
        .start()
        .map(|m| Loc {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

fn loc(n: &Node) -> Loc {
    n.span()
        .start()
        .map(|m| Loc {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

/// A template error: the field first, then where it is in the template, then why.
pub fn err(at: Loc, field: &str, reason: &str) -> Error {
    Error::invalid(
        &format!("{field} (template line {}, column {})", at.line, at.column),
        reason,
    )
}

/// The resource types a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Vpc,
    Subnet,
    SecurityGroup,
    Instance,
    Volume,
    VolumeAttachment,
    ElasticIp,
    Bucket,
}

/// What a property holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PType {
    Str,
    Int,
    Bool,
    StrList,
    /// The id of another resource of the stack, of this type (`get_resource`).
    Ref(Kind),
    RefList(Kind),
    /// Security group rules: a list of mappings.
    Rules,
}

pub struct Prop {
    pub name: &'static str,
    pub ty: PType,
    pub required: bool,
    /// Changed in place by a stack update; any other change is refused.
    pub updatable: bool,
}

const fn prop(name: &'static str, ty: PType) -> Prop {
    Prop {
        name,
        ty,
        required: false,
        updatable: false,
    }
}

const fn required(name: &'static str, ty: PType) -> Prop {
    Prop {
        name,
        ty,
        required: true,
        updatable: false,
    }
}

const fn updatable(p: Prop) -> Prop {
    Prop {
        updatable: true,
        ..p
    }
}

const VPC_PROPS: &[Prop] = &[
    prop("name", PType::Str),
    prop("description", PType::Str),
    required("cidr", PType::Str),
    prop("availability_zone", PType::Str),
    prop("snat", PType::Bool),
];
const SUBNET_PROPS: &[Prop] = &[
    required("vpc", PType::Ref(Kind::Vpc)),
    prop("name", PType::Str),
    required("cidr", PType::Str),
    prop("gateway_ip", PType::Str),
    prop("dhcp_enabled", PType::Bool),
    prop("dns_servers", PType::StrList),
];
const SG_PROPS: &[Prop] = &[
    prop("name", PType::Str),
    prop("description", PType::Str),
    updatable(prop("rules", PType::Rules)),
];
const INSTANCE_PROPS: &[Prop] = &[
    prop("name", PType::Str),
    updatable(required("flavor", PType::Str)),
    required("image", PType::Str),
    prop("subnet", PType::Ref(Kind::Subnet)),
    prop("security_groups", PType::RefList(Kind::SecurityGroup)),
    prop("availability_zone", PType::Str),
    prop("key_name", PType::Str),
    prop("user_data", PType::Str),
];
const VOLUME_PROPS: &[Prop] = &[
    prop("name", PType::Str),
    updatable(required("size_gib", PType::Int)),
    prop("volume_type", PType::Str),
    prop("availability_zone", PType::Str),
    prop("image", PType::Str),
];
const ATTACHMENT_PROPS: &[Prop] = &[
    required("instance", PType::Ref(Kind::Instance)),
    required("volume", PType::Ref(Kind::Volume)),
];
const EIP_PROPS: &[Prop] = &[
    prop("external_network", PType::Str),
    updatable(prop("instance", PType::Ref(Kind::Instance))),
];
const BUCKET_PROPS: &[Prop] = &[prop("name", PType::Str)];

/// The fields of one security group rule and what each holds.
pub const RULE_FIELDS: &[(&str, PType)] = &[
    ("direction", PType::Str),
    ("protocol", PType::Str),
    ("port_min", PType::Int),
    ("port_max", PType::Int),
    ("remote_cidr", PType::Str),
    ("description", PType::Str),
];

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Vpc,
        Kind::Subnet,
        Kind::SecurityGroup,
        Kind::Instance,
        Kind::Volume,
        Kind::VolumeAttachment,
        Kind::ElasticIp,
        Kind::Bucket,
    ];

    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Vpc => "Stratus::VPC",
            Kind::Subnet => "Stratus::Subnet",
            Kind::SecurityGroup => "Stratus::SecurityGroup",
            Kind::Instance => "Stratus::Instance",
            Kind::Volume => "Stratus::Volume",
            Kind::VolumeAttachment => "Stratus::VolumeAttachment",
            Kind::ElasticIp => "Stratus::ElasticIP",
            Kind::Bucket => "Stratus::Bucket",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_name() == s)
    }

    pub fn props(self) -> &'static [Prop] {
        match self {
            Kind::Vpc => VPC_PROPS,
            Kind::Subnet => SUBNET_PROPS,
            Kind::SecurityGroup => SG_PROPS,
            Kind::Instance => INSTANCE_PROPS,
            Kind::Volume => VOLUME_PROPS,
            Kind::VolumeAttachment => ATTACHMENT_PROPS,
            Kind::ElasticIp => EIP_PROPS,
            Kind::Bucket => BUCKET_PROPS,
        }
    }

    /// What `get_attr` may read of a resource of this type.
    pub fn attrs(self) -> &'static [&'static str] {
        match self {
            Kind::Vpc => &["id", "name", "cidr"],
            Kind::Subnet => &["id", "name", "cidr", "gateway_ip"],
            Kind::SecurityGroup => &["id", "name"],
            Kind::Instance => &["id", "name", "ip", "flavor", "host_name"],
            Kind::Volume => &["id", "name", "size_gib"],
            Kind::VolumeAttachment => &["id", "instance_id", "volume_id"],
            Kind::ElasticIp => &["id", "address"],
            Kind::Bucket => &["id", "name"],
        }
    }

    /// Whether resources of this type take a `name` (defaulted from the stack's).
    pub fn named(self) -> bool {
        self.props().iter().any(|p| p.name == "name")
    }
}

/// A value in a template: a literal, or one of the functions.
#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Value),
    Param(String),
    Resource(String),
    Attr(String, String),
    List(Vec<Spanned>),
    Map(Vec<(String, Spanned)>),
}

#[derive(Debug, Clone)]
pub struct Spanned {
    pub e: Expr,
    pub at: Loc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Number,
    Boolean,
}

impl ParamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Number => "number",
            ParamKind::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    pub description: String,
    pub default: Option<Value>,
    pub allowed: Vec<Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub at: Loc,
}

#[derive(Debug, Clone)]
pub struct Res {
    pub name: String,
    pub kind: Kind,
    pub props: BTreeMap<String, Spanned>,
    /// What it needs, from its references and `depends_on`; sorted.
    pub depends_on: Vec<String>,
    pub at: Loc,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub description: String,
    pub value: Spanned,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub description: String,
    pub params: Vec<Param>,
    pub resources: Vec<Res>,
    pub outputs: Vec<Output>,
    /// Resource names in creation order, grouped: each group needs only earlier groups.
    pub waves: Vec<Vec<String>>,
}

impl Template {
    pub fn resource(&self, name: &str) -> Option<&Res> {
        self.resources.iter().find(|r| r.name == name)
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

const TOP_KEYS: &[&str] = &[
    "template_version",
    "description",
    "parameters",
    "resources",
    "outputs",
];
/// The versions of the language; the key may be left out.
const VERSIONS: &[&str] = &["2026-12-01"];

fn mapping<'a>(n: &'a Node, field: &str) -> Result<&'a marked_yaml::types::MarkedMappingNode> {
    n.as_mapping()
        .ok_or_else(|| err(loc(n), field, "must be a mapping"))
}

fn scalar<'a>(n: &'a Node, field: &str) -> Result<&'a str> {
    n.as_scalar()
        .map(|s| s.as_str())
        .ok_or_else(|| err(loc(n), field, "must be a single value"))
}

/// Names of parameters, resources and outputs.
fn check_name(n: &Node, key: &str, field: &str) -> Result<()> {
    let ok = key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(err(
            loc(n),
            field,
            "names start with a letter and hold up to 64 letters, digits, '_' or '-'",
        ))
    }
}

fn load_error(e: LoadError) -> Error {
    let (m, reason) = match &e {
        LoadError::ScanError(m, se) => (Some(*m), se.info().to_string()),
        LoadError::TopLevelMustBeMapping(m) => (Some(*m), "must be a mapping".into()),
        LoadError::UnexpectedAnchor(m) => (Some(*m), "anchors are not supported".into()),
        LoadError::UnexpectedTag(m) => (Some(*m), "YAML tags are not supported".into()),
        LoadError::MappingKeyMustBeScalar(m) => (Some(*m), "keys must be plain values".into()),
        LoadError::DuplicateKey(d) => (
            d.key.span().start().copied(),
            format!("the key {:?} appears twice in one mapping", d.key.as_str()),
        ),
        other => (None, other.to_string()),
    };
    match m {
        Some(m) => err(
            Loc {
                line: m.line(),
                column: m.column(),
            },
            "template",
            &reason,
        ),
        None => Error::invalid("template", &reason),
    }
}

/// An expression as written: literals stay text until a property's type says what they are.
fn expr(n: &Node, field: &str) -> Result<Spanned> {
    let at = loc(n);
    let e = match n {
        Node::Scalar(s) => Expr::Lit(Value::String(s.as_str().to_string())),
        Node::Sequence(items) => Expr::List(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| expr(x, &format!("{field}[{i}]")))
                .collect::<Result<_>>()?,
        ),
        Node::Mapping(m) => {
            let func = m.iter().next().filter(|_| m.len() == 1).and_then(|(k, v)| {
                ["get_param", "get_resource", "get_attr"]
                    .contains(&k.as_str())
                    .then_some((k.as_str(), v))
            });
            match func {
                Some(("get_param", v)) => {
                    Expr::Param(scalar(v, &format!("{field}.get_param"))?.into())
                }
                Some(("get_resource", v)) => {
                    Expr::Resource(scalar(v, &format!("{field}.get_resource"))?.into())
                }
                Some((_, v)) => {
                    let f = format!("{field}.get_attr");
                    let parts = v
                        .as_sequence()
                        .filter(|s| s.len() == 2)
                        .ok_or_else(|| err(loc(v), &f, "must be [resource, attribute]"))?;
                    Expr::Attr(scalar(&parts[0], &f)?.into(), scalar(&parts[1], &f)?.into())
                }
                None => Expr::Map(
                    m.iter()
                        .map(|(k, v)| {
                            Ok((
                                k.as_str().to_string(),
                                expr(v, &format!("{field}.{}", k.as_str()))?,
                            ))
                        })
                        .collect::<Result<_>>()?,
                ),
            }
        }
    };
    Ok(Spanned { e, at })
}

/// A literal of a parameter's type.
fn param_literal(kind: ParamKind, raw: &Value, at: Loc, field: &str) -> Result<Value> {
    let text = match raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(match kind {
        ParamKind::String => Value::String(text),
        ParamKind::Number => {
            let n: f64 = text
                .parse()
                .map_err(|_| err(at, field, "must be a number"))?;
            if text.contains(['.', 'e', 'E']) {
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| err(at, field, "must be a finite number"))?
            } else {
                Value::from(
                    text.parse::<i64>()
                        .map_err(|_| err(at, field, "is out of range"))?,
                )
            }
        }
        ParamKind::Boolean => Value::Bool(match text.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(err(at, field, "must be true or false")),
        }),
    })
}

fn parse_params(n: &Node) -> Result<Vec<Param>> {
    let mut out = Vec::new();
    for (k, v) in mapping(n, "parameters")?.iter() {
        let name = k.as_str();
        let field = format!("parameters.{name}");
        check_name(v, name, &field)?;
        let at = loc(v);
        let m = mapping(v, &field)?;
        for (key, _) in m.iter() {
            if ![
                "type",
                "description",
                "default",
                "allowed_values",
                "min",
                "max",
            ]
            .contains(&key.as_str())
            {
                return Err(err(
                    at,
                    &format!("{field}.{}", key.as_str()),
                    "is not a parameter attribute (type, description, default, allowed_values, min, max)",
                ));
            }
        }
        let kind = match m.get_node("type") {
            None => ParamKind::String,
            Some(t) => match scalar(t, &format!("{field}.type"))? {
                "string" => ParamKind::String,
                "number" => ParamKind::Number,
                "boolean" => ParamKind::Boolean,
                _ => {
                    return Err(err(
                        loc(t),
                        &format!("{field}.type"),
                        "must be string, number or boolean",
                    ))
                }
            },
        };
        let lit = |node: &Node, f: &str| -> Result<Value> {
            param_literal(
                kind,
                &Value::String(scalar(node, f)?.to_string()),
                loc(node),
                f,
            )
        };
        let default = m
            .get_node("default")
            .map(|d| lit(d, &format!("{field}.default")))
            .transpose()?;
        let allowed = match m.get_node("allowed_values") {
            None => vec![],
            Some(a) => {
                let f = format!("{field}.allowed_values");
                let seq = a
                    .as_sequence()
                    .ok_or_else(|| err(loc(a), &f, "must be a list"))?;
                seq.iter()
                    .enumerate()
                    .map(|(i, x)| lit(x, &format!("{f}[{i}]")))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        let bound = |key: &str| -> Result<Option<f64>> {
            m.get_node(key)
                .map(|b| {
                    let f = format!("{field}.{key}");
                    if kind != ParamKind::Number {
                        return Err(err(loc(b), &f, "applies to number parameters only"));
                    }
                    scalar(b, &f)?
                        .parse::<f64>()
                        .map_err(|_| err(loc(b), &f, "must be a number"))
                })
                .transpose()
        };
        let p = Param {
            name: name.to_string(),
            kind,
            description: m
                .get_node("description")
                .map(|d| scalar(d, &format!("{field}.description")).map(str::to_string))
                .transpose()?
                .unwrap_or_default(),
            default,
            allowed,
            min: bound("min")?,
            max: bound("max")?,
            at,
        };
        if let Some(d) = &p.default {
            check_param_value(&p, d)
                .map_err(|reason| err(at, &format!("{field}.default"), &reason))?;
        }
        out.push(p);
    }
    Ok(out)
}

/// A value for a parameter: its type, allowed values and bounds; the reason when not.
fn check_param_value(p: &Param, v: &Value) -> std::result::Result<(), String> {
    let ok = match p.kind {
        ParamKind::String => v.is_string(),
        ParamKind::Number => v.is_number(),
        ParamKind::Boolean => v.is_boolean(),
    };
    if !ok {
        return Err(format!("must be a {}", p.kind.as_str()));
    }
    if !p.allowed.is_empty() && !p.allowed.contains(v) {
        let list: Vec<String> = p.allowed.iter().map(Value::to_string).collect();
        return Err(format!("must be one of {}", list.join(", ")));
    }
    if let Some(n) = v.as_f64() {
        if p.min.is_some_and(|m| n < m) || p.max.is_some_and(|m| n > m) {
            return Err(format!(
                "must be between {} and {}",
                p.min.map_or("-∞".into(), |m| m.to_string()),
                p.max.map_or("∞".into(), |m| m.to_string())
            ));
        }
    }
    Ok(())
}

/// The values a stack runs with: the given ones checked, the rest from the defaults.
pub fn parameter_values(t: &Template, given: &Map<String, Value>) -> Result<Map<String, Value>> {
    for k in given.keys() {
        if t.param(k).is_none() {
            return Err(Error::invalid(
                &format!("parameters.{k}"),
                "the template has no such parameter",
            ));
        }
    }
    let mut out = Map::new();
    for p in &t.params {
        let field = format!("parameters.{}", p.name);
        let v = match given.get(&p.name) {
            // Forms send numbers and booleans as text too.
            Some(Value::String(s)) if p.kind != ParamKind::String => {
                param_literal(p.kind, &Value::String(s.clone()), p.at, &field).map_err(|_| {
                    Error::invalid(&field, &format!("must be a {}", p.kind.as_str()))
                })?
            }
            Some(v) => v.clone(),
            None => p.default.clone().ok_or_else(|| {
                Error::invalid(&field, "is required (the template gives no default)")
            })?,
        };
        check_param_value(p, &v).map_err(|reason| Error::invalid(&field, &reason))?;
        out.insert(p.name.clone(), v);
    }
    Ok(out)
}

/// Check an expression against what a property holds, typing its literals; collect the
/// resources it refers to.
struct Checker<'a> {
    params: &'a [Param],
    kinds: &'a BTreeMap<String, Kind>,
    refs: BTreeSet<String>,
}

impl Checker<'_> {
    fn check(&mut self, s: &Spanned, ty: PType, field: &str) -> Result<Spanned> {
        let at = s.at;
        let bad = |why: &str| err(at, field, why);
        let e = match (&s.e, ty) {
            (Expr::Param(name), _) => {
                let p = self
                    .params
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| {
                        bad(&format!(
                            "get_param refers to {name:?}, which the template does not declare"
                        ))
                    })?;
                let fits = matches!(
                    (p.kind, ty),
                    (ParamKind::String, PType::Str)
                        | (ParamKind::Number, PType::Int)
                        | (ParamKind::Boolean, PType::Bool)
                );
                if !fits {
                    return Err(bad(&format!(
                        "parameter {name:?} is a {} and cannot be used here",
                        p.kind.as_str()
                    )));
                }
                s.e.clone()
            }
            (Expr::Resource(name), PType::Ref(want)) => {
                self.reference(name, want, at, field)?;
                s.e.clone()
            }
            (Expr::Resource(name), PType::Str) => {
                // Any resource's id may go where text goes.
                self.reference_any(name, at, field)?;
                s.e.clone()
            }
            (Expr::Attr(name, attr), PType::Str | PType::Int) => {
                let kind = self.reference_any(name, at, field)?;
                if !kind.attrs().contains(&attr.as_str()) {
                    return Err(bad(&format!(
                        "a {} has no attribute {attr:?} (it has {})",
                        kind.type_name(),
                        kind.attrs().join(", ")
                    )));
                }
                s.e.clone()
            }
            (Expr::Lit(Value::String(t)), PType::Str) => Expr::Lit(Value::String(t.clone())),
            (Expr::Lit(Value::String(t)), PType::Int) => Expr::Lit(Value::from(
                t.parse::<i64>()
                    .map_err(|_| bad("must be a whole number"))?,
            )),
            (Expr::Lit(Value::String(t)), PType::Bool) => {
                Expr::Lit(Value::Bool(match t.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("must be true or false")),
                }))
            }
            (Expr::List(items), PType::StrList | PType::RefList(_) | PType::Rules) => {
                let inner = match ty {
                    PType::RefList(k) => Some(PType::Ref(k)),
                    PType::StrList => Some(PType::Str),
                    _ => None,
                };
                let mut out = Vec::new();
                for (i, x) in items.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    out.push(match inner {
                        Some(t) => self.check(x, t, &f)?,
                        None => self.rule(x, &f)?,
                    });
                }
                Expr::List(out)
            }
            (Expr::Resource(_), _) => {
                return Err(bad(match ty {
                    PType::Int | PType::Bool => "must be a value, not a resource",
                    _ => "get_resource does not fit here",
                }))
            }
            (Expr::Attr(..), _) => return Err(bad("get_attr does not fit here")),
            (_, PType::Ref(k)) => {
                return Err(bad(&format!(
                    "must name a {} of the template with get_resource",
                    k.type_name()
                )))
            }
            (_, PType::StrList | PType::RefList(_) | PType::Rules) => {
                return Err(bad("must be a list"))
            }
            (_, PType::Str | PType::Int | PType::Bool) => {
                return Err(bad("must be a single value"))
            }
        };
        Ok(Spanned { e, at })
    }

    fn rule(&mut self, s: &Spanned, field: &str) -> Result<Spanned> {
        let Expr::Map(fields) = &s.e else {
            return Err(err(s.at, field, "a rule is a mapping (direction, protocol, port_min, port_max, remote_cidr, description)"));
        };
        let mut out = Vec::new();
        for (k, v) in fields {
            let f = format!("{field}.{k}");
            let ty = RULE_FIELDS
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, t)| *t)
                .ok_or_else(|| err(v.at, &f, "is not a rule field (direction, protocol, port_min, port_max, remote_cidr, description)"))?;
            out.push((k.clone(), self.check(v, ty, &f)?));
        }
        if !fields.iter().any(|(k, _)| k == "direction") {
            return Err(err(
                s.at,
                &format!("{field}.direction"),
                "is required (ingress or egress)",
            ));
        }
        // A rule written out in full is checked now, so a typo is reported with its line.
        let literal: Option<Map<String, Value>> = out
            .iter()
            .map(|(k, v)| match &v.e {
                Expr::Lit(x) => Some((k.clone(), x.clone())),
                _ => None,
            })
            .collect();
        if let Some(m) = literal {
            super::resources::rule(&Value::Object(m))
                .map_err(|e| err(s.at, field, e.to_string().trim_start_matches("rules: ")))?;
        }
        Ok(Spanned {
            e: Expr::Map(out),
            at: s.at,
        })
    }

    fn reference_any(&mut self, name: &str, at: Loc, field: &str) -> Result<Kind> {
        let k = self.kinds.get(name).copied().ok_or_else(|| {
            err(
                at,
                field,
                &format!("refers to resource {name:?}, which the template does not define"),
            )
        })?;
        self.refs.insert(name.to_string());
        Ok(k)
    }

    fn reference(&mut self, name: &str, want: Kind, at: Loc, field: &str) -> Result<()> {
        let k = self.reference_any(name, at, field)?;
        if k != want {
            return Err(err(
                at,
                field,
                &format!(
                    "must name a {}; {name:?} is a {}",
                    want.type_name(),
                    k.type_name()
                ),
            ));
        }
        Ok(())
    }
}

struct RawRes<'a> {
    name: String,
    kind: Kind,
    /// Where its name is written.
    at: Loc,
    props: Option<&'a Node>,
    depends: Vec<(String, Loc)>,
}

fn raw_resources(n: &Node) -> Result<Vec<RawRes<'_>>> {
    let m = mapping(n, "resources")?;
    if m.is_empty() {
        return Err(err(
            loc(n),
            "resources",
            "the template defines no resources",
        ));
    }
    if m.len() > RESOURCES_MAX {
        return Err(err(
            loc(n),
            "resources",
            &format!("at most {RESOURCES_MAX} resources in one template"),
        ));
    }
    let mut out = Vec::new();
    for (k, v) in m.iter() {
        let name = k.as_str().to_string();
        let field = format!("resources.{name}");
        check_name(v, &name, &field)?;
        let body = mapping(v, &field)?;
        for (key, kv) in body.iter() {
            if !["type", "properties", "depends_on"].contains(&key.as_str()) {
                return Err(err(
                    loc(kv),
                    &format!("{field}.{}", key.as_str()),
                    "is not a resource attribute (type, properties, depends_on)",
                ));
            }
        }
        let t = body
            .get_node("type")
            .ok_or_else(|| err(loc(v), &format!("{field}.type"), "is required"))?;
        let tname = scalar(t, &format!("{field}.type"))?;
        let kind = Kind::parse(tname).ok_or_else(|| {
            let known: Vec<&str> = Kind::ALL.iter().map(|k| k.type_name()).collect();
            err(
                loc(t),
                &format!("{field}.type"),
                &format!(
                    "unknown resource type {tname:?} (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        let depends = match body.get_node("depends_on") {
            None => vec![],
            Some(Node::Scalar(s)) => vec![(
                s.as_str().to_string(),
                loc(body.get_node("depends_on").unwrap_or(v)),
            )],
            Some(Node::Sequence(seq)) => seq
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    Ok((
                        scalar(x, &format!("{field}.depends_on[{i}]"))?.to_string(),
                        loc(x),
                    ))
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(err(
                    loc(other),
                    &format!("{field}.depends_on"),
                    "must be a resource name or a list of them",
                ))
            }
        };
        out.push(RawRes {
            name,
            kind,
            at: key_loc(k),
            props: body.get_node("properties"),
            depends,
        });
    }
    Ok(out)
}

/// Parse and check a template: syntax, keys, types, references, and that dependencies
/// form no cycle.
pub fn parse(text: &str) -> Result<Template> {
    if text.len() > TEMPLATE_MAX {
        return Err(Error::invalid(
            "template",
            &format!("must be at most {TEMPLATE_MAX} bytes"),
        ));
    }
    let root = marked_yaml::parse_yaml_with_options(
        0,
        text,
        LoaderOptions::default().error_on_duplicate_keys(true),
    )
    .map_err(load_error)?;
    let top = mapping(&root, "template")?;
    for (k, v) in top.iter() {
        if !TOP_KEYS.contains(&k.as_str()) {
            return Err(err(
                loc(v),
                k.as_str(),
                &format!("is not a template section ({})", TOP_KEYS.join(", ")),
            ));
        }
    }
    if let Some(v) = top.get_node("template_version") {
        let s = scalar(v, "template_version")?;
        if !VERSIONS.contains(&s) {
            return Err(err(
                loc(v),
                "template_version",
                &format!("unknown version {s:?} (known: {})", VERSIONS.join(", ")),
            ));
        }
    }
    let description = top
        .get_node("description")
        .map(|d| scalar(d, "description").map(str::to_string))
        .transpose()?
        .unwrap_or_default();
    let params = top
        .get_node("parameters")
        .map(parse_params)
        .transpose()?
        .unwrap_or_default();
    let res_node = top
        .get_node("resources")
        .ok_or_else(|| err(loc(&root), "resources", "is required"))?;
    let raw = raw_resources(res_node)?;
    let kinds: BTreeMap<String, Kind> = raw.iter().map(|r| (r.name.clone(), r.kind)).collect();

    let mut resources = Vec::new();
    for r in &raw {
        let field = format!("resources.{}", r.name);
        let mut checker = Checker {
            params: &params,
            kinds: &kinds,
            refs: BTreeSet::new(),
        };
        let mut props = BTreeMap::new();
        if let Some(pn) = r.props {
            for (k, v) in mapping(pn, &format!("{field}.properties"))?.iter() {
                let pf = format!("{field}.properties.{}", k.as_str());
                let def = r
                    .kind
                    .props()
                    .iter()
                    .find(|p| p.name == k.as_str())
                    .ok_or_else(|| {
                        let known: Vec<&str> = r.kind.props().iter().map(|p| p.name).collect();
                        err(
                            loc(v),
                            &pf,
                            &format!(
                                "a {} has no such property (it has {})",
                                r.kind.type_name(),
                                known.join(", ")
                            ),
                        )
                    })?;
                let e = expr(v, &pf)?;
                props.insert(k.as_str().to_string(), checker.check(&e, def.ty, &pf)?);
            }
        }
        for p in r.kind.props().iter().filter(|p| p.required) {
            if !props.contains_key(p.name) {
                return Err(err(
                    r.at,
                    &format!("{field}.properties.{}", p.name),
                    &format!("is required for a {}", r.kind.type_name()),
                ));
            }
        }
        for (d, at) in &r.depends {
            checker.reference_any(d, *at, &format!("{field}.depends_on"))?;
        }
        if checker.refs.contains(&r.name) {
            return Err(err(r.at, &field, "refers to itself"));
        }
        resources.push(Res {
            name: r.name.clone(),
            kind: r.kind,
            props,
            depends_on: checker.refs.into_iter().collect(),
            at: r.at,
        });
    }
    let waves = waves(&resources)?;

    let mut outputs = Vec::new();
    if let Some(on) = top.get_node("outputs") {
        for (k, v) in mapping(on, "outputs")?.iter() {
            let field = format!("outputs.{}", k.as_str());
            check_name(v, k.as_str(), &field)?;
            let m = mapping(v, &field)?;
            let value = m
                .get_node("value")
                .ok_or_else(|| err(loc(v), &format!("{field}.value"), "is required"))?;
            let mut checker = Checker {
                params: &params,
                kinds: &kinds,
                refs: BTreeSet::new(),
            };
            let e = expr(value, &format!("{field}.value"))?;
            let e = match &e.e {
                // An output may be a plain value, a parameter, a resource's id or attribute.
                Expr::Lit(_) => e,
                Expr::Param(name) => {
                    if !params.iter().any(|p| &p.name == name) {
                        return Err(err(
                            e.at,
                            &format!("{field}.value"),
                            &format!(
                                "get_param refers to {name:?}, which the template does not declare"
                            ),
                        ));
                    }
                    e
                }
                _ => checker.check(&e, PType::Str, &format!("{field}.value"))?,
            };
            outputs.push(Output {
                name: k.as_str().to_string(),
                description: m
                    .get_node("description")
                    .map(|d| scalar(d, &format!("{field}.description")).map(str::to_string))
                    .transpose()?
                    .unwrap_or_default(),
                value: e,
            });
        }
    }
    Ok(Template {
        description,
        params,
        resources,
        outputs,
        waves,
    })
}

/// Group resources into waves (Kahn's algorithm); a cycle is an error naming it.
fn waves(resources: &[Res]) -> Result<Vec<Vec<String>>> {
    let mut left: Vec<&Res> = resources.iter().collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&Res>, Vec<&Res>) = left
            .into_iter()
            .partition(|r| r.depends_on.iter().all(|d| done.contains(d.as_str())));
        if ready.is_empty() {
            let cycle = find_cycle(&rest);
            let first = rest
                .iter()
                .find(|r| Some(&r.name) == cycle.first())
                .map_or(Loc::default(), |r| r.at);
            return Err(err(
                first,
                &format!("resources.{}", cycle.first().map_or("", String::as_str)),
                &format!("dependency cycle: {}", cycle.join(" → ")),
            ));
        }
        for r in &ready {
            done.insert(r.name.as_str());
        }
        out.push(ready.iter().map(|r| r.name.clone()).collect());
        left = rest;
    }
    Ok(out)
}

/// A cycle among resources none of which could be made: follow dependencies until a
/// name repeats.
fn find_cycle(stuck: &[&Res]) -> Vec<String> {
    let by: BTreeMap<&str, &Res> = stuck.iter().map(|r| (r.name.as_str(), *r)).collect();
    let Some(start) = stuck.first() else {
        return vec![];
    };
    let mut path: Vec<&str> = vec![start.name.as_str()];
    loop {
        let cur = by[path[path.len() - 1]];
        // Every stuck resource waits on another stuck one.
        let Some(next) = cur.depends_on.iter().find(|d| by.contains_key(d.as_str())) else {
            return path.iter().map(|s| s.to_string()).collect();
        };
        if let Some(i) = path.iter().position(|p| p == next) {
            let mut c: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            c.push(next.clone());
            return c;
        }
        path.push(next.as_str());
    }
}

/// What a resolved expression needs: parameter values and the made resources' attributes.
pub struct Scope<'a> {
    pub params: &'a Map<String, Value>,
    /// name → attributes (with `id`).
    pub made: &'a BTreeMap<String, Map<String, Value>>,
}

/// The value of an expression now; the reason when a resource it needs is missing.
pub fn resolve(s: &Spanned, scope: &Scope<'_>) -> std::result::Result<Value, String> {
    Ok(match &s.e {
        Expr::Lit(v) => v.clone(),
        Expr::Param(p) => scope
            .params
            .get(p)
            .cloned()
            .ok_or_else(|| format!("parameter {p:?} has no value"))?,
        Expr::Resource(r) => scope
            .made
            .get(r)
            .and_then(|a| a.get("id"))
            .cloned()
            .ok_or_else(|| format!("resource {r:?} is not made"))?,
        Expr::Attr(r, a) => scope
            .made
            .get(r)
            .ok_or_else(|| format!("resource {r:?} is not made"))?
            .get(a)
            .cloned()
            .unwrap_or(Value::Null),
        Expr::List(items) => Value::Array(
            items
                .iter()
                .map(|x| resolve(x, scope))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Expr::Map(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, scope)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
    })
}

/// An expression as data, with parameters filled in and references left as written: two
/// templates set a property the same way when these are equal.
pub fn canonical(s: &Spanned, params: &Map<String, Value>) -> Value {
    match &s.e {
        Expr::Lit(v) => v.clone(),
        Expr::Param(p) => params.get(p).cloned().unwrap_or(Value::Null),
        Expr::Resource(r) => serde_json::json!({ "get_resource": r }),
        Expr::Attr(r, a) => serde_json::json!({ "get_attr": [r, a] }),
        Expr::List(items) => Value::Array(items.iter().map(|x| canonical(x, params)).collect()),
        Expr::Map(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), canonical(v, params)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = "\
template_version: 2026-12-01
description: web tier
parameters:
  flavor:
    type: string
    default: s1.small
    allowed_values: [s1.small, s1.medium]
  size:
    type: number
    default: 10
    min: 1
resources:
  net:
    type: Stratus::VPC
    properties:
      cidr: 10.0.0.0/16
  sub:
    type: Stratus::Subnet
    properties:
      vpc: {get_resource: net}
      cidr: 10.0.1.0/24
  web:
    type: Stratus::Instance
    properties:
      flavor: {get_param: flavor}
      image: tiny
      subnet: {get_resource: sub}
  data:
    type: Stratus::Volume
    properties:
      size_gib: {get_param: size}
  att:
    type: Stratus::VolumeAttachment
    properties:
      instance: {get_resource: web}
      volume: {get_resource: data}
outputs:
  ip:
    value: {get_attr: [web, ip]}
";

    #[test]
    fn a_good_template_gives_waves_in_dependency_order() {
        let t = parse(GOOD).unwrap();
        assert_eq!(
            t.waves,
            vec![
                vec!["net".to_string(), "data".into()],
                vec!["sub".into()],
                vec!["web".into()],
                vec!["att".into()],
            ]
        );
        assert_eq!(t.resource("att").unwrap().depends_on, ["data", "web"]);
        let v = parameter_values(&t, &Map::new()).unwrap();
        assert_eq!(v["size"], 10);
        let mut given = Map::new();
        given.insert("flavor".into(), "s9.huge".into());
        let e = parameter_values(&t, &given).unwrap_err().to_string();
        assert!(
            e.contains("parameters.flavor") && e.contains("one of"),
            "{e}"
        );
        given.insert("flavor".into(), "s1.medium".into());
        given.insert("size".into(), "0".into());
        let e = parameter_values(&t, &given).unwrap_err().to_string();
        assert!(
            e.contains("parameters.size") && e.contains("between 1"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_field_and_where_it_is() {
        let cycle = GOOD.replace(
            "      cidr: 10.0.0.0/16\n",
            "      cidr: 10.0.0.0/16\n    depends_on: att\n",
        );
        let e = message(&cycle);
        assert!(
            e.starts_with(
                "resources.net (template line 13, column 3): dependency cycle: net → att → web → sub → net"
            ),
            "{e}"
        );

        let e = message(&GOOD.replace("Stratus::Volume\n", "Stratus::Disk\n"));
        assert!(
            e.starts_with("resources.data.type (template line 29, column 11)"),
            "{e}"
        );
        assert!(e.contains("unknown resource type \"Stratus::Disk\""), "{e}");

        let e = message(&GOOD.replace("{get_resource: sub}", "{get_resource: subnet}"));
        assert!(
            e.starts_with("resources.web.properties.subnet (template line 27"),
            "{e}"
        );
        assert!(e.contains("does not define"), "{e}");

        let e = message(&GOOD.replace("{get_resource: sub}", "{get_resource: net}"));
        assert!(
            e.contains("must name a Stratus::Subnet; \"net\" is a Stratus::VPC"),
            "{e}"
        );

        let e = message(&GOOD.replace("[web, ip]", "[web, colour]"));
        assert!(e.starts_with("outputs.ip.value"), "{e}");
        assert!(e.contains("no attribute \"colour\""), "{e}");

        let e = message(&GOOD.replace("size_gib: {get_param: size}", "size_gib: ten"));
        assert!(
            e.starts_with("resources.data.properties.size_gib (template line 31"),
            "{e}"
        );

        let e = message(&GOOD.replace("image: tiny", "imagen: tiny"));
        assert!(
            e.contains("resources.web.properties.imagen") && e.contains("no such property"),
            "{e}"
        );

        let e = message(&GOOD.replace("      image: tiny\n", ""));
        assert!(
            e.contains("resources.web.properties.image") && e.contains("is required"),
            "{e}"
        );

        let e = message(&GOOD.replace("{get_param: flavor}", "{get_param: flavour}"));
        assert!(e.contains("does not declare"), "{e}");

        let e = message("resources:\n  a: [unclosed\n");
        assert!(e.starts_with("template (template line"), "{e}");

        let e = message(
            "resources:\n  a:\n    type: Stratus::Bucket\n  a:\n    type: Stratus::Bucket\n",
        );
        assert!(e.contains("appears twice"), "{e}");

        let e = message(&format!("{GOOD}extra: 1\n"));
        assert!(e.starts_with("extra (template line"), "{e}");
    }

    #[test]
    fn canonical_forms_compare_templates() {
        let a = parse(GOOD).unwrap();
        let b = parse(&GOOD.replace("default: 10", "default: 20")).unwrap();
        let pa = parameter_values(&a, &Map::new()).unwrap();
        let pb = parameter_values(&b, &Map::new()).unwrap();
        let size = |t: &Template, p| canonical(&t.resource("data").unwrap().props["size_gib"], p);
        assert_eq!(size(&a, &pa), 10);
        assert_eq!(size(&b, &pb), 20);
        let sub = |t: &Template, p| canonical(&t.resource("web").unwrap().props["subnet"], p);
        assert_eq!(sub(&a, &pa), sub(&b, &pb));
    }
}
