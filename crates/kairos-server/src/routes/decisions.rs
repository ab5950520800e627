//! `POST /v1/decisions`: one customer, the best channel and send time.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, FixedOffset, Utc};
use kairos_core::time::parse_instant;
use kairos_core::Channel;
use kairos_core::CustomerId;
use kairos_decide::caps::CapState;
use kairos_decide::{
    channel_status, decide, Action, Alternative, Candidate, DecisionBasis, DecisionInput,
    QuietHours, Suppression, SuppressionReason, Window,
};
use kairos_learn::{ChannelEstimate, ModelBundle, ProfileState};
use kairos_store::{CustomerRecord, Reservation, ReserveCheck, StoreError};
use serde::{Deserialize, Deserializer, Serialize};

use crate::body::json_body;
use crate::config::Scope;
use crate::error::{ApiError, ErrorResponse};
use crate::openapi::{BodyErrors, KeyErrors, StoreErrors};
use crate::routes::customers::customer_id;
use crate::state::AppState;

/// Missing (`None`): the configured default; `null` (`Some(None)`): none.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<QuietHours>>, D::Error> {
    Option::<QuietHours>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub customer_id: String,
    /// Candidates; default: every reachable, consented channel.
    pub channels: Option<Vec<Channel>>,
    /// RFC 3339; default: now.
    #[schema(format = DateTime)]
    pub not_before: Option<String>,
    /// RFC 3339; default: not_before + 24h.
    #[schema(format = DateTime)]
    pub deadline: Option<String>,
    pub campaign: Option<String>,
    pub message_id: Option<String>,
    pub experiment: Option<String>,
    /// Local quiet hours; `null` for none; default from configuration.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<QuietHours>)]
    pub quiet_hours: Option<Option<QuietHours>>,
    /// Request-time attributes for targeting conditions (used by experiments).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionResponse {
    pub decision_id: String,
    pub customer_id: String,
    pub action: Action,
    pub channel: Option<Channel>,
    #[serde(serialize_with = "kairos_core::rfc3339::option")]
    pub send_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(serialize_with = "kairos_core::rfc3339::option")]
    pub send_at_local: Option<DateTime<FixedOffset>>,
    pub score: f64,
    pub basis: DecisionBasis,
    pub alternatives: Vec<Alternative>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "kairos_core::rfc3339::option"
    )]
    pub cancel_if_active_after: Option<DateTime<Utc>>,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppression: Option<Suppression>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The zone `send_at_local` is in.
    pub timezone: String,
    /// Answered from population patterns alone: the store was unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
    /// The content variant, when the request names an experiment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantChoice>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VariantChoice {
    pub experiment: String,
    /// None: the customer is not in the experiment (see `reason`).
    pub variant: Option<String>,
    pub reason: String,
}

