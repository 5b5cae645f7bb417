//! The one error type of the HTTP layer and its JSON body (SPEC section 5):
//! `{"error": {"status", "code", "message", "details": [{"field", "message"}]}}`.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::mapping::Problem;
use crate::service::ServiceError;

pub const JSON_UTF8: &str = "application/json; charset=UTF-8";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Problem>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Vec::new(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn validation(details: Vec<Problem>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "the request is not valid");
        e.details = details;
        e
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "directory_unavailable", "the directory is not reachable; try again")
            .with_header(header::RETRY_AFTER, "2")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => ApiError::not_found(),
            ServiceError::BadRequest(m) => ApiError::bad_request(m),
            ServiceError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            ServiceError::Invalid(d) => ApiError::validation(d),
            ServiceError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            ServiceError::SharedId { id, resellers } => ApiError::new(
                StatusCode::CONFLICT,
                "shared_id",
                format!(
                    "customers under the resellers {} have the id {id}; a directory admin must give all but one of them another uid",
                    resellers.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                ),
            ),
            ServiceError::PreconditionFailed => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the resource has changed since the given ETag; read it again",
            ),
            ServiceError::Unavailable => ApiError::unavailable(),
            ServiceError::Gone(m) => ApiError::new(StatusCode::GONE, "gone", m),
            ServiceError::TooManyStreams(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_streams", m)
                .with_header(header::RETRY_AFTER, "5"),
            ServiceError::Internal(m) => {
                tracing::error!(error = ?m, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
            "details": self.details,
        }});
        let mut res = (self.status, [(header::CONTENT_TYPE, JSON_UTF8)], body.to_string()).into_response();
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res
    }
}
