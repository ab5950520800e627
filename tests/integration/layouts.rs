//! Layouts over HTTP: slots filled by conditions on learned traits, by an
//! experiment, and by category affinity; CORS and caching headers.

use serde_json::{json, Value};

use crate::support::{app_with, call, get, post};

pub fn layout_env() -> Vec<(&'static str, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    vec![
        ("KAIROS__LAYOUTS__DIR", format!("{root}/config/layouts")),
        (
            "KAIROS__EXPERIMENTS__DIR",
            format!("{root}/config/experiments"),
        ),
        (
            "KAIROS__LAYOUTS__CORS_ORIGINS",
            r#"["https://shop.example"]"#.into(),
        ),
    ]
}

/// A customer who reads email on a phone, has no app, and browses shoes.
pub fn phone_reader_events(c: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(
            json!({"event_id": format!("{c}-o{i}"), "customer_id": c, "type": "message_opened",
            "channel": "email", "message_id": format!("m{i}"), "device": "mobile",
            "timestamp": format!("2026-11-1{i}T09:00:00Z")}),
        );
        events.push(json!({"event_id": format!("{c}-v{i}"), "customer_id": c, "type": "page_view",
            "category": if i < 4 { "shoes" } else { "books" }, "timestamp": format!("2026-11-1{i}T10:00:00Z")}));
    }
    events
}

/// A customer who uses the app and reads about gardens.
pub fn app_user_events(c: &str) -> Vec<Value> {
    (0..4)
        .flat_map(|i| {
            [
                json!({"event_id": format!("{c}-a{i}"), "customer_id": c, "type": "app_open",
                    "timestamp": format!("2026-11-1{i}T19:00:00Z")}),
                json!({"event_id": format!("{c}-g{i}"), "customer_id": c, "type": "page_view",
                    "category": "garden", "timestamp": format!("2026-11-1{i}T19:05:00Z")}),
            ]
        })
        .collect()
}

fn slots(layout: &Value) -> Vec<(String, String)> {
    layout["slots"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| {
                    (
                        x["key"].as_str().unwrap_or_default().to_owned(),
                        x["component"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn slots_follow_what_kairos_knows_of_the_visitor() {
    let env = layout_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t = app_with(&pairs).await;
    call(
        &t.app,
        post("/v1/events", &json!({"events": phone_reader_events("pr")})),
    )
    .await;
    call(
        &t.app,
        post("/v1/events", &json!({"events": app_user_events("au")})),
    )
    .await;

    let (s, pr) = call(&t.app, get("/v1/layouts/home?customer_id=pr")).await;
    assert_eq!(s, 200, "{pr}");
    let pr_slots = slots(&pr);
    assert_eq!(pr_slots[0], ("hero".into(), "get_the_app".into()), "{pr}");
    assert_eq!(
        pr_slots[2],
        ("recommended".into(), "category_shoes".into()),
        "{pr}"
    );
    assert!(
        pr["slots"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("rule 1"),
        "{pr}"
    );

    let (_, au) = call(&t.app, get("/v1/layouts/home?customer_id=au")).await;
    let au_slots = slots(&au);
    assert_eq!(au_slots[0].1, "open_in_app", "{au}");
    assert_eq!(au_slots[2].1, "category_garden", "{au}");

    let (_, nobody) = call(&t.app, get("/v1/layouts/home?customer_id=first-visit")).await;
    let n = slots(&nobody);
    assert_eq!(
        (n[0].1.as_str(), n[2].1.as_str()),
        ("welcome_banner", "category_bestsellers"),
        "{nobody}"
    );

    // The offer slot is the home-offer experiment's variant, exposure recorded, sticky.
    let offer = pr_slots[1].1.clone();
    assert!(
        offer == "offer_standard" || offer == "offer_free_shipping",
        "{pr}"
    );
    let (_, again) = call(&t.app, get("/v1/layouts/home?customer_id=pr")).await;
    assert_eq!(slots(&again)[1].1, offer);
    let (_, r) = call(&t.app, get("/v1/experiments/home-offer/results")).await;
    let exposures: u64 = r["variants"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["exposures"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(exposures, 3, "three visitors exposed once each: {r}");

    assert_eq!(
        call(&t.app, get("/v1/layouts/nowhere?customer_id=pr"))
            .await
            .0,
        404
    );
    assert_eq!(call(&t.app, get("/v1/layouts/home")).await.0, 400);
}

#[actix_web::test]
async fn browsers_on_configured_origins_may_fetch_layouts() {
    let env = layout_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t = app_with(&pairs).await;
    let fetch = |origin: &str| {
        actix_web::test::TestRequest::get()
            .uri("/v1/layouts/home?customer_id=x")
            .insert_header(("origin", origin.to_owned()))
            .to_request()
    };
    let resp = actix_web::test::call_service(&t.app, fetch("https://shop.example")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://shop.example")
    );
    assert!(h
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("private")));
    assert_eq!(h.get("vary").and_then(|v| v.to_str().ok()), Some("Origin"));
    let resp = actix_web::test::call_service(&t.app, fetch("https://elsewhere.example")).await;
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let preflight = actix_web::test::TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/v1/layouts/home")
        .insert_header(("origin", "https://shop.example"))
        .insert_header(("access-control-request-method", "GET"))
        .to_request();
    let resp = actix_web::test::call_service(&t.app, preflight).await;
    assert_eq!(resp.status().as_u16(), 204);
    assert!(resp.headers().get("access-control-allow-methods").is_some());
    // The demo page is served.
    let (s, page) = call(&t.app, get("/demo/")).await;
    assert_eq!(s, 200);
    assert!(page.as_str().unwrap_or("").contains("/v1/layouts/"));
}
