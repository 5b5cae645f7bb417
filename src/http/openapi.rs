//! `/openapi.json`: an OpenAPI 3.0 description of every route, parameter, header, body
//! and error of the API. The paths, schemas, filter and sort parameters of every
//! resource come from its definition.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::resources::json_response;
use super::state::AppState;
use crate::mapping::query;
use crate::mapping::resource::{Related, ResourceDef};
use crate::mapping::resources::{ADDRESS, ALL};
use crate::mapping::table::{Field, Kind, Part};
use crate::mapping::view::{Conv, Shape, ViewField};

fn scalar_schema(kind: Kind) -> Value {
    match kind {
        Kind::Id | Kind::ParentRef | Kind::Ref(_) => json!({"type": "integer", "format": "int64", "minimum": 1}),
        Kind::TimeZone => json!({"type": "string", "maxLength": 8, "example": "UTC+01"}),
        Kind::Date => json!({"type": "string", "format": "date"}),
        Kind::Qualified(_) => json!({}),
        Kind::Secret => json!({"type": "string", "minLength": 8, "maxLength": 128, "writeOnly": true}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Text { max } => json!({"type": "string", "minLength": 1, "maxLength": max}),
        Kind::DisplayName => json!({"type": "string", "minLength": 1, "maxLength": 64}),
        Kind::Gender => json!({"type": "string", "enum": ["f", "m", "n"]}),
        Kind::Country => json!({"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2"}),
        Kind::Language => json!({"type": "string", "example": "en-GB"}),
        Kind::Mail => json!({"type": "string", "format": "email"}),
        Kind::Phone => json!({"type": "string", "maxLength": 32, "example": "+41 31 123 45 67"}),
        Kind::Url => json!({"type": "string", "format": "uri", "maxLength": 256}),
        Kind::Postal => json!({"type": "string", "maxLength": 1024, "description": "lines separated by line breaks"}),
        Kind::Link(_) => json!({"type": "string", "format": "uri"}),
        Kind::Object(_) => json!({"type": "object"}),
        Kind::List(inner) => json!({"type": "array", "items": scalar_schema(*inner)}),
    }
}

fn object_schema(fields: &[Field]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields.iter().filter(|f| !f.is_hidden()) {
        let mut s = match f.kind {
            Kind::Object(_) if f.name == "billingAddress" || f.name == "shippingAddress" => {
                json!({"$ref": "#/components/schemas/Address"})
            }
            k => scalar_schema(k),
        };
        if f.read_only {
            s["readOnly"] = json!(true);
        }
        if f.create_only {
            s["description"] = json!("Set once: on create, or while it has none; then only its current value.");
        }
        if let Some(d) = f.default {
            s["default"] = json!(d);
        }
        if let Some(d) = f.default_text {
            s["default"] = json!(d);
        }
        if f.kind == Kind::Secret {
            s["description"] = json!("Write-only: given on create, changed with POST …/password, never returned.");
        }
        if let Some(defs) = f.refers_to() {
            let names: Vec<&str> = defs.iter().map(|d| d.singular).collect();
            s["description"] = json!(format!("The id of a {} the caller sees.", names.join(" or ")));
        }
        if f.unique {
            s["description"] = json!("Unique in the directory (409 when another entry has it).");
        }
        if f.kind == Kind::DisplayName {
            s["description"] = json!(
                "Companies: required, stored as o. Private persons: the billing address's givenName and surname; may be left out on writes."
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
    for f in fields.iter().filter(|f| f.kind != Kind::Secret && !f.is_hidden()) {
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
    match kind.element() {
        Kind::Bool => json!({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["*"]}]}),
        Kind::Id | Kind::ParentRef | Kind::Ref(_) => json!({"anyOf": [
            {"type": "integer", "format": "int64", "minimum": 1},
            {"type": "string", "pattern": "^[0-9*]+$", "description": "digits, * as a wildcard"}]}),
        _ => json!({"type": "string", "maxLength": 256}),
    }
}

fn item_schema(def: &'static ResourceDef) -> Value {
    let mut props = Map::new();
    for c in &def.columns().item {
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

/// The name a list query gives a column (dotted for the addresses).
fn column_name(part: Part, field: &Field) -> String {
    match part {
        Part::Root => field.name.to_string(),
        Part::Billing => format!("billingAddress.{}", field.name),
        Part::Shipping => format!("shippingAddress.{}", field.name),
    }
}

fn collection_parameters(def: &'static ResourceDef) -> Vec<Value> {
    let sortable: Vec<&str> = query::sort_columns(def).iter().map(|c| c.field.name).collect();
    let searched: Vec<String> = def.columns().search.iter().map(|c| column_name(c.part, c.field)).collect();
    let mut out = vec![
        json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}}),
        json!({"name": "per_page", "in": "query", "description": "Larger values are clamped to the maximum.", "schema": {"type": "integer", "minimum": 1, "default": 30}}),
        json!({"name": "sort", "in": "query", "description": format!("Comma-separated keys, '-' for descending; ties by id. Keys: {}.", sortable.join(", ")), "schema": {"type": "string"}}),
        json!({"name": "q", "in": "query", "description": format!("Case-insensitive substring of any of: {}.", searched.join(", ")), "schema": {"type": "string", "minLength": 3, "maxLength": 256}}),
    ];
    let mut names: Vec<(String, Kind)> =
        def.columns().filter.iter().map(|c| (column_name(c.part, c.field), c.field.kind)).collect();
    names.extend(ADDRESS.iter().filter(|f| f.in_collection).map(|f| (f.name.to_string(), f.kind)));
    for (name, kind) in names {
        out.push(json!({"name": name, "in": "query", "description": "Filter following the attribute's matching rule; * is a wildcard, * alone means present.", "schema": filter_schema(kind)}));
    }
    out
}

fn etag() -> Value {
    json!({"ETag": {"schema": {"type": "string"}}})
}

/// The paths of one resource: its collection and its elements.
fn resource_paths(def: &'static ResourceDef) -> (Value, Value) {
    let (one, many, schema) = (def.singular, def.name, def.schema);
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}});
    let if_match = json!({"name": "If-Match", "in": "header", "schema": {"type": "string"},
        "description": format!("The ETag of a GET: the write only happens if the {one} is unchanged.")});
    let body = |content_types: &[&str], schema: &str| {
        let mut content = Map::new();
        for ct in content_types {
            content.insert(ct.to_string(), json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}}));
        }
        json!({"required": true, "content": content})
    };
    let missing = format!("No such {one}, or not the caller's.");
    let no_scope = || error("The account belongs to no provider, reseller or customer.");
    // PUT and PATCH answer alike.
    let write_responses = |done: &str| {
        responses(&[
            ("200", json!({"description": done, "headers": etag()})),
            ("400", error("Malformed JSON, or If-Match is not a valid header value.")),
            ("403", error("A change the caller may not make.")),
            ("408", error("The body did not arrive in time.")),
            ("404", error(&missing)),
            ("409", error("The externalID is taken, or the id is shared by several customers.")),
            ("412", error("The ETag is stale.")),
            ("413", error("The body is too large.")),
            ("415", error("The body is not JSON.")),
            ("422", error("Invalid fields.")),
        ])
    };
    let mut delete_errors = vec![
        ("200", json!({"description": "Deleted."})),
        ("400", error("If-Match is not a valid header value.")),
        ("403", error(&format!("The caller may not delete {many}."))),
        ("404", error(&missing)),
        ("412", error("The ETag is stale.")),
    ];
    delete_errors.push(match def.delete_blocked_by {
        Some((_, why)) => ("409", error(&format!("Not deleted: {why}; or the id is shared by several customers."))),
        None => ("409", error("The id is shared by several customers.")),
    });
    let collection = json!({
        "get": {"summary": format!("A page of the {many} the caller may see."), "parameters": collection_parameters(def),
            "responses": responses(&[
                ("200", json!({"description": "The page.", "headers": {
                    "Link": {"schema": {"type": "string"}, "description": "first, prev, next and last (RFC 8288)."},
                    "X-Total-Count": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": format!("#/components/schemas/{schema}Item")}}}}})),
                ("400", error("A broken query string.")),
                ("403", no_scope()),
                ("422", error("Unknown parameters, sort keys or bad values.")),
            ])},
        "post": {"summary": format!("Creates a {one}."), "requestBody": body(&["application/json"], schema),
            "responses": responses(&[
                ("201", json!({"description": "Created.", "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Created"}}}})),
                ("400", error("Malformed JSON.")), ("403", error(&format!("The caller may not create {many}."))),
                ("408", error("The body did not arrive in time.")),
                ("409", error("The externalID is taken.")), ("413", error("The body is too large.")),
                ("415", error("The body is not JSON.")), ("422", error("Invalid fields, all of them in details.")),
            ])},
    });
    let element = json!({
        "parameters": [id],
        "get": {"summary": format!("One {one}."), "responses": responses(&[
            ("200", json!({"description": format!("The {one}."), "headers": etag(),
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})),
            ("403", no_scope()),
            ("404", error(&missing)),
            ("409", error("The id is shared by several customers.")),
        ])},
        "put": {"summary": format!("Replaces a {one} (optional fields left out are removed)."), "parameters": [if_match.clone()],
            "requestBody": body(&["application/json"], schema), "responses": write_responses("Replaced.")},
        "patch": {"summary": format!("Changes a {one} (JSON merge patch, RFC 7396; null removes)."), "parameters": [if_match.clone()],
            "requestBody": body(&["application/merge-patch+json", "application/json"], &format!("{schema}Patch")),
            "responses": write_responses("Changed.")},
        "delete": {"summary": format!("Deletes a {one} and everything under it."), "parameters": [if_match],
            "responses": responses(&delete_errors)},
    });
    (collection, element)
}

