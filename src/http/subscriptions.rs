//! The subscriptions facade (`/subscriptions/v1/…`, seed 000): merchants authenticate
//! with `X-Subscription-Key` (their reseller is the whole scope) and address customers
//! by their own customer number.

use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use serde_json::Value;

use super::error::ApiError;
use super::extract::JsonBody;
use super::keys::Merchant;
use super::resources::json_response;
use super::state::AppState;

/// `POST /subscriptions/v1/customers`: the upsert.
pub fn customers() -> MethodRouter<AppState> {
    post(|State(app): State<AppState>, Merchant(reseller): Merchant, JsonBody(body): JsonBody| async move {
        let summary = app.subscriptions.upsert(reseller, &body, None).await?;
        Ok::<Response, ApiError>(json_response(StatusCode::OK, &with_contracts(&app, reseller, summary).await?))
    })
}

/// `GET` and `PUT /subscriptions/v1/customers/{customerNumber}`.
pub fn customer() -> MethodRouter<AppState> {
    get(|State(app): State<AppState>, Merchant(reseller): Merchant, path: Result<Path<String>, PathRejection>| async move {
        let Ok(Path(number)) = path else { return Err(ApiError::not_found()) };
        let doc = app.subscriptions.get(reseller, &number).await?;
        Ok::<Response, ApiError>(json_response(StatusCode::OK, &doc))
    })
    .put(
        |State(app): State<AppState>,
         Merchant(reseller): Merchant,
         path: Result<Path<String>, PathRejection>,
         JsonBody(body): JsonBody| async move {
            let Ok(Path(number)) = path else { return Err(ApiError::not_found()) };
            let summary = app.subscriptions.upsert(reseller, &body, Some(&number)).await?;
            Ok::<Response, ApiError>(json_response(StatusCode::OK, &with_contracts(&app, reseller, summary).await?))
        },
    )
}

/// The sign-up summary lists the customer's contracts.
async fn with_contracts(app: &AppState, reseller: u64, mut summary: Value) -> Result<Value, ApiError> {
    let number = summary["externalCustomerReference"].as_str().unwrap_or_default().to_string();
    summary["contracts"] = app.contracts.summary_of(reseller, &number).await?["contracts"].take();
    Ok(summary)
}

/// `POST /subscriptions/v1/customers/{customerNumber}/orders`.
pub fn orders() -> MethodRouter<AppState> {
    post(
        |State(app): State<AppState>,
         Merchant(reseller): Merchant,
         path: Result<Path<String>, PathRejection>,
         JsonBody(body): JsonBody| async move {
            let Ok(Path(number)) = path else { return Err(ApiError::not_found()) };
            let summary = app.contracts.order(reseller, &number, &body).await?;
            Ok::<Response, ApiError>(json_response(StatusCode::OK, &summary))
        },
    )
}

/// `POST /subscriptions/v1/customers/{customerNumber}/orders/{orderReference}/returns`.
pub fn returns() -> MethodRouter<AppState> {
    post(
        |State(app): State<AppState>,
         Merchant(reseller): Merchant,
         path: Result<Path<(String, String)>, PathRejection>,
         JsonBody(body): JsonBody| async move {
            let Ok(Path((number, order))) = path else { return Err(ApiError::not_found()) };
            let summary = app.contracts.give_back(reseller, &number, &order, &body).await?;
            Ok::<Response, ApiError>(json_response(StatusCode::OK, &summary))
        },
    )
}

/// `GET /subscriptions/v1/customers/{customerNumber}/contracts`: a page (`page`,
/// `per_page`) with `Link` and `X-Total-Count`.
pub fn contracts() -> MethodRouter<AppState> {
    get(
        |State(app): State<AppState>,
         Merchant(reseller): Merchant,
         path: Result<Path<String>, PathRejection>,
         OriginalUri(uri): OriginalUri| async move {
            let Ok(Path(number)) = path else { return Err(ApiError::not_found()) };
            let p = &app.settings.pagination;
            let (page, per_page) = paging(uri.query(), p.default_per_page as u64, p.max_per_page as u64)?;
            let (items, total) = app.contracts.list(reseller, &number, (page - 1) * per_page, per_page).await?;
            let mut res = json_response(StatusCode::OK, &Value::Array(items));
            let url = format!("{}{}", app.settings.public_url().trim_end_matches('/'), uri.path());
            let last = total.div_ceil(per_page).max(1);
            let link = |rel: &str, n: u64| format!("<{url}?page={n}&per_page={per_page}>; rel=\"{rel}\"");
            let mut links = vec![link("first", 1), link("last", last)];
            if page > 1 {
                links.push(link("prev", page - 1));
            }
            if page < last {
                links.push(link("next", page + 1));
            }
            if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
                res.headers_mut().insert(axum::http::header::LINK, v);
            }
            res.headers_mut().insert("x-total-count", HeaderValue::from(total));
            Ok::<Response, ApiError>(res)
        },
    )
}

/// `page` (from 1) and `per_page` (clamped to the maximum) of a query string.
fn paging(query: Option<&str>, default: u64, max: u64) -> Result<(u64, u64), ApiError> {
    let (mut page, mut per_page) = (1u64, default);
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n = v.parse::<u64>().ok().filter(|n| *n >= 1 && v.len() <= 9);
        match (k, n) {
            ("page", Some(n)) => page = n,
            ("per_page", Some(n)) => per_page = n.min(max),
            ("page" | "per_page", None) => {
                return Err(ApiError::bad_request(format!("{k}: give a whole number from 1")))
            }
            _ => return Err(ApiError::bad_request("unknown parameter; contracts take page and per_page")),
        }
    }
    Ok((page, per_page))
}

/// `GET /subscriptions/v1/customers/{customerNumber}/contracts/{contractId}`.
pub fn contract() -> MethodRouter<AppState> {
    get(
        |State(app): State<AppState>,
         Merchant(reseller): Merchant,
         path: Result<Path<(String, String)>, PathRejection>| async move {
            let Ok(Path((number, contract))) = path else { return Err(ApiError::not_found()) };
            let doc = app.contracts.get(reseller, &number, &contract).await?;
            Ok::<Response, ApiError>(json_response(StatusCode::OK, &doc))
        },
    )
}

/// A lifecycle call: `POST …/contracts/{contractId}/activate`, `terminate` or `options`.
pub fn lifecycle(call: &'static str) -> MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>,
              Merchant(reseller): Merchant,
              path: Result<Path<(String, String)>, PathRejection>,
              JsonBody(body): JsonBody| async move {
            let Ok(Path((number, contract))) = path else { return Err(ApiError::not_found()) };
            let c = &app.contracts;
            let answer = match call {
                "activate" => c.activate(reseller, &number, &contract, &body).await?,
                "terminate" => c.terminate(reseller, &number, &contract, &body).await?,
                _ => c.options(reseller, &number, &contract, &body).await?,
            };
            Ok::<Response, ApiError>(json_response(StatusCode::OK, &answer))
        },
    )
}
