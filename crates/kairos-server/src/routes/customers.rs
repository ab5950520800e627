//! `/v1/customers/{id}`: attributes in, attributes and learned profile out;
//! `/v1/customers`: many customers' attributes in one request.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};

use kairos_core::{Channel, ChannelPrefs, CoreError, CustomerId, CustomerPatch, FieldError};
use kairos_learn::{ChannelEstimate, PeakWindow};
use kairos_store::{customer_tz, CustomerRecord};
use serde::Serialize;

use crate::body::{item_body, json_body};
use crate::config::Scope;
use crate::error::{ApiError, ErrorResponse};
use crate::openapi::{BodyErrors, KeyErrors, StoreErrors};
use crate::state::AppState;

pub fn customer_id(raw: String) -> Result<CustomerId, ApiError> {
    Ok(CustomerId::parse(raw)?)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityView {
    pub hour_of_week: Vec<f64>,
    #[schema(value_type = String)]
    pub basis: &'static str,
    #[schema(value_type = Vec<Object>)]
    pub peak_windows: Vec<PeakWindow>,
    /// Weight of the customer's own history in `hour_of_week` (0-1).
    pub personal_weight: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub sends: f64,
    pub engagements: f64,
    pub sends_total: u32,
    pub engagements_total: u32,
    pub rate: f64,
    pub rate_ci: [f64; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour_of_week: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentView {
    pub id: String,
    pub label: String,
    /// How sure the model is that the customer belongs to it.
    pub probability: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LearnedTraits {
    pub has_app: bool,
    pub email_open_mobile_share: Option<f64>,
    pub category_affinity: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    pub events: u64,
    /// Events counted in the weekly activity: what the customer did on
    /// their own; message opens and clicks only while there is none.
    pub activity_events: u64,
    pub last_active_at: Option<DateTime<Utc>>,
    pub activity: ActivityView,
    pub channels: BTreeMap<Channel, ChannelView>,
    pub segment: Option<SegmentView>,
    pub learned_traits: LearnedTraits,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    #[schema(value_type = String)]
    pub customer_id: CustomerId,
    pub timezone: Option<String>,
    /// The zone local times are computed in (the default when `timezone` is unset).
    pub effective_timezone: String,
    pub locale: Option<String>,
    pub channels: BTreeMap<Channel, ChannelPrefs>,
    #[schema(value_type = Object)]
    pub traits: serde_json::Map<String, serde_json::Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub profile: ProfileView,
}

pub fn view(record: CustomerRecord, state: &AppState) -> CustomerView {
    let models = state.models();
    let tz = customer_tz(record.attributes.as_ref(), state.config.decide.default_tz);
    let p = &record.profile;
    let pairs = record
        .attributes
        .as_ref()
        .map(|a| kairos_learn::activity::trait_pairs(&a.traits))
        .unwrap_or_default();
    let posterior = models.activity.posterior_traits(&p.activity, &pairs);
    let segment = posterior.segment.as_ref().and_then(|m| {
        models.activity.segments.get(m.index).map(|s| SegmentView {
            id: s.id.clone(),
            label: s.label.clone(),
            probability: m.probability,
        })
    });
    let channels = Channel::ALL
        .iter()
        .filter_map(|&c| {
            let stats = &p.channels[c.index()];
            if stats.sends_total == 0
                && stats.engagements_total == 0
                && stats.unsubscribed_at.is_none()
            {
                return None;
            }
            let e = ChannelEstimate::new(stats, models.channels.get(c));
            let hour_of_week = (!stats.engagement_how.is_empty()).then(|| {
                let total: f32 = stats.engagement_how.iter().sum();
                stats
                    .engagement_how
                    .iter()
                    .map(|v| f64::from(v / total.max(f32::MIN_POSITIVE)))
                    .collect()
            });
            Some((
                c,
                ChannelView {
                    sends: e.sends,
                    engagements: e.engagements,
                    sends_total: e.sends_total,
                    engagements_total: e.engagements_total,
                    rate: e.rate,
                    rate_ci: e.rate_ci(),
                    hour_of_week,
                    unsubscribed_at: stats.unsubscribed_at,
                },
            ))
        })
        .collect();
    let attrs = record.attributes;
    CustomerView {
        customer_id: record.customer_id,
        timezone: attrs.as_ref().and_then(|a| a.timezone.clone()),
        effective_timezone: tz.name().to_string(),
        locale: attrs.as_ref().and_then(|a| a.locale.clone()),
        channels: attrs
            .as_ref()
            .map(|a| a.channels.clone())
            .unwrap_or_default(),
        traits: attrs.as_ref().map(|a| a.traits.clone()).unwrap_or_default(),
        created_at: attrs.as_ref().map(|a| a.created_at),
        updated_at: attrs.as_ref().map(|a| a.updated_at),
        profile: ProfileView {
            events: p.events,
            activity_events: p.activity_events,
            last_active_at: p.last_active_at,
            activity: ActivityView {
                basis: posterior.basis.as_str(),
                peak_windows: posterior.peak_windows(3),
                personal_weight: posterior.personal_weight,
                hour_of_week: posterior.hour_of_week,
            },
            channels,
            segment,
            learned_traits: LearnedTraits {
                has_app: p.has_app(),
                email_open_mobile_share: p.email_open_mobile_share(),
                category_affinity: p.category_affinity(),
            },
        },
    }
}

fn unknown(id: &CustomerId) -> ApiError {
    ApiError::not_found(
        "customer_not_found",
        format!("no customer {:?} is stored", id.as_str()),
    )
}

/// Create or update a customer's attributes (merge).
#[utoipa::path(put, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    request_body(content = CustomerPatch),
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 400, description = "Invalid attributes", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["ingest"]), ()))]
pub async fn put_customer(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Ingest)?;
    let id = customer_id(path.into_inner())?;
    let patch: CustomerPatch = json_body(&req, payload, state.config.server()).await?;
    patch.validate()?;
    state.store.put_customer(&id, patch, state.now()).await?;
    let record = state
        .store
        .customer(&id)
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(HttpResponse::Ok().json(view(record, &state)))
}