/// The document, for a server at `public_url`.
pub fn build(public_url: &str) -> Value {
    let plain = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"type": "object"}}}});
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "stoney customer directory gateway", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The stoney core customers and resellers resources on an OpenLDAP directory."},
        "servers": [{"url": public_url}],
        "security": [{"basic": []}],
        "paths": {
            "/health": {"get": {"summary": "The process is up.", "security": [], "responses": public_responses(&[("200", plain("Up."))])}},
            "/ready": {"get": {"summary": "The directory answers and the collection indexes are loaded.", "security": [],
                "responses": public_responses(&[("200", plain("Ready.")), ("503", retry("Not ready."))])}},
            "/metrics": {"get": {"summary": "Prometheus metrics.", "security": [],
                "responses": public_responses(&[("200", json!({"description": "Text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}))])}},
            "/openapi.json": {"get": {"summary": "This document.", "security": [], "responses": public_responses(&[("200", plain("OpenAPI 3."))])}},
            "/v1/auth": {"get": {"summary": "Checks the credentials.", "responses": responses(&[
                ("200", json!({"description": "Who the credentials belong to.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Auth"}}}})),
            ])}},
        },
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic", "description": "The user name is a person's mail."},
                "subscriptionKey": {"type": "apiKey", "in": "header", "name": "X-Subscription-Key",
                    "description": "A merchant's subscription key (the subscriptions facade only; Basic credentials are not accepted there, keys not on /v1). The key's reseller is the whole scope."},
            },
            "schemas": {
                "Address": object_schema(ADDRESS),
                "AddressPatch": patch_schema(ADDRESS),
                "Created": {"type": "object", "properties": {"id": {"type": "integer"}, "location": {"type": "string", "format": "uri"}}},
                "Auth": {"type": "object", "properties": {"id": {"type": "integer"}, "user": {"type": "string"}, "location": {"type": "string", "format": "uri"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["status", "code", "message", "details"], "properties": {
                        "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "object", "properties": {
                            "field": {"type": "string"}, "message": {"type": "string"}}}}}}}},
            },
        },
    });
    for def in ALL {
        let (collection, element) = resource_paths(def);
        doc["paths"][format!("/v1/{}", def.name)] = collection;
        doc["paths"][format!("/v1/{}/{{id}}", def.name)] = element;
        doc["components"]["schemas"][def.schema] = object_schema(def.fields);
        doc["components"]["schemas"][format!("{}Patch", def.schema)] = patch_schema(def.fields);
        doc["components"]["schemas"][format!("{}Item", def.schema)] = item_schema(def);
        for rel in def.related {
            doc["paths"][format!("/v1/{}/{{id}}/{}", def.name, rel.name)] = related_path(def, rel);
        }
        if def.fields.iter().any(|f| f.kind == Kind::Secret) {
            doc["paths"][format!("/v1/{}/{{id}}/password", def.name)] = password_path(def);
        }
    }
    doc["paths"]["/v1/search"] = search_path();
    doc["paths"]["/v1/changes"] = changes_path();
    doc["components"]["schemas"]["ChangeEvent"] = change_event_schema();
    subscription_paths(&mut doc);
    let (keys, key) = subscription_key_paths();
    doc["paths"]["/v1/resellers/{id}/subscription-keys"] = keys;
    doc["paths"]["/v1/resellers/{id}/subscription-keys/{name}"] = key;
    doc["components"]["schemas"]["SubscriptionKey"] = json!({"type": "object", "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"},
        "created": {"type": "string", "format": "date-time"}}});
    doc["components"]["schemas"]["IssuedSubscriptionKey"] = json!({"type": "object", "properties": {
        "name": {"type": "string"},
        "key": {"type": "string", "description": "The key: shown this once, stored only as its SHA-256."},
        "created": {"type": "string", "format": "date-time"}}});
    doc["components"]["schemas"]["Password"] = json!({"type": "object", "additionalProperties": false,
        "required": ["newPassword"], "properties": {
            "newPassword": scalar_schema(Kind::Secret),
            "oldPassword": {"type": "string", "writeOnly": true, "description": "Required when a person changes its own password."}}});
    doc
}

