//! Range queries in the common subset of PromQL, parsed by `promql-parser`.
//!
//! Supported: vector and range selectors (with `offset`); number literals; unary minus;
//! arithmetic (`+ - * / % ^`) and comparisons (`== != > < >= <=`, filtering or with
//! `bool`) between scalars and vectors, vector–vector matched one-to-one on all labels
//! but the name (or `on(…)`/`ignoring(…)`), and `and`/`or`/`unless`; aggregations `sum`,
//! `avg`, `min`, `max`, `count`, `topk`, `bottomk` with `by`/`without`; functions `rate`,
//! `irate`, `increase`, `delta`, `avg_over_time`, `min_over_time`, `max_over_time`,
//! `sum_over_time`, `count_over_time`, `last_over_time`, `abs`, `ceil`, `floor`, `round`,
//! `clamp_min`, `clamp_max`, `time`, `vector`, `scalar`. Anything else is refused with the
//! reason. `rate` is the per-second increase between the first and last samples in the
//! window (counter resets handled, no extrapolation to the window's edges); `increase` is
//! that rate times the window.
//!
//! Every selector also gets the caller's `extra` matchers, which is how a tenant sees only
//! its own series.

use std::collections::{BTreeMap, HashMap};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{self, Expr, LabelModifier, Offset, VectorSelector};

use crate::labels::{Labels, MatchOp, Matcher, NAME};
use crate::{Error, Result, SeriesData, Tsdb};

/// How far back an instant selector looks for a series' latest sample (Prometheus's 5 min).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most steps a range query may have.
pub const MAX_STEPS: i64 = 11_000;

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// Parse a query, refusing what the engine does not evaluate.
pub fn parse(q: &str) -> Result<Expr> {
    let e = parser::parse(q).map_err(|e| invalid(format!("query: {e}")))?;
    check(&e)?;
    Ok(e)
}

/// The metric names a query selects (for checking that they exist).
pub fn metric_names(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    walk_selectors(e, &mut |vs, _| {
        if let Some(n) = name_of(vs) {
            out.push(n);
        }
    });
    out
}

fn name_of(vs: &VectorSelector) -> Option<String> {
    vs.name.clone().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == NAME && matches!(m.op, PMatchOp::Equal))
            .map(|m| m.value.clone())
    })
}

const FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "abs",
    "ceil",
    "floor",
    "round",
    "clamp_min",
    "clamp_max",
    "time",
    "vector",
    "scalar",
];
const AGGREGATIONS: &[&str] = &["sum", "avg", "min", "max", "count", "topk", "bottomk"];

fn check(e: &Expr) -> Result<()> {
    match e {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !AGGREGATIONS.contains(&op.as_str()) {
                return Err(invalid(format!(
                    "query: the aggregation {op} is not supported (only {})",
                    AGGREGATIONS.join(", ")
                )));
            }
            check(&a.expr)?;
            if let Some(p) = &a.param {
                check(p)?;
            }
            Ok(())
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if !matches!(
                    m.card,
                    parser::VectorMatchCardinality::OneToOne
                        | parser::VectorMatchCardinality::ManyToMany
                ) {
                    return Err(invalid(
                        "query: group_left/group_right matching is not supported",
                    ));
                }
            }
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Paren(p) => check(&p.expr),
        Expr::Call(c) => {
            if !FUNCTIONS.contains(&c.func.name) {
                return Err(invalid(format!(
                    "query: the function {} is not supported (only {})",
                    c.func.name,
                    FUNCTIONS.join(", ")
                )));
            }
            c.args.args.iter().try_for_each(|a| check(a))
        }
        Expr::NumberLiteral(_) | Expr::VectorSelector(_) | Expr::MatrixSelector(_) => {
            let at = match e {
                Expr::VectorSelector(v) => v.at.is_some(),
                Expr::MatrixSelector(m) => m.vs.at.is_some(),
                _ => false,
            };
            if at {
                return Err(invalid("query: the @ modifier is not supported"));
            }
            Ok(())
        }
        Expr::StringLiteral(_) => Err(invalid("query: a string is not a value to plot")),
        Expr::Subquery(_) => Err(invalid("query: subqueries are not supported")),
        Expr::Extension(_) => Err(invalid("query: not supported")),
    }
}

