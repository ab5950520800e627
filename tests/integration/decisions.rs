//! POST /v1/decisions: cold start, windows, channels, quiet hours.

use chrono::Datelike;
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

#[actix_web::test]
async fn concurrent_decisions_cannot_both_take_the_last_place() {
    let t = app_with(&[("KAIROS__DECIDE__CAPS", "{ push = { day = 1 } }")]).await;
    call(
        &t.app,
        put("/v1/customers/racer", &json!({"timezone": "UTC"})),
    )
    .await;
    // Four decisions at once for one customer, all within one local day.
    let ask = json!({
        "customer_id": "racer", "channels": ["push"], "quiet_hours": null,
        "not_before": "2026-11-22T12:00:00Z", "deadline": "2026-11-22T23:00:00Z"
    });
    let results =
        futures_util::future::join_all((0..4).map(|_| call(&t.app, post("/v1/decisions", &ask))))
            .await;
    let sends = results
        .iter()
        .filter(|(s, d)| *s == 200 && d["action"] == "send")
        .count();
    let capped = results
        .iter()
        .filter(|(_, d)| d["suppression"]["reason"] == "frequency_cap")
        .count();
    assert_eq!((sends, capped), (1, 3), "{results:?}");
    // Refusing the planned send frees the room for the next decision.
    let (_, won) = results
        .iter()
        .find(|(_, d)| d["action"] == "send")
        .cloned()
        .unwrap_or_default();
    let id = won["decision_id"].as_str().unwrap_or_default();
    let (s, c) = call(
        &t.app,
        post(
            &format!("/v1/decisions/{id}/confirm"),
            &json!({"send": false, "reason": "campaign cancelled"}),
        ),
    )
    .await;
    assert_eq!((s, c["send"].as_bool()), (200, Some(false)), "{c}");
    let (_, d) = call(&t.app, post("/v1/decisions", &ask)).await;
    assert_eq!(d["action"], "send", "{d}");
}

#[actix_web::test]
async fn a_reported_send_counts_against_the_cap() {
    let t = app_with(&[("KAIROS__DECIDE__CAPS", "{ push = { day = 1 } }")]).await;
    call(
        &t.app,
        put("/v1/customers/sent", &json!({"timezone": "UTC"})),
    )
    .await;
    call(
        &t.app,
        post(
            "/v1/events",
            &json!({"events": [{
                "event_id": "p1", "customer_id": "sent", "type": "message_sent", "channel": "push",
                "message_id": "m1", "timestamp": "2026-11-22T09:00:00Z"
            }]}),
        ),
    )
    .await;
    let (_, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({
                "customer_id": "sent", "channels": ["push"], "quiet_hours": null,
                "deadline": "2026-11-23T23:00:00Z"
            }),
        ),
    )
    .await;
    assert_eq!(d["action"], "send", "{d}");
    assert!(
        d["send_at"]
            .as_str()
            .unwrap_or("")
            .starts_with("2026-11-23"),
        "today's push was sent: {d}"
    );
}

#[actix_web::test]
async fn confirm_calls_off_a_push_when_the_customer_came_back() {
    let t = app().await;
    call(&t.app, put("/v1/customers/back", &json!({
        "timezone": "UTC",
        "channels": {"push": {"reachable": true, "consent": true}, "in_app": {"reachable": true, "consent": true}}
    }))).await;
    let decide = || {
        post(
            "/v1/decisions",
            &json!({"customer_id": "back", "channels": ["push"], "quiet_hours": null}),
        )
    };
    let (_, d) = call(&t.app, decide()).await;
    assert_eq!(d["cancel_if_active_after"], "2026-11-22T12:00:00Z", "{d}");
    let id = d["decision_id"].as_str().unwrap_or_default().to_string();
    // Still away: the send goes ahead.
    let (s, c) = call(
        &t.app,
        post(
            &format!("/v1/decisions/{id}/confirm"),
            &json!({"send": true}),
        ),
    )
    .await;
    assert_eq!((s, c["send"].as_bool()), (200, Some(true)), "{c}");

    let (_, d) = call(&t.app, decide()).await;
    let id = d["decision_id"].as_str().unwrap_or_default().to_string();
    // The customer opens the app on their own after the decision.
    call(&t.app, post("/v1/events", &json!({"events": [{
        "event_id": "came-back", "customer_id": "back", "type": "app_open", "timestamp": "2026-11-22T12:05:00Z"
    }]}))).await;
    let (s, c) = call(
        &t.app,
        post(
            &format!("/v1/decisions/{id}/confirm"),
            &json!({"send": true}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (c["send"].as_bool(), c["reason"].as_str()),
        (Some(false), Some("customer_active")),
        "{c}"
    );
    assert_eq!(c["suggested_channel"], "in_app");
    // The refusal freed it: confirming again finds nothing.
    let (s, e) = call(
        &t.app,
        post(
            &format!("/v1/decisions/{id}/confirm"),
            &json!({"send": true}),
        ),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("decision_not_found"))
    );
    let (s, _) = call(
        &t.app,
        post("/v1/decisions/nope/confirm", &json!({"send": true})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &t.app,
        post(
            &format!("/v1/decisions/{id}/confirm"),
            &json!({"sent": true}),
        ),
    )
    .await;
    assert_eq!(s, 400);

    // Active right now: in-app reaches them at once.
    let (_, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": "back", "quiet_hours": null}),
        ),
    )
    .await;
    assert_eq!(
        (d["channel"].as_str(), d["send_at"].as_str()),
        (Some("in_app"), Some("2026-11-22T12:00:00Z")),
        "{d}"
    );
    assert!(d["reasons"].to_string().contains("right now"), "{d}");

    // Last seen 20 minutes ago: most likely gone, so no longer "right now".
    call(
        &t.app,
        put(
            "/v1/customers/left",
            &json!({
                "timezone": "UTC",
                "channels": {"in_app": {"reachable": true, "consent": true}}
            }),
        ),
    )
    .await;
    call(&t.app, post("/v1/events", &json!({"events": [{
        "event_id": "left-open", "customer_id": "left", "type": "app_open", "timestamp": "2026-11-22T11:40:00Z"
    }]}))).await;
    let (_, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": "left", "quiet_hours": null}),
        ),
    )
    .await;
    assert_eq!(d["action"], "send", "{d}");
    assert!(!d["reasons"].to_string().contains("right now"), "{d}");
}

