//! Config drives in the NoCloud format (a FAT volume labelled `cidata` holding `meta-data`
//! and `user-data`), made with mtools as plain file operations: no loop device, no mount.
//! Real cloud images with cloud-init read the same drive.

use std::path::Path;

use tokio::process::Command;

pub struct Metadata<'a> {
    pub instance_id: &'a str,
    pub hostname: &'a str,
    pub ssh_keys: &'a [String],
    pub user_data: Option<&'a [u8]>,
}

/// Hostnames in meta-data are quoted YAML; keep them to a safe character set.
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

pub async fn build(dir: &Path, dst: &Path, md: &Metadata<'_>) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let mut meta = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_str(md.instance_id),
        yaml_str(md.hostname)
    );
    if !md.ssh_keys.is_empty() {
        meta.push_str("public-keys:\n");
        for k in md.ssh_keys {
            meta.push_str(&format!("  - {}\n", k.replace(['\n', '\r'], "")));
        }
    }
    let meta_path = dir.join("meta-data");
    tokio::fs::write(&meta_path, meta).await?;
    let user_path = dir.join("user-data");
    tokio::fs::write(&user_path, md.user_data.unwrap_or(b"")).await?;
    let tmp = dst.with_extension("building");
    let _ = tokio::fs::remove_file(&tmp).await;
    // 2 MiB is far more than metadata needs and stays a valid FAT12 volume.
    let status = Command::new("mkfs.vfat")
        .args(["-n", "CIDATA", "-C"])
        .arg(&tmp)
        .arg("2048")
        .output()
        .await?;
    anyhow::ensure!(
        status.status.success(),
        "mkfs.vfat: {}",
        String::from_utf8_lossy(&status.stderr).trim()
    );
    for (src, name) in [(&meta_path, "::/meta-data"), (&user_path, "::/user-data")] {
        let out = Command::new("mcopy")
            .arg("-i")
            .arg(&tmp)
            .arg(src)
            .arg(name)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "mcopy: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    tokio::fs::rename(&tmp, dst).await?;
    Ok(())
}
