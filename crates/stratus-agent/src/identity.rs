//! The host's identity (`<state_dir>/agent.json`) and the facts it reports about itself.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stratus_api::HostFacts;
use uuid::Uuid;

use crate::client;

/// What joining gave this host; kept in `<state_dir>/agent.json` (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub server: String,
    pub host_id: Uuid,
    pub credential: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("server", &self.server)
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

/// Write a file atomically: a temporary file beside it, fsync, rename, fsync the directory.
pub async fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        Uuid::new_v4().simple()
    ));
    let result = async {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .await?;
        f.write_all(data).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await?;
        if let Ok(d) = tokio::fs::File::open(dir).await {
            let _ = d.sync_all().await;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

fn normalize(server: &str) -> &str {
    server.trim_end_matches('/')
}

/// The identity stored in `state_dir`, or a new one from joining `server` with
/// `join_token`. An existing identity needs no token; it is only used with the server it
/// was issued by (its credential is never sent anywhere else).
pub async fn load_or_join(
    state_dir: &Path,
    server: &str,
    join_token: Option<&str>,
    facts: &HostFacts,
) -> anyhow::Result<Identity> {
    let path = state_dir.join("agent.json");
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let id: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if !server.is_empty() && normalize(server) != normalize(&id.server) {
                anyhow::bail!(
                    "{} belongs to the control plane {}, not {server}; to join another \
                     control plane, remove that file (the host then joins as a new host)",
                    path.display(),
                    id.server
                );
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::ensure!(
                !server.is_empty(),
                "this host has not joined a control plane yet: give its URL (--join)"
            );
            let token = join_token.filter(|t| !t.is_empty()).ok_or_else(|| {
                anyhow::anyhow!(
                    "this host has not joined yet ({} does not exist): a join token is needed \
                     (--token or STRATUS_AGENT_TOKEN; an administrator creates one)",
                    path.display()
                )
            })?;
            let joined = client::join(server, token, facts)
                .await
                .map_err(|e| anyhow::anyhow!("joining {server}: {e}"))?;
            let id = Identity {
                server: normalize(server).to_string(),
                host_id: joined.host_id,
                credential: joined.credential,
            };
            tokio::fs::create_dir_all(state_dir).await?;
            write_atomic(&path, &serde_json::to_vec_pretty(&id)?, 0o600).await?;
            tracing::info!(host_id = %id.host_id, server = %id.server, "joined the control plane");
            Ok(id)
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

fn meminfo_mib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// Size of the file system holding `dir`, GiB.
pub(crate) fn disk_gib(dir: &Path) -> i64 {
    fs_bytes(dir).map_or(0, |(size, _)| size >> 30)
}

/// Size and space available to users of the file system holding `dir`, bytes.
pub(crate) fn fs_bytes(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of
    // the right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let bytes = |blocks: u64| {
        i64::try_from(u128::from(blocks) * u128::from(st.f_frsize)).unwrap_or(i64::MAX)
    };
    Some((bytes(st.f_blocks), bytes(st.f_bavail)))
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What this host has: hostname, CPUs, memory, disk of the state directory's file system.
pub fn host_facts(
    state_dir: &Path,
    hostname: Option<&str>,
    hypervisor: &str,
    vnc_listen: &str,
) -> HostFacts {
    let hostname = hostname.map_or_else(system_hostname, str::to_string);
    // Consoles listen on vnc_listen; when that is every address, the host's name is the
    // best address to give clients.
    let console_address = match vnc_listen.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => hostname.clone(),
    };
    HostFacts {
        hostname,
        console_address,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as i64),
        memory_mib: meminfo_mib(),
        disk_gib: disk_gib(state_dir),
        hypervisor: hypervisor.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        simulated: false,
        // The pool is the state directory's filesystem for now (volumes/ under it).
        volume_pool_gib: disk_gib(state_dir),
        tunnel_ip: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn facts_and_atomic_private_writes() {
        let dir = std::env::temp_dir().join(format!("stratus-id-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = host_facts(&dir, None, "tcg", "127.0.0.1");
        assert_eq!(f.console_address, "127.0.0.1");
        assert!(f.cpus >= 1 && f.memory_mib > 0 && f.disk_gib > 0, "{f:?}");
        assert!(!f.hostname.is_empty());
        let p = dir.join("agent.json");
        write_atomic(&p, b"{}", 0o600).await.unwrap();
        write_atomic(&p, b"{\"a\":1}", 0o600).await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp files left"
        );
        std::fs::remove_file(&p).unwrap();
        // Without an identity and without a token, the error says what is missing.
        let err = load_or_join(&dir, "http://127.0.0.1:9", None, &f)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("join token"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
