//! One decision in-process: 5 channels, a 7-day window (672 slots), quiet
//! hours, frequency caps with 8 weeks of sends, with and without a response
//! model; and decisions for 300 simulated customers in turn, each with
//! their own history (habits, zones, reachability, sends), as a campaign
//! meets them, first from what the server keeps for them and then from their
//! stored profiles (the posterior and the rest derived in the timed loop).
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
use kairos_learn::{
    BetaPrior, ChannelEstimate, ChannelStats, ModelBundle, ProfileConfig, ProfileState, QuarterMass,
};

const BUILTIN: &str = include_str!("../../../models/default/model.json");

/// The allocator of the kairos binary (`src/main.rs`): a decision allocates
/// its posterior, explanations and answer, and in-process decisions are
/// measured as the server makes them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let as_trained = trained.response.clone();
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

    // Every simulated customer in turn, as a campaign meets them: their own
    // profile from their history, posterior, sends and reachability, scored
    // by the trained response model; the processor cannot learn one
    // customer's branches.
    let cfg = ProfileConfig::default();
    let profiles: Vec<(ProfileState, [bool; 5], Tz)> = pop
        .customers
        .iter()
        .map(|c| {
            let events = by_customer
                .get(c.id.as_str())
                .map_or(&[][..], Vec::as_slice);
            (
                ProfileState::from_events(events, c.tz, &cfg).0,
                c.reachable,
                c.tz,
            )
        })
        .collect();
    // What a decision derives from a stored profile before it scores: the
    // posterior and its quarter-hour masses, the caps' sends, each
    // channel's rate.
    let derive = |(profile, reachable, tz): &(ProfileState, [bool; 5], Tz)| {
        let activity = trained.activity.posterior(&profile.activity);
        let mass = QuarterMass::with_quarters(&activity.hour_of_week, &profile.quarter_of_day);
        let mut caps = CapState::default();
        for (ch, stats) in Channel::ALL.iter().zip(&profile.channels) {
            caps.add_many(*ch, &stats.recent_sends);
        }
        let candidates = Channel::ALL
            .iter()
            .map(|&ch| Candidate {
                channel: ch,
                status: if reachable[ch.index()] {
                    ChannelStatus::Allowed
                } else {
                    ChannelStatus::Unreachable
                },
                estimate: ChannelEstimate::new(
                    &profile.channels[ch.index()],
                    trained.channels.get(ch),
                ),
            })
            .collect();
        Customer {
            tz: *tz,
            weekly_activity: profile.weekly_activity(cfg.half_life_days),
            days_since_active: profile
                .last_active_at
                .map_or(30.0, |l| (now - l).num_seconds().max(0) as f64 / 86_400.0),
            last_active_at: profile.last_active_at,
            sends_7d: caps.count_between(now - Duration::days(7), now) as f64,
            activity,
            mass,
            caps,
            candidates,
        }
    };
    let customers: Vec<Customer> = profiles.iter().map(derive).collect();
    let inputs: Vec<DecisionInput> = customers
        .iter()
        .map(|c| decision_input(c, now, window, as_trained.as_ref(), params.quiet_hours))
        .collect();
    let sends = inputs
        .iter()
        .filter(|i| decide(i, &params).channel.is_some())
        .count();
    assert!(
        sends * 2 > inputs.len(),
        "{sends} sends of {}",
        inputs.len()
    );
    let mut group = c.benchmark_group("decide_300_customers_in_turn");
    group.throughput(criterion::Throughput::Elements(inputs.len() as u64));
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(decide(black_box(input), &params));
            }
        })
    });
    group.throughput(criterion::Throughput::Elements(2 * inputs.len() as u64));
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            on_two_threads(&inputs, iters, |input| {
                black_box(decide(black_box(input), &params));
            })
        })
    });
    group.finish();

    // The same customers from their stored profiles: each decision first
    // derives what it scores with (as `derive` above), as the server does
    // for a customer it has not cached; only the store's IO and the answer's
    // JSON are left out.
    let decide_from = |p: &(ProfileState, [bool; 5], Tz)| {
        let c = derive(p);
        decide(
            &decision_input(&c, now, window, as_trained.as_ref(), params.quiet_hours),
            &params,
        )
    };
    let mut group = c.benchmark_group("decide_300_customers_from_profiles");
    group.throughput(criterion::Throughput::Elements(profiles.len() as u64));
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            for p in &profiles {
                black_box(decide_from(black_box(p)));
            }
        })
    });
    group.throughput(criterion::Throughput::Elements(2 * profiles.len() as u64));
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            on_two_threads(&profiles, iters, |p| {
                black_box(decide_from(black_box(p)));
            })
        })
    });
    group.finish();
}

/// A simulated customer as a decision reads them.
struct Customer {
    tz: Tz,
    weekly_activity: f64,
    days_since_active: f64,
    last_active_at: Option<DateTime<chrono::Utc>>,
    sends_7d: f64,
    activity: kairos_learn::ActivityPosterior,
    mass: QuarterMass,
    caps: CapState,
    candidates: Vec<Candidate>,
}

/// `iters` passes of `f` over every one of `items` on each of two threads,
/// the threads starting half the items apart; the time they took.
fn on_two_threads<T: Sync>(items: &[T], iters: u64, f: impl Fn(&T) + Sync) -> std::time::Duration {
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for half in [0, items.len() / 2] {
            let f = &f;
            s.spawn(move || {
                for _ in 0..iters {
                    for item in items[half..].iter().chain(&items[..half]) {
                        f(item);
                    }
                }
            });
        }
    });
    started.elapsed()
}

/// The decision input for a customer, with the request's instant, window
/// and quiet hours.
fn decision_input<'a>(
    c: &'a Customer,
    now: DateTime<chrono::Utc>,
    window: Window,
    response: Option<&'a kairos_learn::response::ResponseModel>,
    quiet_hours: Option<kairos_decide::QuietHours>,
) -> DecisionInput<'a> {
    DecisionInput {
        weekly_activity: c.weekly_activity,
        now,
        tz: c.tz,
        tz_assumed: false,
        window,
        candidates: c.candidates.clone(),
        activity: &c.activity,
        activity_mass: Some(&c.mass),
        prior_untrained: false,
        segment_label: None,
        response,
        days_since_active: c.days_since_active,
        sends_7d: c.sends_7d,
        cap_state: &c.caps,
        last_active_at: c.last_active_at,
        quiet_hours,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
