//! Extractors whose rejections use the one error body and name the offending field.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::authz::Principal;
use crate::error::Error;

/// The authenticated caller; 401 when the request carried no valid credentials.
pub struct Ctx {
    pub p: Principal,
    /// The session token, when the caller used one.
    pub token: Option<String>,
}

/// Set by the middleware on every request it authenticated.
#[derive(Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub token: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        match parts.extensions.get::<Authenticated>() {
            Some(a) => Ok(Ctx {
                p: a.principal.clone(),
                token: a.token.clone(),
            }),
            None => Err(Error::Unauthenticated(
                "log in first: send Authorization: Bearer <token> or a signed request".into(),
            )),
        }
    }
}

pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;
    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => Err(json_error(e)),
        }
    }
}

fn json_error(e: JsonRejection) -> Error {
    match e {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: name: invalid type…"
            let text = e.body_text();
            let detail = text
                .split_once("target type: ")
                .map(|(_, d)| d)
                .unwrap_or(&text);
            Error::InvalidInput(detail.to_string())
        }
        JsonRejection::JsonSyntaxError(e) => Error::InvalidInput(format!(
            "body: malformed JSON ({})",
            e.body_text().rsplit(": ").next().unwrap_or("")
        )),
        JsonRejection::MissingJsonContentType(_) => {
            Error::InvalidInput("content-type: must be application/json".into())
        }
        JsonRejection::BytesRejection(_) => {
            Error::InvalidInput("body: could not be read (too large?)".into())
        }
        other => Error::InvalidInput(format!("body: {}", other.body_text())),
    }
}

pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(Error::InvalidInput("id: must be a UUID".into()))
            }
            Err(e) => Err(Error::InvalidInput(format!("path: {}", e.body_text()))),
        }
    }
}

pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let detail = text
                    .split_once("query string: ")
                    .map(|(_, d)| d)
                    .unwrap_or(&text);
                Err(Error::InvalidInput(format!("query: {detail}")))
            }
            Err(e) => Err(Error::InvalidInput(format!("query: {}", e.body_text()))),
        }
    }
}
