//! Kairos HTTP server: the only crate that knows actix-web and HTTP statuses.
//!
//! [`create_app`] builds the whole application; `kairos serve` and every HTTP
//! test use it. Handlers parse, call one domain function, and map the result.

mod auth;
mod body;
pub mod config;
mod derived;
mod error;
mod json;
pub mod metrics;
pub mod openapi;
mod routes;
pub mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use tracing::Instrument;

pub use config::{Config, ConfigError, ValidConfig};
pub use error::ApiError;
pub use routes::admin::{retrain, summary, train_options, write_artifact, TrainSummary};
pub use routes::customers::MAX_CUSTOMERS_PER_REQUEST;
pub use state::{AppState, Clock, StartError};

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);
const REQUEST_ID: &str = "x-request-id";

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{:x}",
                std::process::id(),
                REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)
            )
        })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "no such endpoint"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    ))
}

/// The whole Kairos application over `state`.
pub fn create_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use routes::{admin, customers, decisions, events, experiments, layouts};
    App::new()
        .app_data(state)
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| ApiError::bad_request("invalid_path", e.to_string()).into()),
        )
        .wrap_fn(|req, srv| {
            use actix_web::dev::Service;
            let id = request_id(&req);
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
            let span = tracing::info_span!(
                "http_request",
                method = %req.method(),
                route = %route,
                request_id = %id,
            );
            let started = Instant::now();
            let method = req.method().to_string();
            let app = req.app_data::<web::Data<AppState>>().cloned();
            let metrics = app.as_ref().map(|s| std::sync::Arc::clone(&s.metrics));
            // Training takes as long as the data needs; everything else has a deadline.
            let timeout = app
                .as_ref()
                .map(|s| std::time::Duration::from_secs(s.config.server().request_timeout_secs))
                .filter(|_| route != "/v1/admin/train");
            let fut = {
                let _entered = span.enter();
                srv.call(req)
            };
            async move {
                let answered = match timeout {
                    Some(limit) => tokio::time::timeout(limit, fut).await,
                    None => Ok(fut.await),
                };
                let mut res = match answered {
                    Ok(res) => res?,
                    Err(_) => {
                        if let Some(m) = &metrics {
                            m.request(&method, &route, 503, started.elapsed());
                        }
                        tracing::warn!(
                            micros = started.elapsed().as_micros() as u64,
                            "request timed out"
                        );
                        let mut err = ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "timeout",
                            "the request took longer than server.request_timeout_secs",
                        );
                        err.retry_after = Some(1);
                        return Err(err.into());
                    }
                };
                let status = res.status().as_u16();
                if let Some(m) = metrics {
                    m.request(&method, &route, status, started.elapsed());
                }
                tracing::info!(
                    status,
                    micros = started.elapsed().as_micros() as u64,
                    "request finished"
                );
                if let Ok(v) = HeaderValue::from_str(&id) {
                    res.headers_mut()
                        .insert(HeaderName::from_static(REQUEST_ID), v);
                }
                Ok(res)
            }
            .instrument(span)
        })
        .route("/healthz", web::get().to(admin::healthz))
        .route("/readyz", web::get().to(admin::readyz))
        .route("/openapi.json", web::get().to(openapi::openapi_json))
        .route("/metrics", web::get().to(admin::metrics))
        .route("/demo/", web::get().to(layouts::demo))
        .route(
            "/demo",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header(("location", "/demo/"))
                    .finish()
            }),
        )
        .service(
            web::scope("/v1")
                .service(
                    web::resource("/events")
                        .route(web::post().to(events::post_events))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/customers")
                        .route(web::post().to(customers::put_customers))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/customers/{id}")
                        .route(web::put().to(customers::put_customer))
                        .route(web::get().to(customers::get_customer))
                        .route(web::delete().to(customers::delete_customer))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/customers/{id}/export")
                        .route(web::get().to(customers::export_customer))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/decisions")
                        .route(web::post().to(decisions::post_decision))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/decisions/batch")
                        .route(web::post().to(decisions::batch))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/decisions/{decision_id}/confirm")
                        .route(web::post().to(decisions::confirm))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/experiments")
                        .route(web::get().to(experiments::list_experiments))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/experiments/{key}")
                        .route(web::put().to(experiments::put_experiment))
                        .route(web::get().to(experiments::get_experiment))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/experiments/{key}/results")
                        .route(web::get().to(experiments::results))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/layouts/{page}")
                        .route(web::get().to(layouts::get_layout))
                        .route(web::method(actix_web::http::Method::OPTIONS).to(layouts::preflight))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/assign")
                        .route(web::post().to(experiments::post_assign))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/admin/train")
                        .route(web::post().to(admin::train))
                        .default_service(web::to(method_not_allowed)),
                ),
        )
        .default_service(web::to(not_found))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped with an error: {0}")]
    Run(std::io::Error),
}

/// Runs the server until it is stopped (SIGINT/SIGTERM drain in-flight requests).
pub async fn serve(config: ValidConfig) -> Result<(), ServeError> {
    let bind = config.bind;
    let workers = config.server().workers;
    let config_timeout = config.server().request_timeout_secs;
    let state = web::Data::new(AppState::open(config).await?);
    // Tells when every worker has let go of the state, and with it the store.
    let held = std::sync::Arc::downgrade(&state.clone().into_inner());
    let timeout = std::time::Duration::from_secs(config_timeout);
    let mut server = HttpServer::new(move || create_app(state.clone()))
        .shutdown_timeout(30)
        .client_request_timeout(timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(5));
    if workers > 0 {
        server = server.workers(workers);
    }
    let server = server
        .bind(bind)
        .map_err(|source| ServeError::Bind { bind, source })?;
    tracing::info!(%bind, "kairos listening");
    server.run().await.map_err(ServeError::Run)?;
    // Stopped (SIGTERM, SIGINT): in-flight requests were answered; wait for
    // the workers to drop the state so the store is closed, not abandoned.
    for _ in 0..100 {
        if held.strong_count() == 0 {
            tracing::info!("in-flight requests drained; store closed");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::warn!("stopped, but the store was still in use after 5 s");
    Ok(())
}
