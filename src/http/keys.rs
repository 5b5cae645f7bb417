//! Subscription keys over HTTP: the `Merchant` extractor of the subscriptions facade
//! (`X-Subscription-Key`, never Basic), and the provider's routes that issue, list and
//! revoke keys (`/v1/resellers/{id}/subscription-keys`, Basic only).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, MethodRouter};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{parse_id, JsonBody};
use super::resources::json_response;
use super::state::AppState;
use crate::mapping::resources::RESELLERS;
use crate::mapping::Problem;
use crate::service::keys::KeyError;
use crate::service::{Scope, ServiceError};

/// The header a merchant sends its key in.
pub const KEY_HEADER: &str = "x-subscription-key";
const CHALLENGE: &str = "SubscriptionKey";

/// The merchant of a request of the subscriptions facade: the reseller its
/// `X-Subscription-Key` belongs to, which is the whole scope of the request (its
/// customers only). A missing, empty, unknown or revoked key is 401 (Basic credentials
/// do not count here); too many bad keys from one client address are 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merchant(pub u64);

impl Merchant {
    /// The reseller the merchant is.
    pub fn reseller(&self) -> u64 {
        self.0
    }

    /// The merchant's scope for the services: the customers of its reseller.
    pub fn scope(&self) -> Scope {
        Scope::Reseller(self.0)
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).with_header(header::WWW_AUTHENTICATE, CHALLENGE)
}

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(KEY_HEADER).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(unauthorized("a subscription key is required (one X-Subscription-Key header)"));
        };
        let key = value.to_str().map(str::trim).unwrap_or_default();
        if key.is_empty() {
            return Err(unauthorized("a subscription key is required (X-Subscription-Key)"));
        }
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        match app.keys.authenticate(key, client).await {
            Ok(reseller) => Ok(Merchant(reseller)),
            Err(KeyError::Invalid) => Err(unauthorized("invalid subscription key")),
            Err(KeyError::Throttled(wait)) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many invalid subscription keys from this address; try again later",
            )
            .with_header(header::RETRY_AFTER, &wait.as_secs().max(1).to_string())),
            Err(KeyError::Unavailable) => Err(ApiError::unavailable()),
            Err(KeyError::Internal(m)) => {
                tracing::error!(error = ?m, "subscription key check failed internally");
                Err(ApiError::internal())
            }
        }
    }
}

/// The reseller of the path, for the provider: 404 for a reseller the caller does not
/// see (or none), 403 for any other role.
async fn provider_for(app: &AppState, caller: &Caller, raw_id: &str) -> Result<u64, ApiError> {
    let id = parse_id(raw_id).ok_or_else(ApiError::not_found)?;
    app.service(&RESELLERS).check_visible(&caller.0.scope, id).await?;
    if caller.0.scope != Scope::Provider {
        return Err(ServiceError::Forbidden("only the provider manages subscription keys".into()).into());
    }
    Ok(id)
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET` (list) and `POST` (issue) of `/v1/resellers/{id}/subscription-keys`.
pub fn collection() -> MethodRouter<AppState> {
    get(|State(app): State<AppState>, caller: Caller, Path(id): Path<String>| async move {
        let id = provider_for(&app, &caller, &id).await?;
        let keys = app.keys.list(id).await?;
        Ok::<_, ApiError>(json_response(StatusCode::OK, &json!(keys)))
    })
    .post(
        |State(app): State<AppState>, caller: Caller, Path(id): Path<String>, JsonBody(body): JsonBody| async move {
            let id = provider_for(&app, &caller, &id).await?;
            let name = requested_name(&body)?;
            let (key, info) = app.keys.issue(id, &name).await?;
            let res =
                json_response(StatusCode::CREATED, &json!({"name": info.name, "key": key, "created": info.created}));
            Ok::<_, ApiError>(no_store(res))
        },
    )
}

/// `DELETE /v1/resellers/{id}/subscription-keys/{name}`: revokes a key.
pub fn element() -> MethodRouter<AppState> {
    delete(|State(app): State<AppState>, caller: Caller, Path((id, name)): Path<(String, String)>| async move {
        let id = provider_for(&app, &caller, &id).await?;
        app.keys.revoke(id, &name).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    })
}

/// The `name` of `{"name": "primary"}`.
fn requested_name(body: &Value) -> Result<String, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ServiceError::Invalid(vec![Problem::new("", "the body must be a JSON object")]).into());
    };
    let mut problems: Vec<Problem> =
        obj.keys().filter(|k| k.as_str() != "name").map(|k| Problem::new(k.clone(), "unknown attribute")).collect();
    let name = match obj.get("name") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(Problem::new("name", "must be a string"));
            None
        }
        None => {
            problems.push(Problem::new("name", "is required"));
            None
        }
    };
    match name {
        Some(n) if problems.is_empty() => Ok(n),
        _ => Err(ServiceError::Invalid(problems).into()),
    }
}
