//! One decision in-process: 5 channels, a 7-day window (672 slots), quiet
//! hours, frequency caps with 8 weeks of sends, with and without a response model.
//!
//! `cargo bench -p kairos-decide`

use std::hint::black_box;

use chrono::{DateTime, Duration};
use chrono_tz::Tz;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kairos_core::Channel;
use kairos_decide::caps::CapState;
use kairos_decide::sim::{generate, SimConfig};
use kairos_decide::{
    decide, Candidate, ChannelStatus, DecideParams, DecisionInput, ResponseScorer, Window,
};
use kairos_learn::train::{TrainOptions, Trainer};
use kairos_learn::{BetaPrior, ChannelEstimate, ChannelStats, ModelBundle};

const BUILTIN: &str = include_str!("../../../models/default/model.json");

fn bench(c: &mut Criterion) {
    let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let builtin = ModelBundle::from_json(BUILTIN.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    // A response model trained on a simulated population.
    let pop = generate(&SimConfig {
        customers: 300,
        weeks: 8,
        seed: 1,
        end: now,
        sends_per_week: 2.0,
        id_offset: 0,
    });
    let mut trainer = Trainer::new();
    let opts = TrainOptions::default();
    let mut by_customer: std::collections::BTreeMap<&str, Vec<kairos_core::Event>> =
        Default::default();
    for e in &pop.events {
        by_customer
            .entry(e.customer_id.as_str())
            .or_default()
            .push(e.clone());
    }
    for (c, events) in &by_customer {
        let tz = pop
            .customers
            .iter()
            .find(|x| x.id == *c)
            .map_or(Tz::UTC, |x| x.tz);
        trainer.add(tz, events, &opts);
    }
    let trained = trainer
        .finish(now, "bench".into(), "simulation".into(), &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(trained.response.is_some());

    let params = DecideParams::default()
        .check()
        .unwrap_or_else(|e| panic!("{e}"));
    let logistic = DecideParams {
        scorer: ResponseScorer::Logistic,
        ..DecideParams::default()
    }
    .check()
    .unwrap_or_else(|e| panic!("{e}"));
    let tz: Tz = "America/New_York".parse().unwrap_or(Tz::UTC);
    let mut counts = vec![0.0f32; 168];
    for k in 0..60 {
        counts[(19 + 24 * (k % 5)) % 168] += 1.0;
    }
    let posterior = builtin.activity.posterior(&counts);
    let stats = ChannelStats {
        sends: 10.0,
        engagements: 3.0,
        ..ChannelStats::default()
    };
    let candidates: Vec<Candidate> = Channel::ALL
        .iter()
        .map(|&ch| Candidate {
            channel: ch,
            status: ChannelStatus::Allowed,
            estimate: ChannelEstimate::new(&stats, BetaPrior::from_mean(0.15, 4.0)),
        })
        .collect();
    // 5 recent sends, and 8 weeks of older ones: 2 a week on every channel.
    let mut caps = CapState::default();
    for d in 1..6 {
        caps.add(Channel::ALL[d % 5], now - Duration::hours(30 * d as i64));
    }
    for ch in Channel::ALL {
        for k in 0..15 {
            caps.add(
                ch,
                now - Duration::hours(8 * 24 + 84 * k + 7 * ch.index() as i64),
            );
        }
    }
    // The costlier form of the exposure scoring: each channel's past sends
    // read for their presence.
    let mut trained = trained;
    if let Some(e) = trained.response.as_mut().and_then(|r| r.exposure.as_mut()) {
        e.sends_at_typical = true;
    }
    let window = Window::new(None, Some(now + Duration::days(7)), now, &params)
        .unwrap_or_else(|e| panic!("{e}"));

    let mut group = c.benchmark_group("decide_one_customer_7_days_5_channels");
    let mut inputs = Vec::new();
    for (name, response, params) in [
        ("lift_formula", None, &params),
        ("response_exposure", trained.response.as_ref(), &params),
        ("response_logistic", trained.response.as_ref(), &logistic),
    ] {
        let input = DecisionInput {
            weekly_activity: 4.0,
            now,
            tz,
            tz_assumed: false,
            window,
            candidates: candidates.clone(),
            activity: &posterior,
            activity_mass: None,
            prior_untrained: false,
            segment_label: None,
            response,
            days_since_active: 1.0,
            sends_7d: 3.0,
            cap_state: &caps,
            last_active_at: None,
            quiet_hours: params.quiet_hours,
        };
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| decide(black_box(input), params))
        });
        inputs.push((name, input, params));
    }
    // The same decision over a window of one slot: what a decision costs
    // besides scanning slots (explanations, the caps' preparation, prefix sums).
    let one_slot = Window::new(None, Some(now), now, &params).unwrap_or_else(|e| panic!("{e}"));
    for (name, input, params) in &inputs {
        let input = DecisionInput {
            weekly_activity: 4.0,
            window: one_slot,
            quiet_hours: None,
            ..input.clone()
        };
        group.bench_with_input(BenchmarkId::new("one_slot", name), &input, |b, input| {
            b.iter(|| decide(black_box(input), params))
        });
    }
    group.finish();

    // Throughput on both cores: two threads deciding side by side.
    let mut group = c.benchmark_group("decide_two_threads");
    group.throughput(criterion::Throughput::Elements(2));
    for (name, input, params) in &inputs {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let started = std::time::Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            for _ in 0..iters {
                                black_box(decide(black_box(input), params));
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
