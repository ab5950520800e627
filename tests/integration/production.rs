//! Production hardening over HTTP: hashed keys, rate limits, nesting depth,
//! metrics, the OpenAPI document, and erasure that leaves nothing behind.

use serde_json::{json, Value};

use crate::support::{app_with, call, get, monday_evening_sessions, post, put};

fn bearer(req: actix_web::test::TestRequest, key: &str) -> actix_web::test::TestRequest {
    req.insert_header(("authorization", format!("Bearer {key}")))
}

/// SHA-256 of "kairos-hashed-key-0123".
const HASHED: &str = "e5697eec375873c12286af41025d457f6ecafbb74558e6e93e851f2329a6c353";

#[actix_web::test]
async fn a_key_configured_by_its_sha256_authenticates() {
    let keys = format!(
        r#"[{{ key_sha256 = "{HASHED}", scopes = ["read"] }}, {{ key = "plain-key-0123456789", scopes = ["ingest"] }}]"#
    );
    let t = app_with(&[("KAIROS__AUTH__KEYS", keys.as_str())]).await;
    let (s, _) = call(
        &t.app,
        bearer(get("/v1/customers/x"), "kairos-hashed-key-0123"),
    )
    .await;
    assert_eq!(s, 404, "authenticated: the customer just does not exist");
    let (s, b) = call(
        &t.app,
        bearer(get("/v1/customers/x"), "kairos-hashed-key-0124"),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // The digest itself is not a key.
    let (s, _) = call(&t.app, bearer(get("/v1/customers/x"), HASHED)).await;
    assert_eq!(s, 401);
    // Scopes apply as for plain keys.
    let (s, b) = call(
        &t.app,
        bearer(
            post("/v1/events", &json!({"events": []})),
            "kairos-hashed-key-0123",
        ),
    )
    .await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = call(
        &t.app,
        bearer(get("/v1/customers/x"), "plain-key-0123456789"),
    )
    .await;
    assert_eq!(s, 403);
}

#[actix_web::test]
async fn each_key_has_its_own_token_bucket() {
    let t = app_with(&[
        (
            "KAIROS__AUTH__KEYS",
            r#"[{ key = "first-key-0123456789", scopes = ["read"] }, { key = "second-key-0123456789", scopes = ["read"], rate_limit_per_second = 1000 }]"#,
        ),
        ("KAIROS__SERVER__RATE_LIMIT_PER_SECOND", "0.5"),
        ("KAIROS__SERVER__RATE_LIMIT_BURST", "3"),
    ])
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            call(
                &t.app,
                bearer(get("/v1/customers/x"), "first-key-0123456789"),
            )
            .await
            .0,
        );
    }
    assert_eq!(
        statuses,
        vec![404, 404, 404, 429],
        "a burst of 3, then refused"
    );
    let resp = actix_web::test::call_service(
        &t.app,
        bearer(get("/v1/customers/x"), "first-key-0123456789").to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another key is not held back, and has its own rate.
    for _ in 0..10 {
        let (s, _) = call(
            &t.app,
            bearer(get("/v1/customers/x"), "second-key-0123456789"),
        )
        .await;
        assert_eq!(s, 404);
    }
    // Health probes are never limited.
    assert_eq!(call(&t.app, get("/healthz")).await.0, 200);
}

#[actix_web::test]
async fn deeply_nested_bodies_are_refused_before_parsing() {
    let t = app_with(&[]).await;
    let deep = format!(
        r#"{{"events": [{{"event_id": "d", "customer_id": "d", "type": "app_open", "timestamp": "2026-11-20T10:00:00Z", "properties": {{"x": {}1{}}}}}]}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let req = actix_web::test::TestRequest::post()
        .uri("/v1/events")
        .insert_header(("content-type", "application/json"))
        .set_payload(deep);
    let (s, b) = call(&t.app, req).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("too_deep")),
        "{b}"
    );
    let mut nested = json!(1);
    for _ in 0..40 {
        nested = json!({ "k": nested });
    }
    let traits = json!({ "traits": { "deep": nested } });
    let (s, b) = call(&t.app, put("/v1/customers/deep", &traits)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("too_deep")),
        "{b}"
    );
    assert_eq!(
        call(&t.app, get("/v1/customers/deep")).await.0,
        404,
        "nothing stored"
    );
}

