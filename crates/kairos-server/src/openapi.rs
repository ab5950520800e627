//! `GET /openapi.json`: the API described from the handlers' own types
//! (utoipa). `openapi.json` beside this crate's manifest is a copy kept in
//! sync by a test, for readers and tools that do not run the server.

use kairos_core::{Channel, Device, EventType};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{admin, customers, decisions, events, experiments, layouts};

/// One event as clients send it (the contract `kairos_core::Event::from_raw`
/// checks; every broken rule is named in the 400 answer).
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct EventIn {
    /// Unique per customer: a repeat is counted once, forever.
    pub event_id: String,
    pub customer_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339 with an offset; stored in UTC.
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub channel: Option<Channel>,
    pub message_id: Option<String>,
    /// The decision a `message_sent` carries out.
    pub decision_id: Option<String>,
    pub experiment: Option<String>,
    pub variant: Option<String>,
    pub device: Option<Device>,
    /// Sent by a machine (an open by a mail scanner), not a person.
    pub automated: Option<bool>,
    pub category: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
}

/// `POST /v1/events` as JSON (NDJSON, one event per line, is accepted too).
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsRequest {
    pub events: Vec<EventIn>,
}

#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    pub accepted: u64,
    /// Events whose (customer, event id) was already stored.
    pub duplicates: u64,
}

#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// The current model version (`/readyz`).
    pub model: Option<String>,
    /// Why the server is not ready.
    pub reason: Option<String>,
}

/// The errors any operation behind a key may answer.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoResponses)]
pub enum KeyErrors {
    #[response(status = 401, description = "Missing or unknown API key")]
    Unauthorized(crate::error::ErrorResponse),
    #[response(status = 403, description = "The key lacks the scope")]
    Forbidden(crate::error::ErrorResponse),
    #[response(status = 429, description = "Rate limited; see Retry-After")]
    RateLimited(crate::error::ErrorResponse),
}

/// The store is down: retry later.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoResponses)]
pub enum StoreErrors {
    #[response(
        status = 503,
        description = "The store is unavailable; see Retry-After"
    )]
    Unavailable(crate::error::ErrorResponse),
}

/// What a request body may be refused for.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoResponses)]
pub enum BodyErrors {
    #[response(status = 413, description = "Body too large")]
    TooLarge(crate::error::ErrorResponse),
    #[response(status = 415, description = "Unsupported content type")]
    UnsupportedType(crate::error::ErrorResponse),
}

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from auth.keys, with the scope the operation names. \
                         Without configured keys, loopback clients need none.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Kairos",
        description = "Personalization and contact-timing engine: events in; the best channel, \
                       send time and content out, with the reasons.",
        license(name = "Apache-2.0")
    ),
    paths(
        events::post_events,
        customers::put_customer,
        customers::put_customers,
        customers::get_customer,
        customers::delete_customer,
        customers::export_customer,
        decisions::post_decision,
        decisions::batch,
        decisions::confirm,
        experiments::put_experiment,
        experiments::get_experiment,
        experiments::list_experiments,
        experiments::post_assign,
        experiments::results,
        layouts::get_layout,
        admin::train,
        admin::healthz,
        admin::readyz,
        admin::metrics,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Behaviour in"),
        (name = "customers", description = "Attributes, learned profiles, erasure and export"),
        (name = "decisions", description = "Whether, how and when to send"),
        (name = "experiments", description = "A/B tests and bandits: definitions, assignment, results"),
        (name = "layouts", description = "Personalized pages for browsers"),
        (name = "operations", description = "Health, readiness, training, this document"),
    )
)]
pub struct ApiDoc;

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openapi.json` is the document the server serves: regenerate it with
    /// `KAIROS_WRITE_OPENAPI=1 cargo test -p kairos-server openapi`.
    #[test]
    fn openapi_json_is_in_sync() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let current = document()
            .to_pretty_json()
            .unwrap_or_else(|e| panic!("{e}"))
            + "\n";
        if std::env::var_os("KAIROS_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &current).unwrap_or_else(|e| panic!("{e}"));
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == current,
            "{} is out of date: run KAIROS_WRITE_OPENAPI=1 cargo test -p kairos-server openapi",
            path.display()
        );
    }

    #[test]
    fn every_operation_documents_its_errors() {
        let doc = document();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
            ] {
                let Some(op) = op else { continue };
                let codes: Vec<&String> = op.responses.responses.keys().collect();
                assert!(
                    codes.iter().any(|c| c.starts_with('2')),
                    "{method} {path}: no success answer"
                );
                if path.starts_with("/v1/") {
                    for needed in ["401", "503"] {
                        assert!(
                            codes.iter().any(|c| *c == needed),
                            "{method} {path}: {needed} undocumented"
                        );
                    }
                }
            }
        }
    }
}
