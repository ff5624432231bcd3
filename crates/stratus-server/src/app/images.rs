//! Images (IMS): records, streamed upload with checksum and format checks, conversion to
//! the stored qcow2, download in any supported format, and images made from instances.

use std::path::{Path, PathBuf};

use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use stratus_api::{
    DiskFormat, Image, ImageCreate, ImageFilter, ImageFromInstance, ImageStatus, ImageUpdate,
    ImageVisibility, InstanceStatus, ListParams, Page,
};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::{require_global, require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{ImageRow, NewImage, Paging};
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];

pub fn image_path(app: &App, id: Uuid) -> PathBuf {
    app.config.images_dir().join(format!("{id}.qcow2"))
}

/// (project id, chain with the project first) of an image's owner.
async fn owner_chain(app: &App, img: &ImageRow) -> Result<Option<(Uuid, Vec<Uuid>)>> {
    let Some(project) = img.api.project_id else {
        return Ok(None);
    };
    let vdc = img.vdc_id.unwrap_or_default();
    let mut chain = vec![project];
    chain.extend(app.store.vdc_chain(vdc).await?);
    Ok(Some((project, chain)))
}

/// Whether the caller may use the image: public, in a project they see, or shared with one.
async fn can_see(app: &App, p: &Principal, img: &ImageRow) -> Result<bool> {
    if img.api.visibility == ImageVisibility::Public || p.has_global(Perm::ResourceRead) {
        return Ok(true);
    }
    if let Some((project, chain)) = owner_chain(app, img).await? {
        if p.can(
            Perm::ResourceRead,
            &Target::Project {
                id: project,
                chain: &chain[1..],
            },
        ) {
            return Ok(true);
        }
    }
    if img.api.visibility == ImageVisibility::Shared {
        for m in &img.api.shared_with {
            if let Some(proj) = app.store.project_get(*m).await? {
                let chain = app.store.vdc_chain(proj.vdc_id).await?;
                if p.can(
                    Perm::ResourceRead,
                    &Target::Project {
                        id: *m,
                        chain: &chain,
                    },
                ) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

pub async fn image_visible(app: &App, p: &Principal, id: Uuid) -> Result<ImageRow> {
    match app.store.image_get(id).await? {
        Some(img) if can_see(app, p, &img).await? => Ok(img),
        _ => Err(Error::not_found("image", id)),
    }
}

/// Changing an image: the owner project's writers, or platform image publishers for
/// public ones.
async fn require_write(app: &App, p: &Principal, img: &ImageRow) -> Result<()> {
    match owner_chain(app, img).await? {
        None => require_global(p, Perm::ImagePublish),
        Some((project, chain)) => require_seen(
            p,
            Perm::ResourceWrite,
            &Target::Project {
                id: project,
                chain: &chain[1..],
            },
            "image",
            img.api.id,
        ),
    }
}

/// Hide who else an image is shared with from everyone but its owner's writers.
async fn present(app: &App, p: &Principal, mut img: ImageRow) -> Result<Image> {
    if require_write(app, p, &img).await.is_err() {
        img.api.shared_with.clear();
    }
    Ok(img.api)
}

fn validate_sha(field: &str, s: &str) -> Result<String> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            field,
            "must be 64 hexadecimal characters (SHA-256)",
        ));
    }
    Ok(s)
}