#[actix_web::test]
async fn metrics_count_requests_decisions_ingest_and_store_calls() {
    let t = app_with(&[(
        "KAIROS__AUTH__KEYS",
        r#"[{ key = "metrics-key-0123456789", scopes = ["admin"] }]"#,
    )])
    .await;
    let key = "metrics-key-0123456789";
    let events = monday_evening_sessions("m1");
    let (s, _) = call(
        &t.app,
        bearer(post("/v1/events", &json!({"events": events})), key),
    )
    .await;
    assert_eq!(s, 200);
    call(
        &t.app,
        bearer(post("/v1/events", &json!({"events": events[..4]})), key),
    )
    .await;
    let (s, d) = call(
        &t.app,
        bearer(
            post(
                "/v1/decisions",
                &json!({"customer_id": "m1", "channels": ["push"], "quiet_hours": null}),
            ),
            key,
        ),
    )
    .await;
    assert_eq!((s, d["action"].as_str()), (200, Some("send")), "{d}");
    call(
        &t.app,
        bearer(
            post("/v1/events", &json!({"events": [{"event_id": "x"}]})),
            key,
        ),
    )
    .await;

    let (s, _) = call(&t.app, get("/metrics")).await;
    assert_eq!(s, 401, "metrics need a key with the read scope");
    let resp =
        actix_web::test::call_service(&t.app, bearer(get("/metrics"), key).to_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = String::from_utf8_lossy(&actix_web::test::read_body(resp).await).into_owned();
    for needle in [
        r#"kairos_http_requests_total{method="POST",route="/v1/events",status="200"} 2"#,
        r#"kairos_http_requests_total{method="POST",route="/v1/events",status="400"} 1"#,
        r#"kairos_http_request_duration_seconds_count{route="/v1/decisions"} 1"#,
        r#"kairos_decisions_total{action="send",basis="personal",channel="push",suppression="none",degraded="false"} 1"#,
        r#"kairos_events_ingested_total{outcome="accepted"} 24"#,
        r#"kairos_events_ingested_total{outcome="duplicate"} 4"#,
        r#"kairos_events_ingested_total{outcome="rejected"} 1"#,
        r#"kairos_store_operation_duration_seconds_count{operation="ingest",result="ok"} 2"#,
        "kairos_model_info{version=",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains(key), "no secrets in metrics");
    assert!(!text.contains("m1"), "no customer ids in metrics");
}

#[actix_web::test]
async fn the_openapi_document_is_served_and_every_operation_is_routed() {
    let t = app_with(&[]).await;
    let (s, doc) = call(&t.app, get("/openapi.json")).await;
    assert_eq!(s, 200);
    assert_eq!(
        doc,
        serde_json::to_value(kairos_server::openapi::document()).unwrap_or_default()
    );
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() >= 11, "{:?}", paths.keys());
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "someone")
            .replace("{decision_id}", "d-1");
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let req = actix_web::test::TestRequest::default()
                .method(method.to_uppercase().parse().unwrap_or_default())
                .uri(&concrete)
                .insert_header(("content-type", "application/json"))
                .set_payload("{}");
            let (s, b) = call(&t.app, req).await;
            let code = b["error"]["code"].as_str().unwrap_or("");
            assert!(
                code != "not_found" && code != "method_not_allowed" && s < 500,
                "{method} {path}: {s} {b}"
            );
        }
    }
}

#[actix_web::test]
async fn erasure_leaves_nothing_in_the_embedded_store() {
    let t = app_with(&[("KAIROS__DECIDE__CAPS", "{ push = { day = 1 } }")]).await;
    let who = "erase-me-7f3a";
    call(
        &t.app,
        put(
            &format!("/v1/customers/{who}"),
            &json!({"timezone": "Europe/London", "traits": {"plan": "gold"}}),
        ),
    )
    .await;
    let mut events: Vec<Value> = monday_evening_sessions(who);
    events.push(json!({"event_id": "s1", "customer_id": who, "type": "message_sent", "channel": "email", "message_id": "welcome", "timestamp": "2026-11-20T10:00:00Z"}));
    events.push(json!({"event_id": "o1", "customer_id": who, "type": "message_opened", "channel": "email", "message_id": "welcome", "timestamp": "2026-11-20T11:00:00Z"}));
    let (s, _) = call(&t.app, post("/v1/events", &json!({"events": events}))).await;
    assert_eq!(s, 200);
    let (_, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": who, "channels": ["push"], "quiet_hours": null}),
        ),
    )
    .await;
    assert_eq!(d["action"], "send", "a planned send is stored too: {d}");
    call(
        &t.app,
        put(
            "/v1/experiments/erasure-test",
            &json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "converted"}),
        ),
    )
    .await;
    let (s, a) = call(
        &t.app,
        post(
            "/v1/assign",
            &json!({"experiment": "erasure-test", "customer_id": who}),
        ),
    )
    .await;
    assert_eq!((s, a["in_experiment"].as_bool()), (200, Some(true)), "{a}");
    let (s, x) = call(&t.app, get(&format!("/v1/customers/{who}/export"))).await;
    assert_eq!(s, 200);
    assert_eq!(x["reservations"].as_array().map(Vec::len), Some(1), "{x}");
    assert!(
        x["assignments"]["erasure-test"]["variant"].is_string(),
        "{x}"
    );
    // Another customer stays, and shows the scan below finds what is stored.
    let keep = "keep-me-51c2";
    call(
        &t.app,
        post(
            "/v1/events",
            &json!({"events": monday_evening_sessions(keep)}),
        ),
    )
    .await;

    let (s, _) = call(
        &t.app,
        actix_web::test::TestRequest::delete().uri(&format!("/v1/customers/{who}")),
    )
    .await;
    assert_eq!(s, 204);
    let decision = d["decision_id"].as_str().unwrap_or_default().to_owned();
    let (s, _) = call(
        &t.app,
        post(
            &format!("/v1/decisions/{decision}/confirm"),
            &json!({"send": true}),
        ),
    )
    .await;
    assert_eq!(s, 404, "the planned send went with the customer");

    // Every table of the store, every key and value.
    let dir = t.into_dir();
    let store = kairos_store::EmbeddedStore::open(
        &dir.path().join("data"),
        kairos_store::StoreContext {
            profile: kairos_learn::ProfileConfig::default(),
            default_tz: chrono_tz::Tz::UTC,
            cache_customers: 0,
            page_cache_mib: 16,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !store.audit(keep.as_bytes()).unwrap_or_default().is_empty(),
        "the scan sees stored data"
    );
    assert_eq!(
        store.audit(who.as_bytes()).ok(),
        Some(vec![]),
        "nothing of the customer is left"
    );
    assert_eq!(
        store.audit(decision.as_bytes()).ok(),
        Some(vec![]),
        "nor of their decisions"
    );
}

