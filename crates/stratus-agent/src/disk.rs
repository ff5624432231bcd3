//! Disk images through `qemu-img`: inspect, convert, overlay, resize.

use std::path::Path;

use serde::Deserialize;
use tokio::process::Command;

/// Formats accepted for upload and offered for download (spec 5.2.1.3).
pub const FORMATS: [&str; 4] = ["qcow2", "raw", "vmdk", "vpc"];

#[derive(Debug, Clone, Deserialize)]
pub struct ImageInfo {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    pub actual_size: u64,
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
    /// Internal snapshots (qcow2).
    #[serde(default)]
    pub snapshots: Vec<SnapshotInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotInfo {
    pub name: String,
}

pub(crate) async fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().await?;
    if !out.status.success() {
        anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `qemu-img info` says; `format` restricts probing (never probe untrusted raw data
/// as anything but what the caller declared).
pub async fn info(path: &Path, format: Option<&str>) -> anyhow::Result<ImageInfo> {
    let mut cmd = Command::new("qemu-img");
    cmd.arg("info").arg("--output=json");
    if let Some(f) = format {
        cmd.arg("-f").arg(f);
    }
    let out = run(cmd.arg(path)).await?;
    Ok(serde_json::from_str(&out)?)
}

/// [`info`] of an image a running QEMU may have open (`-U`: without taking its lock; the
/// header can be a moment behind the guest's writes, which sizes and snapshot lists are not).
pub async fn info_shared(path: &Path, format: &str) -> anyhow::Result<ImageInfo> {
    let out = run(Command::new("qemu-img")
        .args(["info", "--output=json", "-U", "-f", format])
        .arg(path))
    .await?;
    Ok(serde_json::from_str(&out)?)
}

/// Check an image's internal consistency (qcow2 and other formats with metadata).
pub async fn check(path: &Path, format: &str) -> anyhow::Result<()> {
    if format == "raw" {
        return Ok(());
    }
    match run(Command::new("qemu-img")
        .args(["check", "-q", "-f", format])
        .arg(path))
    .await
    {
        // vpc and some others carry no checkable metadata; `info` already parsed them.
        Err(e) if e.to_string().contains("does not support checks") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Convert `src` (of `src_format`) into a new `dst` in `dst_format`, via a temporary file.
pub async fn convert(
    src: &Path,
    src_format: &str,
    dst: &Path,
    dst_format: &str,
) -> anyhow::Result<()> {
    let tmp = dst.with_extension("converting");
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-q", "-f", src_format, "-O", dst_format]);
    if dst_format == "vpc" {
        // Dynamic VHD rounds sizes up unless told to keep them.
        cmd.args(["-o", "force_size=on"]);
    }
    run(cmd.arg(src).arg(&tmp)).await?;
    tokio::fs::rename(&tmp, dst).await?;
    Ok(())
}

/// A qcow2 overlay on `base` with `size` bytes (at least the base's size).
pub async fn overlay(base: &Path, dst: &Path, size: u64) -> anyhow::Result<()> {
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(dst)
        .arg(size.to_string()))
    .await
    .map(|_| ())
}

/// Grow an image of `format` to `size` bytes.
pub async fn resize(path: &Path, format: &str, size: u64) -> anyhow::Result<()> {
    run(Command::new("qemu-img")
        .args(["resize", "-q", "-f", format])
        .arg(path)
        .arg(size.to_string()))
    .await
    .map(|_| ())
}