pub async fn image_create(app: &App, p: &Principal, b: ImageCreate) -> Result<Image> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let checksum = match &b.checksum_sha256 {
        Some(s) => validate_sha("checksum_sha256", s)?,
        None => String::new(),
    };
    let os_type = b.os_type.clone().unwrap_or_else(|| "linux".into());
    if !matches!(os_type.as_str(), "linux" | "windows" | "other") {
        return Err(Error::invalid("os_type", "must be linux, windows or other"));
    }
    let min_disk = b.min_disk_gib.unwrap_or(0);
    if !(0..=65536).contains(&min_disk) {
        return Err(Error::invalid(
            "min_disk_gib",
            "must be between 0 and 65536",
        ));
    }
    let (visibility, owner) = match b.project_id {
        None => {
            if b.visibility.is_some_and(|v| v != ImageVisibility::Public) {
                return Err(Error::invalid(
                    "project_id",
                    "a private or shared image needs the project that owns it",
                ));
            }
            require_global(p, Perm::ImagePublish)?;
            (ImageVisibility::Public, None)
        }
        Some(pid) => {
            let (project, chain) = app
                .project_visible(p, pid)
                .await
                .map_err(|_| Error::not_found("project", pid))?;
            super::require(
                p,
                Perm::ResourceWrite,
                &Target::Project {
                    id: pid,
                    chain: &chain,
                },
                "project",
                pid,
            )?;
            let vis = b.visibility.unwrap_or(ImageVisibility::Private);
            if vis == ImageVisibility::Public {
                return Err(Error::invalid(
                    "visibility",
                    "public images have no project: omit project_id (platform admins only)",
                ));
            }
            let mut full = vec![pid];
            full.extend(chain);
            (vis, Some((pid, project.vdc_id, full)))
        }
    };
    let img = app
        .store
        .image_create(NewImage {
            name: &b.name,
            description: &b.description,
            owner: owner.as_ref().map(|(p, v, c)| (*p, *v, c.as_slice())),
            visibility,
            disk_format: b.disk_format,
            os_type: &os_type,
            min_disk_gib: min_disk,
            checksum_sha256: &checksum,
            source_instance_id: None,
            status: ImageStatus::Queued,
            created_by: &p.name,
        })
        .await?;
    present(app, p, img).await
}

pub async fn image_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: ImageFilter,
) -> Result<Page<Image>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    let (items, next) = app
        .store
        .image_list(&vis, f.project_id, f.visibility, q.name.as_deref(), &paging)
        .await?;
    let mut out = Vec::with_capacity(items.len());
    for mut i in items {
        // Membership lists are shown on the single-image view to the owner.
        i.shared_with.clear();
        out.push(i);
    }
    Ok(Page { items: out, next })
}

pub async fn image_view(app: &App, p: &Principal, id: Uuid) -> Result<Image> {
    let img = image_visible(app, p, id).await?;
    present(app, p, img).await
}

pub async fn image_update(app: &App, p: &Principal, id: Uuid, b: ImageUpdate) -> Result<Image> {
    let img = image_visible(app, p, id).await?;
    require_write(app, p, &img).await?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    if let Some(m) = b.min_disk_gib {
        if !(0..=65536).contains(&m) {
            return Err(Error::invalid(
                "min_disk_gib",
                "must be between 0 and 65536",
            ));
        }
    }
    let public = img.api.project_id.is_none();
    if let Some(v) = b.visibility {
        if public != (v == ImageVisibility::Public) {
            return Err(Error::invalid(
                "visibility",
                "a public image stays public and a project's image cannot become public",
            ));
        }
    }
    let mut members = b.shared_with.clone();
    if let Some(m) = &mut members {
        if public {
            return Err(Error::invalid(
                "shared_with",
                "public images are not shared per project",
            ));
        }
        m.sort();
        m.dedup();
        if m.len() > 100 {
            return Err(Error::invalid("shared_with", "at most 100 projects"));
        }
        for pid in m.iter() {
            if app.store.project_get(*pid).await?.is_none() {
                return Err(Error::invalid(
                    "shared_with",
                    &format!("project {pid} does not exist"),
                ));
            }
        }
    }
    app.store
        .image_update(
            id,
            b.name.as_deref(),
            b.description.as_deref(),
            b.visibility,
            b.min_disk_gib,
            members.as_deref(),
        )
        .await?;
    image_view(app, p, id).await
}