/// Every selector with its range (0 for an instant selector).
fn walk_selectors<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a VectorSelector, i64)) {
    match e {
        Expr::Aggregate(a) => {
            walk_selectors(&a.expr, f);
            if let Some(p) = &a.param {
                walk_selectors(p, f);
            }
        }
        Expr::Unary(u) => walk_selectors(&u.expr, f),
        Expr::Binary(b) => {
            walk_selectors(&b.lhs, f);
            walk_selectors(&b.rhs, f);
        }
        Expr::Paren(p) => walk_selectors(&p.expr, f),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk_selectors(a, f)),
        Expr::VectorSelector(v) => f(v, 0),
        Expr::MatrixSelector(m) => f(&m.vs, m.range.as_millis() as i64),
        _ => {}
    }
}

fn offset_ms(vs: &VectorSelector) -> i64 {
    match &vs.offset {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

fn matchers_of(vs: &VectorSelector, extra: &[Matcher]) -> Result<Vec<Matcher>> {
    let mut out = Vec::new();
    if let Some(n) = &vs.name {
        out.push(Matcher::equal(NAME, n));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(&m.name, op, &m.value)?);
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(invalid("query: `or` inside a selector is not supported"));
    }
    out.extend(extra.iter().cloned());
    Ok(out)
}

#[derive(Debug, Clone)]
enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

/// The samples each selector needs for the whole query, fetched once.
struct Fetched(HashMap<String, Vec<SeriesData>>);

fn key(vs: &VectorSelector) -> String {
    vs.to_string()
}

struct Ctx<'a> {
    data: &'a Fetched,
}

/// Evaluate `q` at every step from `start` to `end` (ms), with `extra` matchers on every
/// selector. Series whose every step is empty are left out.
pub fn query_range(
    db: &Tsdb,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
    extra: &[Matcher],
) -> Result<Vec<SeriesData>> {
    if step <= 0 {
        return Err(invalid("step: must be more than 0"));
    }
    if end < start {
        return Err(invalid("end: must not be before start"));
    }
    if (end - start) / step + 1 > MAX_STEPS {
        return Err(invalid(format!(
            "step: the query would have more than {MAX_STEPS} steps; use a larger step"
        )));
    }
    let e = parse(q)?;
    let mut need: Vec<(&VectorSelector, i64)> = Vec::new();
    walk_selectors(&e, &mut |vs, range| need.push((vs, range)));
    let mut fetched = HashMap::new();
    for (vs, range) in need {
        let off = offset_ms(vs);
        let from = start - off - range.max(LOOKBACK_MS);
        let to = end - off;
        let k = format!("{}[{range}]", key(vs));
        if fetched.contains_key(&k) {
            continue;
        }
        fetched.insert(k, db.select(&matchers_of(vs, extra)?, from, to)?);
    }
    let data = Fetched(fetched);
    let ctx = Ctx { data: &data };
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut scalar = Vec::new();
    let mut t = start;
    while t <= end {
        match ctx.eval(&e, t)? {
            Value::Scalar(v) => scalar.push((t, v)),
            Value::Vector(v) => {
                for (l, x) in v {
                    out.entry(l).or_default().push((t, x));
                }
            }
        }
        t += step;
    }
    if !scalar.is_empty() {
        return Ok(vec![SeriesData {
            labels: Labels::default(),
            samples: scalar,
        }]);
    }
    Ok(out
        .into_iter()
        .map(|(labels, samples)| SeriesData { labels, samples })
        .collect())
}

/// Evaluate `q` at one time.
pub fn query_instant(db: &Tsdb, q: &str, t: i64, extra: &[Matcher]) -> Result<Vec<(Labels, f64)>> {
    Ok(query_range(db, q, t, t, 1, extra)?
        .into_iter()
        .filter_map(|s| s.samples.last().map(|x| (s.labels, x.1)))
        .collect())
}

