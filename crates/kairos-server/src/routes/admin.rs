//! `POST /v1/admin/train` and the health endpoints.

use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use kairos_learn::{Population, PopulationFit};
use serde_json::json;

use crate::config::Scope;
use crate::error::ApiError;
use crate::state::{AppState, POPULATION_MODEL};

/// Refits the population prior from every stored profile, stores it for
/// every server on this store, and swaps it in.
pub async fn train(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Admin)?;
    Ok(HttpResponse::Ok().json(retrain(&state).await?))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PopulationSummary {
    pub customers: u64,
    pub trained_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelsSummary {
    pub population: PopulationSummary,
}

/// What a training run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSummary {
    pub models: ModelsSummary,
    pub seconds: f64,
}

/// Refits the models from stored history, stores them for every server on
/// this store, and swaps them into `state`.
pub async fn retrain(state: &AppState) -> Result<TrainSummary, ApiError> {
    let started = std::time::Instant::now();
    let population = fit_population(state).await?;
    let bytes = serde_json::to_vec(&population).map_err(|e| {
        ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )
    })?;
    state.store.put_model(POPULATION_MODEL, bytes).await?;
    tracing::info!(
        customers = population.customers,
        "population prior refitted"
    );
    let summary = TrainSummary {
        models: ModelsSummary {
            population: PopulationSummary {
                customers: population.customers,
                trained_at: population.trained_at,
            },
        },
        seconds: started.elapsed().as_secs_f64(),
    };
    state.set_population(population);
    Ok(summary)
}

pub async fn fit_population(state: &AppState) -> Result<Population, ApiError> {
    let fit = Arc::new(Mutex::new(PopulationFit::new(&state.config.learn)));
    let sink = Arc::clone(&fit);
    state
        .store
        .visit_profiles(Box::new(move |_, profile| {
            if let Ok(mut f) = sink.lock() {
                f.add(profile);
            }
        }))
        .await?;
    let fit = match Arc::try_unwrap(fit) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared) => shared
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone()),
    };
    Ok(fit.finish(state.now()))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "2"))
            .json(json!({"status": "not_ready", "reason": e.to_string()})),
    }
}
