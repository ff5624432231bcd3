//! The one error body every `/v1` endpoint answers with.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable error codes. Each maps to exactly one HTTP status (see [`ErrorCode::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed or a field is invalid; the message names the field.
    InvalidInput,
    /// 401: no credentials, or credentials that are wrong, expired or revoked.
    Unauthenticated,
    /// 403: the caller can see the object but may not do this to it.
    Forbidden,
    /// 404: no such object, or one the caller may not see.
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (duplicate name, non-empty parent…).
    Conflict,
    /// 409: the operation would take usage above a quota limit.
    QuotaExceeded,
    /// 413: the request body is larger than the server accepts.
    PayloadTooLarge,
    /// 423: the account is locked after repeated failed logins.
    AccountLocked,
    /// 429: the account sent too many requests; see `Retry-After`.
    RateLimited,
    /// 500: a bug in Stratus; the request id finds it in the server log.
    Internal,
    /// 503: a dependency is unavailable; retry later.
    Unavailable,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::QuotaExceeded => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::AccountLocked => 423,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Human-readable; for invalid input it starts with the field name.
    pub message: String,
    /// Also in the `x-request-id` response header and in the server log.
    pub request_id: String,
}

/// `{ "error": { "code", "message", "request_id" } }`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}