/// `/v1/<resource>/{id}/<related>`: a list of another resource, with its parameters.
fn related_path(def: &'static ResourceDef, rel: &'static Related) -> Value {
    let other = rel.resource;
    let mut parameters =
        vec![json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}})];
    parameters.extend(collection_parameters(other));
    json!({"get": {
    "summary": format!("The {} whose {} is this {} (paged, sorted, filtered like /v1/{}).", other.name, rel.field, def.singular, other.name),
    "parameters": parameters,
    "responses": responses(&[
        ("200", json!({"description": "The page.", "headers": {
            "Link": {"schema": {"type": "string"}}, "X-Total-Count": {"schema": {"type": "integer"}}},
            "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}Item", other.schema)}}}}})),
        ("400", error("A broken query string.")),
        ("403", error("The account belongs to no provider, reseller or customer.")),
        ("404", error(&format!("No such {}, or not the caller's.", def.singular))),
        ("422", error("Unknown parameters, sort keys or bad values.")),
    ])}})
}

/// `POST /v1/<resource>/{id}/password`.
fn password_path(def: &'static ResourceDef) -> Value {
    json!({"post": {
    "summary": format!("Sets a {}'s password (hashed by the directory); its remembered logins end.", def.singular),
    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}],
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Password"}}}},
    "responses": responses(&[
        ("204", json!({"description": "Set."})),
        ("400", error("Malformed JSON.")),
        ("403", error("The account belongs to no provider, reseller or customer.")),
        ("404", error(&format!("No such {}, or not the caller's.", def.singular))),
        ("408", error("The body did not arrive in time.")),
        ("413", error("The body is too large.")),
        ("415", error("The body is not JSON.")),
        ("422", error("A missing or invalid new password, or a wrong old one.")),
    ])}})
}