#[actix_web::test]
async fn a_campaign_over_100000_customers_is_refused_whole() {
    let t = app_with(&[]).await;
    let customers: Vec<String> = (0..100_001).map(|i| format!("c{i}")).collect();
    let (s, b) = call(
        &t.app,
        post("/v1/decisions/batch", &json!({"customers": customers})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("100000"),
        "{b}"
    );
}

/// Profiles stored by an earlier release, in an earlier layout (postcard
/// keeps no field names), are recomputed from their events on start: none
/// fails to read, and each equals one computed now.
#[actix_web::test]
async fn profiles_in_an_earlier_layout_are_recomputed_on_start() {
    use redb::{ReadableTable, TableDefinition};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = || {
        let vars = [
            ("KAIROS__STORE__PATH", dir.path().join("data")),
            ("KAIROS__MODELS__DIR", dir.path().join("models")),
            ("KAIROS__EXPERIMENTS__DIR", dir.path().join("experiments")),
            ("KAIROS__LAYOUTS__DIR", dir.path().join("layouts")),
        ];
        let vars = vars.map(|(k, v)| (k.to_string(), v.display().to_string()));
        kairos_server::Config::load(None, vars).unwrap_or_else(|e| panic!("{e}"))
    };
    let c = kairos_core::CustomerId::parse("c-old").unwrap_or_else(|e| panic!("{e}"));
    let profile = {
        let state = kairos_server::AppState::open(config())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let events = (0..3)
            .map(|k| {
                let at = crate::support::now() - chrono::Duration::days(7 * k);
                kairos_store::conformance::event(&c, &format!("e{k}"), "app_open", at)
            })
            .collect();
        state
            .store
            .ingest(events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let record = state.store.customer(&c).await.ok().flatten();
        record.unwrap_or_else(|| panic!("stored")).profile
    };
    assert!(profile.quarter_of_day.iter().sum::<f32>() > 0.0);
    // As an earlier release left it: the profile without its last field, and
    // the marker as that release wrote it (the configuration alone).
    let mut old = profile.clone();
    old.quarter_of_day.clear();
    let mut bytes = postcard::to_stdvec(&old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bytes.pop(), Some(0), "an empty list is one zero byte, last");
    assert!(postcard::from_bytes::<kairos_learn::ProfileState>(&bytes).is_err());
    {
        // The last blocking store task lets go of the file just after it answers.
        let path = dir.path().join("data").join("kairos.redb");
        let mut tries = 0;
        let db = loop {
            match redb::Database::open(&path) {
                Ok(db) => break db,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let txn = db.begin_write().unwrap_or_else(|e| panic!("{e}"));
        {
            let table = |name| TableDefinition::<&str, &[u8]>::new(name);
            let mut profiles = txn
                .open_table(table("profiles"))
                .unwrap_or_else(|e| panic!("{e}"));
            profiles
                .insert(c.as_str(), bytes.as_slice())
                .unwrap_or_else(|e| panic!("{e}"));
            let mut models = txn
                .open_table(table("models"))
                .unwrap_or_else(|e| panic!("{e}"));
            let marker: serde_json::Value = models
                .get(kairos_server::state::PROFILES_MARKER)
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_slice(v.value()).ok())
                .unwrap_or_default();
            let earlier = serde_json::to_vec(&marker["config"]).unwrap_or_default();
            assert!(earlier.len() > 10, "{marker}");
            models
                .insert(kairos_server::state::PROFILES_MARKER, earlier.as_slice())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        txn.commit().unwrap_or_else(|e| panic!("{e}"));
    }
    let state = kairos_server::AppState::open(config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = state
        .store
        .customer(&c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(record.map(|r| r.profile), Some(profile));
}
