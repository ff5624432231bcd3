//! The metadata service at 169.254.169.254:80 of every VPC router: each instance is
//! answered with its own data only, found by the request's source address (a port's fixed
//! address → its instance). Anti-spoofing on the taps makes the source trustworthy.
//!
//! The listening socket is made inside the router namespace by a helper thread (see
//! [`super::sys::in_netns`]) and served by the agent's own runtime: the socket stays in
//! the namespace it was made in. Serves the EC2 paths and the OpenStack `meta_data.json`
//! that cloud-init's EC2 and OpenStack datasources read.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex as StdMutex, RwLock};

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::sys;

pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// What an instance is told about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceMeta {
    pub instance_id: Uuid,
    pub hostname: String,
    pub local_ipv4: Ipv4Addr,
    pub ssh_keys: Vec<String>,
    pub user_data: Option<String>,
}

type Table = Arc<RwLock<HashMap<Ipv4Addr, InstanceMeta>>>;

struct Server {
    ns: String,
    table: Table,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The metadata servers of this agent's routers, by VPC.
#[derive(Default)]
pub struct Servers(StdMutex<HashMap<Uuid, Server>>);

impl Servers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Server>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve `table` in namespace `ns` for `vpc` (the listener is made once and kept;
    /// the table is replaced).
    pub async fn ensure(
        &self,
        vpc: Uuid,
        ns: &str,
        table: HashMap<Ipv4Addr, InstanceMeta>,
    ) -> anyhow::Result<()> {
        {
            let servers = self.lock();
            if let Some(s) = servers.get(&vpc) {
                if s.ns == ns && !s.task.is_finished() {
                    *s.table.write().unwrap_or_else(|p| p.into_inner()) = table;
                    return Ok(());
                }
            }
        }
        let listener = sys::in_netns(ns, || {
            let l = std::net::TcpListener::bind((ADDRESS, 80))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .await?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let table: Table = Arc::new(RwLock::new(table));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(table.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            {
                tracing::warn!("metadata server ended: {e}");
            }
        });
        self.lock().insert(
            vpc,
            Server {
                ns: ns.to_string(),
                table,
                task,
            },
        );
        Ok(())
    }

    pub fn stop(&self, vpc: Uuid) {
        self.lock().remove(&vpc);
    }
}

async fn answer(
    State(table): State<Table>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
) -> Response {
    let ip = match peer.ip() {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return StatusCode::NOT_FOUND.into_response(),
        },
    };
    let meta = table
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&ip)
        .cloned();
    match meta.and_then(|m| document(&m, uri.path())) {
        Some((ctype, body)) => ([(axum::http::header::CONTENT_TYPE, ctype)], body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The document at `path` for instance `m` (content type, body), if there is one.
pub fn document(m: &InstanceMeta, path: &str) -> Option<(&'static str, String)> {
    const TEXT: &str = "text/plain";
    let path = path.trim_end_matches('/');
    let keys: String = (0..m.ssh_keys.len())
        .map(|i| format!("{i}=key-{i}\n"))
        .collect();
    let key = |rest: &str| -> Option<String> {
        let (i, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let k = m.ssh_keys.get(i.parse::<usize>().ok()?)?;
        match tail {
            "" => Some("openssh-key\n".into()),
            "openssh-key" => Some(format!("{k}\n")),
            _ => None,
        }
    };
    let body = match path {
        "" => "latest\n".to_string(),
        "/latest" => "meta-data/\nuser-data\n".into(),
        "/latest/meta-data" => {
            "instance-id\nhostname\nlocal-hostname\nlocal-ipv4\npublic-keys/\n".into()
        }
        "/latest/meta-data/instance-id" => m.instance_id.to_string(),
        "/latest/meta-data/hostname" | "/latest/meta-data/local-hostname" => m.hostname.clone(),
        "/latest/meta-data/local-ipv4" => m.local_ipv4.to_string(),
        "/latest/meta-data/public-keys" if !m.ssh_keys.is_empty() => keys,
        "/latest/user-data" | "/openstack/latest/user_data" => m.user_data.clone()?,
        "/openstack" => "latest\n".into(),
        "/openstack/latest" => {
            let mut s = String::from("meta_data.json\n");
            if m.user_data.is_some() {
                s.push_str("user_data\n");
            }
            s
        }
        "/openstack/latest/meta_data.json" => {
            let keys: serde_json::Map<String, serde_json::Value> = m
                .ssh_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("key-{i}"), serde_json::Value::String(k.clone())))
                .collect();
            let doc = serde_json::json!({
                "uuid": m.instance_id,
                "hostname": m.hostname,
                "name": m.hostname,
                "public_keys": keys,
                "keys": m.ssh_keys.iter().enumerate().map(|(i, k)| serde_json::json!({
                    "name": format!("key-{i}"), "type": "ssh", "data": k,
                })).collect::<Vec<_>>(),
            });
            return Some(("application/json", doc.to_string()));
        }
        p => key(p.strip_prefix("/latest/meta-data/public-keys/")?)?,
    };
    Some((TEXT, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        let m = InstanceMeta {
            instance_id: Uuid::nil(),
            hostname: "web-1".into(),
            local_ipv4: "10.0.1.5".parse().unwrap(),
            ssh_keys: vec!["ssh-ed25519 AAAA a@b".into()],
            user_data: None,
        };
        let body = |p: &str| document(&m, p).map(|d| d.1);
        assert_eq!(body("/latest/meta-data/hostname").unwrap(), "web-1");
        assert!(body("/latest/meta-data/")
            .unwrap()
            .contains("instance-id\n"));
        assert_eq!(body("/latest/meta-data/local-ipv4").unwrap(), "10.0.1.5");
        assert_eq!(body("/latest/meta-data/public-keys").unwrap(), "0=key-0\n");
        assert_eq!(
            body("/latest/meta-data/public-keys/0/openssh-key").unwrap(),
            "ssh-ed25519 AAAA a@b\n"
        );
        assert!(body("/latest/meta-data/public-keys/1/openssh-key").is_none());
        assert!(body("/latest/user-data").is_none());
        assert!(body("/nope").is_none());
        let j: serde_json::Value =
            serde_json::from_str(&body("/openstack/latest/meta_data.json").unwrap()).unwrap();
        assert_eq!(j["hostname"], "web-1");
        assert_eq!(j["public_keys"]["key-0"], "ssh-ed25519 AAAA a@b");
    }
}
