//! Training the activity model from customers' histories.
//!
//! Hyper-parameters are not set by hand: each customer's activity in the
//! week up to their most recent one (the last quarter of a shorter history)
//! is held out, and the parameters (decay half-life, kernel bandwidth, day
//! pooling, day sharing, prior strength, segment temperature, number of
//! segments) are chosen by coordinate ascent to maximize its likelihood
//! under the model built from everything before it. The population and the
//! segments are then refitted on the whole history.

use std::cell::OnceCell;

use kairos_core::HOURS_PER_WEEK;
use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::activity::{
    day_given_hour, day_likeness, describe, pool_days, smooth64, ActivityModel, ActivityParams,
    DayLikeness, Segment, DEFAULT_DAY_CONCENTRATION,
};
use crate::profile::decay_factor;
use crate::{LearnError, Result};

const H: usize = HOURS_PER_WEEK;

/// One organic activity: when (Unix seconds) and the local hour of week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Observation {
    pub at: i64,
    pub how: u8,
}

/// A customer's organic activity, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityHistory {
    pub observations: Vec<Observation>,
}

impl ActivityHistory {
    pub fn new(mut observations: Vec<Observation>) -> Self {
        observations.sort();
        Self { observations }
    }

    /// The organic activity among `events` (any order), local hours in `tz`.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a kairos_core::Event>,
        tz: chrono_tz::Tz,
    ) -> Self {
        Self::new(
            events
                .into_iter()
                .filter(|e| e.is_organic_activity())
                .map(|e| Observation {
                    at: e.timestamp.timestamp(),
                    how: kairos_core::HourOfWeek::of(e.timestamp, tz).index() as u8,
                })
                .collect(),
        )
    }

    /// Decayed counts per hour of week at the latest observation.
    pub fn counts(&self, half_life_days: f64) -> Vec<f64> {
        let mut c = vec![0.0; H];
        if let Some(last) = self.observations.last() {
            for o in &self.observations {
                c[o.how as usize] += decay_factor((last.at - o.at) as f64, half_life_days);
            }
        }
        c
    }

    /// Everything but the last observation, and the last one.
    pub fn split_last(&self) -> Option<(ActivityHistory, Observation)> {
        let (last, rest) = self.observations.split_last()?;
        Some((
            ActivityHistory {
                observations: rest.to_vec(),
            },
            *last,
        ))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Customers need this many observations to shape a segment.
    pub min_segment_events: usize,
    /// Candidate numbers of segments (0 = none).
    pub segment_counts: Vec<usize>,
    /// Share of the population mixed into each segment distribution.
    pub segment_floor: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            min_segment_events: 8,
            segment_counts: vec![0, 4, 8, 12],
            segment_floor: 0.2,
        }
    }
}

/// What training found, for the manifest and the logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub customers: usize,
    pub observations: usize,
    pub validation_customers: usize,
    /// Mean negative log-likelihood of the held-out activity under the
    /// chosen parameters, per held-out activity.
    pub validation_nll: f64,
    pub segments: usize,
    pub params: ActivityParams,
}

const HALF_LIVES: [f64; 8] = [7.0, 14.0, 30.0, 60.0, 120.0, 240.0, 480.0, 1e5];
const BANDWIDTHS: [f64; 7] = [0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0];
const DAY_POOLINGS: [f64; 4] = [0.0, 0.5, 1.0, 2.0];
const DAY_STRENGTHS: [f64; 10] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const STRENGTHS: [f64; 12] = [
    0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 18.0, 30.0, 50.0,
];
const TEMPERATURES: [f64; 8] = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0];

