//! Object storage (OBS): an S3-compatible endpoint on its own port.
//!
//! The S3 protocol layer (request routing, SigV4 in headers, query strings and streaming
//! chunks, XML bodies and errors) is the `s3s` crate; Stratus supplies the secret-key
//! lookup ([`auth::KeyAuth`]), the access decision ([`access::Access`]) and the
//! operations ([`service::Obs`]). Metadata is in the Stratus store; object data is in a
//! [`storage::BlobStore`].

pub mod access;
pub mod auth;
pub mod policy;
pub mod service;
pub mod storage;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::AppRef;

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
    let obs = service::Obs::new(app.clone(), blobs.clone());
    obs.collect_garbage().await;
    let mut builder = s3s::service::S3ServiceBuilder::new(obs);
    builder.set_auth(auth::KeyAuth { app: app.clone() });
    builder.set_access(access::Access { app: app.clone() });
    if let Some(domain) = &app.config.s3.domain {
        // Virtual-host-style addressing: <bucket>.<domain>.
        builder.set_host(s3s::host::SingleDomain::new(domain)?);
    }
    let s3 = builder.build();
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s3 = s3.clone();
        async move {
            use axum::response::IntoResponse;
            match tower::ServiceExt::oneshot(s3, req).await {
                Ok(resp) => resp.map(axum::body::Body::new).into_response(),
                Err(e) => {
                    tracing::error!(error = ?e, "S3 request failed");
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
    });
    Ok(tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    }))
}