pub async fn image_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let img = image_visible(app, p, id).await?;
    require_write(app, p, &img).await?;
    if img.api.status == ImageStatus::Saving {
        return Err(Error::conflict(
            "the image is being uploaded or converted; wait for it to finish",
        ));
    }
    let building = app.store.instance_count_using_image(id).await?;
    if building > 0 {
        return Err(Error::conflict(format!(
            "{building} instance(s) are being built from this image; delete it once they are running"
        )));
    }
    let chain = owner_chain(app, &img)
        .await?
        .map(|(_, c)| c)
        .unwrap_or_default();
    app.store.image_delete(&img, &chain).await?;
    let _ = tokio::fs::remove_file(image_path(app, id)).await;
    Ok(())
}

// ---------------------------------------------------------------- data

/// What an accepted upload turned into.
struct Ingested {
    size: i64,
    virtual_size: i64,
    checksum: String,
    stored_sha256: String,
}

/// Write a streamed body to `dst`, hashing it; refuses more than `max` bytes.
async fn receive(body: Body, dst: &Path, max: u64) -> Result<(u64, String)> {
    let mut f = tokio::fs::File::create(dst).await?;
    let mut hasher = Sha256::new();
    let mut n: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::invalid("body", &format!("upload interrupted: {e}")))?;
        n += chunk.len() as u64;
        if n > max {
            return Err(Error::PayloadTooLarge(max as usize));
        }
        hasher.update(&chunk);
        f.write_all(&chunk).await?;
    }
    f.sync_all().await?;
    Ok((n, hex::encode(hasher.finalize())))
}

pub async fn file_sha256(path: &Path) -> Result<String> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Check that `path` really is a `fmt` image that refers to no other file (a backing file
/// or VMDK extent could make QEMU read the host's files), then check its metadata.
async fn inspect(path: &Path, fmt: DiskFormat) -> Result<u64> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-f", fmt.qemu_name()])
        .arg(path)
        .output()
        .await?;
    let bad = |why: String| {
        Error::invalid(
            "file",
            &format!("is not a valid {} image: {why}", fmt.as_str()),
        )
    };
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim().rsplit(": ").next().unwrap_or("").to_string();
        return Err(bad(msg));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| bad(e.to_string()))?;
    if info.get("backing-filename").is_some() {
        return Err(bad("it refers to a backing file".into()));
    }
    if let Some(extents) = info
        .pointer("/format-specific/data/extents")
        .and_then(|e| e.as_array())
    {
        let own = path.display().to_string();
        if extents
            .iter()
            .any(|e| e["filename"].as_str().is_some_and(|f| f != own))
        {
            return Err(bad("its extents are in other files".into()));
        }
    }
    let vsize = info["virtual-size"].as_u64().unwrap_or(0);
    if vsize == 0 {
        return Err(bad("it is empty".into()));
    }
    stratus_agent::disk::check(path, fmt.qemu_name())
        .await
        .map_err(|e| bad(format!("its metadata is corrupt ({e})")))?;
    Ok(vsize)
}

/// Receive, verify and convert an upload into the image's stored qcow2.
async fn ingest(
    app: &App,
    id: Uuid,
    fmt: DiskFormat,
    expected: Option<&str>,
    body: Body,
) -> Result<Ingested> {
    let dir = app.config.images_dir();
    tokio::fs::create_dir_all(&dir).await?;
    let upload = dir.join(format!("{id}.upload"));
    let result = async {
        let (size, sha) = receive(body, &upload, app.config.compute.max_image_bytes).await?;
        if size == 0 {
            return Err(Error::invalid("body", "the upload is empty"));
        }
        if let Some(want) = expected {
            if want != sha {
                return Err(Error::invalid(
                    "checksum_sha256",
                    &format!("the upload's SHA-256 is {sha}, not the declared {want}"),
                ));
            }
        }
        let vsize = inspect(&upload, fmt).await?;
        let stored = image_path(app, id);
        let stored_sha = if fmt == DiskFormat::Qcow2 {
            tokio::fs::rename(&upload, &stored).await?;
            sha.clone()
        } else {
            stratus_agent::disk::convert(&upload, fmt.qemu_name(), &stored, "qcow2")
                .await
                .map_err(|e| {
                    Error::invalid("file", &format!("cannot be converted to qcow2: {e}"))
                })?;
            file_sha256(&stored).await?
        };
        let size = tokio::fs::metadata(&stored).await?.len();
        Ok(Ingested {
            size: size as i64,
            virtual_size: vsize as i64,
            checksum: sha,
            stored_sha256: stored_sha,
        })
    }
    .await;
    let _ = tokio::fs::remove_file(&upload).await;
    result
}

