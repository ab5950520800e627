//! Experiments over HTTP: definitions, GrowthBook-compatible sticky
//! assignment, conditions on learned traits, holdouts, conversions, a
//! 4-arm bandit campaign, results and SRM, and variants in decisions.

use std::collections::BTreeMap;

use kairos_experiments::hash;
use serde_json::{json, Value};

use crate::support::{app_with, call, get, post, put};

/// A uniform number in [0, 1) from a string: the simulation's dice.
fn dice(s: &str) -> f64 {
    f64::from(hash::fnv1a32(&format!("dice:{s}"))) / f64::from(u32::MAX)
}

fn ev(id: &str, customer: &str, kind: &str, at: &str) -> Value {
    json!({"event_id": id, "customer_id": customer, "type": kind, "timestamp": at})
}

#[actix_web::test]
async fn definitions_are_checked_stored_and_listed() {
    let t = app_with(&[]).await;
    let def = json!({"variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}], "goal": "converted"});
    let (s, b) = call(&t.app, put("/v1/experiments/hero", &def)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["key"].as_str(), b["hash_version"].as_u64()),
        (Some("hero"), Some(2))
    );
    for (bad, field) in [
        (
            json!({"variants": [{"key": "a", "weight": 0.9}, {"key": "b", "weight": 0.5}], "goal": "converted"}),
            "variants",
        ),
        (
            json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "bought_a_boat"}),
            "goal",
        ),
        (
            json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "converted", "coverage": 2}),
            "coverage",
        ),
        (
            json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "converted", "colour": "red"}),
            "colour",
        ),
    ] {
        let (s, b) = call(&t.app, put("/v1/experiments/bad", &bad)).await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap_or("").contains(field),
            "{b}"
        );
    }
    assert_eq!(call(&t.app, get("/v1/experiments/bad")).await.0, 404);
    let (s, b) = call(&t.app, put("/v1/experiments/no%20spaces", &def)).await;
    assert_eq!(s, 400, "{b}");
    let (_, list) = call(&t.app, get("/v1/experiments")).await;
    let keys: Vec<&str> = list["experiments"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["hero"]);
    let (s, _) = call(
        &t.app,
        post(
            "/v1/assign",
            &json!({"experiment": "nope", "customer_id": "c"}),
        ),
    )
    .await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn assignment_is_growthbooks_and_sticky_when_weights_change() {
    let t = app_with(&[]).await;
    let def = |wa: f64| {
        json!({"variants": [{"key": "a", "weight": wa}, {"key": "b", "weight": 1.0 - wa}],
               "goal": "converted", "seed": "s-1", "hash_version": 1})
    };
    call(&t.app, put("/v1/experiments/sticky", &def(0.5))).await;
    let mut first = BTreeMap::new();
    for i in 0..40 {
        let c = format!("cust-{i}");
        let (s, a) = call(
            &t.app,
            post(
                "/v1/assign",
                &json!({"experiment": "sticky", "customer_id": c}),
            ),
        )
        .await;
        assert_eq!(s, 200, "{a}");
        // GrowthBook: n = (fnv32a(id + seed) % 1000) / 1000; a below 0.5.
        let n = f64::from(hash::fnv1a32(&format!("{c}s-1")) % 1000) / 1000.0;
        assert_eq!(a["hash"].as_f64(), Some(n));
        assert_eq!(a["variant"], if n < 0.5 { "a" } else { "b" }, "{a}");
        assert_eq!(
            (a["in_experiment"].as_bool(), a["reason"].as_str()),
            (Some(true), Some("hashed"))
        );
        first.insert(c, a["variant"].clone());
    }
    // Everyone new goes to b now; everyone already exposed keeps their variant.
    call(&t.app, put("/v1/experiments/sticky", &def(0.0))).await;
    for (c, v) in &first {
        let (_, a) = call(
            &t.app,
            post(
                "/v1/assign",
                &json!({"experiment": "sticky", "customer_id": c}),
            ),
        )
        .await;
        assert_eq!(&a["variant"], v, "{c}");
    }
    let (_, a) = call(
        &t.app,
        post(
            "/v1/assign",
            &json!({"experiment": "sticky", "customer_id": "newcomer-7"}),
        ),
    )
    .await;
    assert_eq!(a["variant"], "b");
    let (_, r) = call(&t.app, get("/v1/experiments/sticky/results")).await;
    let exposures: u64 = r["variants"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["exposures"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(exposures, 41, "one exposure per customer: {r}");
}

#[actix_web::test]
async fn conditions_see_learned_traits_and_holdouts_are_the_baseline() {
    let t = app_with(&[]).await;
    // Reads email on a phone, never opened the app.
    let mut phone = Vec::new();
    for i in 0..5 {
        let mut e = ev(
            &format!("p{i}"),
            "phone-reader",
            "message_opened",
            &format!("2026-11-1{i}T09:00:00Z"),
        );
        e["channel"] = json!("email");
        e["message_id"] = json!(format!("m{i}"));
        e["device"] = json!("mobile");
        phone.push(e);
    }
    let app_user = vec![ev("a1", "app-user", "app_open", "2026-11-20T09:00:00Z")];
    call(&t.app, post("/v1/events", &json!({"events": phone}))).await;
    call(&t.app, post("/v1/events", &json!({"events": app_user}))).await;
    call(&t.app, put("/v1/experiments/app-in-email", &json!({
        "variants": [{"key": "control"}, {"key": "show_app"}], "goal": "converted",
        "condition": {"learned_traits.has_app": false, "learned_traits.email_open_mobile_share": {"$gt": 0.6}}
    }))).await;
    let (_, a) = call(
        &t.app,
        post(
            "/v1/assign",
            &json!({"experiment": "app-in-email", "customer_id": "phone-reader"}),
        ),
    )
    .await;
    assert_eq!(a["in_experiment"], true, "{a}");
    let (_, a) = call(
        &t.app,
        post(
            "/v1/assign",
            &json!({"experiment": "app-in-email", "customer_id": "app-user"}),
        ),
    )
    .await;
    assert_eq!(
        (a["in_experiment"].as_bool(), a["reason"].as_str()),
        (Some(false), Some("condition_failed")),
        "{a}"
    );
    // Request attributes count too.
    call(&t.app, put("/v1/experiments/by-plan", &json!({
        "variants": [{"key": "x"}, {"key": "y"}], "goal": "converted", "condition": {"plan": {"$in": ["gold"]}}
    }))).await;
    let (_, a) = call(
        &t.app,
        post(
            "/v1/assign",
            &json!({"experiment": "by-plan", "customer_id": "z", "attributes": {"plan": "gold"}}),
        ),
    )
    .await;
    assert_eq!(a["in_experiment"], true, "{a}");

    // A 30% holdout: out of the experiment, tracked, and converting.
    call(
        &t.app,
        put(
            "/v1/experiments/held",
            &json!({
                "variants": [{"key": "a"}, {"key": "b"}], "goal": "converted", "holdout": 0.3
            }),
        ),
    )
    .await;
    let mut held = Vec::new();
    for i in 0..200 {
        let c = format!("h-{i}");
        let (_, a) = call(
            &t.app,
            post(
                "/v1/assign",
                &json!({"experiment": "held", "customer_id": c}),
            ),
        )
        .await;
        if a["reason"] == "holdout" {
            assert_eq!(
                (a["in_experiment"].as_bool(), a["variant"].is_null()),
                (Some(false), true)
            );
            held.push(c);
        }
    }
    assert!((40..80).contains(&held.len()), "{}", held.len());
    let conversions: Vec<Value> = held
        .iter()
        .take(10)
        .map(|c| ev(&format!("{c}-conv"), c, "converted", "2026-11-22T12:00:00Z"))
        .collect();
    call(&t.app, post("/v1/events", &json!({"events": conversions}))).await;
    let (_, r) = call(&t.app, get("/v1/experiments/held/results")).await;
    assert_eq!(
        r["holdout"]["exposures"].as_u64(),
        Some(held.len() as u64),
        "{r}"
    );
    assert_eq!(r["holdout"]["conversions"].as_u64(), Some(10), "{r}");
}

#[actix_web::test]
async fn a_four_arm_bandit_sends_late_traffic_to_the_best_arm_and_results_count_exactly() {
    let t = app_with(&[]).await;
    let rates = [0.04, 0.06, 0.20, 0.05];
    call(
        &t.app,
        put(
            "/v1/experiments/subject-line",
            &json!({
                "variants": [{"key": "v0"}, {"key": "v1"}, {"key": "v2"}, {"key": "v3"}],
                "mode": "bandit", "goal": "message_clicked", "min_weight": 0.01
            }),
        ),
    )
    .await;
    let mut exposed: BTreeMap<String, u64> = BTreeMap::new();
    let mut converted: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_round = BTreeMap::new();
    let rounds = 12;
    for round in 0..rounds {
        let mut clicks = Vec::new();
        for i in 0..150 {
            let c = format!("r{round}-c{i}");
            let (s, a) = call(
                &t.app,
                post(
                    "/v1/assign",
                    &json!({"experiment": "subject-line", "customer_id": c}),
                ),
            )
            .await;
            assert_eq!((s, a["reason"].as_str()), (200, Some("bandit")), "{a}");
            let v = a["variant"].as_str().unwrap_or_default().to_owned();
            *exposed.entry(v.clone()).or_default() += 1;
            if round == rounds - 1 {
                *last_round.entry(v.clone()).or_insert(0) += 1;
            }
            let arm: usize = v[1..].parse().unwrap_or(0);
            if dice(&c) < rates[arm] {
                *converted.entry(v.clone()).or_default() += 1;
                let mut e = ev(
                    &format!("{c}-click"),
                    &c,
                    "message_clicked",
                    "2026-11-22T12:00:00Z",
                );
                e["channel"] = json!("email");
                e["message_id"] = json!("subject-test");
                clicks.push(e);
            }
        }
        if !clicks.is_empty() {
            let (s, b) = call(&t.app, post("/v1/events", &json!({"events": clicks}))).await;
            assert_eq!(s, 200, "{b}");
        }
    }
    let best = last_round.get("v2").copied().unwrap_or(0);
    assert!(
        best * 2 > 150,
        "late traffic mostly to the best arm: {last_round:?}"
    );
    let (_, r) = call(&t.app, get("/v1/experiments/subject-line/results")).await;
    for v in r["variants"].as_array().cloned().unwrap_or_default() {
        let key = v["variant"].as_str().unwrap_or_default();
        assert_eq!(
            v["exposures"].as_u64(),
            Some(exposed.get(key).copied().unwrap_or(0)),
            "{r}"
        );
        assert_eq!(
            v["conversions"].as_u64(),
            Some(converted.get(key).copied().unwrap_or(0)),
            "{r}"
        );
    }
    let weights: Vec<f64> = r["weights"]
        .as_array()
        .map(|w| w.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert_eq!(weights.len(), 4, "{r}");
    assert!(
        weights[2] > 0.5 && weights.iter().all(|w| *w >= 0.0099),
        "{weights:?}"
    );
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    // A click sent again is not a second conversion.
    let (_, again) = call(&t.app, get("/v1/experiments/subject-line/results")).await;
    assert_eq!(again["variants"], r["variants"]);
}

#[actix_web::test]
async fn srm_flags_a_5000_5200_split() {
    let t = app_with(&[]).await;
    call(&t.app, put("/v1/experiments/srm", &json!({
        "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}], "goal": "converted"
    }))).await;
    // Customers whose hash puts them in a, then in b, until 5,000 and 5,200.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut i = 0;
    while a.len() < 5000 || b.len() < 5200 {
        let c = format!("srm-{i}");
        i += 1;
        let n = hash::hash("srm", &c, 2).unwrap_or(0.0);
        if n < 0.5 && a.len() < 5000 {
            a.push(c);
        } else if n >= 0.5 && b.len() < 5200 {
            b.push(c);
        }
    }
    let everyone: Vec<String> = a.into_iter().chain(b).collect();
    for chunk in everyone.chunks(200) {
        futures_util::future::join_all(chunk.iter().map(|c| {
            call(
                &t.app,
                post(
                    "/v1/assign",
                    &json!({"experiment": "srm", "customer_id": c}),
                ),
            )
        }))
        .await;
    }
    let (_, r) = call(&t.app, get("/v1/experiments/srm/results")).await;
    let counts: Vec<u64> = r["variants"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["exposures"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(counts, vec![5000, 5200]);
    let p = r["srm_p_value"].as_f64().unwrap_or(1.0);
    assert!((p - 0.0477).abs() < 0.001 && p < 0.05, "{p}");
}

#[actix_web::test]
async fn a_decision_naming_an_experiment_carries_its_variant() {
    let t = app_with(&[("KAIROS__DECIDE__CAPS", "{}")]).await;
    call(
        &t.app,
        put(
            "/v1/experiments/copy",
            &json!({
                "variants": [{"key": "short"}, {"key": "long"}], "goal": "message_clicked"
            }),
        ),
    )
    .await;
    let ask = json!({"customer_id": "dec-1", "channels": ["email"], "experiment": "copy", "quiet_hours": null});
    let (s, d) = call(&t.app, post("/v1/decisions", &ask)).await;
    assert_eq!((s, d["action"].as_str()), (200, Some("send")), "{d}");
    let v = d["variant"]["variant"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(v == "short" || v == "long", "{d}");
    assert_eq!(d["variant"]["experiment"], "copy");
    let (_, a) = call(
        &t.app,
        post(
            "/v1/assign",
            &json!({"experiment": "copy", "customer_id": "dec-1"}),
        ),
    )
    .await;
    assert_eq!(a["variant"], v.as_str(), "the same variant, sticky");
    let (_, r) = call(&t.app, get("/v1/experiments/copy/results")).await;
    let total: u64 = r["variants"]
        .as_array()
        .map(|x| x.iter().filter_map(|y| y["exposures"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(total, 1, "the decision recorded the exposure: {r}");
    let unknown = json!({"customer_id": "dec-2", "channels": ["email"], "experiment": "missing", "quiet_hours": null});
    let (s, d) = call(&t.app, post("/v1/decisions", &unknown)).await;
    assert_eq!(s, 200);
    assert!(d["variant"].is_null());
    assert!(d["reasons"].to_string().contains("not defined"), "{d}");
}

#[actix_web::test]
async fn a_contextual_bandit_learns_each_context_on_its_own() {
    let t = app_with(&[]).await;
    call(
        &t.app,
        put(
            "/v1/experiments/ctx",
            &json!({
                "variants": [{"key": "v0"}, {"key": "v1"}],
                "mode": "bandit", "goal": "converted", "context": "plan"
            }),
        ),
    )
    .await;
    // Gold customers convert on v0, basic ones on v1.
    let rate = |plan: &str, v: &str| match (plan, v) {
        ("gold", "v0") | ("basic", "v1") => 0.25,
        _ => 0.03,
    };
    let mut late: BTreeMap<(String, String), u32> = BTreeMap::new();
    for round in 0..10 {
        let mut conversions = Vec::new();
        for i in 0..120 {
            let plan = if i % 2 == 0 { "gold" } else { "basic" };
            let c = format!("ctx-{round}-{i}");
            let (_, a) = call(
                &t.app,
                post(
                    "/v1/assign",
                    &json!({"experiment": "ctx", "customer_id": c, "attributes": {"plan": plan}}),
                ),
            )
            .await;
            let v = a["variant"].as_str().unwrap_or_default().to_owned();
            if round == 9 {
                *late.entry((plan.to_owned(), v.clone())).or_default() += 1;
            }
            if dice(&c) < rate(plan, &v) {
                conversions.push(ev(
                    &format!("{c}-x"),
                    &c,
                    "converted",
                    "2026-11-22T12:00:00Z",
                ));
            }
        }
        if !conversions.is_empty() {
            call(&t.app, post("/v1/events", &json!({"events": conversions}))).await;
        }
    }
    let share = |plan: &str, v: &str| {
        f64::from(
            late.get(&(plan.to_owned(), v.to_owned()))
                .copied()
                .unwrap_or(0),
        ) / 60.0
    };
    assert!(share("gold", "v0") > 0.6, "{late:?}");
    assert!(share("basic", "v1") > 0.6, "{late:?}");
    let (_, r) = call(&t.app, get("/v1/experiments/ctx/results")).await;
    let by = &r["weights_by_context"];
    assert!(by["gold"][0].as_f64().unwrap_or(0.0) > 0.5, "{r}");
    assert!(by["basic"][1].as_f64().unwrap_or(0.0) > 0.5, "{r}");
}
