//! Customer attributes, profile, erasure and export.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn attributes_merge_and_bad_ones_are_refused() {
    let t = app().await;
    let (s, c) = call(
        &t.app,
        put(
            "/v1/customers/m-1",
            &json!({
                "timezone": "Europe/London", "locale": "en-GB",
                "channels": {"email": {"reachable": true, "consent": true}},
                "traits": {"plan": "gold"}
            }),
        ),
    )
    .await;
    assert_eq!(s, 200, "{c}");
    let (_, c) = call(
        &t.app,
        put("/v1/customers/m-1", &json!({"traits": {"city": "Leeds"}})),
    )
    .await;
    assert_eq!(c["timezone"], "Europe/London");
    assert_eq!(c["traits"], json!({"plan": "gold", "city": "Leeds"}));
    assert_eq!(c["channels"]["email"]["consent"], true);
    assert_eq!(c["profile"]["events"], 0);
    assert_eq!(c["profile"]["activity"]["basis"], "global");

    for (body, code) in [
        (json!({"timezone": "Mars/Olympus"}), "unknown_timezone"),
        (json!({"timezone": 5}), "invalid_body"),
        (
            json!({"channels": {"fax": {"reachable": true}}}),
            "invalid_body",
        ),
        (json!({"colour": "blue"}), "invalid_body"),
    ] {
        let (s, e) = call(&t.app, put("/v1/customers/m-1", &body)).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some(code)),
            "{body} -> {e}"
        );
    }
    let (_, c) = call(&t.app, get("/v1/customers/m-1")).await;
    assert_eq!(
        c["timezone"], "Europe/London",
        "a refused update changes nothing"
    );
    let long = "x".repeat(257);
    let (s, e) = call(&t.app, get(&format!("/v1/customers/{long}"))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
}

