use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use actix_web::{web, Error};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use kairos_server::{create_app, AppState, Config};

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Sunday 2026-11-22 12:00 UTC: the pinned "now" of HTTP tests.
pub fn now() -> DateTime<Utc> {
    utc("2026-11-22T12:00:00Z")
}

pub struct TestApp<S> {
    pub app: S,
    _dir: tempfile::TempDir,
}

impl<S> TestApp<S> {
    /// Stops the app (closing its store) and hands over its directory.
    pub fn into_dir(self) -> tempfile::TempDir {
        drop(self.app);
        self._dir
    }
}

/// An app over a fresh embedded store, "now" pinned, config from env-style pairs.
pub async fn app_with(
    env: &[(&str, &str)],
) -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = Error,
    >,
> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The test's own directories unless the test names others: never the repository's
    // config/experiments and config/layouts.
    let mut vars: Vec<(String, String)> = vec![
        (
            "KAIROS__EXPERIMENTS__DIR".into(),
            dir.path().join("experiments").display().to_string(),
        ),
        (
            "KAIROS__LAYOUTS__DIR".into(),
            dir.path().join("layouts").display().to_string(),
        ),
    ];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars.push((
        "KAIROS__STORE__PATH".into(),
        dir.path().join("data").display().to_string(),
    ));
    // Training writes versioned artifacts: into the test's own directory, never the repository's.
    vars.push((
        "KAIROS__MODELS__DIR".into(),
        dir.path().join("models").display().to_string(),
    ));
    let config = Config::load(None, vars).unwrap_or_else(|e| panic!("{e}"));
    let opened = AppState::open(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pinned = AppState::with_store(
        opened.config.clone(),
        Arc::clone(&opened.store),
        Arc::new(now),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let app = test::init_service(create_app(web::Data::new(pinned))).await;
    TestApp { app, _dir: dir }
}

pub async fn app() -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = Error,
    >,
> {
    app_with(&[]).await
}

/// Sends a request; returns the status and the JSON body (Null when empty).
pub async fn call<S, B>(app: &S, req: test::TestRequest) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = Error>,
    B: actix_web::body::MessageBody,
{
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
    };
    (status, value)
}

pub fn post(path: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::post().uri(path).set_json(body)
}

pub fn put(path: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::put().uri(path).set_json(body)
}

pub fn get(path: &str) -> test::TestRequest {
    test::TestRequest::get().uri(path)
}

/// The seed customer's habit: 24 session starts on Mondays 19:00-21:00 in
/// Kuala Lumpur over the 8 weeks before now, sent with UTC timestamps.
pub fn monday_evening_sessions(customer: &str) -> Vec<Value> {
    let first_monday = utc("2026-11-16T11:00:00Z"); // 19:00 +08:00
    let mut events = Vec::new();
    for week in 0..8 {
        for (k, minutes) in [5, 50, 95].into_iter().enumerate() {
            let at = first_monday - Duration::weeks(week) + Duration::minutes(minutes);
            events.push(json!({
                "event_id": format!("{customer}-w{week}-{k}"),
                "customer_id": customer,
                "type": "session_start",
                "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }));
        }
    }
    events
}
