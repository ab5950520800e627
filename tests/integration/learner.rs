//! The learner on real activity, end to end over HTTP: ingest everything but
//! each customer's last outing, train, and predict that outing's local hour of
//! week from GET /v1/customers/{id}.

use std::collections::BTreeMap;
use std::io::Read;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support::*;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/checkins-petaling-jaya.csv.gz"
);

/// One episode per trail (its first check-in), per user, oldest first.
fn episodes() -> BTreeMap<String, Vec<(DateTime<Utc>, String)>> {
    let file = std::fs::File::open(DATA).unwrap_or_else(|e| {
        panic!("{DATA}: {e}. The check-in data set lives in shared/data beside the repository.")
    });
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut trails: BTreeMap<String, (String, DateTime<Utc>)> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(';').collect();
        let at = DateTime::parse_from_rfc3339(cols[3])
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .to_utc();
        let e = trails
            .entry(cols[0].to_string())
            .or_insert((cols[1].to_string(), at));
        if at < e.1 {
            *e = (cols[1].to_string(), at);
        }
    }
    let mut users: BTreeMap<String, Vec<(DateTime<Utc>, String)>> = BTreeMap::new();
    for (trail, (user, at)) in trails {
        users.entry(user).or_default().push((at, trail));
    }
    for v in users.values_mut() {
        v.sort();
    }
    users
}