#[actix_web::test]
async fn batch_streams_one_line_per_customer_in_order() {
    let t = app().await;
    for c in ["b1", "b2", "b3"] {
        call(
            &t.app,
            put(
                &format!("/v1/customers/{c}"),
                &json!({"timezone": "Europe/London",
            "channels": {"email": {"reachable": true, "consent": true}}}),
            ),
        )
        .await;
    }
    let req = post(
        "/v1/decisions/batch",
        &json!({
            "customers": ["b3", "", "b1", "unknown", "b2"], "quiet_hours": null
        }),
    );
    let resp = actix_web::test::call_service(&t.app, req.to_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let body = actix_web::test::read_body(resp).await;
    let lines: Vec<serde_json::Value> = std::str::from_utf8(&body)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["customer_id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ids, vec!["b3", "", "b1", "unknown", "b2"]);
    assert_eq!(lines[1]["error"]["code"], "invalid_field");
    assert_eq!(
        (lines[0]["action"].as_str(), lines[0]["channel"].as_str()),
        (Some("send"), Some("email"))
    );
    assert_eq!(lines[3]["suppression"]["reason"], "no_reachable_channel");
    for (body, code) in [
        (json!({"customers": []}), "invalid_field"),
        (
            json!({"customers": ["a"], "not_before": "2026-11-25T00:00:00Z", "deadline": "2026-11-24T00:00:00Z"}),
            "invalid_window",
        ),
        (json!({"customers": "a"}), "invalid_body"),
    ] {
        let (s, e) = call(&t.app, post("/v1/decisions/batch", &body)).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn the_same_state_and_request_give_the_same_decision() {
    // Without caps, a decision's reservation does not change what the next one sees.
    let t = app_with(&[("KAIROS__DECIDE__CAPS", "{}")]).await;
    call(&t.app, put("/v1/customers/same", &json!({"timezone": "Asia/Kuala_Lumpur",
        "channels": {"email": {"reachable": true, "consent": true}, "push": {"reachable": true, "consent": true}}}))).await;
    call(
        &t.app,
        post(
            "/v1/events",
            &json!({"events": monday_evening_sessions("same")}),
        ),
    )
    .await;
    let ask = json!({"customer_id": "same", "deadline": "2026-11-29T12:00:00Z"});
    let (_, a) = call(&t.app, post("/v1/decisions", &ask)).await;
    let (_, b) = call(&t.app, post("/v1/decisions", &ask)).await;
    assert_ne!(a["decision_id"], b["decision_id"]);
    for field in [
        "action",
        "channel",
        "send_at",
        "score",
        "basis",
        "alternatives",
        "reasons",
    ] {
        assert_eq!(a[field], b[field], "{field}");
    }
}

/// A customer still browsing (active three minutes ago) is sent to now, on
/// the channel they can be reached on, and told why; the same habit with the
/// last visit hours back waits for the usual evening.
#[actix_web::test]
async fn a_customer_still_around_is_sent_to_now() {
    let t = app().await;
    for (id, last) in [
        ("browsing", "2026-11-22T11:57:00Z"),
        ("gone", "2026-11-22T08:00:00Z"),
    ] {
        call(
            &t.app,
            put(
                &format!("/v1/customers/{id}"),
                &json!({"timezone": "UTC",
                    "channels": {"email": {"reachable": true, "consent": true}}}),
            ),
        )
        .await;
        // Six Monday evenings on the site, then the last visit.
        let mut events: Vec<serde_json::Value> = (1..=6)
            .map(|w| {
                let at = utc("2026-11-16T19:00:00Z") - chrono::Duration::weeks(w - 1);
                json!({"event_id": format!("{id}-{w}"), "customer_id": id,
                    "type": "session_start", "timestamp": at.to_rfc3339()})
            })
            .collect();
        events.push(json!({"event_id": format!("{id}-last"), "customer_id": id,
            "type": "session_start", "timestamp": last}));
        let (s, body) = call(&t.app, post("/v1/events", &json!({"events": events}))).await;
        assert_eq!(s, 200, "{body}");
    }
    let decide = |id: &str| {
        post(
            "/v1/decisions",
            &json!({"customer_id": id, "quiet_hours": null,
                "deadline": "2026-11-29T12:00:00Z"}),
        )
    };
    let (s, d) = call(&t.app, decide("browsing")).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        (d["channel"].as_str(), d["send_at"].as_str()),
        (Some("email"), Some("2026-11-22T12:00:00Z")),
        "{d}"
    );
    assert!(
        d["reasons"]
            .to_string()
            .contains("Last active 3 minutes before the send"),
        "{d}"
    );
    let (s, d) = call(&t.app, decide("gone")).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["channel"], "email", "{d}");
    let at = utc(d["send_at"].as_str().unwrap_or_default());
    assert_eq!(at.weekday(), chrono::Weekday::Mon, "{d}");
    assert!(!d["reasons"].to_string().contains("Last active"), "{d}");
}
