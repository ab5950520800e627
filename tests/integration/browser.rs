//! The demo page in headless Chromium: `kairos serve` (the real binary)
//! serves /demo/, the page fetches the visitor's layout and renders its
//! slots, and two visitors see different pages.

use std::process::Command;

use serde_json::json;

use crate::durability::Server;
use crate::layouts::{app_user_events, layout_env, phone_reader_events};

const INSTALL: &str = "chromium was not found: the browser test renders the demo page in \
     headless Chromium; install it with `sudo apt-get install chromium` (Debian) and run the \
     tests again";

fn chromium() -> String {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return candidate.to_owned();
        }
    }
    panic!("{INSTALL}");
}

/// The DOM of `url` after its scripts ran.
fn render(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{INSTALL} ({e})"));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (slot, component) pairs as the page rendered them.
fn rendered_slots(dom: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| {
        tag.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_owned)
    };
    dom.split("<section")
        .skip(1)
        .filter_map(|tag| {
            let head = tag.split('>').next().unwrap_or_default();
            Some((attr(head, "data-slot")?, attr(head, "data-component")?))
        })
        .collect()
}

#[test]
fn the_demo_page_renders_each_visitors_layout_in_chromium() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
    for (k, v) in layout_env() {
        cmd.env(k, v);
    }
    let server = Server::start_with(&dir.path().join("data"), cmd);
    for events in [phone_reader_events("pr"), app_user_events("au")] {
        let resp =
            ureq::post(&format!("{}/v1/events", server.base)).send_json(json!({"events": events}));
        assert!(resp.is_ok(), "{resp:?}");
    }
    let pr_dom = render(&browser, &format!("{}/demo/?customer_id=pr", server.base));
    let au_dom = render(&browser, &format!("{}/demo/?customer_id=au", server.base));
    assert!(
        pr_dom.contains("data-state=\"ready\""),
        "the page did not finish:\n{pr_dom}"
    );
    let (pr, au) = (rendered_slots(&pr_dom), rendered_slots(&au_dom));
    assert_eq!(pr.len(), 3, "{pr_dom}");
    assert_eq!(au.len(), 3, "{au_dom}");
    assert_eq!(pr[0], ("hero".into(), "get_the_app".into()));
    assert_eq!(au[0], ("hero".into(), "open_in_app".into()));
    assert_eq!(pr[2].1, "category_shoes");
    assert_eq!(au[2].1, "category_garden");
    assert_ne!(pr, au, "two visitors, two pages");
}
