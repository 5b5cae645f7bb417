//! `/openapi.json`: an OpenAPI 3.0 description of every route, parameter, header, body
//! and error of the API. The schemas of the customer and of its addresses, and the
//! filter and sort parameters of the collection, come from the mapping tables.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::customers::json_response;
use crate::app::AppState;
use crate::mapping::query;
use crate::mapping::row;
use crate::mapping::table::{Field, Kind, ADDRESS, CUSTOMER};

fn scalar_schema(kind: Kind) -> Value {
    match kind {
        Kind::Id | Kind::ResellerRef => json!({"type": "integer", "format": "int64", "minimum": 1}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Text { max } => json!({"type": "string", "minLength": 1, "maxLength": max}),
        Kind::CustomerName => json!({"type": "string", "minLength": 1, "maxLength": 64}),
        Kind::Gender => json!({"type": "string", "enum": ["f", "m", "n"]}),
        Kind::Country => json!({"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2"}),
        Kind::Language => json!({"type": "string", "example": "en-GB"}),
        Kind::Mail => json!({"type": "string", "format": "email"}),
        Kind::Phone => json!({"type": "string", "maxLength": 32, "example": "+41 31 123 45 67"}),
        Kind::Url => json!({"type": "string", "format": "uri", "maxLength": 256}),
        Kind::Postal => json!({"type": "string", "maxLength": 1024, "description": "lines separated by line breaks"}),
        Kind::Link(_) => json!({"type": "string", "format": "uri"}),
        Kind::Object(_) => json!({"type": "object"}),
    }
}

fn object_schema(fields: &[Field]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields {
        let mut s = match f.kind {
            Kind::Object(_) if f.name == "billingAddress" || f.name == "shippingAddress" => {
                json!({"$ref": "#/components/schemas/Address"})
            }
            k => scalar_schema(k),
        };
        if f.read_only {
            s["readOnly"] = json!(true);
        }
        if let Some(d) = f.default {
            s["default"] = json!(d);
        }
        if f.kind == Kind::CustomerName {
            s["description"] = json!(
                "Companies: required, stored as o. Private customers: the billing address's givenName and surname; may be left out on writes."
            );
        }
        if let Some((other, values)) = f.required_if {
            s["description"] = json!(format!("Required when {other} is {}.", values.join(" or ")));
        }
        props.insert(f.name.to_string(), s);
        if f.required {
            required.push(f.name);
        }
    }
    json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
}

/// A JSON merge patch (RFC 7396) of an object: every field optional, `null` removes an
/// optional one.
fn patch_schema(fields: &[Field]) -> Value {
    let mut props = Map::new();
    for f in fields {
        let mut s = match f.kind {
            Kind::Object(_) if f.name == "billingAddress" || f.name == "shippingAddress" => {
                json!({"allOf": [{"$ref": "#/components/schemas/AddressPatch"}]})
            }
            k => scalar_schema(k),
        };
        if f.read_only {
            s["readOnly"] = json!(true);
        }
        if !f.required && !f.read_only {
            s["nullable"] = json!(true);
        }
        props.insert(f.name.to_string(), s);
    }
    json!({"type": "object", "additionalProperties": false, "properties": props,
           "description": "Only the given fields change; null removes an optional field."})
}

/// A filter parameter's schema: booleans and numbers typed, `*` (present) allowed too.
fn filter_schema(kind: Kind) -> Value {
    match kind {
        Kind::Bool => json!({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["*"]}]}),
        Kind::Id | Kind::ResellerRef => json!({"anyOf": [
            {"type": "integer", "format": "int64", "minimum": 1},
            {"type": "string", "pattern": "^[0-9*]+$", "description": "digits, * as a wildcard"}]}),
        _ => json!({"type": "string", "maxLength": 256}),
    }
}

fn item_schema() -> Value {
    let mut props = Map::new();
    for c in row::item_columns() {
        props.insert(c.field.name.to_string(), scalar_schema(c.field.kind));
    }
    json!({"type": "object", "properties": props})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn retry(description: &str) -> Value {
    let mut e = error(description);
    e["headers"] = json!({"Retry-After": {"schema": {"type": "integer"}}});
    e
}

/// What every route can answer before it is reached: a request head or a declared body
/// over the limits.
fn edge_errors() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("413".into(), error("The declared body is too large."));
    m.insert("414".into(), error("The request target is too long."));
    m.insert("431".into(), error("The request headers are too large."));
    m
}

