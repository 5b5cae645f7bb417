//! Who is calling: HTTP Basic credentials checked by the authenticator, and the caller's
//! scope for the customer routes.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::json;

use super::error::ApiError;
use super::resources::json_response;
use super::state::AppState;
use crate::service;
use crate::service::auth::{AuthError, Principal};

const CHALLENGE: &str = "Basic realm=\"stoney\", charset=\"UTF-8\"";

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).with_header(header::WWW_AUTHENTICATE, CHALLENGE)
}

/// The user name and password of the Basic credentials.
pub fn credentials(headers: &axum::http::HeaderMap) -> Result<(String, String), ApiError> {
    let value =
        headers.get(header::AUTHORIZATION).ok_or_else(|| unauthorized("credentials are required (HTTP Basic)"))?;
    let value = value.to_str().map_err(|_| unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(|| unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthorized("only HTTP Basic authentication is supported"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| unauthorized("malformed Basic credentials"))?;
    let text = String::from_utf8(decoded).map_err(|_| unauthorized("credentials must be UTF-8"))?;
    let (user, password) = text.split_once(':').ok_or_else(|| unauthorized("malformed Basic credentials"))?;
    Ok((user.to_string(), password.to_string()))
}

/// The user name of Basic credentials, normalised as for logging in, without checking
/// anything: what the per-caller request cap counts by.
pub fn basic_user(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, _) = text.split_once(':')?;
    Some(user.trim().to_ascii_lowercase())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let (user, password) = credentials(&parts.headers)?;
        match app.auth.authenticate(&user, &password).await {
            Ok(p) => Ok(p),
            Err(AuthError::Invalid) => Err(unauthorized("invalid credentials")),
            Err(AuthError::Throttled(wait)) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many failed logins for this user; try again later",
            )
            .with_header(header::RETRY_AFTER, &wait.as_secs().max(1).to_string())),
            Err(AuthError::Unavailable) => Err(ApiError::unavailable()),
            Err(AuthError::Internal(m)) => {
                tracing::error!(error = ?m, "authentication failed internally");
                Err(ApiError::internal())
            }
        }
    }
}

/// The authenticated caller with its scope; a person without one may not use the
/// resources.
pub struct Caller(pub service::Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let p = Principal::from_request_parts(parts, app).await?;
        p.scope.map(|scope| Caller(service::Caller { scope, uid: p.uid })).ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this account belongs to no provider, reseller or customer",
            )
        })
    }
}

/// `GET /v1/auth`: checks the credentials and says who they belong to.
pub async fn whoami(State(app): State<AppState>, p: Principal) -> Response {
    let location = crate::mapping::resources::PEOPLE.location(&app.settings.public_url(), p.uid);
    json_response(StatusCode::OK, &json!({"id": p.uid, "user": p.mail, "location": location}))
}