#[actix_web::test]
async fn delete_erases_and_export_returns_everything() {
    let t = app().await;
    call(
        &t.app,
        put("/v1/customers/gone", &json!({"timezone": "Asia/Kolkata"})),
    )
    .await;
    call(
        &t.app,
        post(
            "/v1/events",
            &json!({"events": monday_evening_sessions("gone")}),
        ),
    )
    .await;
    let (s, x) = call(&t.app, get("/v1/customers/gone/export")).await;
    assert_eq!(s, 200);
    assert_eq!(x["events"].as_array().map(Vec::len), Some(24));
    assert_eq!(x["attributes"]["timezone"], "Asia/Kolkata");

    let (s, _) = call(
        &t.app,
        actix_web::test::TestRequest::delete().uri("/v1/customers/gone"),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(call(&t.app, get("/v1/customers/gone")).await.0, 404);
    assert_eq!(call(&t.app, get("/v1/customers/gone/export")).await.0, 404);
    let (s, _) = call(
        &t.app,
        actix_web::test::TestRequest::delete().uri("/v1/customers/gone"),
    )
    .await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn learned_traits_and_channel_rates() {
    let t = app().await;
    let e = |id: &str, kind: &str, ch: &str, msg: &str, device: &str| {
        json!({
            "event_id": id, "customer_id": "reader", "type": kind, "channel": ch,
            "message_id": msg, "device": device, "timestamp": "2026-11-20T09:00:00Z"
        })
    };
    let batch = json!({"events": [
        e("s1", "message_sent", "email", "m1", "mobile"),
        e("o1", "message_opened", "email", "m1", "mobile"),
        e("k1", "message_clicked", "email", "m1", "mobile"),
        e("s2", "message_sent", "email", "m2", "mobile"),
        e("o2", "message_opened", "email", "m2", "desktop"),
        e("s3", "message_sent", "email", "m3", "mobile"),
        {"event_id": "robot", "customer_id": "reader", "type": "message_opened", "channel": "email",
         "message_id": "m3", "automated": true, "timestamp": "2026-11-20T09:00:00Z"},
        {"event_id": "pv", "customer_id": "reader", "type": "page_view", "category": "shoes",
         "timestamp": "2026-11-20T09:00:00Z"},
    ]});
    let (s, _) = call(&t.app, post("/v1/events", &batch)).await;
    assert_eq!(s, 200);
    let (_, c) = call(&t.app, get("/v1/customers/reader")).await;
    let email = &c["profile"]["channels"]["email"];
    assert_eq!(
        (
            email["sends_total"].as_u64(),
            email["engagements_total"].as_u64()
        ),
        (Some(3), Some(2)),
        "{email}"
    );
    let ci = email["rate_ci"].as_array().cloned().unwrap_or_default();
    let rate = email["rate"].as_f64().unwrap_or(-1.0);
    assert!(
        ci.len() == 2 && ci[0].as_f64() < Some(rate) && Some(rate) < ci[1].as_f64(),
        "{email}"
    );
    let traits = &c["profile"]["learned_traits"];
    assert_eq!(traits["has_app"], false);
    assert_eq!(traits["email_open_mobile_share"], 0.5);
    assert_eq!(traits["category_affinity"], json!({"shoes": 1.0}));
    // The automated open is stored but is not activity; the page view, the
    // customer's own, leaves the opens and the click out of the habit.
    assert_eq!(c["profile"]["activity_events"], 1);
    assert_eq!(c["profile"]["events"], 8);
}

/// `POST /v1/customers`: many customers' attributes in one request, applied
/// in order; one invalid item refuses the whole request, naming each bad
/// item by its index, and stores nothing.
#[actix_web::test]
async fn many_customers_at_once_all_or_nothing() {
    let t = app().await;
    // b's sessions arrive before its zone: counted in UTC until the batch.
    let (s, _) = call(
        &t.app,
        post(
            "/v1/events",
            &json!({"events": monday_evening_sessions("batch-b")}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let (_, before) = call(&t.app, get("/v1/customers/batch-b")).await;
    let body = json!({"customers": [
        {"customer_id": "batch-a", "timezone": "Asia/Kathmandu", "traits": {"plan": "gold"}},
        {"customer_id": "batch-b", "timezone": "America/New_York"},
        {"customer_id": "batch-a", "channels": {"push": {"reachable": false}}},
    ]});
    let (s, r) = call(&t.app, post("/v1/customers", &body)).await;
    assert_eq!((s, &r), (200, &json!({"updated": 3})));
    let (_, a) = call(&t.app, get("/v1/customers/batch-a")).await;
    assert_eq!(a["timezone"], "Asia/Kathmandu");
    assert_eq!(a["traits"]["plan"], "gold");
    assert_eq!(
        a["channels"]["push"]["reachable"], false,
        "the later item over the earlier"
    );
    let (_, b) = call(&t.app, get("/v1/customers/batch-b")).await;
    assert_eq!(b["timezone"], "America/New_York");
    assert_ne!(
        b["profile"]["activity"]["peak_windows"], before["profile"]["activity"]["peak_windows"],
        "the profile recomputed in the new zone"
    );

    let bad = json!({"customers": [
        {"customer_id": "batch-c", "timezone": "Europe/Paris"},
        {"customer_id": "batch-d", "timezone": "Mars/Olympus"},
        {"timezone": "Europe/Paris"},
        "batch-e",
        {"customer_id": "batch-a", "colour": "blue"},
    ]});
    let (s, e) = call(&t.app, post("/v1/customers", &bad)).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_customers")),
        "{e}"
    );
    let indexes: Vec<u64> = e["error"]["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["index"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(indexes, [1, 2, 3, 4], "{e}");
    let (s, _) = call(&t.app, get("/v1/customers/batch-c")).await;
    assert_eq!(s, 404, "nothing stored from a refused batch");

    let many: Vec<_> = (0..10_001)
        .map(|i| json!({"customer_id": format!("many-{i}")}))
        .collect();
    let (s, e) = call(&t.app, post("/v1/customers", &json!({"customers": many}))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("too_many_customers")),
        "{e}"
    );
    // NDJSON too: one customer a line, an unparsable line named by its index.
    let ndjson = |body: &str| {
        actix_web::test::TestRequest::post()
            .uri("/v1/customers")
            .insert_header(("content-type", "application/x-ndjson"))
            .set_payload(body.to_string())
    };
    let (s, r) = call(
        &t.app,
        ndjson(concat!(
            r#"{"customer_id": "batch-n1", "timezone": "Asia/Kolkata"}"#,
            "\n\n",
            r#"{"customer_id": "batch-n2", "locale": "en-IN"}"#,
            "\n"
        )),
    )
    .await;
    assert_eq!((s, &r), (200, &json!({"updated": 2})));
    let (_, n1) = call(&t.app, get("/v1/customers/batch-n1")).await;
    assert_eq!(n1["timezone"], "Asia/Kolkata");
    let (s, e) = call(
        &t.app,
        ndjson("{\"customer_id\": \"batch-n3\"}\n{not json\n"),
    )
    .await;
    assert_eq!(
        (s, e["error"]["details"][0]["index"].as_u64()),
        (400, Some(1)),
        "{e}"
    );
    let (s, _) = call(&t.app, get("/v1/customers/batch-n3")).await;
    assert_eq!(s, 404);
    let (s, e) = call(&t.app, post("/v1/customers", &json!({"people": []}))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{e}"
    );
}
