//! The activity model: where in the local week a customer is likely to be
//! active next.
//!
//! For a customer with decayed counts `c` over the 168 local hours of the
//! week (total `n`), the posterior predictive distribution is
//!
//! ```text
//! m = n · (c + γ·u) / (n + γ)
//! p = ( K ⊛ m + α·π ) / (n + α)
//! ```
//!
//! - `u` is the customer's own hour-of-day profile spread over the seven days
//!   in the population's proportions for each hour (sums to 1), so a habit seen
//!   on Mondays lends weight to the same hour on other days; `γ` (in events)
//!   says how much: a newcomer's few events are mostly shared across days,
//!   while a long, day-specific history keeps its own days;
//! - `K ⊛` is a circular Gaussian kernel over neighbouring hours (bandwidth σ);
//! - `π` is the customer's prior: a mixture of segment distributions `π_k`
//!   with responsibilities `r_k ∝ ρ_k · exp(τ · Σ_h c_h ln π_k(h))`, i.e. the
//!   segments that explain the customer's own history best weigh most (τ = 0:
//!   every customer gets the population's mixture);
//! - `α` is the prior strength in events.
//!
//! σ, γ, α, τ and the decay half-life are fitted by [`crate::fit`] to maximize
//! the held-out likelihood of each customer's activity in the week up to
//! their most recent one.

use kairos_core::{HOURS_PER_WEEK, QUARTERS_PER_DAY};
use serde::{Deserialize, Serialize};

use crate::posterior::{ActivityPosterior, Basis};
use crate::stats::ln_gamma;
use crate::{LearnError, Result};

const H: usize = HOURS_PER_WEEK;

/// Fitted (or configured) parameters of the activity model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityParams {
    /// Half-life of the weight of past activity, in days.
    pub half_life_days: f64,
    /// Standard deviation of the hour kernel, in hours.
    pub bandwidth_hours: f64,
    /// Weight, in events, of the customer's hour-of-day profile spread over
    /// all days (0: no sharing between days).
    pub day_strength: f64,
    /// How much each of the customer's days borrows from their days that
    /// look alike ([`day_likeness`]): 0 not at all, 1 alike days pooled as
    /// one. Models trained before it existed have 0.
    #[serde(default)]
    pub day_pooling: f64,
    /// How far one of a customer's days may stray from their usual hours
    /// and still look like another ([`day_likeness`]): the concentration,
    /// in events, of the Dirichlet prior on a day's hours around the
    /// customer's hour-of-day profile. Small values tell days apart after
    /// fewer events. Not searched by training: held out one activity per
    /// customer, populations of a few hundred choose it by noise (on
    /// simulated ones a fitted value did worse than either 1 or 5), and 1
    /// did as well as the best fitted value on the check-in data.
    #[serde(default = "default_day_concentration")]
    pub day_concentration: f64,
    /// Weight of the prior, in events.
    pub prior_strength: f64,
    /// How strongly a customer's own history picks their segment (0 = not at all).
    pub segment_temperature: f64,
}

impl Default for ActivityParams {
    fn default() -> Self {
        Self {
            half_life_days: 60.0,
            bandwidth_hours: 1.0,
            day_strength: 0.0,
            day_pooling: 0.0,
            day_concentration: DEFAULT_DAY_CONCENTRATION,
            prior_strength: 10.0,
            segment_temperature: 0.0,
        }
    }
}

/// [`ActivityParams::day_concentration`]: training keeps it (see there).
pub const DEFAULT_DAY_CONCENTRATION: f64 = 1.0;

fn default_day_concentration() -> f64 {
    DEFAULT_DAY_CONCENTRATION
}

impl ActivityParams {
    pub fn check(self) -> Result<Self> {
        let bad = |name: &'static str, v: f64| LearnError::InvalidParam {
            name,
            reason: format!("{v} is out of range"),
        };
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !pos(self.half_life_days) || self.half_life_days > 1e6 {
            return Err(bad("half_life_days", self.half_life_days));
        }
        if !pos(self.bandwidth_hours) || self.bandwidth_hours > 24.0 {
            return Err(bad("bandwidth_hours", self.bandwidth_hours));
        }
        if !(self.day_strength.is_finite() && (0.0..=1e6).contains(&self.day_strength)) {
            return Err(bad("day_strength", self.day_strength));
        }
        if !(self.day_pooling.is_finite() && (0.0..=100.0).contains(&self.day_pooling)) {
            return Err(bad("day_pooling", self.day_pooling));
        }
        if !pos(self.day_concentration) || self.day_concentration > 1e4 {
            return Err(bad("day_concentration", self.day_concentration));
        }
        if !pos(self.prior_strength) || self.prior_strength > 1e6 {
            return Err(bad("prior_strength", self.prior_strength));
        }
        if !(0.0..=10.0).contains(&self.segment_temperature) {
            return Err(bad("segment_temperature", self.segment_temperature));
        }
        Ok(self)
    }
}

/// A group of customers with a similar week, and its distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: String,
    /// "weekday evenings", "weekend afternoons", ...
    pub label: String,
    /// Share of the customers it was fitted on.
    pub weight: f64,
    pub customers: u64,
    /// 168 probabilities summing to 1. A segment does not change once
    /// fitted: its logarithms are kept after their first use.
    pub hour_of_week: Vec<f64>,
    #[serde(skip)]
    pub(crate) ln_hour_of_week: LnCache,
}

impl Segment {
    pub fn new(
        id: String,
        label: String,
        weight: f64,
        customers: u64,
        hour_of_week: Vec<f64>,
    ) -> Self {
        Self {
            id,
            label,
            weight,
            customers,
            hour_of_week,
            ln_hour_of_week: LnCache::default(),
        }
    }

    /// `ln` of each hour's probability: every decision places its customer
    /// among the segments by these, so each segment takes them once.
    fn ln_hour_of_week(&self) -> &[f64] {
        self.ln_hour_of_week
            .0
            .get_or_init(|| self.hour_of_week.iter().map(|p| p.ln()).collect())
    }
}

/// Values derived from a segment's distribution, computed once; never part
/// of its identity (equal segments are equal whether computed or not).
#[derive(Debug, Clone, Default)]
pub(crate) struct LnCache(std::sync::OnceLock<Vec<f64>>);

impl PartialEq for LnCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityModel {
    pub params: ActivityParams,
    /// Where customers in general are active: 168 probabilities summing to 1.
    pub population: Vec<f64>,
    /// Customers the population was fitted on (0: not fitted, uniform).
    pub customers: u64,
    /// P(day | hour of day) in the population, indexed like the week (168).
    pub day_given_hour: Vec<f64>,
    pub segments: Vec<Segment>,
    /// For customer traits ("plan=gold"), how the customers with them spread
    /// over the segments: places customers without history in a segment.
    #[serde(default)]
    pub trait_segments: std::collections::BTreeMap<String, Vec<f64>>,
}

