//! What each template type does: make the real resource, wait until it is usable, change
//! it in place, remove it. All through the app functions the API uses, as the stack's
//! acting user.

use serde_json::{json, Map, Value};
use stratus_api::{
    ElasticIpBind, ElasticIpCreate, InstanceCreate, InstanceStatus, NicRequest,
    SecurityGroupCreate, SecurityGroupRuleCreate, SubnetCreate, VolumeAttach, VolumeCreate,
    VolumeDetach, VolumeExtend, VolumeStatus, VpcCreate,
};
use uuid::Uuid;

use super::template::Kind;
use super::Run;
use crate::app::{buckets, instances, networks, until, volumes};
use crate::error::{Error, Result};

fn text(p: &Map<String, Value>, k: &str) -> Option<String> {
    p.get(k).and_then(Value::as_str).map(str::to_string)
}

fn uuid(p: &Map<String, Value>, k: &str) -> Result<Option<Uuid>> {
    match p.get(k).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => Uuid::parse_str(s)
            .map(Some)
            .map_err(|_| Error::invalid(k, "is not a UUID")),
    }
}

fn need_uuid(p: &Map<String, Value>, k: &str) -> Result<Uuid> {
    uuid(p, k)?.ok_or_else(|| Error::invalid(k, "is required"))
}

fn uuids(p: &Map<String, Value>, k: &str) -> Result<Vec<Uuid>> {
    p.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|s| Uuid::parse_str(s).ok())
                        .ok_or_else(|| Error::invalid(k, "holds something that is not a UUID"))
                })
                .collect()
        })
        .unwrap_or_else(|| Ok(vec![]))
}

