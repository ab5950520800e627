//! Decisions over HTTP for a simulated population, scored against its hidden truth.

use std::collections::HashMap;

use chrono::Duration;
use kairos_core::Channel;
use kairos_decide::sim::{
    baselines, generate, informed_ceiling, score_policies, PolicyScore, SimConfig,
};
use serde_json::{json, Value};

use crate::support::*;

/// Each population's expected engagements per policy (the oracle first), for
/// `customers` customers drawn with `seed`, with `weeks` weeks of history.
async fn score_population(seed: u64, customers: usize, weeks: u32) -> Vec<PolicyScore> {
    // The oracle knows no caps: compare without them.
    let t = app_with(&[
        ("KAIROS__MODELS__BUILTIN", "false"),
        ("KAIROS__DECIDE__CAPS", "{}"),
    ])
    .await;
    let cfg = SimConfig {
        customers,
        weeks,
        seed,
        end: now(),
        sends_per_week: 2.0,
        id_offset: 0,
    };
    let pop = generate(&cfg);
    for c in &pop.customers {
        let (s, body) = call(
            &t.app,
            put(&format!("/v1/customers/{}", c.id), &c.attributes()),
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    for chunk in pop.events.chunks(5000) {
        let (s, body) = call(&t.app, post("/v1/events", &json!({"events": chunk}))).await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, summary) = call(&t.app, post("/v1/admin/train", &json!({}))).await;
    assert_eq!(s, 200, "{summary}");
    let calibration = &summary["response"];
    assert!(
        calibration.is_object(),
        "a response model is trained on the logged sends: {summary}"
    );
    assert!(
        calibration["log_loss"].as_f64() < calibration["log_loss_base_rate"].as_f64(),
        "it predicts held-out sends better than the base rate: {calibration}"
    );
    let exposure = &summary["exposure"]["calibration"];
    assert!(
        exposure["log_loss"].as_f64() < exposure["log_loss_base_rate"].as_f64(),
        "so does its exposure form, which scores the slots: {summary}"
    );

    let (from, to) = (now(), now() + Duration::days(7));
    let mut kairos: HashMap<usize, (Channel, chrono::DateTime<chrono::Utc>)> = HashMap::new();
    for (i, c) in pop.customers.iter().enumerate() {
        let (s, d) = call(
            &t.app,
            post(
                "/v1/decisions",
                &json!({
                    "customer_id": c.id, "quiet_hours": null, "deadline": to.to_rfc3339(),
                }),
            ),
        )
        .await;
        assert_eq!(s, 200, "{d}");
        if d["action"] == "send" {
            let ch: Channel = serde_json::from_value(d["channel"].clone()).unwrap_or(Channel::Web);
            kairos.insert(i, (ch, utc(d["send_at"].as_str().unwrap_or_default())));
        } else {
            assert!(
                !c.reachable.iter().any(|r| *r),
                "suppressed a reachable customer: {d}"
            );
        }
    }
    let mut policies = baselines(&pop, from, to, 5);
    policies.insert(0, informed_ceiling(&pop, from, to));
    policies.insert(
        0,
        (
            "kairos".to_string(),
            Box::new(move |i, _| kairos.get(&i).copied()),
        ),
    );
    let scores = score_policies(&pop, from, to, policies);
    for s in &scores {
        report(&format!("seed {seed}"), s, scores[0].expected_engagements);
    }
    scores
}

/// A policy's share of the oracle, and where it lost the rest.
fn report(label: &str, s: &PolicyScore, oracle: f64) {
    eprintln!("{label:<8} {}", s.line(oracle));
}

/// The populations' scores pooled per policy, printed as a table.
fn pool(populations: &[Vec<PolicyScore>]) -> Vec<PolicyScore> {
    let oracle: f64 = populations.iter().map(|p| p[0].expected_engagements).sum();
    let mut pooled: Vec<PolicyScore> = populations[0]
        .iter()
        .map(|s| PolicyScore {
            policy: s.policy.clone(),
            ..PolicyScore::default()
        })
        .collect();
    for population in populations {
        for (p, s) in pooled.iter_mut().zip(population) {
            assert_eq!(p.policy, s.policy);
            p.pool(s, oracle);
        }
    }
    eprintln!("{:<8} {}", "", PolicyScore::header());
    for s in &pooled {
        report("pooled", s, oracle);
    }
    pooled
}

/// A policy's pooled share of the oracle.
fn share(scores: &[PolicyScore], name: &str) -> f64 {
    scores
        .iter()
        .find(|s| s.policy == name)
        .map_or(0.0, |s| s.share_of_oracle)
}

#[actix_web::test]
async fn decisions_reach_most_of_the_oracle() {
    // Three populations of 300, pooled: on one alone, equally good policies
    // differ by a point or two from the luck of the draw.
    let mut populations = Vec::new();
    for seed in [11, 12, 13] {
        populations.push(score_population(seed, 300, 8).await);
    }
    let scores = pool(&populations);
    let share = |name: &str| share(&scores, name);
    // The target is 90% of the oracle, for the expected engagement: it is
    // checked where the draw's luck averages out, over 23 populations, by
    // `decisions_across_many_populations` (which CI runs in release). On
    // three populations alone a policy's share moves by a point either way:
    // here Kairos reaches 89.9% (89.4, 89.4 and 91.0% per population). The
    // oracle knows each customer's hidden rates, which about 16 logged sends
    // per channel cannot pin down: a policy that knows the hidden timing
    // exactly and infers the rates optimally reaches 91.7% here (91.3-92.2%
    // per population). This test holds Kairos to a point below the target,
    // and to nearly all of that ceiling.
    assert!(
        share("kairos") >= 0.89,
        "Kairos reached {:.1}% of the oracle",
        100.0 * share("kairos")
    );
    assert!(share("kairos") > share("random channel and time"));
    assert!(share("kairos") > share("10:00 local for everyone"));
    assert!(share("kairos") > share("most frequent hour"));
    let kairos = &scores[1];
    assert_eq!(kairos.policy, "kairos");
    assert_eq!(
        kairos.lost_unsent, 0.0,
        "every reachable customer gets a send"
    );
    let ceiling = share("known timing, inferred rates");
    assert!(
        share("kairos") >= 0.97 * ceiling,
        "Kairos reached {:.1}% of the oracle, the informed ceiling {:.1}%",
        100.0 * share("kairos"),
        100.0 * ceiling
    );
}

/// The populations of the many-population evaluation: 23 draws of 300 to
/// 600 customers (11,200 in all), or `KAIROS_SIM_POPULATIONS` as
/// `seed:customers,...`.
fn many_populations() -> Vec<(u64, usize)> {
    let spec = std::env::var("KAIROS_SIM_POPULATIONS").unwrap_or_else(|_| {
        let mut p = vec!["11:300".to_string(), "12:300".into(), "13:300".into()];
        p.extend((21..=26).map(|s| format!("{s}:500")));
        p.extend((1..=4).map(|s| format!("{s}:600")));
        p.extend((31..=40).map(|s| format!("{s}:500")));
        p.join(",")
    });
    spec.split(',')
        .map(|p| {
            p.trim()
                .split_once(':')
                .and_then(|(s, n)| Some((s.parse().ok()?, n.parse().ok()?)))
                .unwrap_or_else(|| panic!("KAIROS_SIM_POPULATIONS: {p:?} is not seed:customers"))
        })
        .collect()
}

/// A 95% interval for a policy's pooled share of the oracle, from 2,000
/// bootstrap resamples of the populations (deterministic): how far the
/// pooled share could move on another draw of as many populations.
fn interval(populations: &[Vec<PolicyScore>], policy: &str) -> (f64, f64) {
    let pairs: Vec<(f64, f64)> = populations
        .iter()
        .map(|p| {
            let of = |name: &str| {
                p.iter()
                    .find(|s| s.policy == name)
                    .map_or(0.0, |s| s.expected_engagements)
            };
            (of(policy), p[0].expected_engagements)
        })
        .collect();
    // SplitMix64: enough for picking populations, and the same every run.
    let mut state = 0x4b61_6972_6f73_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let n = pairs.len();
    let mut shares: Vec<f64> = (0..2000)
        .map(|_| {
            let (got, oracle) = (0..n).fold((0.0, 0.0), |(g, o), _| {
                let (a, b) = pairs[(next() % n as u64) as usize];
                (g + a, o + b)
            });
            got / oracle
        })
        .collect();
    shares.sort_by(f64::total_cmp);
    (shares[50], shares[1949])
}

/// The decision-quality target over many populations (three or four
/// minutes on two cores): `cargo test --release --test integration
/// many_populations -- --ignored --nocapture`. It prints each population's
/// table, the pooled one and a bootstrap interval for the pooled shares, and
/// holds Kairos to the target on the default 23 populations (11,200
/// customers): at least 90% of the oracle's expected engagement. Kairos
/// reaches 90.4% there (95% interval over the populations 90.0-90.7%), and
/// the reference that knows the hidden timing 91.8%; over 60 other
/// populations of 500 (seeds 100 to 159), 90.1% (89.8-90.3%) and 91.4%.
/// `KAIROS_SIM_POPULATIONS=seed:customers,...` picks other populations,
/// `KAIROS_SIM_WEEKS` a longer or shorter history than 8 weeks.
#[actix_web::test]
#[ignore = "minutes long: the many-population evaluation"]
async fn decisions_across_many_populations() {
    let weeks = std::env::var("KAIROS_SIM_WEEKS").map_or(8, |w| {
        w.parse()
            .unwrap_or_else(|_| panic!("KAIROS_SIM_WEEKS: {w:?} is not a number of weeks"))
    });
    let mut populations = Vec::new();
    for (seed, customers) in many_populations() {
        populations.push(score_population(seed, customers, weeks).await);
    }
    let scores = pool(&populations);
    for policy in ["kairos", "known timing, inferred rates"] {
        let (lo, hi) = interval(&populations, policy);
        eprintln!(
            "{policy}: {:.1}% of the oracle, 95% interval over these populations {:.1}-{:.1}%",
            100.0 * share(&scores, policy),
            100.0 * lo,
            100.0 * hi
        );
        let pooled = share(&scores, policy);
        assert!(
            lo - 1e-9 <= pooled && pooled <= hi + 1e-9,
            "{lo} {pooled} {hi}"
        );
    }
    let share = |name: &str| share(&scores, name);
    // Other populations, or another history length, have their own level:
    // the target is held on the default ones.
    let default_set = std::env::var_os("KAIROS_SIM_POPULATIONS").is_none() && weeks == 8;
    let floor = if default_set { 0.90 } else { 0.85 };
    assert!(
        share("kairos") >= floor,
        "Kairos reached {:.1}% of the oracle",
        100.0 * share("kairos")
    );
    assert!(share("kairos") > share("most frequent hour") + 0.3);
    assert!(share("known timing, inferred rates") >= share("kairos"));
}

/// The README's demo as a user runs it: `kairos serve` on a socket, then
/// `kairos simulate --server URL --train --score` loads several hundred
/// customers with 8 weeks of history, trains, asks for the whole
/// population's decisions in one batch and prints the scores. The history
/// ends when the test runs, so the draw's luck differs from run to run; the
/// 90% target is held where that averages out, over the 23 populations of
/// `decisions_across_many_populations`.
#[test]
fn simulate_scores_a_running_server() {
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut serve = Command::new(env!("CARGO_BIN_EXE_kairos"));
    // The oracle knows no caps: compare without them, as the README says.
    serve
        .env("KAIROS__DECIDE__CAPS", "{}")
        .env("KAIROS__MODELS__BUILTIN", "false");
    let server = crate::durability::Server::start_with(dir.path(), serve);
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args([
            "simulate",
            "--customers",
            "400",
            "--seed",
            "7",
            "--train",
            "--score",
        ])
        .args(["--server", &server.base])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run kairos simulate: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    // One row per policy: its share of the oracle and what it lost to
    // timing, channel and customers left without a send, in percent.
    let row = |policy: &str| -> [f64; 4] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(policy))
            .unwrap_or_else(|| panic!("no row for {policy:?} in\n{stdout}"));
        let numbers: Vec<f64> = line[policy.len()..]
            .split_whitespace()
            .filter_map(|w| w.strip_suffix('%')?.parse().ok())
            .collect();
        numbers
            .try_into()
            .unwrap_or_else(|n| panic!("{policy}: {n:?} in {line:?}"))
    };
    let kairos = row("kairos");
    assert!(
        (kairos[0] + kairos[1] + kairos[2] + kairos[3] - 100.0).abs() < 0.3,
        "the share and the losses add up to the oracle: {kairos:?}"
    );
    assert_eq!(
        kairos[3], 0.0,
        "every reachable customer gets a send:\n{stdout}"
    );
    // On one population the share moves by a few points with the draw:
    // 87.8-92.2% on the 60 populations of 500 named in the docs of
    // `decisions_across_many_populations`, 0.3 above to 2.7 below the
    // reference that knows the hidden timing (up to 3.6 below on this
    // population of 400, whose draw changes with the time of the run).
    assert!(kairos[0] >= 82.0, "{stdout}");
    let ceiling = row("known timing, inferred rates")[0];
    assert!(kairos[0] >= ceiling - 6.0, "{stdout}");
    for baseline in [
        "random channel and time",
        "10:00 local for everyone",
        "most frequent hour",
    ] {
        assert!(kairos[0] > row(baseline)[0] + 20.0, "{baseline}:\n{stdout}");
    }
}