/// Most customers one `POST /v1/customers` may carry.
pub const MAX_CUSTOMERS_PER_REQUEST: usize = 10_000;

/// `POST /v1/customers` as JSON (NDJSON, one customer a line, is accepted
/// too). Only the document's shape: the handler reads the items one by one,
/// to name each invalid one.
#[allow(dead_code)]
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomersBatch {
    /// Up to 10,000 items, each a `customer_id` with the attributes to merge
    /// (the fields of `PUT /v1/customers/{id}`), applied in order: a customer
    /// named twice gets both, the later over the earlier.
    #[schema(value_type = Vec<Object>)]
    pub customers: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomersBatchOutcome {
    /// Items applied (every item of the request).
    pub updated: usize,
}

/// One item of a batch: its customer id and patch, or the rules it broke.
fn batch_item(value: serde_json::Value) -> Result<(CustomerId, CustomerPatch), Vec<FieldError>> {
    let serde_json::Value::Object(mut fields) = value else {
        return Err(vec![FieldError::new(
            "customer",
            "must be an object with a customer_id and the attributes to merge",
        )]);
    };
    let id = match fields.remove("customer_id") {
        Some(serde_json::Value::String(s)) => {
            CustomerId::parse(s).map_err(CoreError::into_field_errors)
        }
        Some(_) => Err(vec![FieldError::new("customer_id", "must be a string")]),
        None => Err(vec![FieldError::new("customer_id", "is required")]),
    };
    let patch = serde_json::from_value::<CustomerPatch>(serde_json::Value::Object(fields))
        .map_err(|e| vec![FieldError::new("customer", e.to_string())])
        .and_then(|p| {
            p.validate()
                .map(|()| p)
                .map_err(CoreError::into_field_errors)
        });
    match (id, patch) {
        (Ok(id), Ok(patch)) => Ok((id, patch)),
        (id, patch) => Err(id
            .err()
            .into_iter()
            .flatten()
            .chain(patch.err().into_iter().flatten())
            .collect()),
    }
}

/// Merges attributes into many customers, as `PUT /v1/customers/{id}` does
/// into one: all items are checked first, and if any is invalid nothing is
/// stored. Durable before the answer; on the embedded store one write for
/// the whole request.
#[utoipa::path(post, path = "/v1/customers", tag = "customers",
    request_body(content = CustomersBatch, description = "JSON `{\"customers\": [...]}`; also NDJSON (`application/x-ndjson`), one customer a line"),
    responses(
        (status = 200, description = "Every item applied", body = CustomersBatchOutcome),
        (status = 400, description = "Invalid items (each listed in `details` by its index) or too many; nothing was stored", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["ingest"]), ()))]
pub async fn put_customers(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Ingest)?;
    let values = item_body(
        &req,
        payload,
        state.config.server(),
        "customers",
        "too_many_customers",
        MAX_CUSTOMERS_PER_REQUEST,
    )
    .await?;
    let mut patches = Vec::with_capacity(values.len());
    let mut invalid: Vec<(usize, Vec<FieldError>)> = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let item = value
            .map_err(|m| vec![FieldError::new("customer", m)])
            .and_then(batch_item);
        match item {
            Ok(item) => patches.push(item),
            Err(errors) => invalid.push((index, errors)),
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::invalid_items(
            "invalid_customers",
            format!(
                "{} customer(s) are invalid; nothing was stored",
                invalid.len()
            ),
            invalid,
        ));
    }
    let updated = patches.len();
    state.store.put_customers(patches, state.now()).await?;
    tracing::info!(customers = updated, "customers updated");
    Ok(HttpResponse::Ok().json(CustomersBatchOutcome { updated }))
}

/// The customer with their learned profile.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 400, description = "Invalid id", body = ErrorResponse),
        (status = 404, description = "Nothing stored for this id", body = ErrorResponse),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["read"]), ()))]
pub async fn get_customer(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Read)?;
    let id = customer_id(path.into_inner())?;
    let record = state
        .store
        .customer(&id)
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(HttpResponse::Ok().json(view(record, &state)))
}

/// Erase every trace of the customer.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses(
        (status = 204, description = "Erased"),
        (status = 400, description = "Invalid id", body = ErrorResponse),
        (status = 404, description = "Nothing stored for this id", body = ErrorResponse),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["admin"]), ()))]
pub async fn delete_customer(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Admin)?;
    let id = customer_id(path.into_inner())?;
    let erased = state.store.delete_customer(&id).await?;
    // Nothing derived from the customer's data stays in memory either.
    state.derived.forget(id.as_str());
    if erased {
        tracing::info!(customer_id = %id, "customer erased");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(unknown(&id))
    }
}

/// Everything stored about the customer.
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses(
        (status = 200, description = "Attributes, profile, every event, message states, planned sends", body = Object),
        (status = 400, description = "Invalid id", body = ErrorResponse),
        (status = 404, description = "Nothing stored for this id", body = ErrorResponse),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["admin"]), ()))]
pub async fn export_customer(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Admin)?;
    let id = customer_id(path.into_inner())?;
    let export = state
        .store
        .export_customer(&id)
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(HttpResponse::Ok().json(export))
}