/// The population distribution: every customer with activity counts once.
pub fn fit_population(histories: &[ActivityHistory]) -> (Vec<f64>, u64) {
    let mut sum = vec![0.0; H];
    let mut customers = 0u64;
    for h in histories {
        let n = h.observations.len();
        if n == 0 {
            continue;
        }
        for o in &h.observations {
            sum[o.how as usize] += 1.0 / n as f64;
        }
        customers += 1;
    }
    let smoothed = smooth64(&sum, 1.0);
    let uniform = 1.0 / H as f64;
    let pop: Vec<f64> = smoothed
        .iter()
        .map(|s| (s + uniform) / (customers as f64 + 1.0))
        .collect();
    (pop, customers)
}

fn normalized_smoothed(h: &ActivityHistory, bandwidth: f64) -> Vec<f64> {
    let c = h.counts(1e5);
    let s = smooth64(&c, bandwidth);
    let t: f64 = s.iter().sum();
    s.into_iter()
        .map(|v| v / t.max(f64::MIN_POSITIVE))
        .collect()
}

/// k-means (linfa) over customers' normalized weeks, in Hellinger geometry.
pub fn fit_segments(
    histories: &[ActivityHistory],
    population: &[f64],
    k: usize,
    opts: &FitOptions,
) -> Result<Vec<Segment>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let eligible: Vec<Vec<f64>> = histories
        .iter()
        .filter(|h| h.observations.len() >= opts.min_segment_events)
        .map(|h| normalized_smoothed(h, 1.5))
        .collect();
    if eligible.len() < 5 * k {
        return Ok(Vec::new());
    }
    let rows = |customers: &[&Vec<f64>]| {
        let flat: Vec<f64> = customers
            .iter()
            .flat_map(|v| v.iter().map(|x| x.sqrt()))
            .collect();
        Array2::from_shape_vec((customers.len(), H), flat)
            .map_err(|e| LearnError::InvalidModel(e.to_string()))
    };
    // The centres from an even sample; every customer is then placed.
    let sample = every_kth(&eligible, MAX_KMEANS_CUSTOMERS);
    let dataset = DatasetBase::from(rows(&sample)?);
    let model = KMeans::params(k)
        .n_runs(3)
        .max_n_iterations(100)
        .tolerance(1e-5)
        .fit(&dataset)
        .map_err(|e| LearnError::InvalidModel(format!("k-means: {e}")))?;
    let all: Vec<&Vec<f64>> = eligible.iter().collect();
    let labels = model.predict(&rows(&all)?);
    let mut sums = vec![vec![0.0; H]; k];
    let mut sizes = vec![0u64; k];
    for (v, &l) in eligible.iter().zip(labels.iter()) {
        sizes[l] += 1;
        for (s, x) in sums[l].iter_mut().zip(v) {
            *s += x;
        }
    }
    let total = eligible.len() as f64;
    let mut segments: Vec<Segment> = sums
        .into_iter()
        .zip(sizes)
        .filter(|(_, n)| *n > 0)
        .map(|(sum, n)| {
            let week: Vec<f64> = sum
                .iter()
                .zip(population)
                .map(|(s, p)| (1.0 - opts.segment_floor) * s / n as f64 + opts.segment_floor * p)
                .collect();
            Segment::new(String::new(), describe(&week), n as f64 / total, n, week)
        })
        .collect();
    segments.sort_by_key(|s| std::cmp::Reverse(s.customers));
    label_uniquely(&mut segments);
    Ok(segments)
}

fn label_uniquely(segments: &mut [Segment]) {
    for i in 0..segments.len() {
        segments[i].id = format!("s{i}");
        let same = segments[..i]
            .iter()
            .filter(|s| s.label.starts_with(&segments[i].label))
            .count();
        if same > 0 {
            let peak = segments[i]
                .hour_of_week
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(h, _)| h);
            let how = kairos_core::HourOfWeek::wrapping(peak);
            segments[i].label = format!(
                "{} (peak {} {:02}:00)",
                segments[i].label,
                &how.weekday_name()[..3],
                how.hour_of_day()
            );
        }
    }
}