/// `/v1/resellers/{id}/subscription-keys` and `…/{name}`: the provider's management of
/// a reseller's keys.
fn subscription_key_paths() -> (Value, Value) {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}});
    let name = json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"}});
    let forbidden = || error("Only the provider manages subscription keys.");
    let missing = || error("No such reseller, or not the caller's.");
    let collection = json!({
        "parameters": [id.clone()],
        "get": {"summary": "The reseller's subscription keys, by name and creation date (never the key).",
            "responses": responses(&[
                ("200", json!({"description": "The keys.", "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/SubscriptionKey"}}}}})),
                ("403", forbidden()), ("404", missing()),
            ])},
        "post": {"summary": "Issues a subscription key to the reseller (at most two live keys: primary and secondary).",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                "additionalProperties": false, "required": ["name"],
                "properties": {"name": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$", "example": "primary"}}}}}},
            "responses": responses(&[
                ("201", json!({"description": "Issued; the only time the key is shown.", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/IssuedSubscriptionKey"}}}})),
                ("400", error("Malformed JSON.")), ("403", forbidden()), ("404", missing()),
                ("408", error("The body did not arrive in time.")),
                ("409", error("The reseller has a key of this name, or two keys already.")),
                ("413", error("The body is too large.")), ("415", error("The body is not JSON.")),
                ("422", error("A missing or invalid name.")),
            ])},
    });
    let element = json!({
        "parameters": [id, name],
        "delete": {"summary": "Revokes (deletes) a subscription key; it stops within the cache time on every gateway, at once on this one.",
            "responses": responses(&[
                ("204", json!({"description": "Revoked."})),
                ("403", forbidden()), ("404", error("No such reseller or key, or not the caller's.")),
            ])},
    });
    (collection, element)
}

/// The schema of a view's object: each field typed as the resource's field it shows.
fn view_schema(def: &'static ResourceDef, fields: &[ViewField]) -> Value {
    let mut props = Map::new();
    for f in fields {
        let mut s = match f.shape {
            Shape::Path(p) => {
                crate::mapping::table::resolve(def, p).map(|(_, rf)| scalar_schema(rf.kind)).unwrap_or(json!({}))
            }
            Shape::Conv(_, Conv::Words(no, yes)) => json!({"type": "string", "enum": [no, yes]}),
            Shape::Conv(_, Conv::UpperCase) => json!({"type": "string"}),
            Shape::Object(sub) => view_schema(def, sub),
        };
        if let Some(max) = f.max {
            s["maxLength"] = json!(max);
        }
        props.insert(f.name.to_string(), s);
    }
    json!({"type": "object", "additionalProperties": false, "properties": props})
}

/// The subscriptions facade (`/subscriptions/v1/customers`), with its schemas.
fn subscription_paths(doc: &mut Value) {
    let view = &crate::mapping::subscriptions::SUBSCRIPTION_CUSTOMER;
    let schemas = &mut doc["components"]["schemas"];
    schemas["SubscriptionCustomer"] = view_schema(view.def, view.fields);
    schemas["SubscriptionSignUp"] = json!({"type": "object", "required": ["customer"], "additionalProperties": false,
        "properties": {"customer": {"$ref": "#/components/schemas/SubscriptionCustomer"},
            "paymentRegistration": {"type": "object", "additionalProperties": false, "properties": {"id": {"type": "string", "maxLength": 64}}}}});
    schemas["SubscriptionSummary"] = json!({"type": "object", "properties": {
        "signUpId": {"type": "integer"}, "customerNumber": {"type": "string", "description": "The gateway's id of the customer."},
        "externalCustomerReference": {"type": "string", "description": "The merchant's customer number."},
        "contracts": {"type": "array", "items": {"$ref": "#/components/schemas/Contract"}}}});
    let money = json!({"type": "number", "minimum": 0, "multipleOf": 0.01, "description": "An exact decimal with at most 2 decimals."});
    let percent = json!({"type": "number", "minimum": 0, "maximum": 100, "description": "Kept as sent (19 or 0.19)."});
    let date = json!({"type": "string", "format": "date"});
    schemas["Contract"] = json!({"type": "object", "properties": {
        "contractId": {"type": "string", "description": "The gateway's id (<orderReference>-<item number>)."},
        "contractReference": {"type": ["string", "null"], "description": "The merchant's own reference; also accepted in paths."},
        "orderReference": {"type": "string"}, "productID": {"type": "string"},
        "status": {"type": "string", "enum": ["ORDERED", "ACTIVE", "TERMINATED", "REVOKED"]},
        "activationDate": {"type": ["string", "null"], "format": "date"}, "terminationDate": {"type": ["string", "null"], "format": "date"},
        "terminationReason": {"type": ["string", "null"], "enum": ["01", "02", "03", "04", null]},
        "options": {"type": "array", "items": {"$ref": "#/components/schemas/ContractOption"}}}});
    schemas["OrderItem"] = json!({"type": "object", "additionalProperties": false,
        "required": ["productID", "quantity", "grossUnitPrice", "netUnitPrice", "vatAmount", "vatPercent"],
        "description": "netUnitPrice + vatAmount = grossUnitPrice to the cent.",
        "properties": {"productID": {"type": "string", "maxLength": 64}, "description": {"type": "string", "maxLength": 256},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 1000000}, "grossUnitPrice": money, "netUnitPrice": money,
            "vatAmount": money, "vatPercent": percent, "contractReference": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}});
    schemas["Order"] = json!({"type": "object", "additionalProperties": false, "required": ["orderReference", "orderDate", "currency", "items"],
        "properties": {"orderReference": {"type": "string", "pattern": "^[A-Za-z0-9]{1,16}$"}, "orderDate": date,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "items": {"type": "array", "minItems": 1, "maxItems": crate::mapping::contracts::MAX_ITEMS, "items": {"$ref": "#/components/schemas/OrderItem"}}}});
    schemas["ContractOption"] = json!({"type": "object", "additionalProperties": false, "required": ["productID", "charges"],
        "properties": {"productID": {"type": "string", "maxLength": 64}, "charges": {"type": "array", "items": {"type": "object",
            "additionalProperties": false, "description": "netAmount + vatAmount = grossAmount to the cent.",
            "required": ["grossAmount", "netAmount", "unitAmountGross", "unitAmountNet", "vatAmount", "vatPercent"],
            "properties": {"amountGrossDiscounts": money, "amountNetDiscounts": money, "grossAmount": money, "netAmount": money,
                "unitAmountGross": money, "unitAmountNet": money, "vatAmount": money, "vatPercent": percent}}}}});
    let security = json!([{"subscriptionKey": []}]);
    let body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubscriptionSignUp"}}}});
    let summary = json!({"description": "The customer's sign-up.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubscriptionSummary"}}}});
    let unauthorized = error("A missing, unknown or revoked subscription key.");
    let number = json!({"name": "customerNumber", "in": "path", "required": true, "description": "The merchant's own customer number.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}});
    let write = |done: Value, missing: Option<&str>| {
        let mut list = vec![
            ("200", done),
            ("400", error("Malformed JSON.")),
            ("401", unauthorized.clone()),
            ("408", error("The body did not arrive in time.")),
            ("409", error("The customer kept changing.")),
            ("413", error("The body is too large.")),
            ("415", error("The body is not JSON.")),
            ("422", error("Invalid fields, in the facade's names.")),
        ];
        if let Some(m) = missing {
            list.push(("404", error(m)));
        }
        responses(&list)
    };
    let contract = json!({"name": "contractId", "in": "path", "required": true, "description": "The contract's id, or the merchant's contractReference.", "schema": {"type": "string", "maxLength": 64}});
    let order_ref = json!({"name": "orderReference", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{1,16}$"}});
    let call = |summary_text: &str, req: Value, ok: Value, conflict: &str| {
        json!({"post": {"tags": ["subscriptions"], "security": security, "summary": summary_text,
            "requestBody": {"required": true, "content": {"application/json": {"schema": req}}},
            "responses": responses(&[
                ("200", ok), ("400", error("Malformed JSON.")), ("401", unauthorized.clone()),
                ("404", error("The merchant has no such customer, contract or order.")),
                ("409", error(conflict)), ("413", error("The body is too large.")), ("415", error("The body is not JSON.")),
                ("422", error("Invalid fields."))])}})
    };
    let mut p = call("Orders: one contract in status ORDERED per item. The same orderReference again with the same body answers the same.",
        json!({"$ref": "#/components/schemas/Order"}), summary.clone(), "The orderReference exists with another body, or a contractReference names another contract.");
    p["parameters"] = json!([number]);
    doc["paths"]["/subscriptions/v1/customers/{customerNumber}/orders"] = p;
    let mut p = call("Returns items of an order: their contracts (all without returnItems) become REVOKED. The same returnReference again answers the same.",
        json!({"type": "object", "additionalProperties": false, "required": ["returnDate", "returnReference"], "properties": {
            "returnDate": date, "returnItems": {"type": "array", "items": {"type": "object", "properties": {"productID": {"type": "string"}}}},
            "returnReason": {"type": "string", "maxLength": 256}, "returnReference": {"type": "string", "maxLength": 30}}}),
        summary.clone(), "The returnReference exists with another body, or a returned contract is revoked or terminated.");
    p["parameters"] = json!([number, order_ref]);
    doc["paths"]["/subscriptions/v1/customers/{customerNumber}/orders/{orderReference}/returns"] = p;
    doc["paths"]["/subscriptions/v1/customers/{customerNumber}/contracts"] = json!({"parameters": [number], "get": {
        "tags": ["subscriptions"], "security": security, "summary": "The customer's contracts, by id.",
        "parameters": [{"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
        "responses": responses(&[
            ("200", json!({"description": "A page of contracts.", "headers": {"Link": {"schema": {"type": "string"}}, "X-Total-Count": {"schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Contract"}}}}})),
            ("400", error("A bad page or per_page.")), ("401", unauthorized.clone()), ("404", error("The merchant has no customer with this number."))])}});
    doc["paths"]["/subscriptions/v1/customers/{customerNumber}/contracts/{contractId}"] = json!({"parameters": [number, contract], "get": {
        "tags": ["subscriptions"], "security": security, "summary": "One contract.",
        "responses": responses(&[
            ("200", json!({"description": "The contract.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Contract"}}}})),
            ("401", unauthorized.clone()), ("404", error("No such customer or contract."))])}});
    for (name, text, req, ok, conflict) in [
        ("activate", "ORDERED becomes ACTIVE from the requested date (not before the order date); the same call again answers the same.",
            json!({"type": "object", "additionalProperties": false, "required": ["requestedActivationDate"], "properties": {"requestedActivationDate": date}}),
            json!({"description": "The date, echoed.", "content": {"application/json": {"schema": {"type": "object", "properties": {"requestedActivationDate": date}}}}}),
            "Active from another date, terminated or revoked."),
        ("terminate", "An active contract ends on the requested date (not before its activation), or without one after subscriptions.notice_days; it reads ACTIVE until that date and TERMINATED from it on.",
            json!({"type": "object", "additionalProperties": false, "required": ["terminationReason"], "properties": {"requestedTerminationDate": date,
                "terminationReason": {"type": "string", "enum": ["01", "02", "03", "04"], "description": "01 carrier, 02 customer, 03 extraordinary (carrier), 04 extraordinary (customer)."}}}),
            json!({"description": "The termination date.", "content": {"application/json": {"schema": {"type": "object", "properties": {"terminationDate": date}}}}}),
            "Not active (ordered or revoked), or terminated with another date or reason."),
        ("options", "Adds one-time or recurring fees to an ordered or active contract.",
            json!({"type": "object", "additionalProperties": false, "required": ["options"], "properties": {"options": {"type": "array", "items": {"$ref": "#/components/schemas/ContractOption"}}}}),
            summary.clone(), "The contract is terminated or revoked."),
    ] {
        let mut p = call(text, req, ok, conflict);
        p["parameters"] = json!([number, contract]);
        doc["paths"][format!("/subscriptions/v1/customers/{{customerNumber}}/contracts/{{contractId}}/{name}")] = p;
    }
    doc["paths"]["/subscriptions/v1/customers"] = json!({"post": {
        "tags": ["subscriptions"], "security": security,
        "summary": "Creates the customer with this customer number, or updates it if the merchant has it.",
        "requestBody": body, "responses": write(summary.clone(), None)}});
    doc["paths"]["/subscriptions/v1/customers/{customerNumber}"] = json!({
        "parameters": [number],
        "get": {"tags": ["subscriptions"], "security": security, "summary": "The merchant's customer with this number.",
            "responses": responses(&[
                ("200", json!({"description": "The customer.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubscriptionCustomer"}}}})),
                ("401", unauthorized.clone()),
                ("404", error("The merchant has no customer with this number.")),
            ])},
        "put": {"tags": ["subscriptions"], "security": security, "summary": "Updates the merchant's customer with this number.",
            "requestBody": body, "responses": write(summary, Some("The merchant has no customer with this number."))}});
}