/// Pseudo-customers of the segment sizes added to each trait's counts.
const TRAIT_SMOOTHING: f64 = 5.0;

/// The "key=value" pairs of a customer's traits that can place them in a
/// segment: strings, booleans and integers.
pub fn trait_pairs(traits: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    traits
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) if s.len() <= 64 => Some(format!("{k}={s}")),
            serde_json::Value::Bool(b) => Some(format!("{k}={b}")),
            serde_json::Value::Number(n) if n.is_i64() => Some(format!("{k}={n}")),
            _ => None,
        })
        .collect()
}

/// How a customer relates to the segments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentMatch {
    pub index: usize,
    pub probability: f64,
}

impl ActivityModel {
    /// The model before any training: a flat population, no segments.
    pub fn untrained(params: ActivityParams) -> Self {
        let population = vec![1.0 / H as f64; H];
        Self {
            params,
            day_given_hour: day_given_hour(&population),
            population,
            customers: 0,
            segments: Vec::new(),
            trait_segments: Default::default(),
        }
    }

    pub fn is_trained(&self) -> bool {
        self.customers > 0
    }

    /// Checks a loaded model.
    pub fn validate(self) -> Result<Self> {
        self.params.check()?;
        let proper = |v: &[f64]| {
            v.len() == H
                && v.iter().all(|p| p.is_finite() && *p > 0.0)
                && (v.iter().sum::<f64>() - 1.0).abs() < 1e-6
        };
        if !proper(&self.population) || self.day_given_hour.len() != H {
            return Err(LearnError::InvalidModel(
                "population must be 168 positive probabilities summing to 1".into(),
            ));
        }
        for s in &self.segments {
            if !proper(&s.hour_of_week) {
                return Err(LearnError::InvalidModel(format!(
                    "segment {} must be 168 positive probabilities summing to 1",
                    s.id
                )));
            }
        }
        Ok(self)
    }

    /// Responsibilities of the segments for counts `c` (sum to 1), or empty
    /// without segments.
    pub fn responsibilities(&self, c: &[f64]) -> Vec<f64> {
        if self.segments.is_empty() {
            return Vec::new();
        }
        let tau = self.params.segment_temperature;
        // The hours with activity, once for all segments.
        let active: Vec<(usize, f64)> = if tau > 0.0 {
            c.iter()
                .copied()
                .enumerate()
                .filter(|(_, c)| *c > 0.0)
                .collect()
        } else {
            Vec::new()
        };
        let logs: Vec<f64> = self
            .segments
            .iter()
            .map(|s| {
                let ln_p = s.ln_hour_of_week();
                let ll: f64 = active
                    .iter()
                    .map(|&(h, c)| ln_p.get(h).map_or(0.0, |l| c * l))
                    .sum();
                s.weight.max(1e-12).ln() + tau * ll
            })
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    }

    /// Segment responsibilities of a customer without history, from their
    /// trait pairs: `r_k ∝ ρ_k · Π_pairs P(k | pair) / ρ_k`.
    pub fn responsibilities_from_traits(&self, pairs: &[String]) -> Option<Vec<f64>> {
        let rows: Vec<&Vec<f64>> = pairs
            .iter()
            .filter_map(|p| self.trait_segments.get(p))
            .collect();
        if rows.is_empty() || self.segments.is_empty() {
            return None;
        }
        let mut logs: Vec<f64> = self
            .segments
            .iter()
            .map(|s| s.weight.max(1e-12).ln())
            .collect();
        for row in rows {
            let total: f64 = row.iter().sum();
            for ((l, s), count) in logs.iter_mut().zip(&self.segments).zip(row) {
                let rho = s.weight.max(1e-12);
                let p = (count + TRAIT_SMOOTHING * rho) / (total + TRAIT_SMOOTHING);
                *l += p.ln() - rho.ln();
            }
        }
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
        let sum: f64 = w.iter().sum();
        Some(w.into_iter().map(|x| x / sum).collect())
    }

    /// The prior for counts `c`: the responsibility-weighted segment mixture,
    /// or the population without segments.
    pub fn prior(&self, c: &[f64]) -> (Vec<f64>, Option<SegmentMatch>) {
        self.prior_with(c, &[])
    }

