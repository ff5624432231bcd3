//! A small typed client for the `/v1` API.

use chrono::Utc;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stratus_api::{sigv4, ErrorBody};

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Token(String),
    /// Requests signed with AWS4-HMAC-SHA256, service `stratus`.
    Key {
        access_key: String,
        secret_key: String,
        region: String,
    },
}

/// An error the server answered with, or a transport failure (status 0).
#[derive(Debug, Clone)]
pub struct ClientError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            return write!(f, "{}", self.message);
        }
        write!(f, "{} ({}, HTTP {})", self.message, self.code, self.status)?;
        if !self.request_id.is_empty() {
            write!(f, " [request {}]", self.request_id)?;
        }
        Ok(())
    }
}

impl std::error::Error for ClientError {}

#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    pub auth: Auth,
    http: reqwest::Client,
}

/// The raw answer: status and body bytes.
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(endpoint: &str, auth: Auth) -> Client {
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
            http: reqwest::Client::new(),
        }
    }

    /// Send a request; `query` pairs are URL-encoded; the body is JSON when given.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let transport = |e: String| ClientError {
            status: 0,
            code: "transport".into(),
            message: e,
            request_id: String::new(),
        };
        let mut url = url::Url::parse(&format!("{}{}", self.endpoint, path))
            .map_err(|e| transport(format!("endpoint: {e}")))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        let body = body.unwrap_or_default();
        let mut req = self.http.request(method.clone(), url.clone());
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        match &self.auth {
            Auth::None => {}
            Auth::Token(t) => req = req.bearer_auth(t),
            Auth::Key {
                access_key,
                secret_key,
                region,
            } => {
                let host = match url.port() {
                    Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_string(),
                };
                let amz_date = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                let payload_hash = sigv4::sha256_hex(&body);
                let signed = sigv4::Request {
                    method: method.as_str(),
                    raw_path: url.path(),
                    raw_query: url.query().unwrap_or(""),
                    headers: vec![
                        ("host".into(), host),
                        ("x-amz-content-sha256".into(), payload_hash.clone()),
                        ("x-amz-date".into(), amz_date.clone()),
                    ],
                    payload_hash: &payload_hash,
                };
                let authz = sigv4::authorization_header(
                    access_key, secret_key, &amz_date, region, "stratus", &signed,
                );
                req = req
                    .header("x-amz-date", amz_date)
                    .header("x-amz-content-sha256", payload_hash.clone())
                    .header("authorization", authz);
            }
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| transport(format!("cannot reach {}: {e}", self.endpoint)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_vec();
        Ok(RawResponse { status, body })
    }

    /// Send and decode; a non-2xx answer becomes a [`ClientError`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let raw = self.send_raw(method, path, query, bytes).await?;
        let text = if raw.body.is_empty() {
            b"null".to_vec()
        } else {
            raw.body
        };
        if raw.status >= 300 {
            return Err(match serde_json::from_slice::<ErrorBody>(&text) {
                Ok(e) => ClientError {
                    status: raw.status,
                    code: serde_json::to_value(e.error.code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    message: e.error.message,
                    request_id: e.error.request_id,
                },
                Err(_) => ClientError {
                    status: raw.status,
                    code: "unknown".into(),
                    message: String::from_utf8_lossy(&text).into_owned(),
                    request_id: String::new(),
                },
            });
        }
        serde_json::from_slice(&text).map_err(|e| ClientError {
            status: raw.status,
            code: "decode".into(),
            message: format!("unexpected answer: {e}"),
            request_id: String::new(),
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.call(Method::GET, path, query, None::<&()>).await
    }
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }
    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, &[], Some(body)).await
    }
    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, &[], Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::DELETE, path, &[], None::<&()>)
            .await
            .map(|_| ())
    }
}