/// `list`, after the errors every route can answer.
fn public_responses(list: &[(&str, Value)]) -> Value {
    let mut m = edge_errors();
    for (code, v) in list {
        m.insert(code.to_string(), v.clone());
    }
    Value::Object(m)
}

/// The errors every authenticated route can answer.
fn common_errors() -> Map<String, Value> {
    let mut m = edge_errors();
    let mut unauthorized = error("Missing or wrong credentials.");
    unauthorized["headers"] = json!({"WWW-Authenticate": {"schema": {"type": "string"}}});
    m.insert("401".into(), unauthorized);
    m.insert(
        "429".into(),
        retry("Too many failed logins for this user name, or too many requests of this caller at once."),
    );
    m.insert("503".into(), retry("The directory is unavailable, the request took too long, or too many run at once."));
    m.insert("500".into(), error("Internal error (no details are shown)."));
    m
}

fn responses(list: &[(&str, Value)]) -> Value {
    let mut m = common_errors();
    for (code, v) in list {
        m.insert(code.to_string(), v.clone());
    }
    Value::Object(m)
}

fn collection_parameters() -> Vec<Value> {
    let sortable: Vec<&str> = query::sort_columns().iter().map(|c| c.field.name).collect();
    let mut out = vec![
        json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}}),
        json!({"name": "per_page", "in": "query", "description": "Larger values are clamped to the maximum.", "schema": {"type": "integer", "minimum": 1, "default": 30}}),
        json!({"name": "sort", "in": "query", "description": format!("Comma-separated keys, '-' for descending; ties by id. Keys: {}.", sortable.join(", ")), "schema": {"type": "string"}}),
        json!({"name": "q", "in": "query", "description": "Case-insensitive substring of id, customerName, externalID and the billing address's names, postal address, postal code, locality and mail.", "schema": {"type": "string", "minLength": 3, "maxLength": 256}}),
    ];
    let mut names: Vec<(String, Kind)> = Vec::new();
    for c in row::filter_columns() {
        let name = match c.part {
            crate::mapping::Part::Customer => c.field.name.to_string(),
            crate::mapping::Part::Billing => format!("billingAddress.{}", c.field.name),
            crate::mapping::Part::Shipping => format!("shippingAddress.{}", c.field.name),
        };
        names.push((name, c.field.kind));
    }
    names.extend(ADDRESS.iter().filter(|f| f.in_collection).map(|f| (f.name.to_string(), f.kind)));
    for (name, kind) in names {
        out.push(json!({"name": name, "in": "query", "description": "Filter following the attribute's matching rule; * is a wildcard, * alone means present.", "schema": filter_schema(kind)}));
    }
    out
}

