//! The Redis backend over HTTP: replicas sharing one Redis, an outage in the
//! middle of traffic and the recovery, and a 3-node Redis Cluster. Every
//! test starts its own `redis-server` on free ports.

use std::time::{Duration, Instant};

use kairos_store::redis_harness::{RedisCluster, RedisServer};
use serde_json::{json, Value};

use crate::support::{app_with, call, get, monday_evening_sessions, post, put};

fn on_redis(url: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KAIROS__STORE__BACKEND", "redis".into()),
        ("KAIROS__STORE__REDIS_URL", url.into()),
        ("KAIROS__DECIDE__CAPS", "{ push = { day = 1 } }".into()),
    ];
    env.extend(crate::layouts::layout_env());
    env
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn events(list: &[Value]) -> Value {
    json!({ "events": list })
}

#[actix_web::test]
async fn two_replicas_share_profiles_deduplicate_and_cap_jointly() {
    let redis = RedisServer::start();
    let env = on_redis(&redis.url());
    let a = app_with(&pairs(&env)).await;
    let b = app_with(&pairs(&env)).await;

    let (s, _) = call(
        &a.app,
        put(
            "/v1/customers/shared",
            &json!({"timezone": "Asia/Kuala_Lumpur"}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    // Events split between the replicas, with an overlap sent to both.
    let all = monday_evening_sessions("shared");
    let (first, second) = all.split_at(12);
    let (s, r) = call(&a.app, post("/v1/events", &events(first))).await;
    assert_eq!((s, r["accepted"].as_u64()), (200, Some(12)), "{r}");
    let mut overlap = second.to_vec();
    overlap.extend_from_slice(&first[..3]);
    let (s, r) = call(&b.app, post("/v1/events", &events(&overlap))).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(12), Some(3)),
        "replica b deduplicates what replica a stored: {r}"
    );

    let (sa, pa) = call(&a.app, get("/v1/customers/shared")).await;
    let (sb, pb) = call(&b.app, get("/v1/customers/shared")).await;
    assert_eq!((sa, sb), (200, 200));
    assert_eq!(pa, pb, "both replicas see one profile");
    assert_eq!(pa["timezone"], "Asia/Kuala_Lumpur", "{pa}");

    // One push a day: a send planned on replica a holds the room on replica b.
    let ask = json!({
        "customer_id": "shared", "channels": ["push"], "quiet_hours": null,
        "not_before": "2026-11-22T12:00:00Z", "deadline": "2026-11-22T15:00:00Z"
    });
    let (_, d) = call(&a.app, post("/v1/decisions", &ask)).await;
    assert_eq!(d["action"], "send", "{d}");
    assert!(d.get("degraded").is_none(), "{d}");
    let (_, d2) = call(&b.app, post("/v1/decisions", &ask)).await;
    assert_eq!(d2["action"], "suppress", "{d2}");
    assert_eq!(d2["suppression"]["reason"], "frequency_cap", "{d2}");
    // Either replica can confirm a decision the other made.
    let id = d["decision_id"].as_str().unwrap_or_default();
    let (s, c) = call(
        &b.app,
        post(
            &format!("/v1/decisions/{id}/confirm"),
            &json!({"send": false}),
        ),
    )
    .await;
    assert_eq!((s, c["send"].as_bool()), (200, Some(false)), "{c}");
    let (_, d3) = call(&a.app, post("/v1/decisions", &ask)).await;
    assert_eq!(d3["action"], "send", "freed room is free everywhere: {d3}");

    // Erasure on one replica is seen by the other.
    let (s, _) = call(
        &b.app,
        actix_web::test::TestRequest::delete().uri("/v1/customers/shared"),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(&a.app, get("/v1/customers/shared")).await;
    assert_eq!(s, 404);
    // Nothing of the customer is left in Redis: no key, no value, no index entry.
    assert_eq!(redis.mentions("shared"), Vec::<String>::new());
    for decision in [id, d3["decision_id"].as_str().unwrap_or("?")] {
        assert_eq!(
            redis.mentions(decision),
            Vec::<String>::new(),
            "nor of their decisions"
        );
    }
    // (The scan does see what is stored.)
    call(
        &a.app,
        post("/v1/events", &events(&monday_evening_sessions("other"))),
    )
    .await;
    assert!(!redis.mentions("other").is_empty());
}

#[actix_web::test]
async fn an_outage_degrades_decisions_refuses_ingest_and_recovers() {
    let mut redis = RedisServer::start();
    let env = on_redis(&redis.url());
    let t = app_with(&pairs(&env)).await;
    let before = monday_evening_sessions("outage");
    let (s, _) = call(&t.app, post("/v1/events", &events(&before[..10]))).await;
    assert_eq!(s, 200);
    let (s, _) = call(&t.app, get("/readyz")).await;
    assert_eq!(s, 200);

    redis.stop();

    // Decisions still answer, from the population prior.
    let (s, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": "outage", "channels": ["email"]}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["degraded"], true, "{d}");
    assert_eq!(d["basis"], "global", "{d}");
    assert_eq!(d["action"], "send", "{d}");
    // A batch too.
    let batch = actix_web::test::TestRequest::post()
        .uri("/v1/decisions/batch")
        .set_json(json!({"customers": ["outage", "other"], "channels": ["email"]}));
    let resp = actix_web::test::call_service(&t.app, batch.to_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body = actix_web::test::read_body(resp).await;
    let lines: Vec<Value> = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["degraded"] == true), "{lines:?}");

    // Layouts too, from the page alone.
    let (s, l) = call(&t.app, get("/v1/layouts/home?customer_id=outage")).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["degraded"], true, "{l}");
    assert_eq!(l["slots"][0]["component"], "welcome_banner", "{l}");
    assert_eq!(l["slots"][1]["component"], "offer_standard", "{l}");

    // Ingest refuses what it cannot store, and says when to come back.
    let req = post("/v1/events", &events(&before[10..]));
    let resp = actix_web::test::call_service(&t.app, req.to_request()).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let (s, r) = call(&t.app, get("/readyz")).await;
    assert_eq!(s, 503, "{r}");

    // Redis comes back on the same port with its data: the replica
    // reconnects by itself, and ingest works again within 10 s.
    redis.restart();
    let start = Instant::now();
    let accepted = loop {
        let (s, r) = call(&t.app, post("/v1/events", &events(&before[10..]))).await;
        if s == 200 {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ingest still refused 10 s after Redis returned: {s} {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(accepted["accepted"].as_u64(), Some(14), "{accepted}");
    let (s, _) = call(&t.app, get("/readyz")).await;
    assert_eq!(s, 200);
    // What was acknowledged before the outage is still there: a resend is all duplicates.
    let (_, r) = call(&t.app, post("/v1/events", &events(&before))).await;
    assert_eq!(r["duplicates"].as_u64(), Some(24), "{r}");
    let (_, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": "outage", "channels": ["email"]}),
        ),
    )
    .await;
    assert!(d.get("degraded").is_none(), "{d}");
    let (_, l) = call(&t.app, get("/v1/layouts/home?customer_id=outage")).await;
    assert!(l.get("degraded").is_none(), "{l}");
}

#[actix_web::test]
async fn a_replica_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls().join(",");
    let env = [
        ("KAIROS__STORE__BACKEND", "redis"),
        ("KAIROS__STORE__REDIS_CLUSTER_NODES", nodes.as_str()),
    ];
    let a = app_with(&env).await;
    let b = app_with(&env).await;
    // Customers spread over the cluster's slots.
    let mut all = Vec::new();
    for i in 0..20 {
        all.extend(monday_evening_sessions(&format!("cl-{i}")));
    }
    let (half_a, half_b) = all.split_at(all.len() / 2);
    let (s, r) = call(&a.app, post("/v1/events", &events(half_a))).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = call(&b.app, post("/v1/events", &events(half_b))).await;
    assert_eq!(s, 200, "{r}");
    let (_, r) = call(&b.app, post("/v1/events", &events(&all))).await;
    assert_eq!(r["duplicates"].as_u64(), Some(all.len() as u64), "{r}");
    for i in [0, 7, 19] {
        let (sa, pa) = call(&a.app, get(&format!("/v1/customers/cl-{i}"))).await;
        let (sb, pb) = call(&b.app, get(&format!("/v1/customers/cl-{i}"))).await;
        assert_eq!((sa, sb), (200, 200));
        assert_eq!(pa, pb);
    }
    // Keys of many customers live on every node.
    for node in &cluster.nodes {
        assert!(!node.keys().is_empty(), "node {} holds no keys", node.port);
    }
    let (s, d) = call(
        &a.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": "cl-3", "channels": ["push"], "quiet_hours": null}),
        ),
    )
    .await;
    assert_eq!((s, d["action"].as_str()), (200, Some("send")), "{d}");
    assert_eq!(d["basis"], "personal", "{d}");
}

#[actix_web::test]
async fn a_request_stuck_on_a_frozen_store_times_out_with_503() {
    let redis = RedisServer::start();
    let mut env = on_redis(&redis.url());
    env.push(("KAIROS__SERVER__REQUEST_TIMEOUT_SECS", "1".into()));
    let t = app_with(&pairs(&env)).await;
    assert_eq!(call(&t.app, get("/v1/customers/frozen")).await.0, 404);
    redis.pause();
    let started = std::time::Instant::now();
    // The middleware answers with an error the server renders as this response.
    let answered =
        actix_web::test::try_call_service(&t.app, get("/v1/customers/frozen").to_request()).await;
    let waited = started.elapsed();
    redis.resume();
    let err = answered
        .err()
        .unwrap_or_else(|| panic!("a frozen store answered"));
    let resp = err.error_response();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let bytes = actix_web::body::to_bytes(resp.into_body())
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(
        waited < Duration::from_millis(1900),
        "answered after {waited:?}, before the store gave up"
    );
    assert_eq!(
        call(&t.app, get("/v1/customers/frozen")).await.0,
        404,
        "and on it goes"
    );
}