/// `GET /v1/search`.
fn search_path() -> Value {
    let mut groups = Map::new();
    for def in ALL {
        groups.insert(
            def.name.to_string(),
            json!({"type": "object", "properties": {
            "resources": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}Item", def.schema)}},
            "location": {"type": "string", "format": "uri"}}}),
        );
    }
    json!({"get": {
    "summary": "The first hits of a full-text search in every collection the caller may list.",
    "parameters": [
        {"name": "q", "in": "query", "required": true, "schema": {"type": "string", "minLength": 3, "maxLength": 256}},
        {"name": "entries", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 15, "default": 5},
         "description": "Hits per resource."}],
    "responses": responses(&[
        ("200", json!({"description": "The hits per resource.",
            "content": {"application/json": {"schema": {"type": "object", "properties": groups}}}})),
        ("400", error("A broken query string.")),
        ("403", error("The account belongs to no provider, reseller or customer.")),
        ("422", error("A missing or too short q, or bad entries.")),
    ])}})
}

/// A change as a CloudEvents 1.0 event.
fn change_event_schema() -> Value {
    let names: Vec<&str> = ALL.iter().map(|d| d.singular).collect();
    json!({"type": "object", "required": ["specversion", "id", "source", "type", "time", "subject", "data"],
    "description": "One change of one resource, whoever made it (this gateway, another one, an admin's LDAP tool), as a CloudEvents 1.0 event.",
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "description": "The change's position: follow on from it with Last-Event-ID or since."},
        "source": {"type": "string", "format": "uri"},
        "type": {"type": "string", "description": format!("org.stoney.<resource>.<what>: resource one of {}; what one of created, updated, moved (to another reseller), deleted.", names.join(", "))},
        "time": {"type": "string", "format": "date-time", "description": "When the gateway saw the change."},
        "subject": {"type": "string", "format": "uri", "description": "The resource's location."},
        "datacontenttype": {"type": "string", "enum": ["application/json"]},
        "data": {"type": "object", "required": ["id", "reseller"], "properties": {
            "id": {"type": "integer"},
            "reseller": {"type": ["integer", "null"], "description": "The reseller it belongs to (for a delete: belonged to)."},
            "previousReseller": {"type": ["integer", "null"], "description": "moved: the reseller it belonged to before."},
            "changed": {"type": "object", "description": "created: the whole resource as GET shows it; updated and moved: a JSON merge patch (RFC 7396) of what changed, null for a removed field."}}}}})
}