/// Picks the content variant of a send decision that names an experiment,
/// recording the exposure; an unknown experiment is said in the reasons.
async fn choose_variant(
    state: &AppState,
    id: &CustomerId,
    record: Option<CustomerRecord>,
    shared: &Shared,
    now: DateTime<Utc>,
    response: &mut DecisionResponse,
) -> Result<(), ApiError> {
    let Some(exp) = &shared.experiment else {
        return Ok(());
    };
    if response.action != Action::Send {
        return Ok(());
    }
    match crate::routes::experiments::assign_customer(
        state,
        exp,
        id,
        record,
        shared.attributes.as_ref(),
        now,
    )
    .await
    {
        Ok(a) => {
            response.variant = Some(VariantChoice {
                experiment: a.experiment,
                variant: a.variant,
                reason: a.reason,
            });
            Ok(())
        }
        Err(e) if e.code == "experiment_not_found" => {
            response.reasons.push(format!(
                "Experiment {exp:?} is not defined: no content variant was chosen."
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// What every decision of a request shares, checked once.
#[derive(Debug, Clone)]
pub struct Shared {
    pub channels: Option<Vec<Channel>>,
    pub window: Window,
    pub quiet_hours: Option<QuietHours>,
    pub campaign: Option<String>,
    pub message_id: Option<String>,
    pub experiment: Option<String>,
    /// Request-time attributes for the experiment's condition.
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// A campaign: each customer is decided once, so what is derived for
    /// them is used from the cache but not added to it (it would push out
    /// the customers single decisions keep asking about).
    pub campaign_pass: bool,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        state: &AppState,
        now: chrono::DateTime<Utc>,
        channels: Option<Vec<Channel>>,
        not_before: Option<String>,
        deadline: Option<String>,
        quiet_hours: Option<Option<QuietHours>>,
        campaign: Option<String>,
        message_id: Option<String>,
        experiment: Option<String>,
    ) -> Result<Self, ApiError> {
        let params = &state.config.decide;
        let parse = |field, v: Option<String>| v.map(|s| parse_instant(field, &s)).transpose();
        let window = Window::new(
            parse("not_before", not_before)?,
            parse("deadline", deadline)?,
            now,
            params,
        )?;
        let quiet_hours = match quiet_hours {
            None => params.quiet_hours,
            Some(q) => q.map(QuietHours::check).transpose()?,
        };
        if channels.as_ref().is_some_and(Vec::is_empty) {
            return Err(ApiError::bad_request(
                "invalid_field",
                "channels: must name at least one channel, or be left out for every reachable one",
            ));
        }
        Ok(Self {
            channels,
            window,
            quiet_hours,
            campaign,
            message_id,
            experiment,
            attributes: None,
            campaign_pass: false,
        })
    }
}

/// Sends and live reservations of a customer, for the caps.
fn cap_state(
    profile: &ProfileState,
    reservations: &[Reservation],
    now: chrono::DateTime<Utc>,
) -> CapState {
    let mut caps = CapState::default();
    for (c, stats) in Channel::ALL.iter().zip(&profile.channels) {
        caps.add_many(*c, &stats.recent_sends);
    }
    for r in reservations.iter().filter(|r| r.holds(now)) {
        caps.add(r.channel, r.send_at);
    }
    caps
}

/// Attempts when concurrent decisions for one customer race for cap room.
const ATTEMPTS: usize = 3;

/// A decision computed from a customer's record, and the reservation its
/// send needs.
pub struct Planned {
    pub response: DecisionResponse,
    pub reservation: Option<(Reservation, ReserveCheck)>,
}

/// Decides for one customer from their stored record: CPU only, no IO.
pub fn plan(
    state: &AppState,
    models: &std::sync::Arc<ModelBundle>,
    id: &CustomerId,
    record: Option<CustomerRecord>,
    shared: &Shared,
    now: chrono::DateTime<Utc>,
) -> Planned {
    let params = &state.config.decide;
    let (attributes, profile, reservations, stored) = match record {
        Some(r) => (r.attributes, r.profile, r.reservations, r.stored),
        None => (None, ProfileState::default(), Vec::new(), None),
    };
    let zone_name = attributes.as_ref().and_then(|a| a.timezone.clone());
    let (tz, tz_assumed) = match zone_name.as_deref().map(str::parse::<chrono_tz::Tz>) {
        Some(Ok(tz)) => (tz, false),
        _ => (params.default_tz, true),
    };
    let derived = crate::derived::derived_for(
        state,
        models,
        id,
        &profile,
        attributes.as_ref(),
        !shared.campaign_pass,
    );
    let activity = &derived.activity;
    let segment_label = derived.segment_label.clone();
    let mut requested: Vec<Channel> = Vec::new();
    for c in shared
        .channels
        .clone()
        .unwrap_or_else(|| Channel::ALL.to_vec())
    {
        if !requested.contains(&c) {
            requested.push(c);
        }
    }
    let candidates = requested
        .into_iter()
        .map(|c| {
            let stats = &profile.channels[c.index()];
            Candidate {
                channel: c,
                status: channel_status(
                    attributes.as_ref().and_then(|a| a.channels.get(&c)),
                    stats,
                    shared.channels.is_some(),
                ),
                estimate: ChannelEstimate::new(stats, models.channels.get(c)),
            }
        })
        .collect();
    let caps = cap_state(&profile, &reservations, now);
    let week_ago = now - chrono::Duration::days(7);
    let input = DecisionInput {
        weekly_activity: profile.weekly_activity(models.activity.params.half_life_days),
        now,
        tz,
        tz_assumed,
        window: shared.window,
        candidates,
        activity,
        activity_mass: Some(&derived.mass),
        prior_untrained: !models.activity.is_trained(),
        segment_label,
        response: models.response.as_ref(),
        days_since_active: profile
            .last_active_at
            .map_or(30.0, |l| (now - l).num_seconds().max(0) as f64 / 86_400.0),
        sends_7d: caps.count_between(week_ago, now) as f64,
        cap_state: &caps,
        last_active_at: profile.last_active_at,
        quiet_hours: shared.quiet_hours,
    };
    let d = decide(&input, params);
    let decision_id = uuid::Uuid::now_v7().to_string();
    let reservation = match (d.action, d.channel, d.send_at) {
        (Action::Send, Some(channel), Some(send_at)) => {
            let limits = params.caps.clone();
            let check = ReserveCheck::new(move |profile, live| {
                cap_state(profile, live, now)
                    .check(&limits, channel, send_at, tz)
                    .is_ok()
            });
            // The engine sends only where this check passes on the state it
            // decided on, so the check accepts the record as read.
            #[cfg(debug_assertions)]
            {
                let live: Vec<Reservation> = reservations
                    .iter()
                    .filter(|r| r.holds(now))
                    .cloned()
                    .collect();
                assert!(
                    check.accepts(&profile, &live),
                    "a send the cap check refuses on the state it was decided on"
                );
            }
            let check = match stored {
                Some(read) => check.accepting(read),
                None => check,
            };
            Some((
                Reservation {
                    decision_id: decision_id.clone(),
                    channel,
                    send_at,
                    deadline: shared.window.deadline,
                    created_at: now,
                    confirmed: false,
                    cancel_if_active_after: d.cancel_if_active_after,
                },
                check,
            ))
        }
        _ => None,
    };
    Planned {
        response: DecisionResponse {
            decision_id,
            customer_id: id.to_string(),
            action: d.action,
            channel: d.channel,
            send_at: d.send_at,
            send_at_local: d.send_at_local,
            score: d.score,
            basis: d.basis,
            alternatives: d.alternatives,
            cancel_if_active_after: d.cancel_if_active_after,
            reasons: d.reasons,
            suppression: d.suppression,
            campaign: shared.campaign.clone(),
            message_id: shared.message_id.clone(),
            timezone: tz.name().to_string(),
            degraded: None,
            variant: None,
        },
        reservation,
    }
}

/// Decides for one customer and reserves cap room for a send; when a
/// concurrent decision took the room meanwhile, decides again on the new state.
pub async fn decide_for(
    state: &AppState,
    id: CustomerId,
    shared: &Shared,
) -> Result<DecisionResponse, ApiError> {
    for _attempt in 0..ATTEMPTS {
        let now = state.now();
        let record = match state.store.customer(&id).await {
            Ok(r) => r,
            Err(StoreError::Unavailable(why)) => {
                return Ok(degraded(state, &id, shared, now, &why))
            }
            Err(e) => return Err(e.into()),
        };
        let for_variant = shared.experiment.as_ref().and(record.clone());
        let planned = plan(state, &state.models(), &id, record, shared, now);
        if let Some((reservation, check)) = planned.reservation {
            match state.store.reserve(&id, reservation, now, check).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(StoreError::Unavailable(why)) => {
                    return Ok(degraded(state, &id, shared, now, &why))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut response = planned.response;
        choose_variant(state, &id, for_variant, shared, now, &mut response).await?;
        return Ok(response);
    }
    Err(ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        "concurrent_decisions",
        "concurrent decisions for this customer kept taking the remaining room; retry",
    ))
}

/// A decision while the store is unreachable: from the population's patterns
/// alone (nothing of the customer is known), with no cap room reserved.
pub fn degraded(
    state: &AppState,
    id: &CustomerId,
    shared: &Shared,
    now: DateTime<Utc>,
    why: &str,
) -> DecisionResponse {
    tracing::warn!(customer_id = %id, reason = why, "decision degraded: store unreachable");
    let mut response = plan(state, &state.models(), id, None, shared, now).response;
    response.degraded = Some(true);
    response.reasons.push(
        "The customer store is unreachable: decided from population patterns alone; \
         frequency caps could not be checked and no room was reserved."
            .to_owned(),
    );
    response
}

/// Logs a decision answered to a client and counts it in the metrics.
fn log_decision(metrics: &crate::metrics::Metrics, d: &DecisionResponse) {
    metrics.decision((
        match d.action {
            Action::Send => "send",
            Action::Suppress => "suppress",
        },
        match d.basis {
            DecisionBasis::Personal => "personal",
            DecisionBasis::Segment => "segment",
            DecisionBasis::Global => "global",
            DecisionBasis::Default => "default",
        },
        d.channel.map_or("none", Channel::as_str),
        match d.suppression.as_ref().map(|s| s.reason) {
            None => "none",
            Some(SuppressionReason::NoReachableChannel) => "no_reachable_channel",
            Some(SuppressionReason::DeadlinePassed) => "deadline_passed",
            Some(SuppressionReason::QuietHours) => "quiet_hours",
            Some(SuppressionReason::FrequencyCap) => "frequency_cap",
        },
        d.degraded == Some(true),
    ));
    tracing::debug!(
        customer_id = %d.customer_id,
        decision_id = %d.decision_id,
        action = ?d.action,
        channel = ?d.channel,
        basis = ?d.basis,
        "decision"
    );
}

/// Decides for one request against the current state.
pub async fn decide_one(
    state: &AppState,
    req: DecisionRequest,
) -> Result<DecisionResponse, ApiError> {
    let id = customer_id(req.customer_id)?;
    let mut shared = Shared::check(
        state,
        state.now(),
        req.channels,
        req.not_before,
        req.deadline,
        req.quiet_hours,
        req.campaign,
        req.message_id,
        req.experiment,
    )?;
    shared.attributes = req.attributes;
    decide_for(state, id, &shared).await
}

/// The best channel and send time for one message, or why not to send.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions",
    request_body(content = DecisionRequest),
    responses(
        (status = 200, description = "A decision (`send` or `suppress`), with reasons", body = DecisionResponse),
        (status = 400, description = "Invalid request", body = ErrorResponse),
        (status = 409, description = "Concurrent decisions kept taking the room; retry", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["decide"]), ()))]
pub async fn post_decision(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Decide)?;
    let body: DecisionRequest = json_body(&req, payload, state.config.server()).await?;
    let d = decide_one(&state, body).await?;
    log_decision(&state.metrics, &d);
    Ok(HttpResponse::Ok().json(d))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub send: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfirmResponse {
    pub decision_id: String,
    pub customer_id: String,
    pub channel: Channel,
    pub send: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A channel that reaches the customer now instead, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_channel: Option<Channel>,
}

/// `POST /v1/decisions/{decision_id}/confirm`: at send time, turn the
/// reservation into a send, or free it. A push or in-app send is called off
/// (`customer_active`) when the customer became active after the decision.
/// At send time: turn the planned send into a send, or free its room.
#[utoipa::path(post, path = "/v1/decisions/{decision_id}/confirm", tag = "decisions",
    params(("decision_id" = String, Path, description = "From the decision")),
    request_body(content = ConfirmRequest),
    responses(
        (status = 200, description = "Whether to send now", body = ConfirmResponse),
        (status = 400, description = "Invalid request", body = ErrorResponse),
        (status = 404, description = "No such planned send", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["decide"]), ()))]
pub async fn confirm(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Decide)?;
    let decision_id = path.into_inner();
    let body: ConfirmRequest = json_body(&req, payload, state.config.server()).await?;
    let now = state.now();
    let not_found = || {
        ApiError::not_found(
            "decision_not_found",
            format!(
                "no planned send {decision_id:?}: unknown, already refused, or reported as sent"
            ),
        )
    };
    let (customer, reservation) = state
        .store
        .reservation(&decision_id)
        .await?
        .ok_or_else(not_found)?;
    if !reservation.holds(now) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "decision_expired",
            format!(
                "the decision's deadline {} has passed",
                reservation.deadline.to_rfc3339()
            ),
        ));
    }
    let mut answer = ConfirmResponse {
        decision_id: decision_id.clone(),
        customer_id: customer.to_string(),
        channel: reservation.channel,
        send: body.send,
        reason: body.reason.clone(),
        suggested_channel: None,
    };
    if body.send {
        let record = state.store.customer(&customer).await?;
        let last_active = record.as_ref().and_then(|r| r.profile.last_active_at);
        let came_back = match (reservation.cancel_if_active_after, last_active) {
            (Some(after), Some(active)) => active > after,
            _ => false,
        };
        if came_back {
            answer.send = false;
            answer.reason = Some("customer_active".into());
            let in_session = kairos_decide::in_session(last_active, now);
            let in_app_ok = record.as_ref().is_some_and(|r| {
                let prefs = r
                    .attributes
                    .as_ref()
                    .and_then(|a| a.channels.get(&Channel::InApp));
                channel_status(prefs, &r.profile.channels[Channel::InApp.index()], true)
                    == kairos_decide::ChannelStatus::Allowed
            });
            if in_session && in_app_ok && reservation.channel != Channel::InApp {
                answer.suggested_channel = Some(Channel::InApp);
            }
        }
    }
    if !state
        .store
        .update_reservation(&decision_id, answer.send)
        .await?
    {
        return Err(not_found());
    }
    tracing::info!(decision_id = %decision_id, send = answer.send, reason = ?answer.reason, "decision confirmed");
    Ok(HttpResponse::Ok().json(answer))
}