/// Customers the segments' k-means is fitted on (an even sample of the
/// eligible ones); all of them are then assigned to the nearest centre.
const MAX_KMEANS_CUSTOMERS: usize = 50_000;
/// Held-out customers the parameter search scores each candidate on (an even
/// sample): enough to tell candidates apart, and it keeps a training run over
/// a million customers from spending its time on the search.
const MAX_VALIDATION_CUSTOMERS: usize = 20_000;

/// Each held-out customer's activity in the week up to their last one is
/// held out (in the last quarter of their history if shorter, see
/// [`Split::leave_recent_out`]): decisions look up to a week ahead, and a
/// week of held-out activity per customer tells candidates apart with less
/// noise than the last activity alone (on simulated populations the search
/// then settles on the same parameters from one population to the next).
const HELD_OUT_SECONDS: i64 = 7 * 86_400;

/// At most `max` items of `items`, evenly spread, in order.
pub(crate) fn every_kth<T>(items: &[T], max: usize) -> Vec<&T> {
    let step = items.len().div_ceil(max.max(1)).max(1);
    items.iter().step_by(step).collect()
}

/// A held-out split: the histories without each held-out customer's recent
/// activity, and (customer index, held-out observation) pairs, grouped by
/// customer in customer order.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<ActivityHistory>,
    pub held_out: Vec<(usize, Observation)>,
}

impl Split {
    /// Holds out the last activity of customers with at least `min_events`.
    pub fn leave_last_out(histories: &[ActivityHistory], min_events: usize) -> Self {
        Self::leave_recent_out(histories, min_events, 0)
    }

    /// Holds out, of customers with at least `min_events`, their activity
    /// in the `seconds` before and at their last one, or in the last
    /// quarter of their history if that is shorter (at least the last one,
    /// and never all of it): what a model fitted on the rest should have
    /// expected over the following days. The quarter keeps a short history
    /// mostly for fitting, as decisions will read it whole.
    pub fn leave_recent_out(
        histories: &[ActivityHistory],
        min_events: usize,
        seconds: i64,
    ) -> Self {
        let mut train = Vec::with_capacity(histories.len());
        let mut held_out = Vec::new();
        for (i, h) in histories.iter().enumerate() {
            let obs = &h.observations;
            match (obs.first(), obs.last()) {
                (Some(first), Some(last)) if obs.len() >= min_events.max(2) => {
                    let span = seconds.min((last.at - first.at) / 4);
                    let cut = obs
                        .partition_point(|o| o.at <= last.at - span)
                        .clamp(1, obs.len() - 1);
                    train.push(ActivityHistory {
                        observations: obs[..cut].to_vec(),
                    });
                    held_out.extend(obs[cut..].iter().map(|o| (i, *o)));
                }
                _ => train.push(h.clone()),
            }
        }
        Self { train, held_out }
    }

    /// The split with at most `max` held-out customers, evenly spread (the
    /// others keep their whole history for fitting).
    pub fn at_most(self, max: usize, histories: &[ActivityHistory]) -> Self {
        let mut customers: Vec<usize> = self.held_out.iter().map(|(i, _)| *i).collect();
        customers.dedup();
        if customers.len() <= max {
            return self;
        }
        let kept: std::collections::HashSet<usize> =
            every_kth(&customers, max).into_iter().copied().collect();
        let mut train = self.train;
        for i in customers.iter().filter(|i| !kept.contains(i)) {
            train[*i] = histories[*i].clone();
        }
        Self {
            train,
            held_out: self
                .held_out
                .into_iter()
                .filter(|(i, _)| kept.contains(i))
                .collect(),
        }
    }

    /// The held-out customers, each with the range of their observations in
    /// `held_out`.
    fn customers(&self) -> Vec<(usize, std::ops::Range<usize>)> {
        let mut out: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        for (k, (i, _)) in self.held_out.iter().enumerate() {
            match out.last_mut() {
                Some((j, r)) if j == i => r.end = k + 1,
                _ => out.push((*i, k..k + 1)),
            }
        }
        out
    }
}

