//! Which accelerator really runs guests here. `/dev/kvm` opening is not enough (nested
//! setups accept KVM_CREATE_VM and then hang in firmware), so the probe boots firmware into
//! a 512-byte boot sector that writes to QEMU's debug-exit port: only an accelerator that
//! gets that far within the timeout counts.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The value the boot sector writes to port 0xf4; QEMU exits with `(v << 1) | 1`.
const MARK: u8 = 0x31;

fn boot_sector() -> Vec<u8> {
    // mov al, MARK; out 0xf4, al; hlt; jmp $-1
    let mut s = vec![0xB0, MARK, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD];
    s.resize(510, 0);
    s.extend([0x55, 0xAA]);
    s
}

/// Boot the probe sector with `accel`; true if it ran within `timeout`.
pub async fn probe(accel: Accel, work_dir: &Path, timeout: Duration) -> anyhow::Result<bool> {
    tokio::fs::create_dir_all(work_dir).await?;
    let disk = work_dir.join("accel-probe.img");
    tokio::fs::write(&disk, boot_sector()).await?;
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            accel.as_str(),
            "-M",
            "pc",
            "-m",
            "32",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let ran = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.code() == Some(((MARK as i32) << 1) | 1),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            let _ = child.kill().await;
            false
        }
    };
    let _ = tokio::fs::remove_file(&disk).await;
    Ok(ran)
}

/// KVM when it really boots, else TCG (which must boot, or QEMU is unusable here).
/// The result is cached in `work_dir/accel` so a restart does not probe again.
pub async fn detect(work_dir: &Path, forced: Option<Accel>) -> anyhow::Result<Accel> {
    if let Some(a) = forced {
        return Ok(a);
    }
    let cache = work_dir.join("accel");
    if let Ok(text) = tokio::fs::read_to_string(&cache).await {
        if let Ok(a) = serde_json::from_str::<Accel>(&text) {
            return Ok(a);
        }
    }
    let chosen = if Path::new("/dev/kvm").exists()
        && probe(Accel::Kvm, work_dir, Duration::from_secs(15)).await?
    {
        Accel::Kvm
    } else if probe(Accel::Tcg, work_dir, Duration::from_secs(30)).await? {
        Accel::Tcg
    } else {
        anyhow::bail!("QEMU cannot boot a guest here with KVM or TCG");
    };
    tokio::fs::write(&cache, serde_json::to_string(&chosen)?).await?;
    Ok(chosen)
}