/// Largest number of customers in one batch request.
pub const MAX_BATCH: usize = 100_000;
/// Customers read, decided and reserved together (one read, one write).
const BATCH_CHUNK: usize = 1024;
/// Chunks in flight at once (reading, deciding, reserving or being sent):
/// enough that both cores stay busy while one chunk waits on its write,
/// few enough that memory stays bounded.
const CHUNKS_IN_FLIGHT: usize = 8;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to 100,000 customer ids.
    pub customers: Vec<String>,
    pub channels: Option<Vec<Channel>>,
    #[schema(format = DateTime)]
    pub not_before: Option<String>,
    #[schema(format = DateTime)]
    pub deadline: Option<String>,
    pub campaign: Option<String>,
    pub message_id: Option<String>,
    pub experiment: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<QuietHours>)]
    pub quiet_hours: Option<Option<QuietHours>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

fn error_line(customer: &str, e: &ApiError) -> serde_json::Value {
    serde_json::json!({
        "customer_id": customer,
        "error": {"code": e.code, "message": e.message, "details": e.details},
    })
}

mod erased_line {
    /// Something written as one NDJSON line.
    pub trait Line {
        fn write_to(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    }
    impl<T: serde::Serialize> Line for T {
        fn write_to(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
            crate::json::write(self, out)
        }
    }
}

/// One chunk of a batch: one read of every record, the decisions computed on
/// the blocking pool, one write of every reservation; NDJSON lines in order.
async fn decide_chunk(
    state: web::Data<AppState>,
    shared: std::sync::Arc<Shared>,
    raws: Vec<String>,
) -> web::Bytes {
    let now = state.now();
    let parsed: Vec<Result<CustomerId, ApiError>> =
        raws.iter().map(|r| customer_id(r.clone())).collect();
    let ids: Vec<CustomerId> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();

    let outcome: Result<Vec<DecisionResponse>, ApiError> = async {
        let records = match state.store.customers(ids.clone()).await {
            Ok(r) => r,
            Err(StoreError::Unavailable(why)) => {
                return Ok(ids
                    .iter()
                    .map(|id| degraded(&state, id, &shared, now, &why))
                    .collect());
            }
            Err(e) => return Err(e.into()),
        };
        let (st, sh, planned_ids) = (state.clone(), std::sync::Arc::clone(&shared), ids.clone());
        let planned: Vec<Planned> = tokio::task::spawn_blocking(move || {
            // The models once per chunk: taking them per customer would move
            // the lock's and the bundle's counts between the cores each time.
            let models = st.models();
            planned_ids
                .iter()
                .zip(records)
                .map(|(id, rec)| plan(&st, &models, id, rec, &sh, now))
                .collect()
        })
        .await
        .map_err(|e| {
            ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            )
        })?;
        let mut responses = Vec::with_capacity(planned.len());
        let mut items = Vec::new();
        let mut reserved_at = Vec::new();
        for (i, p) in planned.into_iter().enumerate() {
            if let Some((r, check)) = p.reservation {
                items.push((ids[i].clone(), r, check));
                reserved_at.push(i);
            }
            responses.push(p.response);
        }
        let stored = match state.store.reserve_many(items, now).await {
            Ok(s) => s,
            Err(StoreError::Unavailable(why)) => {
                return Ok(ids
                    .iter()
                    .map(|id| degraded(&state, id, &shared, now, &why))
                    .collect());
            }
            Err(e) => return Err(e.into()),
        };
        for (i, ok) in reserved_at.into_iter().zip(stored) {
            if !ok {
                // A concurrent decision took the room: decide this one again, alone.
                responses[i] = decide_for(&state, ids[i].clone(), &shared).await?;
            }
        }
        if shared.experiment.is_some() {
            for (id, r) in ids.iter().zip(responses.iter_mut()) {
                if r.variant.is_none() && r.degraded.is_none() {
                    let record = state.store.customer(id).await?;
                    choose_variant(&state, id, record, &shared, now, r).await?;
                }
            }
        }
        Ok(responses)
    }
    .await;
    let mut out = Vec::with_capacity(raws.len() * 1_280);
    let mut write = |value: &dyn erased_line::Line| {
        if value.write_to(&mut out).is_ok() {
            out.push(b'\n');
        }
    };
    match outcome {
        Ok(responses) => {
            let mut responses = responses.into_iter();
            for (p, raw) in parsed.iter().zip(&raws) {
                match p {
                    Ok(_) => {
                        if let Some(d) = responses.next() {
                            log_decision(&state.metrics, &d);
                            write(&d);
                        }
                    }
                    Err(e) => write(&error_line(raw, e)),
                }
            }
        }
        Err(e) => {
            for raw in &raws {
                write(&error_line(raw, &e));
            }
        }
    }
    web::Bytes::from(out)
}

