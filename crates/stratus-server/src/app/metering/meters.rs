//! What each resource accrues, from its metered state.
//!
//! A resource's state is the merge of the attributes its lifecycle events carried (flavor,
//! vCPUs, size, type, …) plus two flags the events set: `running` (the guest holds CPU and
//! memory) and `observed` (its host's agent is reporting). [`rates`] turns a state into what
//! it accrues per hour; [`apply`] moves a state through an event. Both are pure, so the
//! meter, the cost estimate and the tests share one definition.

use serde_json::{Map, Value};
use stratus_api::{Meter, MICRO};

/// One meter's accrual: `per_hour` millionths of the unit for each hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub meter: &'static str,
    pub spec: String,
    pub per_hour: i64,
    /// Unobserved time: recorded, never priced.
    pub gap: bool,
}

pub struct MeterDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub resource_type: &'static str,
    pub spec: &'static str,
    pub description: &'static str,
}

pub const METERS: &[MeterDef] = &[
    MeterDef {
        name: "instance_hours",
        unit: "hour",
        resource_type: "instance",
        spec: "flavor",
        description: "hours an instance's guest runs",
    },
    MeterDef {
        name: "vcpu_hours",
        unit: "vcpu-hour",
        resource_type: "instance",
        spec: "flavor",
        description: "vCPUs of a running instance, per hour",
    },
    MeterDef {
        name: "memory_gib_hours",
        unit: "GiB-hour",
        resource_type: "instance",
        spec: "flavor",
        description: "memory of a running instance, GiB per hour",
    },
    MeterDef {
        name: "instance_disk_gib_hours",
        unit: "GiB-hour",
        resource_type: "instance",
        spec: "flavor",
        description: "an instance's local root disk, GiB per hour, running or not",
    },
    MeterDef {
        name: "instance_unobserved_hours",
        unit: "hour",
        resource_type: "instance",
        spec: "flavor",
        description:
            "hours nobody observed an instance (its host's agent was silent); never priced",
    },
    MeterDef {
        name: "volume_gib_hours",
        unit: "GiB-hour",
        resource_type: "volume",
        spec: "volume type",
        description: "a volume's size, GiB per hour, by volume type (IOPS tier)",
    },
    MeterDef {
        name: "snapshot_gib_hours",
        unit: "GiB-hour",
        resource_type: "snapshot",
        spec: "",
        description: "a snapshot, GiB of its volume per hour",
    },
    MeterDef {
        name: "backup_gib_hours",
        unit: "GiB-hour",
        resource_type: "backup",
        spec: "",
        description: "a backup's stored bytes, GiB per hour",
    },
    MeterDef {
        name: "image_gib_hours",
        unit: "GiB-hour",
        resource_type: "image",
        spec: "",
        description: "a private image's stored bytes, GiB per hour",
    },
    MeterDef {
        name: "eip_hours",
        unit: "hour",
        resource_type: "elastic_ip",
        spec: "",
        description: "hours an elastic IP is allocated",
    },
    MeterDef {
        name: "security_group_hours",
        unit: "hour",
        resource_type: "security_group",
        spec: "",
        description: "security groups held, per hour",
    },
    MeterDef {
        name: "object_gib_hours",
        unit: "GiB-hour",
        resource_type: "bucket",
        spec: "",
        description: "bytes stored in a bucket (sampled as each hour closes), GiB per hour",
    },
    MeterDef {
        name: "object_read_requests",
        unit: "request",
        resource_type: "bucket",
        spec: "",
        description: "S3 reads served (GET, HEAD, LIST)",
    },
    MeterDef {
        name: "object_write_requests",
        unit: "request",
        resource_type: "bucket",
        spec: "",
        description: "S3 writes served (everything else)",
    },
    MeterDef {
        name: crate::store::subscriptions::FEE_METER,
        unit: "month",
        resource_type: "any",
        spec: "subscription",
        description: "a subscription's fee (包年包月): one record per calendar month it covers, \
            made from the monthly prices of the meters it covers; not priced itself",
    },
];

