//! Series labels and the matchers that select them (Prometheus's model: the metric name
//! is the label `__name__`).

use std::fmt;

use crate::Error;

pub const NAME: &str = "__name__";

/// A series' labels, sorted by name, no empty values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Labels from pairs: sorted, empty values dropped; a name given twice is an error.
    pub fn new<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Labels, Error> {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        v.sort();
        for w in v.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(Error::Invalid(format!("label {} given twice", w[0].0)));
            }
        }
        for (k, _) in &v {
            if !valid_name(k) {
                return Err(Error::Invalid(format!(
                    "label name {k:?} must match [a-zA-Z_][a-zA-Z0-9_]*"
                )));
            }
        }
        Ok(Labels(v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn name(&self) -> &str {
        self.get(NAME).unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes its strings take, for memory accounting.
    pub fn size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len() + 48).sum()
    }

    /// The same labels without `drop` (e.g. the name, after a function).
    pub fn without(&self, drop: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| !drop.contains(&k.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// Only `keep`.
    pub fn only(&self, keep: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| keep.iter().any(|x| x == k))
                .cloned()
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.name())?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        write!(f, "}}")
    }
}

pub fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// `name op value`; regular expressions are anchored at both ends, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<regex::Regex>,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, Error> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    Error::Invalid(format!("bad regular expression {value:?}: {e}"))
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value: value.into(),
            re,
        })
    }

    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }

    pub fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.get(&self.name).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_drop_empty_and_refuse_bad_names() {
        let l = Labels::new([("job", "agent"), (NAME, "up"), ("empty", "")]).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l.name(), "up");
        assert_eq!(l.to_string(), "up{job=\"agent\"}");
        assert!(Labels::new([("a", "1"), ("a", "2")]).is_err());
        assert!(Labels::new([("1a", "x")]).is_err());
        assert!(Labels::new([("a-b", "x")]).is_err());
    }

    #[test]
    fn matchers_are_anchored() {
        let m = Matcher::new("host", MatchOp::Regex, "node-[0-9]+").unwrap();
        assert!(m.matches("node-12"));
        assert!(!m.matches("xnode-12"));
        assert!(!m.matches("node-12x"));
        let n = Matcher::new("host", MatchOp::NotEqual, "").unwrap();
        assert!(!n.matches(""));
        assert!(Matcher::new("x", MatchOp::Regex, "(").is_err());
    }
}