/// `POST /v1/decisions/batch`: one decision per customer, NDJSON, streamed in
/// input order with bounded memory. A customer whose decision fails gets a
/// line `{"customer_id", "error": {...}}`; the rest go on.
/// One decision per customer, NDJSON in input order, streamed.
#[utoipa::path(post, path = "/v1/decisions/batch", tag = "decisions",
    request_body(content = BatchRequest),
    responses(
        (status = 200, description = "One DecisionResponse per line, or `{\"customer_id\", \"error\"}`", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Invalid request", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["decide"]), ()))]
pub async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use futures_util::StreamExt;
    crate::auth::authorize(&req, &state, Scope::Decide)?;
    let body: BatchRequest = json_body(&req, payload, state.config.server()).await?;
    if body.customers.is_empty() || body.customers.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "customers: give 1 to {MAX_BATCH} customer ids, got {}",
                body.customers.len()
            ),
        ));
    }
    let mut shared = Shared::check(
        &state,
        state.now(),
        body.channels,
        body.not_before,
        body.deadline,
        body.quiet_hours,
        body.campaign,
        body.message_id,
        body.experiment,
    )?;
    shared.attributes = body.attributes;
    shared.campaign_pass = true;
    let shared = std::sync::Arc::new(shared);
    let n = body.customers.len();
    let chunks: Vec<Vec<String>> = body
        .customers
        .chunks(BATCH_CHUNK)
        .map(<[String]>::to_vec)
        .collect();
    let stream = futures_util::stream::iter(chunks)
        .map(move |chunk| decide_chunk(state.clone(), std::sync::Arc::clone(&shared), chunk))
        .buffered(CHUNKS_IN_FLIGHT)
        .map(Ok::<_, actix_web::Error>);
    tracing::info!(customers = n, "batch decisions");
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(stream))
}
