//! `POST /v1/decisions`: one customer, the best channel and send time.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, FixedOffset, Utc};
use kairos_core::time::parse_instant;
use kairos_core::Channel;
use kairos_decide::{
    channel_status, decide, Action, Alternative, Candidate, DecisionBasis, DecisionInput,
    QuietHours, Suppression, Window,
};
use kairos_learn::{ChannelEstimate, ProfileState};
use serde::{Deserialize, Deserializer, Serialize};

use crate::body::json_body;
use crate::config::Scope;
use crate::error::ApiError;
use crate::routes::customers::customer_id;
use crate::state::AppState;

/// Missing (`None`): the configured default; `null` (`Some(None)`): none.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<QuietHours>>, D::Error> {
    Option::<QuietHours>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub customer_id: String,
    pub channels: Option<Vec<Channel>>,
    pub not_before: Option<String>,
    pub deadline: Option<String>,
    pub campaign: Option<String>,
    pub message_id: Option<String>,
    pub experiment: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub quiet_hours: Option<Option<QuietHours>>,
    /// Request-time attributes for targeting conditions (used by experiments).
    #[allow(dead_code)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize)]
pub struct DecisionResponse {
    pub decision_id: String,
    pub customer_id: String,
    pub action: Action,
    pub channel: Option<Channel>,
    pub send_at: Option<DateTime<Utc>>,
    pub send_at_local: Option<DateTime<FixedOffset>>,
    pub score: f64,
    pub basis: DecisionBasis,
    pub alternatives: Vec<Alternative>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
}

/// Decides for one request against the current state.
pub async fn decide_one(
    state: &AppState,
    req: DecisionRequest,
) -> Result<DecisionResponse, ApiError> {
    let now = state.now();
    let id = customer_id(req.customer_id)?;
    let params = &state.config.decide;
    let parse = |field, v: Option<String>| v.map(|s| parse_instant(field, &s)).transpose();
    let window = Window::new(
        parse("not_before", req.not_before)?,
        parse("deadline", req.deadline)?,
        now,
        params,
    )?;
    let quiet_hours = match req.quiet_hours {
        None => params.quiet_hours,
        Some(q) => q.map(QuietHours::check).transpose()?,
    };
    if let Some(ch) = &req.channels {
        if ch.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_field",
                "channels: must name at least one channel, or be left out for every reachable one",
            ));
        }
    }

    let record = state.store.customer(&id).await?;
    let (attributes, profile) = match record {
        Some(r) => (r.attributes, r.profile),
        None => (None, ProfileState::default()),
    };
    let zone_name = attributes.as_ref().and_then(|a| a.timezone.clone());
    let (tz, tz_assumed) = match zone_name.as_deref().map(str::parse::<chrono_tz::Tz>) {
        Some(Ok(tz)) => (tz, false),
        _ => (params.default_tz, true),
    };
    let models = state.models();
    let pairs = attributes
        .as_ref()
        .map(|a| kairos_learn::activity::trait_pairs(&a.traits))
        .unwrap_or_default();
    let activity = models.activity.posterior_traits(&profile.activity, &pairs);
    let segment_label = activity
        .segment
        .as_ref()
        .and_then(|m| models.activity.segments.get(m.index))
        .map(|s| s.label.clone());

    let mut requested: Vec<Channel> = Vec::new();
    for c in req
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
                    req.channels.is_some(),
                ),
                estimate: ChannelEstimate::new(stats, models.channels.get(c)),
            }
        })
        .collect();
    let input = DecisionInput {
        now,
        tz,
        tz_assumed,
        window,
        candidates,
        activity: &activity,
        prior_untrained: !models.activity.is_trained(),
        segment_label,
        response: models.response.as_ref(),
        days_since_active: profile
            .last_active_at
            .map_or(30.0, |l| (now - l).num_seconds().max(0) as f64 / 86_400.0),
        sends_7d: {
            let week_ago = now - chrono::Duration::days(7);
            profile
                .channels
                .iter()
                .map(|c| {
                    c.recent_sends
                        .iter()
                        .filter(|t| **t > week_ago && **t <= now)
                        .count()
                })
                .sum::<usize>() as f64
        },
        quiet_hours,
    };
    let mut d = decide(&input, params);
    if let Some(exp) = &req.experiment {
        d.reasons.push(format!(
            "Experiment {exp:?} is not defined: no content variant was chosen."
        ));
    }
    let decision_id = uuid::Uuid::now_v7().to_string();
    tracing::info!(
        customer_id = %id,
        decision_id = %decision_id,
        action = ?d.action,
        channel = ?d.channel,
        basis = ?d.basis,
        "decision"
    );
    Ok(DecisionResponse {
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
        campaign: req.campaign,
        message_id: req.message_id,
        timezone: tz.name().to_string(),
    })
}

pub async fn post_decision(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Decide)?;
    let body: DecisionRequest =
        json_body(&req, payload, state.config.server().max_body_bytes).await?;
    Ok(HttpResponse::Ok().json(decide_one(&state, body).await?))
}