pub async fn image_upload(
    app: &App,
    p: &Principal,
    id: Uuid,
    header_sha: Option<&str>,
    body: Body,
) -> Result<Image> {
    let img = image_visible(app, p, id).await?;
    require_write(app, p, &img).await?;
    if img.api.source_instance_id.is_some() {
        return Err(Error::conflict(
            "this image is made from an instance; it takes no upload",
        ));
    }
    let expected = match (header_sha, img.api.checksum_sha256.as_str()) {
        (Some(h), "") => Some(validate_sha("x-checksum-sha256", h)?),
        (Some(h), declared) => {
            let h = validate_sha("x-checksum-sha256", h)?;
            if h != declared {
                return Err(Error::invalid(
                    "x-checksum-sha256",
                    "differs from the checksum_sha256 the image was created with",
                ));
            }
            Some(h)
        }
        (None, "") => None,
        (None, declared) => Some(declared.to_string()),
    };
    if !app
        .store
        .image_set_status(
            id,
            &[ImageStatus::Queued, ImageStatus::Error],
            ImageStatus::Saving,
            "",
        )
        .await?
    {
        return Err(Error::conflict(format!(
            "image {id} is {}; data can be uploaded only to a queued image",
            match img.api.status {
                ImageStatus::Active => "active",
                _ => "saving",
            }
        )));
    }
    match ingest(app, id, img.api.disk_format, expected.as_deref(), body).await {
        Ok(done) => {
            app.store
                .image_activate(
                    id,
                    done.size,
                    done.virtual_size,
                    &done.checksum,
                    &done.stored_sha256,
                )
                .await?;
            image_view(app, p, id).await
        }
        Err(e) => {
            // Bad data changes nothing: the image waits for a good upload.
            app.store
                .image_set_status(id, &[ImageStatus::Saving], img.api.status, "")
                .await?;
            Err(e)
        }
    }
}

/// A file to send and whether it is a temporary conversion to delete afterwards.
pub struct Download {
    pub path: PathBuf,
    pub temporary: bool,
    pub filename: String,
}

pub async fn image_download(
    app: &App,
    p: &Principal,
    id: Uuid,
    format: Option<DiskFormat>,
) -> Result<Download> {
    let img = image_visible(app, p, id).await?;
    if img.api.status != ImageStatus::Active {
        return Err(Error::conflict(format!(
            "image {id} has no data yet (it is not active)"
        )));
    }
    let fmt = format.unwrap_or(DiskFormat::Qcow2);
    let stored = image_path(app, id);
    let ext = fmt.as_str();
    let filename = format!("{}.{ext}", img.api.name.replace(['/', '"', '\\'], "_"));
    if fmt == DiskFormat::Qcow2 {
        return Ok(Download {
            path: stored,
            temporary: false,
            filename,
        });
    }
    let tmp_dir = app.config.images_dir().join("tmp");
    tokio::fs::create_dir_all(&tmp_dir).await?;
    let out = tmp_dir.join(format!("{}.{ext}", Uuid::new_v4()));
    stratus_agent::disk::convert(&stored, "qcow2", &out, fmt.qemu_name())
        .await
        .map_err(|e| Error::internal(format!("converting image {id} to {ext}: {e}")))?;
    Ok(Download {
        path: out,
        temporary: true,
        filename,
    })
}