/// `kairos simulate --data DIR` writes each customer's attributes before
/// its events: the zones are set, and the events were counted in them (a
/// zone changed away and back recomputes the same profile).
#[test]
fn simulate_loads_a_data_directory_with_attributes() {
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["simulate", "--customers", "40", "--weeks", "2", "--data"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run kairos simulate: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = crate::durability::Server::start_with(
        dir.path(),
        Command::new(env!("CARGO_BIN_EXE_kairos")),
    );
    let get = |id: &str| -> Value {
        let mut resp = ureq::get(&format!("{}/v1/customers/{id}", server.base))
            .call()
            .unwrap_or_else(|e| panic!("GET {id}: {e}"));
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let put = |id: &str, body: Value| {
        ureq::put(&format!("{}/v1/customers/{id}", server.base))
            .send_json(&body)
            .unwrap_or_else(|e| panic!("PUT {id}: {e}"));
    };
    let customers: Vec<Value> = (0..40).map(|i| get(&format!("sim-{i:05}"))).collect();
    let zones: std::collections::BTreeSet<&str> = customers
        .iter()
        .filter_map(|c| c["timezone"].as_str())
        .collect();
    assert_eq!(
        customers
            .iter()
            .filter(|c| c["timezone"].is_string())
            .count(),
        40,
        "every customer has a zone"
    );
    assert!(zones.len() >= 4, "several zones: {zones:?}");
    for c in &customers {
        let channels = c["channels"].as_object().map(|m| m.len());
        assert_eq!(
            channels,
            Some(5),
            "reachability and consent per channel: {c}"
        );
    }
    let (id, zone, before) = customers
        .iter()
        .find_map(|c| {
            let zone = c["timezone"].as_str()?;
            let events = c["profile"]["events"].as_u64()?;
            // London keeps UTC's offset in winter: counted the same in both.
            let shifted = !matches!(zone, "UTC" | "Europe/London");
            (shifted && events > 0).then(|| {
                (
                    c["customer_id"].as_str().unwrap_or_default().to_string(),
                    zone.to_string(),
                    c["profile"]["activity"]["hour_of_week"].clone(),
                )
            })
        })
        .unwrap_or_else(|| panic!("no customer with events outside UTC"));
    put(&id, json!({"timezone": "UTC"}));
    assert_ne!(
        get(&id)["profile"]["activity"]["hour_of_week"],
        before,
        "{id}: counted again in UTC"
    );
    put(&id, json!({"timezone": zone}));
    assert_eq!(
        get(&id)["profile"]["activity"]["hour_of_week"],
        before,
        "{id}: counted in {zone} when loaded"
    );
}
