//! The application's one error type and its single `IntoResponse`.
//!
//! Turns errors into HTTP responses (and logs the internal ones); never runs queries.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::error;

use crate::processor::ClaimError;
use crate::storage::{DbError, LockCode};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A lock error that survived the retry policy: 503 with Retry-After. Displayed without
    /// the phrase "database is locked", which the log keeps for the one line per counted
    /// lock error (`storage::stats`).
    #[error("lock error {code} in {op}")]
    Locked { code: LockCode, op: String },
    /// Malformed input: 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Well-formed input with a wrong field: 422, naming the field.
    #[error("invalid field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    /// A request this server does not serve in its role: 409.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("admin token required")]
    Unauthorized,
    /// A request for something this server may not touch (a batch folder outside its photo
    /// root): 403, the body saying what is allowed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("request body too large")]
    TooLarge,
    #[error("unsupported media type: {0}")]
    UnsupportedMedia(String),
    /// Anything else: logged with its cause, answered with a generic 500.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Lock { code, op, .. } => AppError::Locked { code, op },
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<ClaimError> for AppError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::Db(e) => e.into(),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::Internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMedia(r.body_text()),
            StatusCode::UNPROCESSABLE_ENTITY => AppError::Invalid {
                field: "body",
                reason: r.body_text(),
            },
            _ => AppError::BadRequest(r.body_text()),
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::BadRequest(r.body_text())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            AppError::Locked { code, op } => {
                let body = json!({"error": "database_locked", "code": code.as_str(), "op": op});
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    Json(body),
                )
                    .into_response();
            }
            AppError::BadRequest(detail) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "detail": detail}),
            ),
            AppError::Invalid { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid_field", "field": field, "detail": reason}),
            ),
            AppError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "detail": format!("{what} not found")}),
            ),
            AppError::Conflict(detail) => (
                StatusCode::CONFLICT,
                json!({"error": "conflict", "detail": detail}),
            ),
            AppError::Unauthorized => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    Json(json!({"error": "unauthorized", "detail": "admin token required"})),
                )
                    .into_response();
            }
            AppError::Forbidden(detail) => (
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "detail": detail}),
            ),
            AppError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload_too_large"}),
            ),
            AppError::UnsupportedMedia(detail) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "unsupported_media_type", "detail": detail}),
            ),
            AppError::Internal(cause) => {
                let cause = format!("{cause:#}");
                error!(error = %crate::text::log_safe(&cause), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "detail": "see the server log"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
