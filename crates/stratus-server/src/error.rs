//! The server's one error type and its mapping to the public error body.
//! Internal detail goes to the log; the client sees the code, a message and the request id.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_api::{ErrorBody, ErrorCode, ErrorDetail};

tokio::task_local! {
    /// The current request's id, so errors built anywhere in the handler can carry it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    AccountLocked(String),
    #[error("too many requests; retry after {0} s")]
    RateLimited(u64),
    #[error("internal error")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// 400 naming the field and the reason: `name: must not be empty`.
    pub fn invalid(field: &str, reason: &str) -> Error {
        Error::InvalidInput(format!("{field}: {reason}"))
    }
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Error {
        Error::NotFound(format!("{what} {id} not found"))
    }
    pub fn conflict(msg: impl Into<String>) -> Error {
        Error::Conflict(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Error {
        Error::Forbidden(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Error {
        Error::Internal(msg.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidInput(_) => ErrorCode::InvalidInput,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Error::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::AccountLocked(_) => ErrorCode::AccountLocked,
            Error::RateLimited(_) => ErrorCode::RateLimited,
            Error::Internal(_) => ErrorCode::Internal,
            Error::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        match e {
            sqlx::Error::PoolTimedOut => Error::Unavailable("the store is busy; retry".into()),
            e => Error::Internal(format!("store: {e}")),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Internal(format!("file system: {e}"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        let request_id = current_request_id();
        if let Error::Internal(detail) = &self {
            tracing::error!(request_id, detail, "internal error");
        }
        let message = self.to_string();
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: message.clone(),
                request_id,
            },
        };
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(body)).into_response();
        if let Error::RateLimited(secs) = self {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        // The message travels to the audit and call logs with the response.
        resp.extensions_mut().insert(ErrorMessage(message));
        resp
    }
}

/// Carries an error response's message to the audit and call logs.
#[derive(Clone, Debug)]
pub struct ErrorMessage(pub String);

pub type Result<T, E = Error> = std::result::Result<T, E>;
