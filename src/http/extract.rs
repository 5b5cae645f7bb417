//! Request extractors: a JSON body that is checked before anything reads it, the
//! customer id of the path, and the `If-Match` precondition.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::Value;
use std::time::Duration;

use super::error::ApiError;
use super::state::AppState;
use crate::service::Precondition;

/// A JSON request body (`application/json` or `application/merge-patch+json`, UTF-8).
pub struct JsonBody(pub Value);

fn json_content_type(value: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if mime != "application/json" && mime != "application/merge-patch+json" {
        return false;
    }
    parts.all(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        !k.trim().eq_ignore_ascii_case("charset") || v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON: Content-Type: application/json; charset=UTF-8",
            ));
        }
        // The whole body within the body timeout: a client that sends it slowly or stops
        // half-way would otherwise hold its slot until the request timeout.
        let timeout = Duration::from_millis(state.settings.http.body_timeout_ms.max(1));
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state)).await.map_err(|_| {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the request body did not arrive in time")
                .with_header(header::CONNECTION, "close")
        })?;
        let bytes = read.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "the request body is empty"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {e}")))
    }
}

/// The numeric id in `/v1/<resource>/{id}`. Anything that is not a plain positive number
/// of at most 15 digits cannot name an element: 404.
pub struct ElementId(pub u64);

pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n > 0)
}

impl<S: Send + Sync> FromRequestParts<S> for ElementId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::not_found())?;
        parse_id(&raw).map(ElementId).ok_or_else(ApiError::not_found)
    }
}

/// The `If-Match` header, if any.
pub struct IfMatch(pub Option<Precondition>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(v) => v
                .to_str()
                .map(|s| IfMatch(Some(Precondition::parse(s))))
                .map_err(|_| ApiError::bad_request("If-Match is not a valid header value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_positive_numbers() {
        assert_eq!(parse_id("5000001"), Some(5000001));
        for bad in ["", "0", "-1", "*", "+5", "5000001)(uid=*", "%00", "1e3", "123456789012345678901234567890", " 1"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_content_types() {
        let ok = |s: &str| json_content_type(Some(&header::HeaderValue::from_str(s).unwrap()));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=UTF-8"));
        assert!(ok("Application/JSON;charset=\"utf-8\""));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("application/json; charset=latin1"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!json_content_type(None));
    }
}