/// A response body streaming `d`; a temporary file is unlinked once open.
pub async fn download_body(d: &Download) -> Result<(u64, Body)> {
    let f = tokio::fs::File::open(&d.path).await?;
    let len = f.metadata().await?.len();
    if d.temporary {
        let _ = tokio::fs::remove_file(&d.path).await;
    }
    let stream = futures_util::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((len, Body::from_stream(stream)))
}

// ---------------------------------------------------------------- from instances

pub async fn image_from_instance(
    app: &App,
    p: &Principal,
    instance: Uuid,
    b: ImageFromInstance,
) -> Result<Image> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let (row, chain) = super::instances::instance_writable(app, p, instance).await?;
    if row.api.status != InstanceStatus::Stopped || row.api.task.is_some() {
        return Err(Error::conflict(format!(
            "instance {instance} is {}; stop it before making an image of it",
            row.api.status.as_str()
        )));
    }
    let mut full = vec![row.api.project_id];
    full.extend(chain);
    let img = app
        .store
        .image_create(NewImage {
            name: &b.name,
            description: &b.description,
            owner: Some((row.api.project_id, row.api.vdc_id, &full)),
            visibility: ImageVisibility::Private,
            disk_format: DiskFormat::Qcow2,
            os_type: "linux",
            min_disk_gib: row.api.root_disk_gib,
            checksum_sha256: "",
            source_instance_id: Some(instance),
            status: ImageStatus::Saving,
            created_by: &p.name,
        })
        .await?;
    if let Err(e) = app
        .store
        .instance_capture_request(instance, img.api.id)
        .await
    {
        // Unwind: the image record and its quota go again.
        app.store.image_delete(&img, &full).await?;
        return Err(e);
    }
    if let Some(h) = row.api.host_id {
        app.hub.notify(h);
    }
    present(app, p, img).await
}

/// The agent's upload of a captured disk.
pub async fn agent_image_upload(
    app: &App,
    host: Uuid,
    id: Uuid,
    header_sha: Option<&str>,
    body: Body,
) -> Result<()> {
    let img = app
        .store
        .image_get(id)
        .await?
        .ok_or_else(|| Error::not_found("image", id))?;
    let source = img
        .api
        .source_instance_id
        .ok_or_else(|| Error::conflict("this image is not made from an instance"))?;
    let row = app
        .store
        .instance_get(source)
        .await?
        .filter(|r| r.api.host_id == Some(host) && r.capture_image_id == Some(id))
        .ok_or_else(|| Error::not_found("image", id))?;
    let expected = header_sha
        .map(|h| validate_sha("x-checksum-sha256", h))
        .transpose()?;
    match ingest(app, id, DiskFormat::Qcow2, expected.as_deref(), body).await {
        Ok(done) => {
            app.store
                .image_activate(
                    id,
                    done.size,
                    done.virtual_size,
                    &done.checksum,
                    &done.stored_sha256,
                )
                .await?;
            tracing::info!(image = %id, instance = %row.api.id, "image captured from instance");
            Ok(())
        }
        Err(e) => {
            capture_failed(app, id, &e.to_string()).await?;
            Err(e)
        }
    }
}

pub async fn capture_failed(app: &App, id: Uuid, reason: &str) -> Result<()> {
    app.store
        .image_set_status(
            id,
            &[ImageStatus::Saving, ImageStatus::Queued],
            ImageStatus::Error,
            reason,
        )
        .await?;
    Ok(())
}

/// The stored file of an image an agent needs.
pub async fn agent_image_file(app: &App, id: Uuid) -> Result<PathBuf> {
    match app.store.image_get(id).await? {
        Some(img) if img.api.status == ImageStatus::Active => Ok(image_path(app, id)),
        _ => Err(Error::not_found("image", id)),
    }
}
