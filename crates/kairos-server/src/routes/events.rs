//! `POST /v1/events`: all-or-nothing, durable before the answer.

use actix_web::{web, HttpRequest, HttpResponse};
use kairos_core::{Event, FieldError, RawEvent};
use serde_json::json;

use crate::body::item_body;
use crate::config::Scope;
use crate::error::{ApiError, ErrorResponse};
use crate::openapi::{BodyErrors, KeyErrors, StoreErrors};
use crate::openapi::{EventsRequest, IngestResponse};
use crate::state::AppState;

/// Ingest events: all or nothing, idempotent per (customer, event id).
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = EventsRequest, description = "JSON `{\"events\": [...]}`; also NDJSON (`application/x-ndjson`), one event per line"),
    responses(
        (status = 200, description = "Stored and durable", body = IngestResponse),
        (status = 400, description = "Invalid events, each named; nothing stored", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["ingest"]), ()))]
pub async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Ingest)?;
    let server = state.config.server();
    let values = item_body(
        &req,
        payload,
        server,
        "events",
        "too_many_events",
        server.max_events_per_request,
    )
    .await?;
    let now = state.now();
    let mut events = Vec::with_capacity(values.len());
    let mut invalid: Vec<(usize, Vec<FieldError>)> = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let checked = value
            .map_err(|m| vec![FieldError::new("event", m)])
            .and_then(RawEvent::from_json)
            .and_then(|raw| Event::from_raw(raw, now));
        match checked {
            Ok(e) => events.push(e),
            Err(errs) => invalid.push((index, errs)),
        }
    }
    if !invalid.is_empty() {
        let n = invalid.len();
        state
            .metrics
            .ingest(0, 0, (events.len() + invalid.len()) as u64);
        return Err(ApiError::invalid_items(
            "invalid_events",
            format!("{n} event(s) are invalid; nothing was stored"),
            invalid,
        ));
    }
    let n = events.len();
    // Goal events of experiments are attributed once they are stored.
    let goals: std::collections::HashSet<String> = crate::routes::experiments::definitions(&state)
        .await?
        .values()
        .map(|d| d.goal.clone())
        .collect();
    let goal_events: Vec<Event> = events
        .iter()
        .filter(|e| goals.contains(e.kind.as_str()))
        .cloned()
        .collect();
    let outcome = state.store.ingest(events).await?;
    if !goal_events.is_empty() {
        crate::routes::experiments::record_conversions(&state, &goal_events).await?;
    }
    state
        .metrics
        .ingest(outcome.accepted, outcome.duplicates, 0);
    tracing::info!(
        events = n,
        accepted = outcome.accepted,
        duplicates = outcome.duplicates,
        "events ingested"
    );
    Ok(HttpResponse::Ok().json(json!({
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
    })))
}
