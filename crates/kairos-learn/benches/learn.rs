//! Learner hot paths and training time.
//!
//! `cargo bench -p kairos-learn` — profile update per event, posterior per
//! customer (with the built-in model's segments), and a full training run on
//! the check-in data (shared/data beside the repository).

use std::hint::black_box;
use std::io::Read;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kairos_core::{Event, RawEvent};
use kairos_learn::fit::{ActivityHistory, FitOptions, Observation};
use kairos_learn::{Attribution, ModelBundle, ProfileConfig, ProfileState};

const BUILTIN: &str = include_str!("../../../models/default/model.json");
const CHECKINS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/checkins-petaling-jaya.csv.gz"
);

fn event(i: usize, at: DateTime<Utc>) -> Event {
    Event::from_raw(
        RawEvent {
            event_id: Some(format!("e{i}")),
            customer_id: Some("bench".into()),
            kind: Some("app_open".into()),
            timestamp: Some(at.to_rfc3339()),
            ..RawEvent::default()
        },
        at + Duration::days(1),
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn profile_update(c: &mut Criterion) {
    let tz: Tz = "Asia/Kuala_Lumpur".parse().unwrap_or(Tz::UTC);
    let cfg = ProfileConfig::default();
    let base = DateTime::parse_from_rfc3339("2026-01-05T11:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let events: Vec<Event> = (0..1000)
        .map(|i| event(i, base + Duration::minutes(i as i64 * 97)))
        .collect();
    c.bench_function("profile_update_per_event", |b| {
        let mut p = ProfileState::default();
        let mut i = 0;
        b.iter(|| {
            p.observe(
                black_box(&events[i % events.len()]),
                tz,
                &cfg,
                Attribution::None,
            );
            i += 1;
        })
    });
}

fn posterior(c: &mut Criterion) {
    let bundle = ModelBundle::from_json(BUILTIN.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut pooled = bundle.activity.clone();
    pooled.params.day_pooling = 1.0;
    for (name, model) in [
        ("posterior_per_customer", &bundle.activity),
        ("posterior_per_customer_days_pooled", &pooled),
    ] {
        let mut group = c.benchmark_group(name);
        for events in [0usize, 10, 200] {
            let mut counts = vec![0.0f32; 168];
            for k in 0..events {
                counts[(k * 37) % 168] += 1.0;
            }
            group.bench_with_input(BenchmarkId::from_parameter(events), &counts, |b, counts| {
                b.iter(|| model.posterior(black_box(counts)))
            });
        }
        group.finish();
    }
}

/// What a campaign decision builds from a customer's posterior: the
/// quarter-hour masses (with the customer's own quarters of the day) and
/// the presence at a typical time for the default windows (1, 4 and 24 h).
fn quarter_mass(c: &mut Criterion) {
    let hours: Vec<f64> = (0..168)
        .map(|h| 1.0 + ((h * 37) % 11) as f64 + if h % 24 == 20 { 30.0 } else { 0.0 })
        .collect();
    let total: f64 = hours.iter().sum();
    let hours: Vec<f64> = hours.iter().map(|v| v / total).collect();
    let quarters: Vec<f32> = (0..96).map(|q| ((q * 7) % 5) as f32 * 0.3).collect();
    c.bench_function("quarter_mass_with_quarters", |b| {
        b.iter(|| {
            kairos_learn::activity::QuarterMass::with_quarters(
                black_box(&hours),
                black_box(&quarters),
            )
        })
    });
    let mass = kairos_learn::activity::QuarterMass::with_quarters(&hours, &quarters);
    let mut out = Vec::new();
    c.bench_function("typical_presences_1_4_24h", |b| {
        b.iter(|| {
            kairos_learn::exposure::typical_presences(
                black_box(&mass),
                &[4, 16, 96],
                5.0,
                &mut out,
            );
            out[2]
        })
    });
}

fn checkin_histories() -> Vec<ActivityHistory> {
    let mut text = String::new();
    let file = std::fs::File::open(CHECKINS).unwrap_or_else(|e| panic!("{CHECKINS}: {e}"));
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{e}"));
    let tz: Tz = "Asia/Kuala_Lumpur".parse().unwrap_or(Tz::UTC);
    let mut trails: std::collections::BTreeMap<&str, (&str, DateTime<Utc>)> = Default::default();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(';').collect();
        let at = DateTime::parse_from_rfc3339(cols[3])
            .map(|t| t.to_utc())
            .unwrap_or_default();
        let e = trails.entry(cols[0]).or_insert((cols[1], at));
        if at < e.1 {
            *e = (cols[1], at);
        }
    }
    let mut users: std::collections::BTreeMap<&str, Vec<Observation>> = Default::default();
    for (user, at) in trails.values() {
        users.entry(user).or_default().push(Observation {
            at: at.timestamp(),
            how: kairos_core::HourOfWeek::of(*at, tz).index() as u8,
        });
    }
    users.into_values().map(ActivityHistory::new).collect()
}

fn train(c: &mut Criterion) {
    let histories = checkin_histories();
    let mut group = c.benchmark_group("train_activity_checkins");
    group.sample_size(10);
    group.bench_function("fit_activity", |b| {
        b.iter(|| kairos_learn::fit::fit_activity(black_box(&histories), &FitOptions::default()))
    });
    group.finish();
}

criterion_group!(benches, profile_update, posterior, quarter_mass, train);
criterion_main!(benches);
