//! Events -> learned profile -> decision, for the seed customer.

use chrono::{Datelike, Timelike};
use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn monday_evening_app_user_gets_a_monday_evening_push() {
    let t = app().await;
    let (s, _) = call(
        &t.app,
        put(
            "/v1/customers/c-42",
            &json!({"timezone": "Asia/Kuala_Lumpur"}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let events = monday_evening_sessions("c-42");
    let (s, body) = call(&t.app, post("/v1/events", &json!({"events": events}))).await;
    assert_eq!((s, body), (200, json!({"accepted": 24, "duplicates": 0})));

    let (s, customer) = call(&t.app, get("/v1/customers/c-42")).await;
    assert_eq!(s, 200);
    let how: Vec<f64> =
        serde_json::from_value(customer["profile"]["activity"]["hour_of_week"].clone())
            .unwrap_or_default();
    assert_eq!(how.len(), 168);
    assert!((how.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let peak = how
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    assert!(matches!(peak, Some(19) | Some(20)), "peak at {peak:?}");
    assert_eq!(customer["profile"]["activity"]["basis"], "personal");
    assert_eq!(
        customer["profile"]["activity"]["peak_windows"][0]["label"],
        "Monday 19:00-21:00"
    );
    assert_eq!(customer["profile"]["events"], 24);

    let (s, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({
                "customer_id": "c-42",
                "channels": ["push"],
                "deadline": "2026-11-29T12:00:00Z",
                "quiet_hours": null,
            }),
        ),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["action"], "send");
    assert_eq!(d["channel"], "push");
    assert_eq!(d["basis"], "personal");
    let local =
        chrono::DateTime::parse_from_rfc3339(d["send_at_local"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {d}"));
    assert_eq!(local.offset().local_minus_utc(), 8 * 3600);
    assert_eq!(local.weekday(), chrono::Weekday::Mon, "{d}");
    assert!((18..21).contains(&local.hour()), "{local}");
    let send_at = utc(d["send_at"].as_str().unwrap_or_default());
    assert_eq!(send_at, local.to_utc());
    assert!(d["send_at"].as_str().unwrap_or_default().ends_with('Z'));
    let reasons = d["reasons"].to_string();
    assert!(
        reasons.contains("Monday 19:00-21:00 (Asia/Kuala_Lumpur)"),
        "{reasons}"
    );
    assert!(d["score"].as_f64().is_some_and(|s| s > 0.0 && s < 1.0));
}

#[actix_web::test]
async fn the_same_events_again_are_duplicates_and_change_nothing() {
    let t = app().await;
    let events = json!({"events": monday_evening_sessions("c-dup")});
    call(&t.app, post("/v1/events", &events)).await;
    let (_, before) = call(&t.app, get("/v1/customers/c-dup")).await;
    let (s, body) = call(&t.app, post("/v1/events", &events)).await;
    assert_eq!((s, body), (200, json!({"accepted": 0, "duplicates": 24})));
    let (_, after) = call(&t.app, get("/v1/customers/c-dup")).await;
    assert_eq!(before["profile"], after["profile"]);
}

#[actix_web::test]
async fn training_replaces_the_flat_prior() {
    let t = app_with(&[("KAIROS__MODELS__BUILTIN", "false")]).await;
    // Before any training there is no population prior: default send time.
    let ask = json!({"customer_id": "newcomer", "channels": ["email"], "quiet_hours": null});
    let (_, d) = call(&t.app, post("/v1/decisions", &ask)).await;
    assert_eq!(d["basis"], "default", "{d}");
    assert!(
        d["send_at_local"]
            .as_str()
            .unwrap_or_default()
            .contains("T17:00:00"),
        "{d}"
    );

    for c in ["a", "b", "c"] {
        call(
            &t.app,
            post("/v1/events", &json!({"events": monday_evening_sessions(c)})),
        )
        .await;
    }
    let (s, summary) = call(&t.app, post("/v1/admin/train", &json!({}))).await;
    assert_eq!(s, 200, "{summary}");
    assert_eq!(summary["data"]["customers"], 3);
    assert!(
        summary["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1-")),
        "{summary}"
    );

    let (_, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({
                "customer_id": "newcomer", "channels": ["push"], "quiet_hours": null,
                "deadline": "2026-11-29T12:00:00Z"
            }),
        ),
    )
    .await;
    assert_eq!(d["basis"], "global", "{d}");
    // The population is active Mondays 11:00-13:00 UTC (the default zone here).
    let at = utc(d["send_at"].as_str().unwrap_or_default());
    assert_eq!((at.weekday(), at.hour()), (chrono::Weekday::Mon, 11), "{d}");
    let (_, profile) = call(&t.app, get("/v1/customers/a")).await;
    assert_eq!(profile["profile"]["activity"]["basis"], "personal");
}

/// Text messages are read within the hour: one goes out when the customer's
/// hour begins, to the quarter, not at the top of the clock hour it starts in.
#[actix_web::test]
async fn a_text_goes_out_at_the_quarter_the_customers_hour_begins() {
    let t = app().await;
    let (s, _) = call(
        &t.app,
        put(
            "/v1/customers/c-7",
            &json!({"timezone": "America/New_York",
                    "channels": {"sms": {"reachable": true, "consent": true}}}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    // Tuesdays, sessions at 19:20, 19:40 and 20:05 New York time over the
    // 8 weeks before now, across the end of daylight saving time (1 November).
    let mut events = Vec::new();
    let last_tuesday = chrono::NaiveDate::from_ymd_opt(2026, 11, 17).unwrap_or_default();
    for week in 0..8 {
        let day = last_tuesday - chrono::Duration::weeks(week);
        for (k, (h, m)) in [(19, 20), (19, 40), (20, 5)].into_iter().enumerate() {
            let local = day.and_hms_opt(h, m, 0).unwrap_or_default();
            let at = kairos_core::time::resolve_local(local, chrono_tz::America::New_York);
            events.push(json!({
                "event_id": format!("c-7-w{week}-{k}"), "customer_id": "c-7",
                "type": "session_start", "timestamp": at.to_rfc3339(),
            }));
        }
    }
    let (s, body) = call(&t.app, post("/v1/events", &json!({"events": events}))).await;
    assert_eq!((s, body), (200, json!({"accepted": 24, "duplicates": 0})));
    let (s, d) = call(
        &t.app,
        post(
            "/v1/decisions",
            &json!({"customer_id": "c-7", "channels": ["sms"], "quiet_hours": null,
                    "deadline": "2026-11-29T12:00:00Z"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        (&d["action"], &d["channel"]),
        (&json!("send"), &json!("sms")),
        "{d}"
    );
    let local =
        chrono::DateTime::parse_from_rfc3339(d["send_at_local"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {d}"));
    assert_eq!(
        (local.weekday(), local.hour(), local.minute()),
        (chrono::Weekday::Tue, 19, 15),
        "{d}"
    );
}