/// Samples in `(from, to]`.
fn window(s: &[(i64, f64)], from: i64, to: i64) -> &[(i64, f64)] {
    let a = s.partition_point(|x| x.0 <= from);
    let b = s.partition_point(|x| x.0 <= to);
    &s[a..b]
}

/// The increase of a counter over samples, resets counted as a restart from 0.
fn counter_increase(w: &[(i64, f64)]) -> f64 {
    let mut inc = 0.0;
    for p in w.windows(2) {
        let d = p[1].1 - p[0].1;
        inc += if d < 0.0 { p[1].1 } else { d };
    }
    inc
}

impl Ctx<'_> {
    fn series(&self, vs: &VectorSelector, range: i64) -> &[SeriesData] {
        self.data
            .0
            .get(&format!("{}[{range}]", key(vs)))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    fn eval(&self, e: &Expr, t: i64) -> Result<Value> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => Ok(match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => Value::Vector(
                    v.into_iter()
                        .map(|(l, x)| (l.without(&[NAME]), -x))
                        .collect(),
                ),
            }),
            Expr::VectorSelector(vs) => {
                let at = t - offset_ms(vs);
                let mut out = Vec::new();
                for s in self.series(vs, 0) {
                    if let Some(last) = window(&s.samples, at - LOOKBACK_MS, at).last() {
                        out.push((s.labels.clone(), last.1));
                    }
                }
                Ok(Value::Vector(out))
            }
            Expr::MatrixSelector(_) => Err(invalid(
                "query: a range selector must be inside a function such as rate(…)",
            )),
            Expr::Call(c) => self.call(c.func.name, &c.args.args, t),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            _ => Err(invalid("query: not supported")),
        }
    }

    fn call(&self, name: &str, args: &[Box<Expr>], t: i64) -> Result<Value> {
        let arg = |i: usize| {
            args.get(i)
                .map(|a| a.as_ref())
                .ok_or_else(|| invalid(format!("query: {name} needs more arguments")))
        };
        match name {
            "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
            "vector" => match self.eval(arg(0)?, t)? {
                Value::Scalar(v) => Ok(Value::Vector(vec![(Labels::default(), v)])),
                v => Ok(v),
            },
            "scalar" => match self.eval(arg(0)?, t)? {
                Value::Vector(v) if v.len() == 1 => Ok(Value::Scalar(v[0].1)),
                Value::Scalar(v) => Ok(Value::Scalar(v)),
                _ => Ok(Value::Scalar(f64::NAN)),
            },
            "abs" | "ceil" | "floor" | "round" => {
                let f = match name {
                    "abs" => f64::abs,
                    "ceil" => f64::ceil,
                    "floor" => f64::floor,
                    _ => f64::round,
                };
                Ok(map_vector(self.eval(arg(0)?, t)?, f))
            }
            "clamp_min" | "clamp_max" => {
                let Value::Scalar(bound) = self.eval(arg(1)?, t)? else {
                    return Err(invalid(format!("query: {name}'s bound must be a number")));
                };
                let v = self.eval(arg(0)?, t)?;
                Ok(if name == "clamp_min" {
                    map_vector(v, |x| x.max(bound))
                } else {
                    map_vector(v, |x| x.min(bound))
                })
            }
            _ => {
                let Expr::MatrixSelector(m) = arg(0)? else {
                    return Err(invalid(format!(
                        "query: {name} takes a range selector, e.g. {name}(metric[5m])"
                    )));
                };
                let range = m.range.as_millis() as i64;
                let at = t - offset_ms(&m.vs);
                let mut out = Vec::new();
                for s in self.series(&m.vs, range) {
                    let w = window(&s.samples, at - range, at);
                    if let Some(v) = over_time(name, w, range) {
                        out.push((s.labels.without(&[NAME]), v));
                    }
                }
                Ok(Value::Vector(out))
            }
        }
    }

    fn aggregate(&self, a: &parser::AggregateExpr, t: i64) -> Result<Value> {
        let op = a.op.to_string();
        let Value::Vector(v) = self.eval(&a.expr, t)? else {
            return Err(invalid(format!("query: {op} needs a vector")));
        };
        let group = |l: &Labels| match &a.modifier {
            Some(LabelModifier::Include(keep)) => l.only(&keep.labels),
            Some(LabelModifier::Exclude(drop)) => {
                let mut d: Vec<&str> = drop.labels.iter().map(|s| s.as_str()).collect();
                d.push(NAME);
                l.without(&d)
            }
            None => Labels::default(),
        };
        if op == "topk" || op == "bottomk" {
            let k = match a.param.as_deref().map(|p| self.eval(p, t)).transpose()? {
                Some(Value::Scalar(k)) if k >= 0.0 => k as usize,
                _ => return Err(invalid(format!("query: {op} needs a number k"))),
            };
            let mut groups: BTreeMap<Labels, Vec<(Labels, f64)>> = BTreeMap::new();
            for (l, x) in v {
                groups.entry(group(&l)).or_default().push((l, x));
            }
            let mut out = Vec::new();
            for (_, mut g) in groups {
                g.sort_by(|a, b| {
                    let o = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
                    if op == "topk" {
                        o.reverse()
                    } else {
                        o
                    }
                });
                out.extend(g.into_iter().take(k));
            }
            return Ok(Value::Vector(out));
        }
        let mut groups: BTreeMap<Labels, (f64, f64, f64, f64)> = BTreeMap::new();
        for (l, x) in v {
            let e = groups
                .entry(group(&l))
                .or_insert((0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
            e.0 += x;
            e.1 += 1.0;
            e.2 = e.2.min(x);
            e.3 = e.3.max(x);
        }
        Ok(Value::Vector(
            groups
                .into_iter()
                .map(|(l, (sum, n, min, max))| {
                    let v = match op.as_str() {
                        "sum" => sum,
                        "avg" => sum / n,
                        "min" => min,
                        "max" => max,
                        _ => n,
                    };
                    (l, v)
                })
                .collect(),
        ))
    }

    fn binary(&self, b: &parser::BinaryExpr, t: i64) -> Result<Value> {
        let op = b.op.to_string();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let keep_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        let apply = |x: f64, y: f64| -> Option<f64> {
            if comparison {
                let r = compare(&op, x, y);
                return if keep_bool {
                    Some(r as i64 as f64)
                } else {
                    r.then_some(x)
                };
            }
            Some(arith(&op, x, y))
        };
        match (lhs, rhs) {
            (Value::Scalar(x), Value::Scalar(y)) => Ok(Value::Scalar(if comparison {
                compare(&op, x, y) as i64 as f64
            } else {
                arith(&op, x, y)
            })),
            (Value::Vector(v), Value::Scalar(y)) => Ok(Value::Vector(
                v.into_iter()
                    .filter_map(|(l, x)| {
                        apply(x, y).map(|r| (result_labels(&l, comparison && !keep_bool), r))
                    })
                    .collect(),
            )),
            (Value::Scalar(x), Value::Vector(v)) => Ok(Value::Vector(
                v.into_iter()
                    .filter_map(|(l, y)| {
                        // A filtering comparison keeps the vector's value.
                        let r = if comparison && !keep_bool {
                            compare(&op, x, y).then_some(y)
                        } else {
                            apply(x, y)
                        }?;
                        Some((result_labels(&l, comparison && !keep_bool), r))
                    })
                    .collect(),
            )),
            (Value::Vector(l), Value::Vector(r)) => {
                let sig =
                    |labels: &Labels| match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                        Some(LabelModifier::Include(on)) => labels.only(&on.labels),
                        Some(LabelModifier::Exclude(ign)) => {
                            let mut d: Vec<&str> = ign.labels.iter().map(|s| s.as_str()).collect();
                            d.push(NAME);
                            labels.without(&d)
                        }
                        None => labels.without(&[NAME]),
                    };
                if b.op.is_set_operator() {
                    let rs: std::collections::HashSet<Labels> =
                        r.iter().map(|(l, _)| sig(l)).collect();
                    return Ok(Value::Vector(match op.as_str() {
                        "and" => l
                            .into_iter()
                            .filter(|(x, _)| rs.contains(&sig(x)))
                            .collect(),
                        "unless" => l
                            .into_iter()
                            .filter(|(x, _)| !rs.contains(&sig(x)))
                            .collect(),
                        _ => {
                            let ls: std::collections::HashSet<Labels> =
                                l.iter().map(|(x, _)| sig(x)).collect();
                            let mut out = l;
                            out.extend(r.into_iter().filter(|(x, _)| !ls.contains(&sig(x))));
                            out
                        }
                    }));
                }
                let mut right: HashMap<Labels, f64> = HashMap::new();
                for (lab, y) in r {
                    if right.insert(sig(&lab), y).is_some() {
                        return Err(invalid(
                            "query: many series on the right side match one on the left",
                        ));
                    }
                }
                let mut out = Vec::new();
                for (lab, x) in l {
                    if let Some(y) = right.get(&sig(&lab)) {
                        if let Some(v) = apply(x, *y) {
                            let labels = if comparison && !keep_bool {
                                lab
                            } else {
                                sig(&lab)
                            };
                            out.push((labels, v));
                        }
                    }
                }
                Ok(Value::Vector(out))
            }
        }
    }
}