/// The document, for a server at `public_url`.
pub fn build(public_url: &str) -> Value {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}});
    let if_match = json!({"name": "If-Match", "in": "header", "schema": {"type": "string"}, "description": "The ETag of a GET: the write only happens if the customer is unchanged."});
    let customer_body = |content_types: &[&str], schema: &str| {
        let mut content = Map::new();
        for ct in content_types {
            content.insert(ct.to_string(), json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}}));
        }
        json!({"required": true, "content": content})
    };
    let etag = json!({"ETag": {"schema": {"type": "string"}}});
    // PUT and PATCH answer alike.
    let write_responses = |done: &str| {
        responses(&[
            ("200", json!({"description": done, "headers": etag.clone()})),
            ("400", error("Malformed JSON, or If-Match is not a valid header value.")),
            ("403", error("A change the caller may not make.")),
            ("408", error("The body did not arrive in time.")),
            ("404", error("No such customer, or not the caller's.")),
            ("409", error("The externalID is taken.")),
            ("412", error("The ETag is stale.")),
            ("413", error("The body is too large.")),
            ("415", error("The body is not JSON.")),
            ("422", error("Invalid fields.")),
        ])
    };
    let plain = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"type": "object"}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "stoney customer directory gateway", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The stoney core customers resource on an OpenLDAP directory."},
        "servers": [{"url": public_url}],
        "security": [{"basic": []}],
        "paths": {
            "/health": {"get": {"summary": "The process is up.", "security": [], "responses": public_responses(&[("200", plain("Up."))])}},
            "/ready": {"get": {"summary": "The directory answers and the customer index is loaded.", "security": [],
                "responses": public_responses(&[("200", plain("Ready.")), ("503", retry("Not ready."))])}},
            "/metrics": {"get": {"summary": "Prometheus metrics.", "security": [],
                "responses": public_responses(&[("200", json!({"description": "Text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}))])}},
            "/openapi.json": {"get": {"summary": "This document.", "security": [], "responses": public_responses(&[("200", plain("OpenAPI 3."))])}},
            "/v1/auth": {"get": {"summary": "Checks the credentials.", "responses": responses(&[
                ("200", json!({"description": "Who the credentials belong to.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Auth"}}}})),
            ])}},
            "/v1/customers": {
                "get": {"summary": "A page of the customers the caller may see.", "parameters": collection_parameters(),
                    "responses": responses(&[
                        ("200", json!({"description": "The page.", "headers": {
                            "Link": {"schema": {"type": "string"}, "description": "first, prev, next and last (RFC 8288)."},
                            "X-Total-Count": {"schema": {"type": "integer"}}},
                            "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/CustomerItem"}}}}})),
                        ("400", error("A broken query string.")),
                        ("403", error("The account belongs to no provider, reseller or customer.")),
                        ("422", error("Unknown parameters, sort keys or bad values.")),
                    ])},
                "post": {"summary": "Creates a customer.", "requestBody": customer_body(&["application/json"], "Customer"),
                    "responses": responses(&[
                        ("201", json!({"description": "Created.", "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Created"}}}})),
                        ("400", error("Malformed JSON.")), ("403", error("The caller may not create customers.")),
                        ("408", error("The body did not arrive in time.")),
                        ("409", error("The externalID is taken.")), ("413", error("The body is too large.")),
                        ("415", error("The body is not JSON.")), ("422", error("Invalid fields, all of them in details.")),
                    ])},
            },
            "/v1/customers/{id}": {
                "parameters": [id.clone()],
                "get": {"summary": "One customer.", "responses": responses(&[
                    ("200", json!({"description": "The customer.", "headers": etag.clone(),
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Customer"}}}})),
                    ("403", error("The account belongs to no provider, reseller or customer.")),
                    ("404", error("No such customer, or not the caller's.")),
                ])},
                "put": {"summary": "Replaces a customer (optional fields left out are removed).", "parameters": [if_match.clone()],
                    "requestBody": customer_body(&["application/json"], "Customer"), "responses": write_responses("Replaced.")},
                "patch": {"summary": "Changes a customer (JSON merge patch, RFC 7396; null removes).", "parameters": [if_match.clone()],
                    "requestBody": customer_body(&["application/merge-patch+json", "application/json"], "CustomerPatch"),
                    "responses": write_responses("Changed.")},
                "delete": {"summary": "Deletes a customer and everything under it.", "parameters": [if_match.clone()],
                    "responses": responses(&[
                        ("200", json!({"description": "Deleted."})),
                        ("400", error("If-Match is not a valid header value.")),
                        ("403", error("The caller may not delete customers.")),
                        ("404", error("No such customer, or not the caller's.")), ("412", error("The ETag is stale.")),
                    ])},
            },
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic", "description": "The user name is a person's mail."}},
            "schemas": {
                "Customer": object_schema(CUSTOMER),
                "Address": object_schema(ADDRESS),
                "CustomerPatch": patch_schema(CUSTOMER),
                "AddressPatch": patch_schema(ADDRESS),
                "CustomerItem": item_schema(),
                "Created": {"type": "object", "properties": {"id": {"type": "integer"}, "location": {"type": "string", "format": "uri"}}},
                "Auth": {"type": "object", "properties": {"id": {"type": "integer"}, "user": {"type": "string"}, "location": {"type": "string", "format": "uri"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["status", "code", "message", "details"], "properties": {
                        "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "object", "properties": {
                            "field": {"type": "string"}, "message": {"type": "string"}}}}}}}},
            },
        },
    })
}

pub async fn document(State(app): State<AppState>) -> Response {
    json_response(StatusCode::OK, &build(&app.settings.public_url()))
}