pub fn meter(name: &str) -> Option<&'static MeterDef> {
    METERS.iter().find(|m| m.name == name)
}

pub fn unit_of(name: &str) -> &'static str {
    meter(name).map(|m| m.unit).unwrap_or("")
}

pub fn meter_view(m: &MeterDef) -> Meter {
    Meter {
        name: m.name.into(),
        unit: m.unit.into(),
        resource_type: m.resource_type.into(),
        spec: m.spec.into(),
        description: m.description.into(),
    }
}

const GIB: i64 = 1 << 30;

fn int(s: &Map<String, Value>, k: &str) -> i64 {
    s.get(k).and_then(Value::as_i64).unwrap_or(0)
}

fn text(s: &Map<String, Value>, k: &str) -> String {
    s.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn flag(s: &Map<String, Value>, k: &str, default: bool) -> bool {
    s.get(k).and_then(Value::as_bool).unwrap_or(default)
}

/// Bytes as millionths of a GiB.
fn gib_micro(bytes: i64) -> i64 {
    ((bytes as i128 * MICRO as i128) / GIB as i128) as i64
}

fn rate(meter: &'static str, spec: &str, per_hour: i64) -> Rate {
    Rate {
        meter,
        spec: spec.to_string(),
        per_hour,
        gap: false,
    }
}

/// What a resource in `state` accrues per hour.
pub fn rates(resource_type: &str, state: &Map<String, Value>) -> Vec<Rate> {
    if flag(state, "failed", false) {
        return vec![];
    }
    match resource_type {
        "instance" => {
            let flavor = text(state, "flavor");
            let mut out = Vec::new();
            let disk = int(state, "root_disk_gib");
            if disk > 0 && !flag(state, "boot_from_volume", false) {
                out.push(rate("instance_disk_gib_hours", &flavor, disk * MICRO));
            }
            if !flag(state, "observed", true) {
                out.push(Rate {
                    meter: "instance_unobserved_hours",
                    spec: flavor,
                    per_hour: MICRO,
                    gap: true,
                });
            } else if flag(state, "running", false) {
                out.push(rate("instance_hours", &flavor, MICRO));
                out.push(rate("vcpu_hours", &flavor, int(state, "vcpus") * MICRO));
                // MiB → millionths of a GiB, exactly: 1 MiB = 1/1024 GiB.
                let mem = int(state, "memory_mib") as i128 * MICRO as i128 / 1024;
                out.push(rate("memory_gib_hours", &flavor, mem as i64));
            }
            out
        }
        "volume" => vec![rate(
            "volume_gib_hours",
            &text(state, "volume_type"),
            int(state, "size_gib") * MICRO,
        )],
        "snapshot" => vec![rate(
            "snapshot_gib_hours",
            "",
            int(state, "size_gib") * MICRO,
        )],
        "backup" => vec![rate(
            "backup_gib_hours",
            "",
            gib_micro(int(state, "stored_bytes")),
        )],
        "image" => vec![rate(
            "image_gib_hours",
            "",
            gib_micro(int(state, "size_bytes")),
        )],
        "elastic_ip" => vec![rate("eip_hours", "", MICRO)],
        "security_group" => vec![rate("security_group_hours", "", MICRO)],
        _ => vec![],
    }
    .into_iter()
    .filter(|r| r.per_hour > 0)
    .collect()
}

/// What an event does to a resource's state.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Keep,
    /// The resource is gone: it accrues nothing from the event on.
    Remove,
}

/// Move `state` through `event` (with the event's attributes merged in).
/// What a resource accrues while in use (an instance running and observed), for a
/// subscription to cover whatever its state is when it is bought.
pub fn in_use_rates(resource_type: &str, state: &Map<String, Value>) -> Vec<Rate> {
    let mut s = state.clone();
    s.insert("running".into(), Value::Bool(true));
    s.insert("observed".into(), Value::Bool(true));
    rates(resource_type, &s)
        .into_iter()
        .filter(|r| !r.gap && r.per_hour > 0)
        .collect()
}