/// Arithmetic drops the metric name (the value is no longer that metric); a filtering
/// comparison keeps the series as it was.
fn result_labels(l: &Labels, filtering: bool) -> Labels {
    if filtering {
        l.clone()
    } else {
        l.without(&[NAME])
    }
}

fn map_vector(v: Value, f: impl Fn(f64) -> f64) -> Value {
    match v {
        Value::Scalar(x) => Value::Scalar(f(x)),
        Value::Vector(v) => Value::Vector(
            v.into_iter()
                .map(|(l, x)| (l.without(&[NAME]), f(x)))
                .collect(),
        ),
    }
}

fn compare(op: &str, x: f64, y: f64) -> bool {
    match op {
        "==" => x == y,
        "!=" => x != y,
        ">" => x > y,
        "<" => x < y,
        ">=" => x >= y,
        _ => x <= y,
    }
}

fn arith(op: &str, x: f64, y: f64) -> f64 {
    match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        "%" => x % y,
        "^" => x.powf(y),
        _ => f64::NAN,
    }
}

fn over_time(name: &str, w: &[(i64, f64)], range: i64) -> Option<f64> {
    let (first, last) = (w.first()?, w.last()?);
    let n = w.len() as f64;
    let span = (last.0 - first.0) as f64 / 1000.0;
    Some(match name {
        "rate" | "increase" => {
            if w.len() < 2 || span <= 0.0 {
                return None;
            }
            let r = counter_increase(w) / span;
            if name == "rate" {
                r
            } else {
                r * range as f64 / 1000.0
            }
        }
        "irate" => {
            let p = w.get(w.len().checked_sub(2)?)?;
            let dt = (last.0 - p.0) as f64 / 1000.0;
            if dt <= 0.0 {
                return None;
            }
            let d = last.1 - p.1;
            (if d < 0.0 { last.1 } else { d }) / dt
        }
        "delta" => {
            if w.len() < 2 {
                return None;
            }
            last.1 - first.1
        }
        "avg_over_time" => w.iter().map(|x| x.1).sum::<f64>() / n,
        "min_over_time" => w.iter().map(|x| x.1).fold(f64::INFINITY, f64::min),
        "max_over_time" => w.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max),
        "sum_over_time" => w.iter().map(|x| x.1).sum(),
        "count_over_time" => n,
        _ => last.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn db() -> Tsdb {
        let db = Tsdb::in_memory();
        let mut batch = Vec::new();
        // Two instances' CPU counters over 10 minutes at 10 s: a busy one (0.9 s of CPU a
        // second) and an idle one (0.1), in two projects; a gauge of memory.
        for i in 0..=60 {
            let t = i * 10_000;
            for (inst, project, busy) in [("a", "p1", 0.9), ("b", "p2", 0.1)] {
                batch.push(Sample {
                    labels: Labels::new([
                        (NAME, "cpu_seconds_total"),
                        ("instance", inst),
                        ("project", project),
                    ])
                    .unwrap(),
                    t,
                    v: busy * (t as f64 / 1000.0),
                });
                batch.push(Sample {
                    labels: Labels::new([
                        (NAME, "memory_bytes"),
                        ("instance", inst),
                        ("project", project),
                    ])
                    .unwrap(),
                    t,
                    v: if inst == "a" { 100.0 } else { 300.0 },
                });
            }
        }
        db.append(&batch).unwrap();
        db
    }

    fn at(db: &Tsdb, q: &str, t: i64) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = query_instant(db, q, t, &[])
            .unwrap()
            .into_iter()
            .map(|(l, x)| (l.to_string(), (x * 1000.0).round() / 1000.0))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn rates_aggregations_and_thresholds() {
        let db = db();
        assert_eq!(
            at(&db, "rate(cpu_seconds_total[1m]) * 100", 600_000),
            vec![
                ("{instance=\"a\", project=\"p1\"}".to_string(), 90.0),
                ("{instance=\"b\", project=\"p2\"}".to_string(), 10.0)
            ]
        );
        // The alert-rule shape: only what crosses the threshold comes back.
        let hot = at(&db, "rate(cpu_seconds_total[1m]) * 100 > 50", 600_000);
        assert_eq!(hot.len(), 1);
        assert!(hot[0].0.contains("\"a\""));
        assert_eq!(
            at(&db, "sum(memory_bytes)", 600_000),
            vec![("{}".into(), 400.0)]
        );
        assert_eq!(
            at(&db, "avg by (project) (memory_bytes)", 600_000)[1],
            ("{project=\"p2\"}".into(), 300.0)
        );
        assert_eq!(at(&db, "count(memory_bytes)", 600_000)[0].1, 2.0);
        assert_eq!(
            at(&db, "topk(1, memory_bytes)", 600_000)[0].0,
            "memory_bytes{instance=\"b\", project=\"p2\"}"
        );
        assert_eq!(at(&db, "max_over_time(memory_bytes[5m])", 600_000).len(), 2);
        // Vector–vector on shared labels: bytes per CPU-second rate.
        let r = at(&db, "memory_bytes / rate(cpu_seconds_total[1m])", 600_000);
        assert_eq!(r[0].1, 111.111);
        assert_eq!(at(&db, "1 + 2 * 3", 0), vec![("{}".into(), 7.0)]);
        // A counter reset is a restart, not a negative rate.
        let c = Tsdb::in_memory();
        let l = Labels::new([(NAME, "c")]).unwrap();
        for (t, v) in [(0, 10.0), (10_000, 20.0), (20_000, 5.0), (30_000, 15.0)] {
            c.append(&[Sample {
                labels: l.clone(),
                t,
                v,
            }])
            .unwrap();
        }
        // Increases 10, 5 (restart), 10 over 30 s.
        assert_eq!(at(&c, "rate(c[1m])", 30_000)[0].1, 0.833);
    }

    #[test]
    fn extra_matchers_scope_every_selector() {
        let db = db();
        let mine = [Matcher::equal("project", "p2")];
        let v = query_instant(
            &db,
            "sum(memory_bytes) + count(cpu_seconds_total)",
            600_000,
            &mine,
        )
        .unwrap();
        assert_eq!(v, vec![(Labels::default(), 301.0)]);
    }

    #[test]
    fn range_queries_step_and_bad_queries_say_why() {
        let db = db();
        let r = query_range(&db, "memory_bytes", 0, 600_000, 60_000, &[]).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].samples.len(), 11);
        for (q, want) in [
            ("rate(cpu_seconds_total)", "query:"),
            ("histogram_quantile(0.9, x)", "not supported"),
            ("memory_bytes[5m]", "range selector must be inside"),
            ("rate(memory_bytes[5m:1m])", "subqueries"),
            ("quantile(0.5, memory_bytes)", "aggregation quantile"),
            ("sum(", "query:"),
        ] {
            let e = query_range(&db, q, 0, 1000, 1000, &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{q}: {e}");
        }
        let e = query_range(&db, "x", 0, 1_000_000_000, 1, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("step:"), "{e}");
        assert_eq!(
            metric_names(&parse("rate(a[1m]) / on(x) b{y=\"1\"}").unwrap()),
            vec!["a", "b"]
        );
    }
}