    /// The prior, using the customer's trait pairs when they have no history.
    pub fn prior_with(&self, c: &[f64], pairs: &[String]) -> (Vec<f64>, Option<SegmentMatch>) {
        let from_traits = if c.iter().all(|v| *v == 0.0) {
            self.responsibilities_from_traits(pairs)
        } else {
            None
        };
        let r = from_traits.unwrap_or_else(|| self.responsibilities(c));
        if r.is_empty() {
            return (self.population.clone(), None);
        }
        // The first segment's share starts the sum (0 + w·q is w·q).
        let mut parts = self.segments.iter().zip(&r);
        let mut prior = Vec::with_capacity(H);
        if let Some((s, w)) = parts.next() {
            prior.extend(s.hour_of_week.iter().take(H).map(|q| w * q));
        }
        prior.resize(H, 0.0);
        for (s, w) in parts {
            for (p, q) in prior.iter_mut().zip(&s.hour_of_week) {
                *p += w * q;
            }
        }
        let best = r
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(index, &probability)| SegmentMatch { index, probability });
        (prior, best)
    }

    /// The counts with each day pooled with the customer's days that look
    /// alike ([`pool_days`], by `day_pooling`); the counts as they are
    /// without pooling.
    pub fn pooled<'c>(&self, c: &'c [f64]) -> std::borrow::Cow<'c, [f64]> {
        let g = self.params.day_pooling;
        if g > 0.0 && c.len() == H {
            let likeness = day_likeness(c, self.params.day_concentration);
            std::borrow::Cow::Owned(pool_days(c, &likeness, g))
        } else {
            std::borrow::Cow::Borrowed(c)
        }
    }

    /// The personal part: counts with day pooling and day sharing, smoothed
    /// (sums to `n`).
    pub fn personal(&self, c: &[f64]) -> Vec<f64> {
        self.personal_pooled(&self.pooled(c))
    }

    /// [`Self::personal`] of counts already pooled.
    fn personal_pooled(&self, c: &[f64]) -> Vec<f64> {
        let gamma = self.params.day_strength;
        let n: f64 = c.iter().sum();
        let mixed: std::borrow::Cow<'_, [f64]> =
            if gamma > 0.0 && n > 0.0 && c.len() == H && self.day_given_hour.len() == H {
                // Each hour `n·(v + γ·u)/(n + γ)`, `u` the customer's count at
                // that hour of the day spread over the days as the population's.
                let mut by_hour = [0.0f64; 24];
                for day in c.chunks_exact(24) {
                    for (b, v) in by_hour.iter_mut().zip(day) {
                        *b += v;
                    }
                }
                let keep = n / (n + gamma);
                let lend = gamma / n;
                let mut mixed = vec![0.0; H];
                for ((out, day), given) in mixed
                    .chunks_exact_mut(24)
                    .zip(c.chunks_exact(24))
                    .zip(self.day_given_hour.chunks_exact(24))
                {
                    for (((o, v), g), b) in out.iter_mut().zip(day).zip(given).zip(&by_hour) {
                        *o = keep * (v + lend * (b * g));
                    }
                }
                std::borrow::Cow::Owned(mixed)
            } else {
                std::borrow::Cow::Borrowed(c)
            };
        smooth64(&mixed, self.params.bandwidth_hours)
    }

    /// The posterior predictive distribution for decayed counts `counts`.
    pub fn posterior(&self, counts: &[f32]) -> ActivityPosterior {
        let c: Vec<f64> = counts.iter().map(|&v| f64::from(v)).collect();
        self.posterior64(&c)
    }

    /// [`Self::posterior`] with the customer's trait pairs.
    pub fn posterior_traits(&self, counts: &[f32], pairs: &[String]) -> ActivityPosterior {
        let c: Vec<f64> = counts.iter().map(|&v| f64::from(v)).collect();
        self.posterior_with(&c, pairs)
    }

    pub fn posterior64(&self, c: &[f64]) -> ActivityPosterior {
        self.posterior_with(c, &[])
    }

    /// The posterior for counts `c`, with the customer's trait pairs (see
    /// [`trait_pairs`]) to place a customer without history in a segment.
    pub fn posterior_with(&self, c: &[f64], pairs: &[String]) -> ActivityPosterior {
        self.posterior_pooled(c, &self.pooled(c), pairs)
    }

    /// The posterior for counts `c` whose days were pooled into `pooled`
    /// (`c` itself without pooling), which a parameter search computes once
    /// per candidate.
    pub(crate) fn posterior_pooled(
        &self,
        c: &[f64],
        pooled: &[f64],
        pairs: &[String],
    ) -> ActivityPosterior {
        let n: f64 = c.iter().sum();
        let alpha = self.params.prior_strength;
        let (prior, segment) = self.prior_with(c, pairs);
        let personal = if n > 0.0 {
            self.personal_pooled(pooled)
        } else {
            vec![0.0; H]
        };
        // The personal part becomes the posterior in place.
        let mut p = personal;
        p.truncate(prior.len());
        for (m, q) in p.iter_mut().zip(&prior) {
            *m += alpha * q;
        }
        let total: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= total);
        let personal_weight = n / (n + alpha);
        let basis = if personal_weight > 0.5 {
            Basis::Personal
        } else if segment.as_ref().is_some_and(|s| s.probability > 0.5)
            && (n > 0.0 || self.responsibilities_from_traits(pairs).is_some())
        {
            Basis::Segment
        } else {
            Basis::Global
        };
        ActivityPosterior {
            hour_of_week: p,
            basis,
            evidence: n,
            personal_weight,
            segment,
        }
    }
}

/// Per pair of days of the week (Monday first), how alike a customer's are.
pub type DayLikeness = [[f64; 7]; 7];

/// For each pair of the customer's days (Monday first), the probability
/// that both follow one pattern, against each its own, from their counts
/// per local hour of the week (`c`, 168 values): same hours of the day and
/// the same level of activity. A customer with a weekday habit and another
/// at weekends has weekdays alike and weekend days alike, but not the two
/// alike.
///
/// A day's hours are Dirichlet-multinomial around the customer's own
/// hour-of-day profile, `concentration` events strong
/// ([`ActivityParams::day_concentration`]), and its total is Poisson
/// with an exponential prior around the customer's mean day; the two
/// models' marginal likelihoods, at even prior odds, give the probability.
pub fn day_likeness(c: &[f64], concentration: f64) -> DayLikeness {
    let mut likeness = [[0.0; 7]; 7];
    let n: f64 = c.iter().sum();
    if c.len() != H || n <= 0.0 || concentration <= 0.0 {
        return likeness;
    }
    // Day by day, so that the hours add up side by side.
    let mut by_hour = [0.0f64; 24];
    for day in c.chunks_exact(24) {
        for (b, v) in by_hour.iter_mut().zip(day) {
            *b += v.max(0.0);
        }
    }
    let a = by_hour.map(|v| concentration * (v + 0.1) / (n + 2.4));
    // Only hours with activity on some day enter the sums below.
    let ln_gamma_a: [f64; 24] = std::array::from_fn(|h| {
        if by_hour[h] > 0.0 {
            ln_gamma(a[h])
        } else {
            0.0
        }
    });
    let ln_gamma_conc = ln_gamma(concentration);
    // ln P(hours) of a day or of two together, without the multinomial
    // coefficients (the same in both models): a term per active hour,
    // ln Γ(a_h + v) - ln Γ(a_h). Each day's own terms are kept, and two days
    // together need new ones only for the hours both are active in (an
    // hour active on one day alone has that day's term). The term
    // `ln Γ(concentration) - ln Γ(concentration + t)` of the hours' total
    // `t` comes with the level below.
    let day = |d: usize| &c[d * 24..d * 24 + 24];
    let mut term = [[0.0f64; 24]; 7];
    // Each day's active hours, a bit per hour, and the sum of its terms.
    let mut active = [0u32; 7];
    let own: [f64; 7] = std::array::from_fn(|d| {
        let mut ll = 0.0;
        for (h, &v) in day(d).iter().enumerate() {
            if v > 0.0 {
                term[d][h] = ln_gamma(a[h] + v) - ln_gamma_a[h];
                ll += term[d][h];
                active[d] |= 1 << h;
            }
        }
        ll
    });
    let alone_hours = own.map(|ll| ll + ln_gamma_conc);
    // Two days together: both days' own terms, but at the hours both are
    // active in, the term of the hour's two counts together instead.
    let together_hours = |d: usize, e: usize| -> f64 {
        let mut ll = own[d] + own[e];
        let mut both = active[d] & active[e];
        while both != 0 {
            let h = both.trailing_zeros() as usize;
            both &= both - 1;
            let v = c[d * 24 + h] + c[e * 24 + h];
            ll += (ln_gamma(a[h] + v) - ln_gamma_a[h]) - (term[d][h] + term[e][h]);
        }
        ll + ln_gamma_conc
    };
    // ln P(the days' total `t` over `k` days at one rate), the rate
    // exponential with the mean day as its mean, without the factorials.
    let rate = 7.0 / n;
    let ln_rate = rate.ln();
    let ln_rate_1 = (rate + 1.0).ln();
    let ln_rate_2 = (rate + 2.0).ln();
    // With the hours' `- ln Γ(concentration + t)`, which at a concentration
    // of 1 cancels the level's `ln Γ(1 + t)`.
    let level = |t: f64, ln_rate_k: f64| {
        let gammas = if concentration == 1.0 {
            0.0
        } else {
            ln_gamma(1.0 + t) - ln_gamma(concentration + t)
        };
        gammas + ln_rate - (1.0 + t) * ln_rate_k
    };
    let totals: [f64; 7] = std::array::from_fn(|d| day(d).iter().map(|v| v.max(0.0)).sum());
    let alone: [f64; 7] = std::array::from_fn(|d| alone_hours[d] + level(totals[d], ln_rate_1));
    for d in 0..7 {
        for e in d + 1..7 {
            // A day without activity adds nothing to the other's hours.
            let together_hours = if totals[d] <= 0.0 {
                alone_hours[e]
            } else if totals[e] <= 0.0 {
                alone_hours[d]
            } else {
                together_hours(d, e)
            };
            let together = together_hours + level(totals[d] + totals[e], ln_rate_2);
            let ln_odds = together - alone[d] - alone[e];
            let p = 1.0 / (1.0 + (-ln_odds).exp());
            likeness[d][e] = p;
            likeness[e][d] = p;
        }
    }
    likeness
}

