//! POST /v1/decisions: cold start, windows, channels, quiet hours.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn windows_are_checked() {
    let t = app().await;
    let (s, e) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({
                "customer_id": "w", "channels": ["email"],
                "not_before": "2026-11-24T00:00:00Z", "deadline": "2026-11-23T00:00:00Z"
            }),
        ),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_window"))
    );
    let (s, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({
                "customer_id": "w", "channels": ["email"],
                "not_before": "2026-11-20T00:00:00Z", "deadline": "2026-11-21T00:00:00Z"
            }),
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (d["action"].as_str(), d["suppression"]["reason"].as_str()),
        (Some("suppress"), Some("deadline_passed"))
    );
    for (body, code) in [
        (
            json!({"customer_id": "w", "deadline": "tomorrow"}),
            "invalid_field",
        ),
        (json!({"customer_id": "w", "channels": []}), "invalid_field"),
        (
            json!({"customer_id": "w", "channels": ["fax"]}),
            "invalid_body",
        ),
        (
            json!({"customer_id": "w", "quiet_hours": {"start": "25:00", "end": "08:00"}}),
            "invalid_body",
        ),
        (
            json!({"customer_id": "w", "quiet_hours": {"start": "08:00", "end": "08:00"}}),
            "invalid_field",
        ),
        (json!({"customer_id": ""}), "invalid_field"),
        (json!({"channels": ["push"]}), "invalid_body"),
        (json!({"customer_id": "w", "typo_field": 1}), "invalid_body"),
    ] {
        let (s, e) = call(&t.app, post("/v1/decisions", &body)).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some(code)),
            "{body} -> {e}"
        );
    }
}

#[actix_web::test]
async fn unknown_customers_are_never_dropped() {
    let t = app().await;
    let (s, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": "stranger", "channels": ["sms"]}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(d["action"], "send", "{d}");
    assert_eq!(d["basis"], "global", "the built-in population prior: {d}");
    assert!(
        d["reasons"].to_string().contains("Time zone unknown"),
        "{d}"
    );
    // Without a channel list, only declared reachable and consented channels are candidates.
    let (_, d) = call(
        &t.app,
        post("/v1/decisions", &json!({"customer_id": "stranger"})),
    )
    .await;
    assert_eq!(d["suppression"]["reason"], "no_reachable_channel", "{d}");
    call(&t.app, put("/v1/customers/stranger", &json!({
        "timezone": "America/New_York",
        "channels": {"email": {"reachable": true, "consent": true}, "push": {"reachable": true, "consent": false}}
    }))).await;
    let (_, d) = call(
        &t.app,
        post("/v1/decisions", &json!({"customer_id": "stranger"})),
    )
    .await;
    assert_eq!(d["channel"], "email", "{d}");
    let push = d["alternatives"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["channel"] == "push").cloned());
    assert!(
        push.is_some_and(|p| p["why_not"].as_str().unwrap_or("").contains("consented")),
        "{d}"
    );
}

#[actix_web::test]
async fn default_quiet_hours_apply_unless_the_request_says_otherwise() {
    let t = app().await;
    call(
        &t.app,
        put("/v1/customers/owl", &json!({"timezone": "Europe/London"})),
    )
    .await;
    // Active Monday 23:00-00:00 London time.
    let events: Vec<_> = (0..8)
        .map(|w| {
            json!({
                "event_id": format!("owl-{w}"), "customer_id": "owl", "type": "app_open",
                "timestamp": (utc("2026-11-16T23:20:00Z") - chrono::Duration::weeks(w)).to_rfc3339()
            })
        })
        .collect();
    call(&t.app, post("/v1/events", &json!({"events": events}))).await;
    let ask = |quiet: serde_json::Value| {
        json!({
            "customer_id": "owl", "channels": ["push"], "deadline": "2026-11-29T12:00:00Z", "quiet_hours": quiet
        })
    };
    let (_, d) = call(&t.app, post("/v1/decisions", &ask(json!(null)))).await;
    // With no quiet hours the night owl is messaged at night (between 21:00 and 08:00).
    let local = chrono::DateTime::parse_from_rfc3339(d["send_at_local"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {d}"));
    assert!(!(8..21).contains(&chrono::Timelike::hour(&local)), "{d}");
    let hour_of = |d: &serde_json::Value| {
        let local = chrono::DateTime::parse_from_rfc3339(d["send_at_local"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {d}"));
        chrono::Timelike::hour(&local)
    };
    // Without the field, the configured 21:00-08:00 applies.
    let mut default = ask(json!(null));
    default.as_object_mut().map(|o| o.remove("quiet_hours"));
    let (_, d) = call(&t.app, post("/v1/decisions", &default)).await;
    assert_eq!(d["action"], "send", "{d}");
    assert!(
        (8..21).contains(&hour_of(&d)),
        "configured 21:00-08:00: {d}"
    );
    assert!(
        d["reasons"].to_string().contains("Quiet hours 21:00-08:00"),
        "{d}"
    );
    // A request's own quiet hours replace the configured ones.
    let (_, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &ask(json!({"start": "23:00", "end": "21:00"})),
        ),
    )
    .await;
    assert!(
        (21..23).contains(&hour_of(&d)),
        "only 21:00-23:00 is open: {d}"
    );
    // Quiet hours covering the whole window: suppressed, never broken.
    let (_, d) = call(&t.app, post("/v1/decisions", &json!({
        "customer_id": "owl", "channels": ["push"], "quiet_hours": {"start": "11:00", "end": "12:00"},
        "not_before": "2026-11-23T11:05:00Z", "deadline": "2026-11-23T11:55:00Z"
    }))).await;
    assert_eq!(d["suppression"]["reason"], "quiet_hours", "{d}");
}
