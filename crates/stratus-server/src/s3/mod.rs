//! Object storage (OBS): an S3-compatible endpoint on its own port.
//!
//! The S3 protocol layer (request routing, SigV4 in headers, query strings and streaming
//! chunks, XML bodies and errors) is the `s3s` crate; Stratus supplies the secret-key
//! lookup ([`auth::KeyAuth`]), the access decision ([`access::Access`]) and the
//! operations ([`service::Obs`]). Metadata is in the Stratus store; object data is in a
//! [`storage::BlobStore`].

pub mod access;
pub mod auth;
pub mod lifecycle;
pub mod policy;
pub mod service;
pub mod storage;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::AppRef;

/// Bodies up to this size are read before the operation runs (see [`serve`]).
const SMALL_BODY: usize = 1 << 20;

/// Start the S3 endpoint on `listener`; stops when `stop` turns true.
pub async fn serve(
    app: AppRef,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let root = app.config.data_dir.join("objects");
    let blobs = Arc::new(storage::FsBlobStore::open(&root)?);
    {
        use storage::BlobStore;
        let swept = blobs.sweep_temp().await?;
        if swept > 0 {
            tracing::info!(swept, "removed unfinished uploads left by a crash");
        }
    }
    lifecycle::spawn_worker(
        app.clone(),
        blobs.clone(),
        std::time::Duration::from_secs(app.config.s3.lifecycle_interval_secs.max(1)),
        stop.clone(),
    );
    let obs = service::Obs::new(app.clone(), blobs.clone());
    obs.collect_garbage().await;
    let mut builder = s3s::service::S3ServiceBuilder::new(obs);
    builder.set_auth(auth::KeyAuth { app: app.clone() });
    let requests = Arc::new(access::RequestCounts::default());
    builder.set_access(access::Access {
        app: app.clone(),
        requests: requests.clone(),
    });
    {
        // Request counts reach the store every few seconds, and once more at shutdown.
        let (app, mut stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                requests.flush(&app).await;
                if stopping {
                    return;
                }
            }
        });
    }
    if let Some(domain) = &app.config.s3.domain {
        builder.set_host(VirtualHosts {
            domain: domain.to_ascii_lowercase(),
        });
    }
    let s3 = builder.build();
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s3 = s3.clone();
        async move {
            use axum::response::IntoResponse;
            // Small bodies are read whole first, so the connection is always left at a
            // request boundary: an operation that answers without reading its body (an
            // empty aws-chunked upload still carries its chunk trailer) would otherwise
            // leave bytes that the next request on the connection trips over.
            let small = req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n <= SMALL_BODY);
            // An empty body announced with `Expect: 100-continue` leaves hyper and the client
            // disagreeing about whether a 100 Continue is still due, and the next request
            // on that connection stalls (seen with boto3's empty PUTs): close it instead.
            let close = req.headers().contains_key(axum::http::header::EXPECT)
                && req
                    .headers()
                    .get(axum::http::header::CONTENT_LENGTH)
                    .is_some_and(|v| v == "0");
            let req = if small {
                let (parts, body) = req.into_parts();
                match axum::body::to_bytes(body, SMALL_BODY).await {
                    Ok(b) => axum::extract::Request::from_parts(parts, axum::body::Body::from(b)),
                    Err(_) => return axum::http::StatusCode::BAD_REQUEST.into_response(),
                }
            } else {
                req
            };
            match tower::ServiceExt::oneshot(s3, req).await {
                Ok(resp) => {
                    let mut resp = resp.map(axum::body::Body::new).into_response();
                    if close {
                        resp.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    resp
                }
                Err(e) => {
                    tracing::error!(error = ?e, "S3 request failed");
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
    });
    Ok(tokio::spawn(async move {
        // No Nagle: a response written as headers then body must not wait for the
        // client's delayed ACK (that costs ~40 ms per small answer).
        axum::serve(
            axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            }),
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    }))
}

/// Virtual-host-style addressing (`<bucket>.<domain>`) beside path style: any other Host
/// (an IP address, the bare domain, an internal name) is served path-style, so enabling
/// the domain never breaks clients that address the endpoint directly.
struct VirtualHosts {
    domain: String,
}

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        };
        let bucket = name
            .len()
            .checked_sub(self.domain.len() + 1)
            .filter(|&n| n > 0 && name[n..].eq_ignore_ascii_case(&format!(".{}", self.domain)))
            .map(|n| &name[..n]);
        Ok(match bucket {
            Some(b) => s3s::host::VirtualHost::new(name).with_bucket(b),
            None => s3s::host::VirtualHost::new(name),
        })
    }
}