struct Objective<'a> {
    split: &'a Split,
    /// The held-out customers and their observations' range.
    customers: Vec<(usize, std::ops::Range<usize>)>,
    /// Counts per half-life candidate, for the held-out customers.
    counts: Vec<Vec<Vec<f64>>>,
    /// How alike each held-out customer's days are ([`day_likeness`]) at
    /// the concentration the search keeps, per half-life candidate,
    /// computed when first needed.
    likeness: Vec<OnceCell<Vec<DayLikeness>>>,
}

impl<'a> Objective<'a> {
    fn new(split: &'a Split) -> Self {
        let customers = split.customers();
        let counts = HALF_LIVES
            .iter()
            .map(|&hl| {
                customers
                    .iter()
                    .map(|(i, _)| split.train[*i].counts(hl))
                    .collect()
            })
            .collect();
        Self {
            split,
            customers,
            counts,
            likeness: HALF_LIVES.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    /// Mean held-out negative log-likelihood.
    fn nll(&self, model: &ActivityModel, half_life_index: usize) -> f64 {
        let g = model.params.day_pooling;
        let concentration = model.params.day_concentration;
        let counts = &self.counts[half_life_index];
        let cached = (g > 0.0 && concentration == DEFAULT_DAY_CONCENTRATION).then(|| {
            self.likeness[half_life_index].get_or_init(|| {
                counts
                    .iter()
                    .map(|c| day_likeness(c, concentration))
                    .collect()
            })
        });
        let mut total = 0.0;
        for (k, (c, (_, range))) in counts.iter().zip(&self.customers).enumerate() {
            let pooled = match cached {
                Some(l) => std::borrow::Cow::Owned(pool_days(c, &l[k], g)),
                None => model.pooled(c),
            };
            let p = model.posterior_pooled(c, &pooled, &[]).hour_of_week;
            for (_, obs) in &self.split.held_out[range.clone()] {
                total -= p[obs.how as usize].ln();
            }
        }
        total / self.split.held_out.len().max(1) as f64
    }
}

type Field = fn(&mut ActivityParams) -> &mut f64;

fn bandwidth(p: &mut ActivityParams) -> &mut f64 {
    &mut p.bandwidth_hours
}
fn day_strength(p: &mut ActivityParams) -> &mut f64 {
    &mut p.day_strength
}
fn day_pooling(p: &mut ActivityParams) -> &mut f64 {
    &mut p.day_pooling
}
fn prior_strength(p: &mut ActivityParams) -> &mut f64 {
    &mut p.prior_strength
}
fn temperature(p: &mut ActivityParams) -> &mut f64 {
    &mut p.segment_temperature
}

/// Fits the activity model to `histories`; see the module docs.
pub fn fit_activity(
    histories: &[ActivityHistory],
    opts: &FitOptions,
) -> Result<(ActivityModel, FitReport)> {
    let split = Split::leave_recent_out(histories, 2, HELD_OUT_SECONDS)
        .at_most(MAX_VALIDATION_CUSTOMERS, histories);
    let (population, customers) = fit_population(&split.train);
    let objective = Objective::new(&split);

    let mut best: Option<(f64, usize, ActivityParams, usize)> = None; // (nll, hl index, params, k)
    for &k in &opts.segment_counts {
        let segments = fit_segments(&split.train, &population, k, opts)?;
        if k > 0 && segments.is_empty() {
            continue;
        }
        let mut model = ActivityModel {
            params: ActivityParams {
                segment_temperature: if k > 0 { 0.5 } else { 0.0 },
                ..ActivityParams::default()
            },
            day_given_hour: day_given_hour(&population),
            population: population.clone(),
            customers,
            segments,
            trait_segments: Default::default(),
        };
        let mut hl = HALF_LIVES.iter().position(|&h| h == 60.0).unwrap_or(0);
        let mut current = objective.nll(&model, hl);
        for _round in 0..3 {
            let before = current;
            // Each coordinate in turn: keep the candidate with the lowest held-out NLL.
            for (i, _) in HALF_LIVES.iter().enumerate() {
                let v = objective.nll(&model, i);
                if v < current {
                    current = v;
                    hl = i;
                }
            }
            model.params.half_life_days = HALF_LIVES[hl];
            let mut coords: Vec<(&[f64], Field)> = vec![
                (&BANDWIDTHS, bandwidth),
                (&DAY_POOLINGS, day_pooling),
                (&DAY_STRENGTHS, day_strength),
                (&STRENGTHS, prior_strength),
            ];
            if k > 0 {
                coords.push((&TEMPERATURES, temperature));
            }

            for (grid, field) in coords {
                let mut best_v = *field(&mut model.params);
                for &v in grid {
                    let mut trial = model.clone();
                    *field(&mut trial.params) = v;
                    let score = objective.nll(&trial, hl);
                    if score < current {
                        current = score;
                        best_v = v;
                    }
                }
                *field(&mut model.params) = best_v;
            }
            if before - current < 1e-5 {
                break;
            }
        }
        if best.as_ref().is_none_or(|b| current < b.0) {
            best = Some((current, hl, model.params, k));
        }
    }
    let (validation_nll, _, params, k) =
        best.ok_or_else(|| LearnError::InvalidModel("no activity to train on".into()))?;

    // Refit the population and the segments on everything.
    let (population, customers) = fit_population(histories);
    let segments = fit_segments(histories, &population, k, opts)?;
    let model = ActivityModel {
        params: params.check()?,
        day_given_hour: day_given_hour(&population),
        population,
        customers,
        segments,
        trait_segments: Default::default(),
    }
    .validate()?;
    let report = FitReport {
        customers: histories
            .iter()
            .filter(|h| !h.observations.is_empty())
            .count(),
        observations: histories.iter().map(|h| h.observations.len()).sum(),
        validation_customers: objective.customers.len(),
        validation_nll,
        segments: model.segments.len(),
        params: model.params,
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(n: usize, how: u8) -> ActivityHistory {
        ActivityHistory::new(
            (0..n)
                .map(|k| Observation {
                    at: 3600 * k as i64,
                    how,
                })
                .collect(),
        )
    }

    #[test]
    fn every_kth_spreads_evenly_and_keeps_order() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(every_kth(&items, 3), vec![&0, &4, &8]);
        assert_eq!(every_kth(&items, 10).len(), 10);
        assert_eq!(every_kth(&items, 100).len(), 10);
        assert!(every_kth::<u32>(&[], 5).is_empty());
    }

    #[test]
    fn a_large_split_scores_on_a_sample_and_fits_on_the_rest() {
        // 10 customers with 3 activities each, one with a single activity.
        let mut histories: Vec<ActivityHistory> = (0..10).map(|i| history(3, i)).collect();
        histories.push(history(1, 99));
        let full = Split::leave_last_out(&histories, 2);
        assert_eq!(full.held_out.len(), 10);
        let small = Split::leave_last_out(&histories, 2).at_most(4, &histories);
        let kept: Vec<usize> = small.held_out.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, vec![0, 3, 6, 9]);
        for (i, h) in small.train.iter().enumerate() {
            let expected = if kept.contains(&i) {
                2
            } else {
                histories[i].observations.len()
            };
            assert_eq!(h.observations.len(), expected, "customer {i}");
        }
        // Below the limit, nothing changes.
        let same = Split::leave_last_out(&histories, 2).at_most(10, &histories);
        assert_eq!(same.held_out, full.held_out);
        assert_eq!(same.train, full.train);
    }

    #[test]
    fn a_recent_split_holds_out_the_last_week_or_quarter_of_each_history() {
        let day = 86_400;
        let at = |days: &[i64]| {
            ActivityHistory::new(
                days.iter()
                    .map(|&d| Observation {
                        at: d * day,
                        how: (d % 168) as u8,
                    })
                    .collect(),
            )
        };
        let histories = vec![
            // Over 28 days or more, the last week's activities.
            at(&[0, 3, 10, 22, 24, 30]),
            // Over 8 days, the last 2 (a quarter of the history).
            at(&[1, 2, 3, 6, 8, 9]),
            // A single activity: nothing to hold out.
            at(&[5]),
            // All at once: the last, and never all.
            at(&[4, 4, 4]),
            at(&[0, 28, 29]),
        ];
        let split = Split::leave_recent_out(&histories, 2, 7 * day);
        let held: Vec<(usize, i64)> = split
            .held_out
            .iter()
            .map(|(i, o)| (*i, o.at / day))
            .collect();
        assert_eq!(
            held,
            vec![(0, 24), (0, 30), (1, 8), (1, 9), (3, 4), (4, 28), (4, 29)]
        );
        let kept = |i: usize| -> Vec<i64> {
            split.train[i]
                .observations
                .iter()
                .map(|o| o.at / day)
                .collect()
        };
        assert_eq!(kept(0), vec![0, 3, 10, 22]);
        assert_eq!(kept(1), vec![1, 2, 3, 6]);
        assert_eq!(kept(2), vec![5]);
        assert_eq!(kept(3), vec![4, 4]);
        assert_eq!(kept(4), vec![0]);
        assert_eq!(
            split.customers(),
            vec![(0, 0..2), (1, 2..4), (3, 4..5), (4, 5..7)],
            "grouped by customer"
        );
        // A sample keeps whole customers; the others fit on everything.
        let small = split.at_most(2, &histories);
        let held: Vec<usize> = small.held_out.iter().map(|(i, _)| *i).collect();
        assert_eq!(held, vec![0, 0, 3]);
        assert_eq!(small.train[1].observations.len(), 6);
    }

    /// Customers who are around at one hour on weekdays and another at
    /// weekends, `weeks` weeks of it (a deterministic draw).
    fn weekday_and_weekend_customers(customers: usize, weeks: i64) -> Vec<ActivityHistory> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        (0..customers)
            .map(|_| {
                let weekday = 6 + next(16);
                let weekend = (weekday + 4 + next(12)) % 24;
                // The history ends on any day of its last week.
                let last_day = (weeks as u64 - 1) * 7 + next(7);
                let mut observations = Vec::new();
                for week in 0..weeks {
                    for day in 0..7u64 {
                        if week as u64 * 7 + day > last_day {
                            break;
                        }
                        let (mut hour, chance) = if day < 5 { (weekday, 5) } else { (weekend, 8) };
                        if next(10) == 0 {
                            hour = next(24); // now and then at another time
                        }
                        if next(10) < chance {
                            let how = day * 24 + hour;
                            observations.push(Observation {
                                at: week * 7 * 86_400 + how as i64 * 3600,
                                how: how as u8,
                            });
                        }
                    }
                }
                ActivityHistory::new(observations)
            })
            .collect()
    }

    #[test]
    fn training_pools_the_days_that_look_alike() {
        let histories = weekday_and_weekend_customers(300, 6);
        let opts = FitOptions {
            segment_counts: vec![0],
            ..FitOptions::default()
        };
        let (model, report) = fit_activity(&histories, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.params.day_pooling > 0.0, "{report:?}");
        // On the held-out activity, pooling beats the same model without it.
        let split = Split::leave_last_out(&histories, 2);
        let objective = Objective::new(&split);
        let hl = HALF_LIVES
            .iter()
            .position(|&h| h == model.params.half_life_days)
            .unwrap_or(0);
        let mut unpooled = model.clone();
        unpooled.params.day_pooling = 0.0;
        assert!(
            objective.nll(&model, hl) < objective.nll(&unpooled, hl) - 0.02,
            "{} against {}",
            objective.nll(&model, hl),
            objective.nll(&unpooled, hl)
        );
    }
}
