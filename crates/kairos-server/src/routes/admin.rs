//! `POST /v1/admin/train` and the health endpoints.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use kairos_learn::fit::FitReport;
use kairos_learn::model::DataSize;
use kairos_learn::train::{TrainOptions, Trainer};
use kairos_learn::{BetaPrior, LearnError, ModelBundle};
use kairos_store::customer_tz;
use serde::Serialize;
use serde_json::json;

use crate::config::Scope;
use crate::error::{ApiError, ErrorResponse};
use crate::openapi::{KeyErrors, StoreErrors};
use crate::state::{AppState, CURRENT_MODEL};

/// Refit the models to the stored histories and swap them in.
#[utoipa::path(post, path = "/v1/admin/train", tag = "operations",
    responses(
        (status = 200, description = "What was trained", body = TrainSummary),
        (status = 409, description = "Nothing could be trained from the stored history", body = ErrorResponse),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["admin"]), ()))]
pub async fn train(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Admin)?;
    Ok(HttpResponse::Ok().json(retrain(&state).await?))
}

/// What a training run produced.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrainSummary {
    pub version: String,
    pub trained_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(value_type = Object)]
    pub data: DataSize,
    #[schema(value_type = Option<Object>)]
    pub activity: Option<FitReport>,
    #[schema(value_type = Object)]
    pub channel_priors: std::collections::BTreeMap<kairos_core::Channel, BetaPrior>,
    pub segments: Vec<SegmentSummary>,
    /// Held-out calibration of the response model, when one was trained.
    #[schema(value_type = Option<Object>)]
    pub response: Option<kairos_learn::response::Calibration>,
    /// The response model's exposure form, which scores slots by default
    /// (`decide.scorer`): each channel's fitted floor and its held-out calibration.
    #[schema(value_type = Option<Object>)]
    pub exposure: Option<kairos_learn::exposure::Exposure>,
    /// Where the versioned artifact was written, if it could be.
    #[schema(value_type = Option<String>)]
    pub artifact: Option<PathBuf>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentSummary {
    pub id: String,
    pub label: String,
    pub customers: u64,
}

pub fn train_options(config: &crate::ValidConfig) -> TrainOptions {
    TrainOptions {
        channel_fallback: config.learn.channel_prior,
        profile: config.learn.profile,
        response_quarters: config.decide.response_quarters,
        ..TrainOptions::default()
    }
}

fn next_version(previous: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let n = previous
        .strip_prefix('v')
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    format!("v{}-{}", n + 1, at.format("%Y%m%dT%H%M%SZ"))
}

/// Writes `<dir>/<version>/model.json` and `manifest.json`.
pub fn write_artifact(dir: &std::path::Path, bundle: &ModelBundle) -> std::io::Result<PathBuf> {
    let path = dir.join(&bundle.manifest.version);
    std::fs::create_dir_all(&path)?;
    std::fs::write(path.join("model.json"), bundle.to_json())?;
    std::fs::write(
        path.join("manifest.json"),
        serde_json::to_vec_pretty(&bundle.manifest).unwrap_or_default(),
    )?;
    Ok(path)
}

pub fn summary(bundle: &ModelBundle, artifact: Option<PathBuf>, seconds: f64) -> TrainSummary {
    TrainSummary {
        version: bundle.manifest.version.clone(),
        trained_at: bundle.manifest.trained_at,
        data: bundle.manifest.data.clone(),
        activity: bundle.manifest.activity.clone(),
        channel_priors: kairos_core::Channel::ALL
            .iter()
            .map(|&c| (c, bundle.channels.get(c)))
            .collect(),
        segments: bundle
            .activity
            .segments
            .iter()
            .map(|s| SegmentSummary {
                id: s.id.clone(),
                label: s.label.clone(),
                customers: s.customers,
            })
            .collect(),
        response: bundle.manifest.response.clone(),
        exposure: bundle.response.as_ref().and_then(|r| r.exposure.clone()),
        artifact,
        seconds,
    }
}

/// Fits every model to the stored history, stores it for every server on
/// this store, recomputes profiles if the decay changed, swaps it in, and
/// writes a versioned artifact to `models.dir`.
pub async fn retrain(state: &AppState) -> Result<TrainSummary, ApiError> {
    let started = std::time::Instant::now();
    let opts = train_options(&state.config);
    let default_tz = state.config.decide.default_tz;
    let trainer = Arc::new(Mutex::new(Trainer::new()));
    let sink = Arc::clone(&trainer);
    let add_opts = opts.clone();
    state
        .store
        .visit_histories(Box::new(move |h| {
            let tz = customer_tz(h.attributes.as_ref(), default_tz);
            if let Ok(mut t) = sink.lock() {
                t.add(tz, &h.events, &add_opts);
                if let Some(a) = &h.attributes {
                    t.add_traits(&a.traits);
                }
            }
        }))
        .await?;
    let trainer = match Arc::try_unwrap(trainer) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "training data still shared",
            ))
        }
    };
    let now = state.now();
    let version = next_version(&state.models().manifest.version, now);
    let bundle = tokio::task::spawn_blocking(move || {
        trainer.finish(now, version, "stored history".into(), &opts)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| match e {
        LearnError::InvalidModel(m) | LearnError::InvalidParam { reason: m, .. } => ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_train",
            format!("no model could be trained from the stored history: {m}"),
        ),
    })?;
    state
        .store
        .put_model(CURRENT_MODEL, bundle.to_json())
        .await?;
    state.set_models(bundle.clone());
    state.align_profiles().await?;
    let dir = state.config.raw.models.dir.clone();
    let to_write = bundle.clone();
    let artifact = match tokio::task::spawn_blocking(move || write_artifact(&dir, &to_write)).await
    {
        Ok(Ok(path)) => Some(path),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the model artifact could not be written to models.dir");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "writing the model artifact failed");
            None
        }
    };
    tracing::info!(version = %bundle.manifest.version, customers = bundle.manifest.data.customers, "models trained");
    Ok(summary(&bundle, artifact, started.elapsed().as_secs_f64()))
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
        KeyErrors
    ),
    security(("api_key" = ["read"]), ()))]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Read)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.models())))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = crate::openapi::StatusResponse)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The store answers: the server can take traffic.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = crate::openapi::StatusResponse),
        (status = 503, description = "The store is unavailable", body = crate::openapi::StatusResponse)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok()
            .json(json!({"status": "ready", "model": state.models().manifest.version})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "2"))
            .json(json!({"status": "not_ready", "reason": e.to_string()})),
    }
}