/// Each day's counts averaged with the days like it: day `d` becomes
/// `(c_d + g·Σ_e w_de·c_e) / (1 + g·Σ_e w_de)` over the other days `e`,
/// `w` from [`day_likeness`], then all rescaled to the counts' total. Days
/// that follow one pattern are draws of one day, and their average is a
/// better estimate of each than any one of them.
pub fn pool_days(c: &[f64], likeness: &DayLikeness, g: f64) -> Vec<f64> {
    let n: f64 = c.iter().sum();
    if c.len() != H || n <= 0.0 || g <= 0.0 {
        return c.to_vec();
    }
    // Days without a count add nothing but their weight.
    let counted: [bool; 7] =
        std::array::from_fn(|e| c[e * 24..e * 24 + 24].iter().any(|v| *v != 0.0));
    let mut pooled = Vec::with_capacity(H);
    for (d, w) in likeness.iter().enumerate() {
        // The other days' counts, each by its likeness to this one.
        let mut shared = [0.0f64; 24];
        let mut weight = 0.0;
        for (e, (&w, day)) in w.iter().zip(c.chunks_exact(24)).enumerate() {
            if e == d {
                continue;
            }
            weight += w;
            if !counted[e] {
                continue;
            }
            for (s, v) in shared.iter_mut().zip(day) {
                *s += w * v;
            }
        }
        let scale = 1.0 / (1.0 + g * weight);
        pooled.extend(
            shared
                .iter()
                .zip(&c[d * 24..d * 24 + 24])
                .map(|(s, v)| (v + g * s) * scale),
        );
    }
    let total: f64 = pooled.iter().sum();
    pooled
        .iter_mut()
        .for_each(|v| *v *= n / total.max(f64::MIN_POSITIVE));
    pooled
}

/// Cumulative mass of a week distribution in quarter hours: the mass of any
/// window, the week wrapping, costs two or three lookups.
///
/// Activity rises and falls through an hour rather than in steps at its
/// edges: an hour between a quieter and a busier one has its mass spread
/// over its quarters along the gentler of its slopes to them (the week
/// wrapping), kept to the hour's own mass and never below zero, so a window
/// starting late in an hour that a habit begins halfway through holds more
/// than one starting early. An hour busier or quieter than both neighbours
/// is spread evenly: no new peak is made, and a plateau of equal hours keeps
/// its edges. A distribution shorter than the week is spread evenly, and
/// leaves the rest of the week empty.
///
/// A customer's own activity per quarter of the day, on whichever day, says
/// more: a habit starting at 19:15 fills the last three quarters of 19:00
/// and, the habit lasting an hour, the first of 20:00. With those counts
/// ([`QuarterMass::with_quarters`]) each hour's mass is shared among its
/// quarters by them and the slopes' shape, which weighs as
/// [`WITHIN_HOUR_STRENGTH`] events.
#[derive(Debug, Clone)]
pub struct QuarterMass {
    /// prefix[q] = mass of quarters 0..q (673 entries).
    prefix: Vec<f64>,
}

/// How many events the within-hour shape from the neighbouring hours weighs
/// against a customer's own activity per quarter of the day. In simulation
/// 8 and 16 scored alike, 1 to 4 (a few sessions move the shape) and 32
/// (the slopes hardly move) lower.
pub const WITHIN_HOUR_STRENGTH: f64 = 8.0;

/// The smaller in size of two slopes of one sign; 0 when they differ.
#[inline]
fn minmod(a: f64, b: f64) -> f64 {
    // Without branches: the signs of a week's slopes follow no pattern a
    // processor could predict.
    let smaller = a.abs().min(b.abs()).copysign(a);
    smaller * f64::from(u8::from(a * b > 0.0))
}

impl QuarterMass {
    pub fn new(hour_of_week: &[f64]) -> Self {
        Self::with_quarters(hour_of_week, &[])
    }