pub fn apply(state: &mut Map<String, Value>, event: &str, attrs: &Value) -> Applied {
    if event == "deleted" {
        return Applied::Remove;
    }
    if let Some(a) = attrs.as_object() {
        for (k, v) in a {
            // A failure's reason is not a metered attribute.
            if k != "reason" {
                state.insert(k.clone(), v.clone());
            }
        }
    }
    match event {
        "started" => {
            state.insert("running".into(), Value::Bool(true));
        }
        "stopped" => {
            state.insert("running".into(), Value::Bool(false));
        }
        "failed" => {
            // A create that failed holds nothing; a failure later stops the guest.
            if !flag(state, "launched", false) {
                state.insert("failed".into(), Value::Bool(true));
            }
            state.insert("running".into(), Value::Bool(false));
        }
        "unobserved" => {
            state.insert("observed".into(), Value::Bool(false));
        }
        "observed" => {
            state.insert("observed".into(), Value::Bool(true));
        }
        _ => {}
    }
    if flag(state, "running", false) {
        state.insert("launched".into(), Value::Bool(true));
    }
    Applied::Keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn st(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn an_instance_accrues_compute_only_while_running_and_observed() {
        let mut s = Map::new();
        apply(
            &mut s,
            "created",
            &json!({"flavor": "s2.medium", "vcpus": 2, "memory_mib": 4096, "root_disk_gib": 40}),
        );
        let r = rates("instance", &s);
        assert_eq!(r.len(), 1, "only the disk while not running: {r:?}");
        assert_eq!(r[0].per_hour, 40 * MICRO);
        apply(&mut s, "started", &json!({}));
        let r = rates("instance", &s);
        let get = |m: &str| r.iter().find(|x| x.meter == m).map(|x| x.per_hour);
        assert_eq!(get("vcpu_hours"), Some(2 * MICRO));
        assert_eq!(get("memory_gib_hours"), Some(4 * MICRO));
        assert_eq!(get("instance_hours"), Some(MICRO));
        apply(&mut s, "unobserved", &json!({}));
        let r = rates("instance", &s);
        assert!(r
            .iter()
            .any(|x| x.gap && x.meter == "instance_unobserved_hours"));
        assert!(!r.iter().any(|x| x.meter == "vcpu_hours"));
        apply(&mut s, "observed", &json!({}));
        apply(
            &mut s,
            "resized",
            &json!({"flavor": "s2.large", "vcpus": 4, "memory_mib": 8192}),
        );
        let r = rates("instance", &s);
        assert!(r
            .iter()
            .any(|x| x.meter == "vcpu_hours" && x.per_hour == 4 * MICRO && x.spec == "s2.large"));
        // A failure after launch stops the guest but keeps its disk.
        apply(&mut s, "failed", &json!({"reason": "host lost"}));
        assert_eq!(rates("instance", &s).len(), 1);
        assert_eq!(apply(&mut s, "deleted", &json!({})), Applied::Remove);
    }

    #[test]
    fn a_failed_create_accrues_nothing() {
        let mut s = st(json!({"size_gib": 100, "volume_type": "SSD"}));
        assert_eq!(rates("volume", &s)[0].per_hour, 100 * MICRO);
        apply(&mut s, "failed", &json!({"reason": "no host"}));
        assert!(rates("volume", &s).is_empty());
    }

    #[test]
    fn bytes_are_metered_as_exact_fractions_of_a_gib() {
        let s = st(json!({"stored_bytes": 512 * 1024 * 1024}));
        assert_eq!(rates("backup", &s)[0].per_hour, MICRO / 2);
        assert!(rates("backup", &st(json!({"stored_bytes": 0}))).is_empty());
    }
}