/// `GET /v1/changes`.
fn changes_path() -> Value {
    let names: Vec<&str> = ALL.iter().map(|d| d.name).collect();
    json!({"get": {
    "summary": "The changes of the resources the caller may read: Server-Sent Events with Accept: text/event-stream, else a JSON long poll.",
    "description": "Every list answer carries X-Changes-Position, taken at the moment of its page: follow on from it and no change is missed or repeated. A position older than the window, from another gateway or from before a restart is 410 (in a stream: an event named reset): list again.",
    "parameters": [
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "Follow on after this position (an event id or an X-Changes-Position). Without: from now. In a stream, a Last-Event-ID header wins."},
        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
        {"name": "resource", "in": "query", "schema": {"type": "string"}, "description": format!("Comma-separated, of: {}.", names.join(", "))},
        {"name": "id", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "Only this resource id."},
        {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 60, "default": 25}, "description": "Poll: seconds to wait for a change (at most the request timeout)."},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100}, "description": "Poll: the most changes looked at."}],
    "responses": responses(&[
        ("200", json!({"description": "The changes after the position, and where to follow on.",
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "changes": {"type": "array", "items": {"$ref": "#/components/schemas/ChangeEvent"}},
                    "next": {"type": "string"}}}},
                "text/event-stream": {"schema": {"type": "string", "description": "Events with id: (the position) and data: (a ChangeEvent); an event named reset carries the error body."}}}})),
        ("400", error("A broken query string, an unknown parameter or resource.")),
        ("403", error("The account belongs to no provider, reseller or customer.")),
        ("410", error("The position is not in the change window: list again.")),
        ("503", error("Too many open change streams (see Retry-After).")),
    ])}})
}

pub async fn document(State(app): State<AppState>) -> Response {
    json_response(StatusCode::OK, &build(&app.settings.public_url()))
}