    /// Like [`QuarterMass::new`], each hour's mass shared among its
    /// quarters also by the customer's own activity per local quarter of
    /// the day (`quarter_of_day`, 96 decayed counts; empty for none).
    pub fn with_quarters(hour_of_week: &[f64], quarter_of_day: &[f32]) -> Self {
        let q = kairos_core::QUARTERS_PER_WEEK;
        let Ok(week) = <&[f64; H]>::try_from(hour_of_week) else {
            // Not a week: each hour's mass evenly over its quarters.
            let mut prefix = Vec::with_capacity(q + 1);
            prefix.push(0.0);
            let mut acc = 0.0;
            for &p in hour_of_week.iter().take(H) {
                let w = p / 4.0;
                prefix.extend_from_slice(&[acc + w, acc + (w + w), acc + (w + w + w), acc + p]);
                acc += p;
            }
            prefix.resize(q + 1, acc);
            return Self { prefix };
        };
        // Per hour of the day, the customer's own quarters as shares of the
        // hour (`own[i] / (8 + n)`, of the hour's mass) and what the slopes'
        // shape keeps (`8 / (8 + n)`); where the hour has no counts, no
        // shares and all kept, which leaves the slopes' quarters as they are.
        let mut shares = [[0.0f64; 3]; 24];
        let mut keep = [1.0f64; 24];
        if let Ok(counts) = <&[f32; QUARTERS_PER_DAY]>::try_from(quarter_of_day) {
            for ((s, k), c) in shares.iter_mut().zip(&mut keep).zip(counts.chunks_exact(4)) {
                let c = [c[0], c[1], c[2], c[3]].map(|v| f64::from(v).max(0.0));
                let n = c[0] + c[1] + c[2] + c[3];
                if n > 0.0 {
                    let total = WITHIN_HOUR_STRENGTH + n;
                    *s = [c[0] / total, c[1] / total, c[2] / total];
                    *k = WITHIN_HOUR_STRENGTH / total;
                }
            }
        }
        // Each hour's first three quarters, in a loop of their own over the
        // week's days, which the processor runs two hours at a time.
        let mut previous = [0.0f64; H];
        previous[1..].copy_from_slice(&week[..H - 1]);
        previous[0] = week[H - 1];
        let mut next = [0.0f64; H];
        next[..H - 1].copy_from_slice(&week[1..]);
        next[H - 1] = week[0];
        let mut quarters = [[0.0f64; 3]; H];
        let days = week
            .chunks_exact(24)
            .zip(previous.chunks_exact(24))
            .zip(next.chunks_exact(24))
            .zip(quarters.chunks_exact_mut(24));
        for (((week, previous), next), quarters) in days {
            let hours = week.iter().zip(previous).zip(next).zip(quarters);
            for ((((&p, &previous), &next), w), (keep, shares)) in
                hours.zip(keep.iter().zip(&shares))
            {
                // The density at the quarters' centres, -3/8 to 3/8 of an
                // hour from the hour's: p + slope · x sums to p over the four.
                let bound = p * (8.0 / 3.0);
                let slope = minmod(p - previous, next - p).max(-bound).min(bound);
                // The hour's own quarters of the day, each count a share of
                // `p`; the fourth is what the hour's mass leaves, as before.
                *w = [
                    keep * ((p + slope * -0.375) / 4.0) + p * shares[0],
                    keep * ((p + slope * -0.125) / 4.0) + p * shares[1],
                    keep * ((p + slope * 0.125) / 4.0) + p * shares[2],
                ];
            }
        }
        let mut prefix = vec![0.0; q + 1];
        let mut acc = 0.0;
        for ((out, &p), w) in prefix[1..].chunks_exact_mut(4).zip(week).zip(&quarters) {
            let second = w[0] + w[1];
            // Each quarter from the hour's own start (no chain of additions
            // through the week), the last one exact.
            out.copy_from_slice(&[acc + w[0], acc + second, acc + (second + w[2]), acc + p]);
            acc += p;
        }
        Self { prefix }
    }

    /// Into `out`, the mass of the `len` quarter hours starting at each local
    /// quarter of the week: `out[q] == self.mass(q, len)`, all 672 at once.
    pub fn windows(&self, len: usize, out: &mut Vec<f64>) {
        let q = kairos_core::QUARTERS_PER_WEEK;
        let len = len.min(q);
        let p = &self.prefix;
        out.clear();
        out.extend(p[len..=q].iter().zip(&p[..=q - len]).map(|(b, a)| b - a));
        out.pop();
        // Windows that run past the end of the week wrap to its start.
        out.extend((q - len..q).map(|start| p[q] - p[start] + p[start + len - q]));
    }

    /// Mass of the `len` quarter hours starting at local quarter `start` (0..672).
    #[inline]
    pub fn mass(&self, start: usize, len: usize) -> f64 {
        let q = kairos_core::QUARTERS_PER_WEEK;
        let len = len.min(q);
        let start = start % q;
        let end = start + len;
        if end <= q {
            self.prefix[end] - self.prefix[start]
        } else {
            self.prefix[q] - self.prefix[start] + self.prefix[end - q]
        }
    }
}

/// P(day | hour of day) from a week distribution.
pub fn day_given_hour(week: &[f64]) -> Vec<f64> {
    let mut by_hour = [0.0f64; 24];
    for (i, v) in week.iter().enumerate() {
        by_hour[i % 24] += v;
    }
    week.iter()
        .enumerate()
        .map(|(i, v)| {
            if by_hour[i % 24] > 0.0 {
                v / by_hour[i % 24]
            } else {
                1.0 / 7.0
            }
        })
        .collect()
}

/// Circular Gaussian smoothing (the week wraps); preserves the total. A
/// bandwidth that is not positive smooths nothing.
pub fn smooth64(counts: &[f64], bandwidth_hours: f64) -> Vec<f64> {
    let n = counts.len();
    if n == 0 || bandwidth_hours.is_nan() || bandwidth_hours <= 0.0 {
        return counts.to_vec();
    }
    let reach = (3.0 * bandwidth_hours).ceil() as usize;
    KERNEL.with_borrow_mut(|(bandwidth, kernel)| {
        // A model smooths every customer with one bandwidth: its kernel
        // once per thread rather than its exponentials every time.
        if *bandwidth != bandwidth_hours.to_bits() || kernel.is_empty() {
            *bandwidth = bandwidth_hours.to_bits();
            *kernel = gaussian_kernel(bandwidth_hours, reach);
        }
        smooth_with(counts, kernel, reach)
    })
}

thread_local! {
    /// The last kernel [`smooth64`] used, by its bandwidth's bits.
    static KERNEL: std::cell::RefCell<(u64, Vec<f64>)> = const { std::cell::RefCell::new((0, Vec::new())) };
}

/// The circular Gaussian's weights at -reach..=reach hours, summing to 1.
fn gaussian_kernel(bandwidth_hours: f64, reach: usize) -> Vec<f64> {
    let mut kernel: Vec<f64> = (0..=2 * reach)
        .map(|k| {
            let d = k as f64 - reach as f64;
            (-(d * d) / (2.0 * bandwidth_hours * bandwidth_hours)).exp()
        })
        .collect();
    let norm: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|w| *w /= norm);
    kernel
}

/// [`smooth64`] with its kernel (`2·reach + 1` weights).
fn smooth_with(counts: &[f64], kernel: &[f64], reach: usize) -> Vec<f64> {
    let n = counts.len();
    if kernel.len() > n {
        // The kernel wraps the counts more than once: index by index.
        let mut out = vec![0.0; n];
        for (i, &c) in counts.iter().enumerate() {
            if c == 0.0 {
                continue;
            }
            for (k, w) in kernel.iter().enumerate() {
                out[(i + k + n - reach % n) % n] += c * w;
            }
        }
        return out;
    }
    // Spread into the counts extended by `reach` on each side, then fold
    // the ends back onto the week's other end: no index wraps in the loop.
    // A pass per kernel weight, the last first: each output adds its counts'
    // shares in the counts' order, as spreading count after count would,
    // but no addition waits on a store the one before has just made.
    let mut wide = vec![0.0; n + 2 * reach];
    for (k, &w) in kernel.iter().enumerate().rev() {
        for (o, &c) in wide[k..k + n].iter_mut().zip(counts) {
            *o += c * w;
        }
    }
    // Folded in the buffer itself (the kernel is shorter than the week, so
    // the two ends' targets do not meet), then the week moved to its front.
    for k in 0..reach {
        wide[n + k] += wide[k];
        wide[reach + k] += wide[n + reach + k];
    }
    wide.copy_within(reach..reach + n, 0);
    wide.truncate(n);
    wide
}