#[actix_web::test]
async fn beats_the_baselines_on_real_check_ins_over_http() {
    let t = app_with(&[
        ("KAIROS__DECIDE__DEFAULT_TIMEZONE", "Asia/Kuala_Lumpur"),
        ("KAIROS__MODELS__BUILTIN", "false"),
    ])
    .await;
    let users = episodes();
    let tz: chrono_tz::Tz = "Asia/Kuala_Lumpur".parse().unwrap_or(chrono_tz::Tz::UTC);
    let mut held_out: Vec<(String, usize)> = Vec::new();
    let mut batch = Vec::new();
    let mut sent = 0;
    for (user, eps) in &users {
        let keep = if eps.len() >= 5 {
            let (at, _) = eps[eps.len() - 1];
            held_out.push((user.clone(), kairos_core::HourOfWeek::of(at, tz).index()));
            eps.len() - 1
        } else {
            eps.len()
        };
        for (at, trail) in &eps[..keep] {
            batch.push(json!({
                "event_id": format!("trail-{trail}"), "customer_id": user,
                "type": "session_start", "timestamp": at.to_rfc3339(),
            }));
        }
        if batch.len() >= 9_000 {
            sent += batch.len();
            let (s, body) = call(
                &t.app,
                post("/v1/events", &json!({"events": std::mem::take(&mut batch)})),
            )
            .await;
            assert_eq!(s, 200, "{body}");
        }
    }
    sent += batch.len();
    let (s, _) = call(&t.app, post("/v1/events", &json!({"events": batch}))).await;
    assert_eq!(s, 200);
    assert_eq!(held_out.len(), 4528, "users with at least 5 episodes");
    assert_eq!(sent, 82_958 - 4528);

    let (s, summary) = call(&t.app, post("/v1/admin/train", &json!({}))).await;
    assert_eq!(s, 200, "{summary}");
    assert!(
        summary["segments"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{summary}"
    );

    let (mut nll, mut hits10) = (0.0, 0usize);
    for (user, how) in &held_out {
        let (s, c) = call(&t.app, get(&format!("/v1/customers/{user}"))).await;
        assert_eq!(s, 200);
        let p: Vec<f64> = serde_json::from_value(c["profile"]["activity"]["hour_of_week"].clone())
            .unwrap_or_default();
        assert_eq!(p.len(), 168);
        nll -= p[*how].ln();
        let rank = kairos_learn::eval::rank_of(&p, *how);
        if rank <= 10.0 {
            hits10 += 1;
        }
    }
    let n = held_out.len() as f64;
    let (nll, hr10) = (nll / n, hits10 as f64 / n);
    eprintln!("check-ins over HTTP: NLL {nll:.4}, HR@10 {hr10:.4} on {n} customers");
    assert!(
        nll < 4.74,
        "NLL {nll:.4} (population 4.805, tuned shrunk histogram 4.763)"
    );
    assert!(
        hr10 >= 0.185,
        "HR@10 {hr10:.4} (tuned shrunk histogram 0.179)"
    );

    // Cold start to personal: 0 events, 3 events, 300 events.
    let (s, _) = call(&t.app, get("/v1/customers/nobody")).await;
    assert_eq!(s, 404);
    call(
        &t.app,
        put(
            "/v1/customers/nobody",
            &json!({"timezone": "Asia/Kuala_Lumpur"}),
        ),
    )
    .await;
    let (_, c) = call(&t.app, get("/v1/customers/nobody")).await;
    let basis = c["profile"]["activity"]["basis"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(basis == "global" || basis == "segment", "{c}");
    assert_eq!(c["profile"]["activity"]["personal_weight"], 0.0);
    let sessions = |customer: &str, n: usize| -> Value {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({
                "event_id": format!("{customer}-{i}"), "customer_id": customer, "type": "session_start",
                // Wednesdays 13:00 local (05:00 UTC), going back from 2026-11-18.
                "timestamp": (utc("2026-11-18T05:10:00Z") - chrono::Duration::weeks(i as i64 % 50)
                    - chrono::Duration::minutes(i as i64 / 50)).to_rfc3339(),
            }))
            .collect();
        json!({"events": events})
    };
    for (customer, n) in [("three", 3), ("many", 300)] {
        let (s, _) = call(&t.app, post("/v1/events", &sessions(customer, n))).await;
        assert_eq!(s, 200);
    }
    let (_, three) = call(&t.app, get("/v1/customers/three")).await;
    let w3 = three["profile"]["activity"]["personal_weight"]
        .as_f64()
        .unwrap_or(1.0);
    assert!(w3 < 0.5, "3 events: mostly prior ({w3})");
    assert_ne!(three["profile"]["activity"]["basis"], "personal");
    let (_, many) = call(&t.app, get("/v1/customers/many")).await;
    let w300 = many["profile"]["activity"]["personal_weight"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(w300 > 0.8, "300 events: mostly personal ({w300})");
    assert_eq!(many["profile"]["activity"]["basis"], "personal");
    let peak = &many["profile"]["activity"]["peak_windows"][0];
    let (start, end) = (
        peak["start_how"].as_u64().unwrap_or(999),
        peak["end_how"].as_u64().unwrap_or(0),
    );
    assert!(
        start <= 61 && 61 < end,
        "Wednesday 13:00 is in the top window: {peak}"
    );
}

#[actix_web::test]
async fn attributes_place_a_customer_without_history_in_a_segment() {
    let t = app_with(&[("KAIROS__MODELS__BUILTIN", "false")]).await;
    // Night owls (plan=night) active around 22:00, early birds (plan=early) around 07:00.
    for (plan, hour) in [("night", 22), ("early", 7)] {
        for i in 0..25 {
            let id = format!("{plan}-{i}");
            call(
                &t.app,
                put(
                    &format!("/v1/customers/{id}"),
                    &json!({"timezone": "UTC", "traits": {"plan": plan}}),
                ),
            )
            .await;
            let events: Vec<Value> = (0..15)
                .map(|k| json!({
                    "event_id": format!("{id}-{k}"), "customer_id": id, "type": "app_open",
                    "timestamp": (utc("2026-11-21T00:00:00Z") - chrono::Duration::days(k)
                        + chrono::Duration::minutes(hour * 60 + (i * 7 + k * 3) % 50)).to_rfc3339(),
                }))
                .collect();
            let (s, _) = call(&t.app, post("/v1/events", &json!({"events": events}))).await;
            assert_eq!(s, 200);
        }
    }
    let (s, summary) = call(&t.app, post("/v1/admin/train", &json!({}))).await;
    assert_eq!(s, 200, "{summary}");
    assert!(
        summary["segments"].as_array().is_some_and(|s| s.len() >= 2),
        "{summary}"
    );

    call(
        &t.app,
        put(
            "/v1/customers/newcomer",
            &json!({"timezone": "UTC", "traits": {"plan": "night"}}),
        ),
    )
    .await;
    let (_, c) = call(&t.app, get("/v1/customers/newcomer")).await;
    assert_eq!(c["profile"]["events"], 0);
    assert_eq!(c["profile"]["activity"]["basis"], "segment", "{c}");
    let label = c["profile"]["segment"]["label"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        label.contains("late evenings") || label.contains("evenings"),
        "{label}"
    );
    let p: Vec<f64> = serde_json::from_value(c["profile"]["activity"]["hour_of_week"].clone())
        .unwrap_or_default();
    assert!(p[22] > 3.0 * p[7], "22:00 {} vs 07:00 {}", p[22], p[7]);
    // A customer without traits stays on the population prior.
    call(
        &t.app,
        put("/v1/customers/plain", &json!({"timezone": "UTC"})),
    )
    .await;
    let (_, c) = call(&t.app, get("/v1/customers/plain")).await;
    assert_eq!(c["profile"]["activity"]["basis"], "global", "{c}");
}
