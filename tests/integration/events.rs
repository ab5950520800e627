//! POST /v1/events: validation, content types, limits, auth.

use actix_web::test::TestRequest;
use serde_json::json;

use crate::support::*;

fn ev(id: &str, customer: &str) -> serde_json::Value {
    json!({"event_id": id, "customer_id": customer, "type": "app_open", "timestamp": "2026-11-20T10:00:00+08:00"})
}

#[actix_web::test]
async fn one_invalid_event_rejects_the_batch_and_stores_nothing() {
    let t = app().await;
    let batch = json!({"events": [
        ev("ok-1", "c-1"),
        {"event_id": "bad", "customer_id": "c-1", "type": "message_opened", "timestamp": "2026-11-20T10:00:00"},
        ev("ok-2", "c-2"),
    ]});
    let (s, body) = call(&t.app, post("/v1/events", &batch)).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_events");
    let details = body["error"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fields: Vec<(u64, &str)> = details
        .iter()
        .map(|d| {
            (
                d["index"].as_u64().unwrap_or(99),
                d["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(fields, vec![(1, "timestamp"), (1, "channel")], "{body}");
    assert!(details[0]["message"]
        .as_str()
        .unwrap_or("")
        .contains("RFC 3339"));
    for c in ["c-1", "c-2"] {
        let (s, _) = call(&t.app, get(&format!("/v1/customers/{c}"))).await;
        assert_eq!(s, 404, "nothing of the batch may be stored");
    }
    // The valid events alone go through.
    let (s, body) = call(
        &t.app,
        post(
            "/v1/events",
            &json!({"events": [ev("ok-1", "c-1"), ev("ok-2", "c-2")]}),
        ),
    )
    .await;
    assert_eq!((s, body), (200, json!({"accepted": 2, "duplicates": 0})));
}

#[actix_web::test]
async fn ndjson_is_accepted() {
    let t = app().await;
    let body = format!("{}\n\n{}\n", ev("n1", "nd"), ev("n2", "nd"));
    let req = TestRequest::post()
        .uri("/v1/events")
        .insert_header(("content-type", "application/x-ndjson"))
        .set_payload(body);
    let (s, body) = call(&t.app, req).await;
    assert_eq!((s, body), (200, json!({"accepted": 2, "duplicates": 0})));
    let req = TestRequest::post()
        .uri("/v1/events")
        .insert_header(("content-type", "application/x-ndjson"))
        .set_payload(format!("{}\n{{not json\n", ev("n3", "nd")));
    let (s, body) = call(&t.app, req).await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["details"][0]["index"], 1);
}

#[actix_web::test]
async fn malformed_bodies_are_4xx_never_5xx() {
    let t = app_with(&[
        ("KAIROS__SERVER__MAX_BODY_BYTES", "2048"),
        ("KAIROS__SERVER__MAX_EVENTS_PER_REQUEST", "3"),
    ])
    .await;
    let raw = |ct: &str, body: &str| {
        TestRequest::post()
            .uri("/v1/events")
            .insert_header(("content-type", ct.to_string()))
            .set_payload(body.to_string())
    };
    let cases: Vec<(TestRequest, u16, &str)> = vec![
        (raw("text/plain", "{}"), 415, "unsupported_media_type"),
        (
            TestRequest::post().uri("/v1/events").set_payload("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            raw("application/json", "{\"events\": [1"),
            400,
            "invalid_json",
        ),
        (raw("application/json", "[]"), 400, "invalid_body"),
        (
            raw("application/json", "{\"events\": {}}"),
            400,
            "invalid_body",
        ),
        (
            raw("application/json", "{\"events\": [1]}"),
            400,
            "invalid_events",
        ),
        (
            raw(
                "application/json",
                &format!(
                    "{{\"events\": [{{\"event_id\": \"{}\"}}]}}",
                    "x".repeat(3000)
                ),
            ),
            413,
            "body_too_large",
        ),
        (
            post(
                "/v1/events",
                &json!({"events": [ev("1", "c"), ev("2", "c"), ev("3", "c"), ev("4", "c")]}),
            ),
            400,
            "too_many_events",
        ),
        (
            TestRequest::get().uri("/v1/events"),
            405,
            "method_not_allowed",
        ),
        (TestRequest::get().uri("/v2/nothing"), 404, "not_found"),
    ];
    for (req, status, code) in cases {
        let (s, body) = call(&t.app, req).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(body["error"]["message"].is_string());
    }
}

#[actix_web::test]
async fn keys_and_scopes() {
    let t = app_with(&[(
        "KAIROS__AUTH__KEYS",
        r#"[{ key = "ingest-key-0123456789", scopes = ["ingest"] }, { key = "admin-key-0123456789", scopes = ["admin"] }]"#,
    )])
    .await;
    let batch = json!({"events": [ev("a1", "auth")]});
    let with = |key: &str| {
        post("/v1/events", &batch).insert_header(("authorization", format!("Bearer {key}")))
    };
    let (s, body) = call(&t.app, post("/v1/events", &batch)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = call(&t.app, with("wrong-key-0123456789")).await;
    assert_eq!(s, 401);
    let (s, _) = call(&t.app, with("ingest-key-0123456789")).await;
    assert_eq!(s, 200);
    let read =
        get("/v1/customers/auth").insert_header(("authorization", "Bearer ingest-key-0123456789"));
    let (s, body) = call(&t.app, read).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let read =
        get("/v1/customers/auth").insert_header(("authorization", "Bearer admin-key-0123456789"));
    assert_eq!(call(&t.app, read).await.0, 200);
    // Health endpoints stay open for probes.
    assert_eq!(call(&t.app, get("/healthz")).await.0, 200);
}

#[actix_web::test]
async fn without_keys_only_loopback_clients_are_served() {
    let t = app().await;
    let remote = get("/v1/customers/x")
        .peer_addr("192.0.2.7:5000".parse().unwrap_or_else(|e| panic!("{e}")));
    let (s, _) = call(&t.app, remote).await;
    assert_eq!(s, 401);
    let local = get("/v1/customers/x")
        .peer_addr("127.0.0.1:5000".parse().unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(call(&t.app, local).await.0, 404);
}