/// A human label for a week distribution: "weekday evenings", "weekend mornings", ...
pub fn describe(week: &[f64]) -> String {
    let weekday: f64 = week[..5 * 24].iter().sum::<f64>() / 5.0;
    let weekend: f64 = week[5 * 24..].iter().sum::<f64>() / 2.0;
    let days = if weekday > 1.3 * weekend {
        "weekday"
    } else if weekend > 1.3 * weekday {
        "weekend"
    } else {
        "all-week"
    };
    const PARTS: [(&str, std::ops::Range<usize>); 5] = [
        ("nights", 0..6),
        ("mornings", 6..12),
        ("afternoons", 12..17),
        ("evenings", 17..22),
        ("late evenings", 22..24),
    ];
    let mass = |r: &std::ops::Range<usize>| -> f64 {
        (0..7)
            .flat_map(|d| r.clone().map(move |h| d * 24 + h))
            .map(|i| week[i])
            .sum::<f64>()
            / r.len() as f64
    };
    let part = PARTS
        .iter()
        .max_by(|a, b| mass(&a.1).total_cmp(&mass(&b.1)))
        .map_or("hours", |p| p.0);
    format!("{days} {part}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smaller slope of one sign, 0 where the signs differ or one is 0.

    #[test]
    fn minmod_by_cases() {
        for (a, b, want) in [
            (1.0, 2.0, 1.0),
            (3.0, 2.0, 2.0),
            (-1.0, -2.0, -1.0),
            (-3.0, -0.5, -0.5),
            (1.0, -2.0, 0.0),
            (-1.0, 2.0, 0.0),
            (0.0, 2.0, 0.0),
            (-2.0, 0.0, 0.0),
            (2.0, 2.0, 2.0),
        ] {
            assert_eq!(minmod(a, b), want, "minmod({a}, {b})");
        }
    }

    fn trained() -> ActivityModel {
        let mut m = ActivityModel::untrained(ActivityParams::default());
        m.customers = 100;
        m
    }

    #[test]
    fn labels_weeks() {
        let mut w = vec![0.001; H];
        for d in 0..5 {
            w[d * 24 + 19] = 1.0;
            w[d * 24 + 20] = 1.0;
        }
        assert_eq!(describe(&w), "weekday evenings");
        let mut w = vec![0.001; H];
        for d in 5..7 {
            w[d * 24 + 9] = 1.0;
        }
        assert_eq!(describe(&w), "weekend mornings");
    }

    #[test]
    fn weight_moves_from_prior_to_person() {
        let m = trained();
        let mut c = vec![0.0; H];
        let zero = m.posterior64(&c);
        assert_eq!(zero.basis, Basis::Global);
        assert!(zero
            .hour_of_week
            .iter()
            .all(|p| (p - 1.0 / 168.0).abs() < 1e-12));
        c[19] = 3.0;
        let few = m.posterior64(&c);
        assert!(few.personal_weight < 0.3 && few.basis == Basis::Global);
        c[19] = 300.0;
        let many = m.posterior64(&c);
        assert!(many.personal_weight > 0.95 && many.basis == Basis::Personal);
    }

    #[test]
    fn day_sharing_lends_weight_to_the_same_hour_on_other_days() {
        let mut m = trained();
        let mut c = vec![0.0; H];
        c[19] = 10.0; // Monday 19:00
        let without = m.posterior64(&c);
        m.params.day_strength = 10.0;
        let with = m.posterior64(&c);
        assert!(with.hour_of_week[24 + 19] > 2.0 * without.hour_of_week[24 + 19]);
        assert!(with.hour_of_week[19] < without.hour_of_week[19]);
        // A long Monday-only history keeps Monday far ahead of Tuesday.
        c[19] = 500.0;
        let long = m.posterior64(&c);
        assert!(long.hour_of_week[19] > 10.0 * long.hour_of_week[24 + 19]);
    }

    /// Weekday evenings (19:00, a few a day) and weekend mornings (10:00),
    /// `k` times over.
    fn weekday_and_weekend_habits(k: f64) -> Vec<f64> {
        let mut c = vec![0.0; H];
        for (d, n) in [4.0, 3.0, 5.0, 4.0, 2.0].into_iter().enumerate() {
            c[d * 24 + 19] = k * n;
        }
        c[4 * 24 + 20] = k; // a Friday a little later
        c[5 * 24 + 10] = k * 4.0;
        c[6 * 24 + 10] = k * 3.0;
        c[6 * 24 + 11] = k;
        c
    }

    #[test]
    fn days_with_one_pattern_are_alike_and_others_not() {
        let pairs = |w: &[[f64; 7]; 7], same_kind: bool| -> Vec<f64> {
            (0..7)
                .flat_map(|d| (0..7).map(move |e| (d, e)))
                .filter(|(d, e)| d != e && ((*d < 5) == (*e < 5)) == same_kind)
                .map(|(d, e)| w[d][e])
                .collect()
        };
        let min = |v: Vec<f64>| v.into_iter().fold(f64::INFINITY, f64::min);
        let max = |v: Vec<f64>| v.into_iter().fold(0.0, f64::max);
        // A few weeks: every pair of weekdays (or of weekend days) is more
        // alike than any weekday and weekend day.
        let w = day_likeness(&weekday_and_weekend_habits(1.0), 5.0);
        for (d, row) in w.iter().enumerate() {
            assert_eq!(row[d], 0.0);
            for (e, x) in row.iter().enumerate() {
                assert_eq!(*x, w[e][d]);
            }
        }
        assert!(
            min(pairs(&w, true)) > 0.5 && max(pairs(&w, false)) < 0.3,
            "{w:?}"
        );
        // Three times the history: all but certain, and Friday, with fewer
        // evenings and one later, is less like the other weekdays.
        let w = day_likeness(&weekday_and_weekend_habits(3.0), 5.0);
        assert!(max(pairs(&w, false)) < 0.01, "{w:?}");
        for (d, e) in [(0, 1), (0, 2), (1, 3), (2, 3), (5, 6)] {
            assert!(w[d][e] > 0.85 && w[d][e] > w[d][4] + 0.2, "{w:?}");
        }
        // A day without activity is not like one with the customer's usual
        // amount, and nothing is alike without any activity.
        let mut c = weekday_and_weekend_habits(3.0);
        c[2 * 24 + 19] = 0.0;
        assert!(day_likeness(&c, 5.0)[2][0] < 0.05);
        assert_eq!(day_likeness(&[0.0; H], 5.0), [[0.0; 7]; 7]);
        // A weaker prior tells the two kinds of day apart sooner.
        let c = weekday_and_weekend_habits(1.0);
        let (strong, weak) = (day_likeness(&c, 5.0), day_likeness(&c, 1.0));
        assert!(weak[0][5] < 0.5 * strong[0][5] && weak[1][6] < 0.5 * strong[1][6]);
        assert!(weak[0][2] > 0.5, "{weak:?}");
    }

    #[test]
    fn pooled_days_borrow_from_days_like_them() {
        let c = weekday_and_weekend_habits(2.0);
        let w = day_likeness(&c, 5.0);
        let pooled = pool_days(&c, &w, 1.0);
        let total = |v: &[f64]| v.iter().sum::<f64>();
        assert!((total(&pooled) - total(&c)).abs() < 1e-9);
        // Friday's quiet evening moves toward the other weekdays' ...
        let friday = pooled[4 * 24 + 19];
        assert!(friday > 5.0 && friday < 8.0, "{friday}");
        // ... Saturday learns 11:00 from Sunday ...
        assert!(pooled[5 * 24 + 11] > 0.5, "{}", pooled[5 * 24 + 11]);
        // ... and neither kind of day takes much of the other's hours.
        assert!(pooled[5 * 24 + 19] < 0.1 * pooled[24 + 19], "{pooled:?}");
        assert!(pooled[10] < 0.1 * pooled[5 * 24 + 10], "{pooled:?}");
        // Without pooling the counts stay as they are.
        assert_eq!(pool_days(&c, &w, 0.0), c);
        let mut m = trained();
        assert_eq!(m.pooled(&c).as_ref(), c.as_slice());
        m.params.day_pooling = 1.0;
        m.params.day_concentration = 5.0;
        assert_eq!(m.pooled(&c).as_ref(), pooled.as_slice());
    }

    #[test]
    fn models_without_day_pooling_read_as_none() {
        let mut json = serde_json::to_value(ActivityParams::default()).unwrap_or_default();
        if let Some(o) = json.as_object_mut() {
            o.remove("day_pooling");
            o.remove("day_concentration");
        }
        let params: ActivityParams = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(params.day_pooling, 0.0);
        assert_eq!(params.day_concentration, DEFAULT_DAY_CONCENTRATION);
        for bad in [
            ActivityParams {
                day_pooling: -1.0,
                ..ActivityParams::default()
            },
            ActivityParams {
                day_concentration: 0.0,
                ..ActivityParams::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segments_that_explain_the_history_weigh_most() {
        let mut m = trained();
        let mut evening = vec![0.2 / 160.0; H];
        let mut morning = vec![0.2 / 160.0; H];
        for d in 0..4 {
            evening[d * 24 + 20] = 0.2;
            morning[d * 24 + 8] = 0.2;
        }
        let norm = |v: &mut Vec<f64>| {
            let t: f64 = v.iter().sum();
            v.iter_mut().for_each(|x| *x /= t);
        };
        norm(&mut evening);
        norm(&mut morning);
        m.segments = vec![
            Segment::new("0".into(), "e".into(), 0.5, 1, evening),
            Segment::new("1".into(), "m".into(), 0.5, 1, morning),
        ];
        m.params.segment_temperature = 1.0;
        let mut c = vec![0.0; H];
        c[2 * 24 + 20] = 2.0;
        let post = m.posterior64(&c);
        let seg = post.segment.unwrap_or(SegmentMatch {
            index: 9,
            probability: 0.0,
        });
        assert_eq!(seg.index, 0);
        assert!(seg.probability > 0.9);
        assert_eq!(post.basis, Basis::Segment);
        // Even the Thursday evening, never seen, is lifted by the segment.
        assert!(post.hour_of_week[3 * 24 + 20] > 5.0 / 168.0);

        // Without history, a trait that evening customers share places the customer.
        m.trait_segments
            .insert("plan=night".into(), vec![40.0, 2.0]);
        let none = vec![0.0; H];
        let placed = m.posterior_with(&none, &["plan=night".to_string()]);
        assert_eq!(placed.segment.as_ref().map(|s| s.index), Some(0));
        assert_eq!(placed.basis, Basis::Segment);
        assert!(placed.hour_of_week[20] > 5.0 * placed.hour_of_week[8]);
        let unplaced = m.posterior_with(&none, &["plan=unknown".to_string()]);
        assert_eq!(unplaced.basis, Basis::Global);

        // The segments' logarithms, kept after the first use, give what
        // computing them each time gives, and are no part of the model's
        // identity.
        let fresh = ActivityModel {
            segments: m
                .segments
                .iter()
                .map(|s| {
                    Segment::new(
                        s.id.clone(),
                        s.label.clone(),
                        s.weight,
                        s.customers,
                        s.hour_of_week.clone(),
                    )
                })
                .collect(),
            ..m.clone()
        };
        c[5 * 24 + 8] = 0.5;
        let expected: Vec<f64> = {
            let logs: Vec<f64> = m
                .segments
                .iter()
                .map(|s| {
                    let ll: f64 = c
                        .iter()
                        .zip(&s.hour_of_week)
                        .filter(|(c, _)| **c > 0.0)
                        .map(|(c, p)| c * p.ln())
                        .sum();
                    s.weight.ln() + m.params.segment_temperature * ll
                })
                .collect();
            let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
            let total: f64 = w.iter().sum();
            w.iter().map(|x| x / total).collect()
        };
        assert_eq!(m.responsibilities(&c), expected);
        assert_eq!(m.responsibilities(&c), expected);
        assert_eq!(m, fresh);
        assert_eq!(fresh.responsibilities(&c), expected);
    }
}

#[cfg(test)]
mod quarter_mass_tests {
    use super::*;
    use proptest::prelude::*;

    /// The mass of quarter `q`, straight from the definition.
    fn quarter(hours: &[f64], q: usize) -> f64 {
        let (h, k) = (q / 4, q % 4);
        let p = hours[h];
        let (up, down) = (p - hours[(h + 167) % 168], hours[(h + 1) % 168] - p);
        // The gentler of the two slopes when they agree; flat at a peak or a trough.
        let slope = if up * down <= 0.0 {
            0.0
        } else {
            up.signum() * up.abs().min(down.abs())
        }
        .clamp(-p * 8.0 / 3.0, p * 8.0 / 3.0);
        (p + slope * (k as f64 - 1.5) / 4.0) / 4.0
    }

    /// Activity rises through an hour between a quieter and a busier one
    /// and falls between a busier and a quieter one; an hour busier (or
    /// quieter) than both neighbours stays level, so a plateau of equal
    /// hours keeps its edges. Each hour keeps its own mass, and no quarter
    /// is negative.
    #[test]
    fn quarters_follow_the_slope_between_hours() {
        let mut hours = vec![0.0; 168];
        // Sessions from 19:30 to 22:30: half of 19, all of 20 and 21, half of 22.
        hours[18] = 0.02;
        hours[19] = 0.2;
        hours[20] = 0.4;
        hours[21] = 0.4;
        hours[22] = 0.2;
        hours[23] = 0.02;
        let m = QuarterMass::new(&hours);
        let q = |i: usize| m.mass(i, 1);
        for (h, p) in hours.iter().enumerate() {
            assert!((m.mass(4 * h, 4) - p).abs() < 1e-12, "hour {h}");
        }
        assert!((0..672).all(|i| q(i) >= 0.0));
        // 19:00 to 19:45 rise, 22:00 to 22:45 fall, 20:00 to 21:45 stay level.
        let shown = |a: usize| (a..a + 4).map(q).collect::<Vec<_>>();
        assert!((76..79).all(|i| q(i) < q(i + 1)), "{:?}", shown(76));
        assert!((88..91).all(|i| q(i) > q(i + 1)), "{:?}", shown(88));
        assert!((80..87).all(|i| (q(i) - q(80)).abs() < 1e-12));
        // A push window starting at 19:45 holds more than one at 19:00, and
        // none in the plateau holds more than the one at its start.
        assert!(m.mass(79, 4) > m.mass(76, 4));
        assert!((80..85).all(|i| m.mass(i, 4) <= m.mass(80, 4) + 1e-12));
        // Shorter than a week: spread evenly.
        let day = QuarterMass::new(&[0.5, 0.25, 0.25]);
        assert!((day.mass(0, 1) - 0.125).abs() < 1e-12 && (day.mass(4, 1) - 0.0625).abs() < 1e-12);
        assert_eq!(day.mass(12, 100), 0.0);
    }

    #[test]
    fn quarters_follow_the_customers_own_quarters_of_the_day() {
        // A habit from 19:15 to 20:15 on Mondays: hours 19 and 20 alike.
        let mut hours = vec![0.2 / 166.0; 168];
        hours[19] = 0.4;
        hours[20] = 0.4;
        let mut own = vec![0.0f32; 96];
        own[77..81].fill(6.0);
        let plain = QuarterMass::new(&hours);
        let m = QuarterMass::with_quarters(&hours, &own);
        for (h, p) in hours.iter().enumerate() {
            assert!(
                (m.mass(4 * h, 4) - p).abs() < 1e-12,
                "hour {h} keeps its mass"
            );
        }
        assert!((0..672).all(|i| m.mass(i, 1) >= 0.0));
        let best = |m: &QuarterMass| {
            let mut w = Vec::new();
            m.windows(4, &mut w);
            (0..672).fold(0, |b, i| if w[i] > w[b] + 1e-12 { i } else { b })
        };
        // An hour's window is best from 19:15, where the habit starts; the
        // hours alone cannot tell 19:00 from 19:15.
        assert_eq!(best(&m), 77);
        assert_eq!(best(&plain), 76);
        assert!(m.mass(77, 4) > plain.mass(76, 4));
        // Eight events' worth of the slopes' shape stays: 19:00 keeps some.
        assert!(m.mass(76, 1) > 0.0 && m.mass(76, 1) < m.mass(77, 1) / 2.0);
        // No counts in an hour (or none at all): the slopes alone.
        assert_eq!(m.mass(4 * 30, 4 * 10), plain.mass(4 * 30, 4 * 10));
        let none = QuarterMass::with_quarters(&hours, &vec![0.0; 96]);
        assert!((0..672).all(|i| none.mass(i, 1) == plain.mass(i, 1)));
        let old = QuarterMass::with_quarters(&hours, &[]);
        assert!((0..672).all(|i| old.mass(i, 1) == plain.mass(i, 1)));
    }

    /// Smoothing by its definition: each count spread over the hours within
    /// `reach` by the normalized Gaussian, the indices wrapping.
    fn smooth_by_definition(counts: &[f64], bandwidth: f64) -> Vec<f64> {
        let n = counts.len() as i64;
        let reach = (3.0 * bandwidth).ceil() as i64;
        let w = |d: i64| (-(d as f64).powi(2) / (2.0 * bandwidth * bandwidth)).exp();
        let norm: f64 = (-reach..=reach).map(w).sum();
        let mut out = vec![0.0; counts.len()];
        for (i, c) in counts.iter().enumerate() {
            for d in -reach..=reach {
                out[(i as i64 + d).rem_euclid(n) as usize] += c * w(d) / norm;
            }
        }
        out
    }

    proptest! {
        /// Whatever a customer's quarters of the day, each hour keeps its
        /// mass and no quarter goes below zero.
        #[test]
        fn own_quarters_keep_each_hours_mass(
            hours in proptest::collection::vec(0.0f64..1.0, 168),
            own in proptest::collection::vec(0.0f32..20.0, 96),
        ) {
            let m = QuarterMass::with_quarters(&hours, &own);
            for (h, p) in hours.iter().enumerate() {
                prop_assert!((m.mass(4 * h, 4) - p).abs() < 1e-9);
            }
            prop_assert!((0..672).all(|i| m.mass(i, 1) >= -1e-12));
        }

        /// Smoothing spreads each count as its definition says, on a week or
        /// on counts shorter than the kernel, and keeps the total.
        #[test]
        fn smoothing_follows_its_definition(
            counts in proptest::collection::vec(prop_oneof![Just(0.0f64), 0.0f64..50.0], 1..200),
            bandwidth in 0.2f64..30.0,
        ) {
            let fast = smooth64(&counts, bandwidth);
            let slow = smooth_by_definition(&counts, bandwidth);
            let total: f64 = counts.iter().sum();
            prop_assert_eq!(fast.len(), counts.len());
            for (a, b) in fast.iter().zip(&slow) {
                prop_assert!((a - b).abs() <= 1e-12 * (1.0 + total), "{} vs {}", a, b);
            }
            prop_assert!((fast.iter().sum::<f64>() - total).abs() <= 1e-9 * (1.0 + total));
        }

        /// Every window's mass equals the sum over its quarter hours, wrapping the week.
        #[test]
        fn windows_sum_their_quarters(
            hours in proptest::collection::vec(0.0f64..1.0, 168),
            start in 0usize..672,
            len in 1usize..700,
        ) {
            let m = QuarterMass::new(&hours);
            let direct: f64 = (0..len.min(672)).map(|k| quarter(&hours, (start + k) % 672)).sum();
            prop_assert!((m.mass(start, len) - direct).abs() < 1e-9, "{} vs {}", m.mass(start, len), direct);
            let mut all = Vec::new();
            m.windows(len, &mut all);
            prop_assert_eq!(all.len(), 672);
            prop_assert!((all[start] - m.mass(start, len)).abs() < 1e-12);
        }
    }
}