fn attrs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Gone already counts as removed.
fn gone(r: Result<()>) -> Result<()> {
    match r {
        Err(Error::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// For waiting on a removal: done once the view says not found.
fn absent<T>(view: Result<T>) -> Result<Option<()>> {
    match view {
        Err(Error::NotFound(_)) => Ok(Some(())),
        Err(e) => Err(e),
        Ok(_) => Ok(None),
    }
}

/// A security group rule from the template's mapping; the reason names the field.
pub(super) fn rule(v: &Value) -> Result<SecurityGroupRuleCreate> {
    let mut m = v.as_object().cloned().unwrap_or_default();
    m.entry("description").or_insert_with(|| json!(""));
    serde_json::from_value(Value::Object(m)).map_err(|e| Error::invalid("rules", &e.to_string()))
}

fn rules(p: &Map<String, Value>) -> Result<Vec<SecurityGroupRuleCreate>> {
    p.get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(rule).collect())
        .unwrap_or_else(|| Ok(vec![]))
}

/// Make the real resource; its id.
pub(super) async fn create(
    run: &Run<'_>,
    kind: Kind,
    name: &str,
    p: &Map<String, Value>,
) -> Result<Uuid> {
    let (app, who, project) = (run.app, &run.p, run.project);
    let rid = run.request_id().to_string();
    Ok(match kind {
        Kind::Vpc => {
            let b = VpcCreate {
                project_id: project,
                name: text(p, "name").unwrap_or_else(|| name.into()),
                description: text(p, "description").unwrap_or_default(),
                cidr: text(p, "cidr").unwrap_or_default(),
                availability_zone: text(p, "availability_zone"),
                snat: p.get("snat").and_then(Value::as_bool).unwrap_or(false),
            };
            networks::vpc_create(app, who, b).await?.id
        }
        Kind::Subnet => {
            let b = SubnetCreate {
                vpc_id: need_uuid(p, "vpc")?,
                name: text(p, "name").unwrap_or_else(|| name.into()),
                description: String::new(),
                cidr: text(p, "cidr").unwrap_or_default(),
                gateway_ip: text(p, "gateway_ip"),
                dhcp_enabled: p
                    .get("dhcp_enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                dns_servers: p
                    .get("dns_servers")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                allocation_pools: vec![],
            };
            networks::subnet_create(app, who, b).await?.id
        }
        Kind::SecurityGroup => {
            // Rules are checked before the group exists, so a bad rule leaves nothing.
            rules(p)?;
            let b = SecurityGroupCreate {
                project_id: project,
                name: text(p, "name").unwrap_or_else(|| name.into()),
                description: text(p, "description").unwrap_or_default(),
            };
            networks::security_group_create(app, who, b).await?.id
        }
        Kind::Instance => {
            let groups = uuids(p, "security_groups")?;
            let nics = match uuid(p, "subnet")? {
                Some(s) => vec![NicRequest {
                    subnet_id: Some(s),
                    port_id: None,
                    ip: None,
                    security_group_ids: (!groups.is_empty()).then_some(groups),
                }],
                None if !groups.is_empty() => {
                    return Err(Error::invalid(
                        "security_groups",
                        "apply to the instance's NIC: give a subnet too",
                    ))
                }
                None => vec![],
            };
            let b = InstanceCreate {
                name: text(p, "name").unwrap_or_else(|| name.into()),
                description: String::new(),
                project_id: project,
                flavor: text(p, "flavor").unwrap_or_default(),
                image: text(p, "image").unwrap_or_default(),
                boot_volume_id: None,
                volume_ids: vec![],
                nics,
                availability_zone: text(p, "availability_zone"),
                key_name: text(p, "key_name"),
                user_data: text(p, "user_data"),
                count: Some(1),
            };
            let made = instances::instance_create(app, who, b, &rid).await?;
            made.first()
                .map(|i| i.id)
                .ok_or_else(|| Error::internal("instance create returned nothing"))?
        }
        Kind::Volume => {
            let b = VolumeCreate {
                name: text(p, "name").unwrap_or_else(|| name.into()),
                description: String::new(),
                project_id: project,
                size_gib: p.get("size_gib").and_then(Value::as_i64),
                volume_type: text(p, "volume_type"),
                availability_zone: text(p, "availability_zone"),
                shareable: false,
                snapshot_id: None,
                backup_id: None,
                image: text(p, "image"),
                count: Some(1),
            };
            let made = volumes::volume_create(app, who, b).await?;
            made.first()
                .map(|v| v.id)
                .ok_or_else(|| Error::internal("volume create returned nothing"))?
        }
        Kind::VolumeAttachment => {
            let volume = need_uuid(p, "volume")?;
            let b = VolumeAttach {
                instance_id: need_uuid(p, "instance")?,
            };
            volumes::volume_attach(app, who, volume, b).await?.id
        }
        Kind::ElasticIp => {
            let b = ElasticIpCreate {
                project_id: project,
                external_network_id: uuid(p, "external_network")?,
                description: String::new(),
            };
            networks::elastic_ip_create(app, who, b).await?.id
        }
        Kind::Bucket => {
            let n = text(p, "name").unwrap_or_else(|| name.into());
            buckets::bucket_create(app, who, project, &n).await?.id
        }
    })
}

async fn instance_ready(
    run: &Run<'_>,
    id: Uuid,
    want: InstanceStatus,
) -> Result<Map<String, Value>> {
    let i = instances::instance_settled(run.app, &run.p, id, want).await?;
    Ok(attrs(&[
        ("id", json!(i.id)),
        ("name", json!(i.name)),
        ("ip", json!(i.addresses.first())),
        ("flavor", json!(i.flavor_name)),
        ("host_name", json!(i.host_name)),
    ]))
}

async fn volume_ready(run: &Run<'_>, id: Uuid) -> Result<stratus_api::Volume> {
    until(&format!("volume {id} settling"), || async {
        let v = volumes::volume_view(run.app, &run.p, id).await?;
        match v.status {
            VolumeStatus::Available | VolumeStatus::InUse => Ok(Some(v)),
            VolumeStatus::Error => Err(Error::conflict(format!(
                "volume {id} is in error: {}",
                v.status_reason
            ))),
            _ => Ok(None),
        }
    })
    .await
}

fn volume_attrs(v: &stratus_api::Volume) -> Map<String, Value> {
    attrs(&[
        ("id", json!(v.id)),
        ("name", json!(v.name)),
        ("size_gib", json!(v.size_gib)),
    ])
}

/// Wait until the resource is usable and add what it needs after it exists (a group's
/// rules, an address's binding); its attributes.
pub(super) async fn settle(
    run: &Run<'_>,
    kind: Kind,
    id: Uuid,
    p: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let (app, who) = (run.app, &run.p);
    Ok(match kind {
        Kind::Vpc => {
            let v = networks::vpc_view(app, who, id).await?;
            attrs(&[
                ("id", json!(id)),
                ("name", json!(v.name)),
                ("cidr", json!(v.cidr)),
            ])
        }
        Kind::Subnet => {
            let s = networks::subnet_view(app, who, id).await?;
            attrs(&[
                ("id", json!(id)),
                ("name", json!(s.name)),
                ("cidr", json!(s.cidr)),
                ("gateway_ip", json!(s.gateway_ip)),
            ])
        }
        Kind::SecurityGroup => {
            for r in rules(p)? {
                networks::security_group_rule_create(app, who, id, r).await?;
            }
            let g = networks::security_group_view(app, who, id).await?;
            attrs(&[("id", json!(id)), ("name", json!(g.name))])
        }
        Kind::Instance => instance_ready(run, id, InstanceStatus::Running).await?,
        Kind::Volume => volume_attrs(&volume_ready(run, id).await?),
        Kind::VolumeAttachment => {
            let instance = need_uuid(p, "instance")?;
            until(
                &format!("volume {id} attaching to instance {instance}"),
                || async {
                    let v = volumes::volume_view(app, who, id).await?;
                    match v.attachments.iter().find(|a| a.instance_id == instance) {
                        Some(a) if a.state == "attached" => Ok(Some(())),
                        Some(_) => Ok(None),
                        None => Err(Error::conflict(format!(
                            "attaching volume {id} failed: {}",
                            v.status_reason
                        ))),
                    }
                },
            )
            .await?;
            attrs(&[
                ("id", json!(id)),
                ("volume_id", json!(id)),
                ("instance_id", json!(instance)),
            ])
        }
        Kind::ElasticIp => {
            let e = match uuid(p, "instance")? {
                Some(i) => {
                    let b = ElasticIpBind {
                        port_id: None,
                        instance_id: Some(i),
                    };
                    networks::elastic_ip_bind(app, who, id, b).await?
                }
                None => networks::elastic_ip_view(app, who, id).await?,
            };
            attrs(&[("id", json!(id)), ("address", json!(e.address))])
        }
        Kind::Bucket => {
            let b = buckets::bucket_view(app, who, id).await?;
            attrs(&[("id", json!(id)), ("name", json!(b.name))])
        }
    })
}

fn same_rule(a: &SecurityGroupRuleCreate, b: &stratus_api::SecurityGroupRule) -> bool {
    a.direction == b.direction
        && a.protocol == b.protocol
        && a.port_min == b.port_min
        && a.port_max == b.port_max
        && a.remote_cidr == b.remote_cidr
        && a.remote_group_id == b.remote_group_id
}

/// Change a resource in place: the properties in `changed` differ between `old` and `new`
/// (the template check let through only the updatable ones); its new attributes.
pub(super) async fn change(
    run: &Run<'_>,
    kind: Kind,
    id: Uuid,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    changed: &[String],
) -> Result<Map<String, Value>> {
    let (app, who) = (run.app, &run.p);
    if let Some(k) = changed.iter().find(|k| {
        !kind
            .props()
            .iter()
            .any(|d| d.name == k.as_str() && d.updatable)
    }) {
        return Err(Error::invalid(k, "cannot be changed in place"));
    }
    let rid = run.request_id().to_string();
    match kind {
        Kind::Instance if changed.iter().any(|k| k == "flavor") => {
            let flavor = text(new, "flavor").unwrap_or_default();
            instances::instance_resize_restarting(app, who, id, &flavor, &rid).await?;
            instance_ready(run, id, InstanceStatus::Running).await
        }
        Kind::Volume if changed.iter().any(|k| k == "size_gib") => {
            let size = new
                .get("size_gib")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            let before = old
                .get("size_gib")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            if size < before {
                return Err(Error::invalid(
                    "size_gib",
                    &format!("a volume only grows ({before} GiB now)"),
                ));
            }
            volumes::volume_extend(app, who, id, VolumeExtend { size_gib: size }).await?;
            Ok(volume_attrs(&volume_ready(run, id).await?))
        }
        Kind::SecurityGroup => {
            let want = rules(new)?;
            let g = networks::security_group_view(app, who, id).await?;
            for r in &g.rules {
                if !want.iter().any(|w| same_rule(w, r)) {
                    networks::security_group_rule_delete(app, who, id, r.id).await?;
                }
            }
            for w in want {
                if !g.rules.iter().any(|r| same_rule(&w, r)) {
                    networks::security_group_rule_create(app, who, id, w).await?;
                }
            }
            settle(run, kind, id, &Map::new()).await
        }
        Kind::ElasticIp => {
            let b = ElasticIpBind {
                port_id: None,
                instance_id: uuid(new, "instance")?,
            };
            let e = networks::elastic_ip_bind(app, who, id, b).await?;
            Ok(attrs(&[("id", json!(id)), ("address", json!(e.address))]))
        }
        _ => settle(run, kind, id, new).await,
    }
}

/// Remove the real resource and wait until it is gone (so what it used can go next).
pub(super) async fn remove(
    run: &Run<'_>,
    kind: Kind,
    id: Uuid,
    p: &Map<String, Value>,
) -> Result<()> {
    let (app, who) = (run.app, &run.p);
    let rid = run.request_id().to_string();
    match kind {
        Kind::Vpc => {
            // The VPC goes when its router host has taken the router down.
            gone(networks::vpc_delete(app, who, id).await)?;
            until(&format!("VPC {id} going away"), || async {
                absent(networks::vpc_view(app, who, id).await)
            })
            .await
        }
        Kind::Subnet => gone(networks::subnet_delete(app, who, id).await),
        Kind::SecurityGroup => gone(networks::security_group_delete(app, who, id).await),
        Kind::ElasticIp => {
            // A bound address is released from its port first.
            if p.get("instance").is_some() {
                let unbind = networks::elastic_ip_bind(app, who, id, ElasticIpBind::default());
                gone(unbind.await.map(|_| ()))?;
            }
            gone(networks::elastic_ip_delete(app, who, id).await)
        }
        Kind::Bucket => gone(buckets::bucket_delete(app, who, id).await),
        Kind::Instance => {
            gone(instances::instance_delete(app, who, id, &rid).await)?;
            until(&format!("instance {id} going away"), || async {
                absent(instances::instance_view(app, who, id).await)
            })
            .await
        }
        Kind::Volume => {
            gone(volumes::volume_delete(app, who, id, false).await)?;
            until(&format!("volume {id} going away"), || async {
                match volumes::volume_view(app, who, id).await {
                    Err(Error::NotFound(_)) => Ok(Some(())),
                    Err(e) => Err(e),
                    Ok(v) if v.status == VolumeStatus::Error => Err(Error::conflict(format!(
                        "deleting volume {id} failed: {}",
                        v.status_reason
                    ))),
                    Ok(_) => Ok(None),
                }
            })
            .await
        }
        Kind::VolumeAttachment => {
            let instance = need_uuid(p, "instance")?;
            let attached =
                |v: &stratus_api::Volume| v.attachments.iter().any(|a| a.instance_id == instance);
            match volumes::volume_view(app, who, id).await {
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
                Ok(v) if !attached(&v) => return Ok(()),
                Ok(_) => {}
            }
            let b = VolumeDetach {
                instance_id: Some(instance),
            };
            match volumes::volume_detach(app, who, id, b).await {
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            until(&format!("volume {id} detaching"), || async {
                match volumes::volume_view(app, who, id).await {
                    Err(Error::NotFound(_)) => Ok(Some(())),
                    Err(e) => Err(e),
                    Ok(v) if !attached(&v) => Ok(Some(())),
                    Ok(_) => Ok(None),
                }
            })
            .await
        }
    }
}
