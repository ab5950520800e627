//! The exposure form of the response model: how much more (or less) likely a
//! send is to be engaged with at one time than at the customer's typical time.
//!
//! A customer's activities are a Poisson process whose weekly shape is the
//! activity model's posterior, `a` activities a week. A send on channel `c`
//! whose response window holds activity mass `m` finds the customer around
//! with probability `1 - exp(-a·m)` (the *presence*); a message is also
//! engaged with, less often, when they are not. Its exposure is
//!
//! ```text
//! e_c(m) = f_c + (1 - f_c) · (1 - exp(-a·m))
//! ```
//!
//! with `f_c` the channel's floor (a message read later, on another device),
//! and a send's chance is the customer's engagement rate on the channel (from
//! sends at whatever times the company chose) scaled by the exposure relative
//! to a typical one, the mean over the week:
//!
//! ```text
//! P(engage) = rate_c · e_c(m) / ē_c
//! ```
//!
//! The floors are fitted on the logged sends (each send read with the
//! profile as it was just before it): one floor for all channels, chosen
//! together with the rates' prior, and a channel's own only where its sends
//! tell it apart.
//!
//! A customer's rate is learned from sends at whatever times the company
//! chose, so it carries their exposure then: a customer who is rarely around
//! engages less with every send, more so on channels with short windows. The
//! rate's prior is therefore scaled per customer: a [`RatePrior`] holds the
//! prior for a customer of average typical exposure `ē`, and a customer whose
//! typical exposure is `e` starts from `mean · e / ē`, with strength
//! `strength · ē / e`: a rate `r` seen through exposure `e` varies as `e²`
//! while its mean varies as `e`, so a customer rarely around is known to
//! engage rarely with more certainty.
//!
//! The sends themselves came at whatever times the company chose, more or
//! less exposed than a typical time: a customer who got every push while
//! usually around has engaged more often than their rate at a typical time
//! would say. Each customer's sends can therefore be counted at a typical
//! time ([`typical_sends`]): `n · e(sent) / e(typical)`, with `sent` the mean
//! presence after their latest sends as the profile now reads them (under a
//! Poisson view of engagement, the rate's evidence is the exposure summed
//! over the sends). Training keeps this form, and decayed or total counts,
//! whichever predict each logged send best from the sends before it.
//!
//! Unlike a regression on the log-lift, the form saturates: the slots a
//! search picks, with far more activity ahead than any logged send had, are
//! still scored within what the sends showed.

use kairos_core::{Channel, QUARTERS_PER_WEEK};
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::activity::QuarterMass;
use crate::channel::{beta_binomial_ll, prior_means};
use crate::response::{Calibration, SendRow};

/// Candidate floors, every 0.02 in (0, 1].
const FLOORS: usize = 50;
/// A channel needs this many training sends (and an engagement) for a floor
/// of its own ([`channel_floors`]); others take the pooled floor.
const MIN_CHANNEL_SENDS: usize = 100;
/// The floor where no sends say otherwise.
pub const DEFAULT_FLOOR: f64 = 0.25;
/// A channel needs this many customers with sends to fit its [`RatePrior`].
const MIN_PRIOR_CUSTOMERS: usize = 20;
/// Customers the rate prior is fitted on, at most (an even sample).
const MAX_PRIOR_CUSTOMERS: usize = 50_000;

/// The chance of at least one activity where `expected` are expected.
#[inline]
pub fn presence(expected: f64) -> f64 {
    1.0 - crate::stats::exp_nonpositive(-expected.max(0.0))
}

/// The mean presence over the week in windows of `len` quarter hours, for a
/// customer with `activity` activities a week and weekly distribution
/// `mass`: the presence of a send at a typical time. Read at every hour's
/// start (168 windows of the 672), which the smooth distribution allows.
pub fn typical_presence(mass: &QuarterMass, len: usize, activity: f64) -> f64 {
    let hours = QUARTERS_PER_WEEK / 4;
    (0..hours)
        .map(|h| presence(activity * mass.mass(4 * h, len)))
        .sum::<f64>()
        / hours as f64
}

/// [`typical_presence`] for each of `lens`, into `out` (in order). Where
/// there are several and every one is a whole number of hours, each hour's
/// `exp(-a·m)` is computed once, and a window of `k` hours has the product
/// of its hours' factors (by fours, then ones) rather than an exponential
/// of its own: for the default 1, 4 and 24 hours, 40% less time.
pub fn typical_presences(mass: &QuarterMass, lens: &[usize], activity: f64, out: &mut Vec<f64>) {
    const HOURS: usize = QUARTERS_PER_WEEK / 4;
    // The presences are summed four at a time.
    const _: () = assert!(HOURS % 4 == 0);
    out.clear();
    // A length of 0 (a channel without a scorer) is a whole number of
    // hours too: no factor, a presence of 0, as alone.
    let whole_hours = lens.iter().all(|&l| l % 4 == 0 && l <= QUARTERS_PER_WEEK);
    let activity = activity.max(0.0);
    if lens.len() < 2 || !whole_hours {
        out.extend(lens.iter().map(|&l| typical_presence(mass, l, activity)));
        return;
    }
    // Each hour's factor, and the product of each 4 hours' from it, the
    // week twice over so that windows need no wrapping.
    let mut hourly: [f64; HOURS] =
        std::array::from_fn(|h| -activity * mass.mass(4 * h, 4).max(0.0));
    for v in &mut hourly {
        *v = crate::stats::exp_nonpositive(*v);
    }
    let mut factor = [0.0f64; 2 * HOURS];
    factor[..HOURS].copy_from_slice(&hourly);
    factor[HOURS..].copy_from_slice(&hourly);
    // The last three have fewer than four hours after them: never read.
    let mut four = [0.0f64; 2 * HOURS];
    for (h, f) in four[..2 * HOURS - 3].iter_mut().enumerate() {
        *f = factor[h] * factor[h + 1] * factor[h + 2] * factor[h + 3];
    }
    // Every hour's window at once, factor by factor (in the same order for
    // each hour), so that the loops run over whole rows.
    let mut p = [1.0f64; HOURS];
    for &len in lens {
        let k = len / 4;
        let fours = k / 4;
        p.fill(1.0);
        for j in 0..fours {
            for (p, f) in p.iter_mut().zip(&four[4 * j..4 * j + HOURS]) {
                *p *= f;
            }
        }
        for j in 4 * fours..k {
            for (p, f) in p.iter_mut().zip(&factor[j..j + HOURS]) {
                *p *= f;
            }
        }
        // Four running sums, so that the additions do not wait on each other.
        let mut sums = [0.0f64; 4];
        for p in p.chunks_exact(4) {
            for (s, p) in sums.iter_mut().zip(p) {
                *s += 1.0 - p;
            }
        }
        let sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
        out.push(sum / HOURS as f64);
    }
}

/// The mean presence after sends at the local `quarters` of the week, for
/// a customer with `activity` activities a week and weekly distribution
/// `mass`, in windows of `len` quarter hours; `None` without sends.
pub fn mean_presence(
    quarters: impl IntoIterator<Item = usize>,
    mass: &QuarterMass,
    len: usize,
    activity: f64,
) -> Option<f64> {
    let (sum, n) = quarters.into_iter().fold((0.0, 0usize), |(sum, n), q| {
        (sum + presence(activity * mass.mass(q, len)), n + 1)
    });
    (n > 0).then(|| sum / n as f64)
}

/// `sends` counted at a typical time: a customer's engagements follow
/// their exposure at each send, so sends made when they were more (or
/// less) around than typically count as more (or fewer) typical ones.
/// `sent` is the mean presence after the sends, `typical` the presence at a
/// typical time, `floor` the channel's floor.
#[inline]
pub fn typical_sends(sends: f64, floor: f64, sent: f64, typical: f64) -> f64 {
    let e = |p: f64| floor + (1.0 - floor) * p;
    sends * e(sent) / e(typical).max(1e-9)
}

/// The fitted floors, per channel by [`Channel::index`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    pub floor: [f64; 5],
    /// Per channel by [`Channel::index`], the engagement-rate prior relative
    /// to the customer's typical exposure; `None` where too few customers
    /// had sends (and in models trained before it existed): the channel's
    /// plain prior applies.
    #[serde(default)]
    pub rate_prior: [Option<RatePrior>; 5],
    /// Which of a customer's counts the rate prior is updated with.
    #[serde(default)]
    pub rate_counts: RateCounts,
    /// Whether a customer's sends are counted at a typical time
    /// ([`typical_sends`]) before they update the rate prior; models
    /// trained before it existed count each send as one.
    #[serde(default)]
    pub sends_at_typical: bool,
    /// Held-out calibration of [`Exposure::predict`].
    pub calibration: Calibration,
}

/// A customer's sends and engagements on a channel, as the profile keeps
/// them: decayed (recent ones weigh more, so a changed habit shows sooner)
/// or in total (every send counts fully, which pins a steady rate down
/// better). Training keeps whichever predicts the logged sends better.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateCounts {
    #[default]
    Decayed,
    Total,
}

/// A Beta prior on a channel's engagement rate for a customer whose exposure
/// at a typical time is `mean_exposure` (the training sends' mean); see
/// [`RatePrior::posterior_mean`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatePrior {
    pub mean: f64,
    pub strength: f64,
    pub mean_exposure: f64,
}

impl RatePrior {
    /// The prior mean and strength for a customer whose typical exposure is `exposure`.
    #[inline]
    pub fn prior_for(&self, exposure: f64) -> (f64, f64) {
        let rel = (exposure / self.mean_exposure.max(1e-9)).max(1e-3);
        scaled_prior(self.mean, self.strength, rel)
    }

    /// The posterior mean rate of a customer whose typical exposure is
    /// `exposure`, after `engagements` of `sends`.
    #[inline]
    pub fn posterior_mean(&self, exposure: f64, sends: f64, engagements: f64) -> f64 {
        let (m, s) = self.prior_for(exposure);
        let sends = sends.max(engagements);
        (m * s + engagements) / (s + sends)
    }

    fn validate(&self) -> bool {
        self.mean > 0.0
            && self.mean < 1.0
            && self.strength.is_finite()
            && self.strength > 0.0
            && self.mean_exposure.is_finite()
            && self.mean_exposure > 0.0
    }
}

/// The prior (mean, strength) at relative exposure `rel` of one whose mean
/// and strength at relative exposure 1 are given.
#[inline]
fn scaled_prior(mean: f64, strength: f64, rel: f64) -> (f64, f64) {
    (
        (mean * rel).clamp(1e-4, 1.0 - 1e-4),
        (strength / rel).clamp(0.5, 1e5),
    )
}

/// Candidate prior strengths, 0.5 to about 1,000, 15% apart.
fn strengths() -> impl Iterator<Item = f64> + Clone {
    (0..55).map(|j| 0.5 * 1.15f64.powi(j))
}

/// The value of `values` where `score` is highest, and that score.
fn argmax(values: impl Iterator<Item = f64>, score: &dyn Fn(f64) -> f64) -> (f64, f64) {
    values.fold((f64::NEG_INFINITY, f64::NAN), |best, v| {
        let l = score(v);
        if l > best.0 {
            (l, v)
        } else {
            best
        }
    })
}

/// ln P(customers' engagements) under a Beta prior of `mean` and
/// `strength` at relative exposure 1, scaled to each customer's exposure
/// ([`scaled_prior`]); `obs` holds each customer's (sends, engagements,
/// relative exposure).
fn relative_prior_ll(obs: &[(f64, f64, f64)], mean: f64, strength: f64) -> f64 {
    obs.iter()
        .map(|&(n, k, rel)| {
            let (m, s) = scaled_prior(mean, strength, rel);
            beta_binomial_ll(n, k, m * s, (1.0 - m) * s)
        })
        .sum()
}

/// Fits the mean (at relative exposure 1) and strength of a Beta prior
/// scaled to each customer's exposure ([`scaled_prior`]) to customers'
/// (sends, engagements, relative exposure), by maximum Beta-Binomial
/// marginal likelihood over a grid; with that log-likelihood.
fn fit_relative_prior(obs: &[(f64, f64, f64)]) -> (f64, f64, f64) {
    let (s, e) = obs
        .iter()
        .fold((0.0, 0.0), |(s, e), (n, k, _)| (s + n, e + k.min(*n)));
    let (pooled, means) = prior_means(s, e);
    // Coordinate ascent: the best mean for the strength, then the best
    // strength for the mean, until neither moves.
    let mut best = (f64::NEG_INFINITY, pooled, 20.0);
    for _ in 0..10 {
        let (_, mean) = argmax(means.iter().copied(), &|m| {
            relative_prior_ll(obs, m, best.2)
        });
        let (ll, strength) = argmax(strengths(), &|s| relative_prior_ll(obs, mean, s));
        if ll <= best.0 {
            break;
        }
        best = (ll, mean, strength);
    }
    (best.1, best.2, best.0)
}

/// Customers' (sends, engagements, relative exposure), and the mean exposure
/// they are relative to.
type PriorObservations = (Vec<(f64, f64, f64)>, f64);

/// Per channel by [`Channel::index`], its customers' (sends, engagements,
/// relative exposure) for the rate prior and the mean exposure they are
/// relative to, from the training sends read with floors `floor`; with
/// `at_typical`, each customer's sends counted at a typical time
/// ([`typical_sends`]). `None` where too few customers had sends.
fn prior_observations(
    train: &[&SendRow],
    floor: &[f64; 5],
    at_typical: bool,
) -> [Option<PriorObservations>; 5] {
    Channel::ALL.map(|c| {
        let f = floor[c.index()];
        let exposure = |p: f64| f + (1.0 - f) * p;
        // Per customer: sends, engagements, and their latest send, in first-seen order.
        let mut at: HashMap<u64, usize> = HashMap::new();
        let mut customers: Vec<(u32, u32, &SendRow)> = Vec::new();
        for r in train.iter().filter(|r| r.context.channel == c) {
            let i = *at.entry(r.customer_hash).or_insert_with(|| {
                customers.push((0, 0, r));
                customers.len() - 1
            });
            let x = &mut customers[i];
            x.0 += 1;
            x.1 += u32::from(r.engaged);
            // The latest send's profile is the nearest to the one decisions read.
            x.2 = r;
        }
        if customers.len() < MIN_PRIOR_CUSTOMERS || !customers.iter().any(|x| x.1 > 0) {
            return None;
        }
        let (total, n) = customers.iter().fold((0.0, 0.0), |(t, n), x| {
            let sends = f64::from(x.0);
            (t + sends * exposure(x.2.typical_presence), n + sends)
        });
        let mean_exposure = total / n;
        let obs = crate::fit::every_kth(&customers, MAX_PRIOR_CUSTOMERS)
            .into_iter()
            .map(|&(s, e, last)| {
                let mut sends = f64::from(s);
                if at_typical {
                    // The earlier sends as the latest profile reads them, and the latest.
                    sends = typical_sends(
                        sends - 1.0,
                        f,
                        last.sent_presence_before,
                        last.typical_presence,
                    ) + typical_sends(1.0, f, last.presence, last.typical_presence);
                }
                let rel = exposure(last.typical_presence) / mean_exposure;
                (sends.max(f64::from(e)), f64::from(e), rel)
            })
            .collect();
        Some((obs, mean_exposure))
    })
}

/// The strength, at the channel's mean exposure `mean_exposure`, of a prior
/// with mean `mean` there whose rate when seen for certain (at exposure 1,
/// mean `m = mean / mean_exposure`) is Beta with strength `seen`: the rate
/// at the mean exposure is that rate times `mean_exposure`, with variance
/// `mean_exposure² · m(1 - m) / (seen + 1)`.
fn strength_at_exposure(mean: f64, mean_exposure: f64, seen: f64) -> f64 {
    let m = (mean / mean_exposure.max(1e-9)).min(0.99);
    ((1.0 - mean) * (seen + 1.0) / (mean_exposure * (1.0 - m)) - 1.0).clamp(0.5, 1e5)
}

/// Each channel's [`RatePrior`], from the training sends read with floors
/// `floor` (see [`prior_observations`]).
///
/// A channel's mean is its own; how much its customers differ is shared:
/// one strength of the rate when seen for certain
/// ([`strength_at_exposure`]) for every channel, chosen for how well it
/// explains all their sends. A population of a few hundred customers pins a
/// channel's mean down but hardly its spread: fitted alone, one channel's
/// strength can come out several times another's from the draw. A channel
/// keeps a strength of its own where its customers tell it apart by more
/// than a parameter is worth (`½·ln n` nats for `n` customers, the Bayesian
/// information criterion).
fn fit_rate_priors(
    train: &[&SendRow],
    floor: &[f64; 5],
    at_typical: bool,
) -> [Option<RatePrior>; 5] {
    let fitted = prior_observations(train, floor, at_typical).map(|o| {
        let (obs, mean_exposure) = o?;
        let (mean, strength, ll) = fit_relative_prior(&obs);
        Some((obs, mean_exposure, mean, strength, ll))
    });
    // The shared strength, fitted on the channels that keep it; one at a
    // time, the channel it fits worst (by more than the criterion) takes
    // its own and leaves the shared fit.
    let mut keeps_own = [false; 5];
    let mut seen;
    loop {
        let shared = |seen: f64| -> f64 {
            fitted
                .iter()
                .zip(keeps_own)
                .filter(|(_, own)| !own)
                .filter_map(|(f, _)| f.as_ref())
                .map(|(obs, e, mean, _, _)| {
                    relative_prior_ll(obs, *mean, strength_at_exposure(*mean, *e, seen))
                })
                .sum()
        };
        seen = argmax(strengths(), &shared).1;
        let worst = fitted
            .iter()
            .enumerate()
            .filter(|(c, _)| !keeps_own[*c])
            .filter_map(|(c, f)| {
                let (obs, e, mean, _, own_ll) = f.as_ref()?;
                let common = strength_at_exposure(*mean, *e, seen);
                let gain = own_ll - relative_prior_ll(obs, *mean, common);
                (gain > 0.5 * (obs.len() as f64).ln()).then_some((c, gain))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match worst {
            Some((c, _)) => keeps_own[c] = true,
            None => break,
        }
    }
    std::array::from_fn(|c| {
        let (_, mean_exposure, mean, own, _) = fitted[c].as_ref()?;
        let (mean_exposure, mean) = (*mean_exposure, *mean);
        let strength = if keeps_own[c] || !seen.is_finite() {
            *own
        } else {
            strength_at_exposure(mean, mean_exposure, seen)
        };
        let prior = RatePrior {
            mean,
            strength,
            mean_exposure,
        };
        prior.validate().then_some(prior)
    })
}

impl Exposure {
    /// P(engage) for a customer with engagement rate `rate` on `channel`, a
    /// presence `p` in the window after the send and `typical` in a window
    /// at a typical time.
    #[inline]
    pub fn predict(&self, channel: Channel, rate: f64, p: f64, typical: f64) -> f64 {
        scaled_rate(rate, self.floor[channel.index()], p, typical)
    }

    pub fn validate(&self) -> bool {
        self.floor
            .iter()
            .all(|f| f.is_finite() && *f > 0.0 && *f <= 1.0)
            && self.rate_prior.iter().flatten().all(RatePrior::validate)
    }
}

/// `rate · e(p) / e(typical)` for a channel with floor `floor`, at most 1.
#[inline]
pub fn scaled_rate(rate: f64, floor: f64, p: f64, typical: f64) -> f64 {
    let e = |p: f64| floor + (1.0 - floor) * p;
    (rate * e(p) / e(typical).max(1e-9)).clamp(0.0, 1.0)
}

/// A send's rate under floor `f`: from the channel's [`RatePrior`] and the
/// customer's sends before it (`counts` of them), or, without a prior, as
/// estimated then.
#[inline]
fn row_rate(
    r: &SendRow,
    prior: Option<&RatePrior>,
    f: f64,
    counts: RateCounts,
    at_typical: bool,
) -> f64 {
    prior.map_or(r.context.rate, |p| {
        let (mut sends, engagements) = match counts {
            RateCounts::Decayed => (r.sends_before, r.engagements_before),
            RateCounts::Total => (r.sends_total_before, r.engagements_total_before),
        };
        if at_typical {
            sends = typical_sends(sends, f, r.sent_presence_before, r.typical_presence);
        }
        p.posterior_mean(f + (1.0 - f) * r.typical_presence, sends, engagements)
    })
}

/// How well `rows` are predicted, each send from the customer's counts
/// before it, with `floor`, `priors` and the rate form given.
fn rate_log_likelihood(
    rows: &[&SendRow],
    floor: &[f64; 5],
    priors: &[Option<RatePrior>; 5],
    counts: RateCounts,
    at_typical: bool,
) -> f64 {
    rows.iter()
        .map(|r| {
            let c = r.context.channel.index();
            let rate = row_rate(r, priors[c].as_ref(), floor[c], counts, at_typical);
            bernoulli_ll(
                scaled_rate(rate, floor[c], r.presence, r.typical_presence),
                r.engaged,
            )
        })
        .sum()
}

/// The rate priors, counts and whether sends count at a typical time,
/// whichever together predict `rows` best with `floor`; on a tie, the
/// simpler (decayed counts, each send one).
fn fit_rate_form(
    rows: &[&SendRow],
    floor: &[f64; 5],
) -> ([Option<RatePrior>; 5], RateCounts, bool) {
    let (_, priors, counts, at_typical) = fit_rate_form_ll(rows, floor);
    (priors, counts, at_typical)
}

/// [`fit_rate_form`] with the log-likelihood of `rows` under what it chose.
fn fit_rate_form_ll(
    rows: &[&SendRow],
    floor: &[f64; 5],
) -> (f64, [Option<RatePrior>; 5], RateCounts, bool) {
    let mut best: Option<(f64, [Option<RatePrior>; 5], RateCounts, bool)> = None;
    for at_typical in [false, true] {
        let priors = fit_rate_priors(rows, floor, at_typical);
        for counts in [RateCounts::Decayed, RateCounts::Total] {
            let ll = rate_log_likelihood(rows, floor, &priors, counts, at_typical);
            if best.as_ref().is_none_or(|b| ll > b.0) {
                best = Some((ll, priors, counts, at_typical));
            }
        }
    }
    best.unwrap_or((f64::NEG_INFINITY, [None; 5], RateCounts::Decayed, false))
}

/// ln P(outcome) for a predicted probability `q`.
#[inline]
fn bernoulli_ll(q: f64, engaged: bool) -> f64 {
    let q = q.clamp(1e-9, 1.0 - 1e-9);
    if engaged {
        q.ln()
    } else {
        (1.0 - q).ln()
    }
}

/// Pooled floors [`fit_exposure`] tries, in fiftieths: 0.04 to 0.5.
const POOLED_FLOORS: std::ops::RangeInclusive<usize> = 2..=25;
/// Training sends the floors are chosen on, at most: every send of an even
/// sample of customers. Each candidate floor fits the rate priors again
/// (over a million customers' sends, about a second each); ten thousand
/// sends already tell floors 0.04 apart.
const MAX_FLOOR_SENDS: usize = 20_000;
/// A channel's own floor is searched every this many fiftieths.
const CHANNEL_FLOOR_STEP: usize = 2;

/// The sends of an even sample of customers, about `max` of them in all.
fn customer_sample<'a>(train: &[&'a SendRow], max: usize) -> Vec<&'a SendRow> {
    if train.len() <= max {
        return train.to_vec();
    }
    let keep = (max as u64).max(1);
    let total = train.len() as u64;
    // A customer is kept when their hash falls in the first `keep/total` of its range.
    train
        .iter()
        .copied()
        .filter(|r| (r.customer_hash % total) < keep)
        .collect()
}

/// Each channel's floor: `pooled` unless the channel's own sends in
/// `rows` tell its floor apart. With the rate form (`counts`,
/// `at_typical`) kept, a channel's floor is chosen over the grid for how
/// well its rate prior fitted with it predicts the channel's sends, and
/// kept where it predicts its `n` sends better than the pooled floor by
/// more than a parameter is worth (`½·ln n` nats, the Bayesian information
/// criterion). A few thousand sends hardly tell floors apart, and a floor
/// fitted on them alone swings with the draw; millions tell a floor of 0.1
/// from one of 0.4.
fn channel_floors(
    rows: &[&SendRow],
    pooled: f64,
    counts: RateCounts,
    at_typical: bool,
) -> [f64; 5] {
    let mut floor = [pooled; 5];
    for c in Channel::ALL {
        let own: Vec<&SendRow> = rows
            .iter()
            .copied()
            .filter(|r| r.context.channel == c)
            .collect();
        if own.len() < MIN_CHANNEL_SENDS || !own.iter().any(|r| r.engaged) {
            continue;
        }
        let ll = |f: f64| {
            let mut trial = [pooled; 5];
            trial[c.index()] = f;
            let priors = fit_rate_priors(&own, &trial, at_typical);
            rate_log_likelihood(&own, &trial, &priors, counts, at_typical)
        };
        let grid = (CHANNEL_FLOOR_STEP..=FLOORS).step_by(CHANNEL_FLOOR_STEP);
        let (best_ll, best) = argmax(grid.map(|k| k as f64 / FLOORS as f64), &ll);
        if best_ll - ll(pooled) > 0.5 * (own.len() as f64).ln() {
            floor[c.index()] = best;
        }
    }
    floor
}

/// Fits the floors and then each channel's rate prior on `train`; the
/// calibration is measured on `heldout`, with the rates the priors give, as
/// decisions score.
///
/// The floors are fitted together with the rate form: a floor read on the
/// rates as they were estimated at each send is off, since those rates are
/// noisy and their errors are blamed on it. So one pooled floor is chosen
/// for how well the rate priors fitted with it predict each training send
/// from the sends before it, and then [`channel_floors`] around it.
pub fn fit_exposure(train: &[&SendRow], heldout: &[&SendRow], train_base: f64) -> Exposure {
    let search = customer_sample(train, MAX_FLOOR_SENDS);
    // The best pooled floor and the rate form it was fitted with; the lowest on a tie.
    let mut best = (f64::NEG_INFINITY, DEFAULT_FLOOR, RateCounts::Decayed, false);
    for pooled in POOLED_FLOORS.map(|k| k as f64 / FLOORS as f64) {
        let (ll, _, counts, at_typical) = fit_rate_form_ll(&search, &[pooled; 5]);
        if ll > best.0 {
            best = (ll, pooled, counts, at_typical);
        }
    }
    let (_, pooled, counts, at_typical) = best;
    let floor = channel_floors(&search, pooled, counts, at_typical);
    let (rate_prior, rate_counts, sends_at_typical) = fit_rate_form(train, &floor);
    let mut model = Exposure {
        floor,
        rate_prior,
        rate_counts,
        sends_at_typical,
        calibration: Calibration::default(),
    };
    let preds: Vec<(f64, bool)> = heldout
        .iter()
        .map(|r| {
            let c = r.context.channel.index();
            let rate = row_rate(
                r,
                model.rate_prior[c].as_ref(),
                model.floor[c],
                rate_counts,
                sends_at_typical,
            );
            (
                model.predict(r.context.channel, rate, r.presence, r.typical_presence),
                r.engaged,
            )
        })
        .collect();
    model.calibration = Calibration::of(preds, train_base, train.len() as u64);
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::SendContext;
    use rand::{Rng, SeedableRng};

    /// ln P(outcomes) of `rows` with floor `f`, on the rates as estimated at each send.
    fn log_likelihood(rows: &[&SendRow], f: f64) -> f64 {
        rows.iter()
            .map(|r| {
                bernoulli_ll(
                    scaled_rate(r.context.rate, f, r.presence, r.typical_presence),
                    r.engaged,
                )
            })
            .sum()
    }

    fn row(channel: Channel, rate: f64, presence: f64, typical: f64, engaged: bool) -> SendRow {
        SendRow {
            context: SendContext {
                lift: 1.0,
                activity: 5.0,
                rate,
                days_since_active: 1.0,
                sends_7d: 1.0,
                local_hour: 12.0,
                weekend: false,
                channel,
                evidence: 20.0,
            },
            engaged,
            customer_hash: 0,
            presence,
            typical_presence: typical,
            sends_before: 0.0,
            engagements_before: 0.0,
            sends_total_before: 0.0,
            sent_presence_before: typical,
            engagements_total_before: 0.0,
        }
    }

    /// Sends drawn from the exposure form with known floors: the fit finds
    /// each channel's floor, gives a channel with too few sends the pooled
    /// one, between them, and predicts held-out sends better than the base
    /// rate.
    #[test]
    fn fits_each_channels_floor() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let truth = [(Channel::Email, 0.4), (Channel::Push, 0.1)];
        let mut rows = Vec::new();
        for i in 0..40_000 {
            let (channel, floor) = truth[i % 2];
            let rate: f64 = rng.gen_range(0.05..0.3);
            let presence: f64 = rng.gen_range(0.0..1.0f64).powi(2);
            let typical: f64 = rng.gen_range(0.1..0.4);
            let p = scaled_rate(rate, floor, presence, typical);
            rows.push(row(channel, rate, presence, typical, rng.gen_bool(p)));
        }
        rows.push(row(Channel::Sms, 0.2, 0.5, 0.2, true));
        let train: Vec<&SendRow> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 != 4)
            .map(|(_, r)| r)
            .collect();
        let heldout: Vec<&SendRow> = rows.iter().skip(4).step_by(5).collect();
        let base = train.iter().filter(|r| r.engaged).count() as f64 / train.len() as f64;
        let fitted = fit_exposure(&train, &heldout, base);
        assert!(
            (fitted.floor[Channel::Email.index()] - 0.4).abs() <= 0.06,
            "{:?}",
            fitted.floor
        );
        assert!(
            (fitted.floor[Channel::Push.index()] - 0.1).abs() <= 0.04,
            "{:?}",
            fitted.floor
        );
        let (email, push, sms) = (
            fitted.floor[Channel::Email.index()],
            fitted.floor[Channel::Push.index()],
            fitted.floor[Channel::Sms.index()],
        );
        assert!(sms > push && sms < email, "{:?}", fitted.floor);
        assert!(fitted.validate());
        let cal = &fitted.calibration;
        assert!(cal.log_loss < cal.log_loss_base_rate, "{cal:?}");
        assert_eq!(cal.heldout_sends as usize, heldout.len());
    }

    /// 150 sends per channel, all with one true floor: each channel's own
    /// maximum-likelihood floor swings with the draw, and none of them
    /// explains its sends well enough to part from the pooled floor.
    #[test]
    fn thin_channels_share_the_pooled_floor() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let channels = [Channel::Email, Channel::Push, Channel::Sms, Channel::InApp];
        let mut rows = Vec::new();
        for i in 0..600 {
            let channel = channels[i % 4];
            let rate: f64 = rng.gen_range(0.1..0.4);
            let presence: f64 = rng.gen_range(0.0..1.0f64).powi(2);
            let typical: f64 = rng.gen_range(0.1..0.4);
            let p = scaled_rate(rate, 0.2, presence, typical);
            // The rate as estimated from a few sends: off by up to half.
            let estimated = rate * rng.gen_range(0.5..1.5);
            rows.push(row(channel, estimated, presence, typical, rng.gen_bool(p)));
        }
        let train: Vec<&SendRow> = rows.iter().collect();
        let own: Vec<f64> = channels
            .iter()
            .map(|c| {
                let rows: Vec<&SendRow> = train
                    .iter()
                    .copied()
                    .filter(|r| r.context.channel == *c)
                    .collect();
                argmax((1..=FLOORS).map(|k| k as f64 / FLOORS as f64), &|f| {
                    log_likelihood(&rows, f)
                })
                .1
            })
            .collect();
        let spread =
            own.iter().copied().fold(0.0, f64::max) - own.iter().copied().fold(1.0, f64::min);
        assert!(spread >= 0.1, "{own:?}");
        let fitted = fit_exposure(&train, &train, 0.1);
        assert!(
            fitted.floor.iter().all(|f| *f == fitted.floor[0]),
            "{:?}",
            fitted.floor
        );
    }

    /// A large training set is searched on an even sample of its customers,
    /// each with all of their sends; a small one whole.
    #[test]
    fn the_floor_search_samples_whole_customers() {
        let mut rows = Vec::new();
        for customer in 0..2_000u64 {
            for _ in 0..10 {
                let mut r = row(Channel::Email, 0.2, 0.5, 0.3, false);
                r.customer_hash = customer.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                rows.push(r);
            }
        }
        let all: Vec<&SendRow> = rows.iter().collect();
        assert_eq!(customer_sample(&all, 20_000).len(), 20_000);
        let sample = customer_sample(&all, 5_000);
        assert!((4_000..=6_000).contains(&sample.len()), "{}", sample.len());
        let mut per: HashMap<u64, usize> = HashMap::new();
        for r in &sample {
            *per.entry(r.customer_hash).or_default() += 1;
        }
        assert!(per.values().all(|n| *n == 10), "{per:?}");
    }

    /// Customers with rates of their own, sent to at random times and each
    /// send logged with the rate as estimated from the sends before it: read
    /// on those noisy rates, the floor is far off (their errors are blamed
    /// on it); fitted with the rates' prior, it is the true one.
    #[test]
    fn the_floor_is_fitted_with_the_rates_it_scales() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let floor = 0.2;
        let mut rows = Vec::new();
        for customer in 0..4_000u64 {
            let rate: f64 = rng.gen_range(0.02..0.5);
            let typical: f64 = rng.gen_range(0.05..0.5);
            let (mut sends, mut engagements, mut seen) = (0.0, 0.0, 0.0);
            for _ in 0..12 {
                let presence: f64 = rng.gen_range(0.0..1.0f64).powi(2);
                let engaged = rng.gen_bool(rate * (floor + (1.0 - floor) * presence));
                let estimated = (0.25 * 4.0 + engagements) / (4.0 + sends);
                let mut r = row(Channel::Push, estimated, presence, typical, engaged);
                r.customer_hash = customer;
                (r.sends_before, r.engagements_before) = (sends, engagements);
                (r.sends_total_before, r.engagements_total_before) = (sends, engagements);
                if sends > 0.0 {
                    r.sent_presence_before = seen / sends;
                }
                rows.push(r);
                sends += 1.0;
                engagements += f64::from(u8::from(engaged));
                seen += presence;
            }
        }
        let train: Vec<&SendRow> = rows.iter().collect();
        let as_estimated = argmax((1..=FLOORS).map(|k| k as f64 / FLOORS as f64), &|f| {
            log_likelihood(&train, f)
        })
        .1;
        let fitted = fit_exposure(&train, &train, 0.2).floor[Channel::Push.index()];
        assert!(
            (fitted - floor).abs() <= 0.02 && (as_estimated - floor).abs() >= 0.1,
            "fitted {fitted}, on the rates as estimated {as_estimated}"
        );
    }

    /// Customers whose rates are drawn from one distribution and scaled by
    /// their exposure (a third of them around five times as much as the
    /// rest): the fitted prior starts each group near its own mean raw rate,
    /// which the plain prior, with one mean for all, cannot.
    #[test]
    fn the_rate_prior_scales_with_each_customers_exposure() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let floor = 0.2;
        let mut rows = Vec::new();
        for customer in 0..3_000u64 {
            let typical: f64 = if customer % 3 == 0 { 0.9 } else { 0.05 };
            let exposure = floor + (1.0 - floor) * typical;
            let rate: f64 = rng.gen_range(0.1..0.5);
            for _ in 0..12 {
                let mut r = row(
                    Channel::Push,
                    0.1,
                    typical,
                    typical,
                    rng.gen_bool(rate * exposure),
                );
                r.customer_hash = customer;
                rows.push(r);
            }
        }
        let train: Vec<&SendRow> = rows.iter().collect();
        let mut floors = [DEFAULT_FLOOR; 5];
        floors[Channel::Push.index()] = floor;
        let priors = fit_rate_priors(&train, &floors, false);
        let prior = priors[Channel::Push.index()].unwrap_or_else(|| panic!("{priors:?}"));
        assert!(priors[Channel::Email.index()].is_none(), "no email sends");
        for typical in [0.9, 0.05] {
            let exposure = floor + (1.0 - floor) * typical;
            let (mean, _) = prior.prior_for(exposure);
            let truth = 0.3 * exposure;
            assert!(
                (mean / truth - 1.0).abs() < 0.1,
                "{typical}: {mean} vs {truth}, {prior:?}"
            );
            // With no sends, the posterior is the prior; sends move it.
            assert_eq!(prior.posterior_mean(exposure, 0.0, 0.0), mean);
            assert!(prior.posterior_mean(exposure, 10.0, 10.0) > mean);
        }
        // Scaling explains the groups' difference, leaving the rates' own
        // spread to the strength: uniform on 0.1-0.5 has the variance of a
        // Beta of strength 14.75, which seen through exposure e has a
        // strength of about 14.75 / e (within a factor of 2).
        let truth = 14.75 / prior.mean_exposure;
        assert!(
            prior.strength > truth / 2.0 && prior.strength < truth * 2.0,
            "{truth}: {prior:?}"
        );
        let e = Exposure {
            floor: floors,
            rate_prior: priors,
            rate_counts: RateCounts::Decayed,
            sends_at_typical: false,
            calibration: Calibration::default(),
        };
        assert!(e.validate());
    }

    /// The strength of the seen rate a channel's prior implies.
    fn seen_strength(p: &RatePrior) -> f64 {
        let m = p.mean / p.mean_exposure;
        (p.strength + 1.0) * p.mean_exposure * (1.0 - m) / (1.0 - p.mean) - 1.0
    }

    #[test]
    fn channels_share_how_much_their_customers_differ() {
        use rand_distr::{Beta, Distribution};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let floor = 0.2;
        let typical = 0.3;
        let exposure = floor + (1.0 - floor) * typical;
        // Seen rates Beta with strength 8 around each channel's mean; a
        // few SMS customers; web customers all alike.
        let channels = [
            (Channel::Email, 0.2, 2_000u64, Some(8.0)),
            (Channel::Push, 0.15, 2_000, Some(8.0)),
            (Channel::Sms, 0.3, 60, Some(8.0)),
            (Channel::Web, 0.3, 2_000, None),
        ];
        let mut rows = Vec::new();
        for (k, &(channel, mean, customers, strength)) in channels.iter().enumerate() {
            for customer in 0..customers {
                let rate = strength.map_or(mean, |s: f64| {
                    Beta::new(mean * s, (1.0 - mean) * s)
                        .map(|b| b.sample(&mut rng))
                        .unwrap_or(mean)
                });
                for _ in 0..12 {
                    let mut r = row(
                        channel,
                        0.1,
                        typical,
                        typical,
                        rng.gen_bool(rate * exposure),
                    );
                    r.customer_hash = k as u64 * 10_000 + customer;
                    rows.push(r);
                }
            }
        }
        let train: Vec<&SendRow> = rows.iter().collect();
        let priors = fit_rate_priors(&train, &[floor; 5], false);
        let seen =
            |c: Channel| seen_strength(&priors[c.index()].unwrap_or_else(|| panic!("{priors:?}")));
        // One spread for the channels that share it, the few SMS customers'
        // included, near the truth.
        let shared = seen(Channel::Email);
        for c in [Channel::Push, Channel::Sms] {
            assert!((seen(c) - shared).abs() < 1e-6 * shared, "{c}: {priors:?}");
        }
        assert!(shared > 4.0 && shared < 16.0, "{shared}: {priors:?}");
        // Fitted alone, the few SMS customers' strength is further off.
        let sms: Vec<&SendRow> = train
            .iter()
            .copied()
            .filter(|r| r.context.channel == Channel::Sms)
            .collect();
        let alone = fit_rate_priors(&sms, &[floor; 5], false)[Channel::Sms.index()]
            .unwrap_or_else(|| panic!("SMS alone"));
        let off = |seen: f64| (seen / 8.0).ln().abs();
        assert!(
            off(seen_strength(&alone)) > 2.0 * off(seen(Channel::Sms)),
            "{alone:?} against {shared}"
        );
        // Web customers, all alike, keep a strength of their own.
        assert!(seen(Channel::Web) > 5.0 * shared, "{priors:?}");
    }

    /// Customers whose sends all came while they were around engage more
    /// than their rate at a typical time, and those never around less: the
    /// fit counts their sends at a typical time, and its prior is then the
    /// rates' own. Where every send came at a typical time, both forms are
    /// the same and the simpler one stays.
    #[test]
    fn sends_made_when_customers_were_around_count_for_more() {
        let (floor, typical) = (0.2, 0.3);
        let rows_for = |around: f64, away: f64| -> Vec<SendRow> {
            let mut rng = rand::rngs::StdRng::seed_from_u64(4);
            let mut rows = Vec::new();
            for customer in 0..3_000u64 {
                let at = if customer % 2 == 0 { around } else { away };
                let rate: f64 = rng.gen_range(0.1..0.5);
                let (mut sends, mut engagements) = (0.0, 0.0);
                for _ in 0..20 {
                    let engaged = rng.gen_bool(scaled_rate(rate, floor, at, typical));
                    let mut r = row(Channel::Push, 0.3, at, typical, engaged);
                    r.customer_hash = customer;
                    (r.sends_before, r.engagements_before) = (sends, engagements);
                    (r.sends_total_before, r.engagements_total_before) = (sends, engagements);
                    if sends > 0.0 {
                        r.sent_presence_before = at;
                    }
                    rows.push(r);
                    sends += 1.0;
                    engagements += f64::from(u8::from(engaged));
                }
            }
            rows
        };
        let mut floors = [DEFAULT_FLOOR; 5];
        floors[Channel::Push.index()] = floor;
        let rows = rows_for(0.9, 0.02);
        let train: Vec<&SendRow> = rows.iter().collect();
        let (priors, _, at_typical) = fit_rate_form(&train, &floors);
        assert!(at_typical);
        let prior = priors[Channel::Push.index()].unwrap_or_else(|| panic!("{priors:?}"));
        assert!((prior.mean / 0.3 - 1.0).abs() < 0.1, "{prior:?}");

        let rows = rows_for(typical, typical);
        let train: Vec<&SendRow> = rows.iter().collect();
        assert!(!fit_rate_form(&train, &floors).2);
        assert_eq!(typical_sends(20.0, floor, typical, typical), 20.0);
    }

    /// Rates that hold steady are pinned down better by every send counted
    /// fully; rates that changed halfway, by counts where recent sends weigh
    /// more. Each send is predicted from the counts before it.
    #[test]
    fn training_keeps_the_counts_that_predict_the_sends() {
        let rows_for = |drift: bool| -> Vec<SendRow> {
            let mut rng = rand::rngs::StdRng::seed_from_u64(if drift { 2 } else { 1 });
            let mut rows = Vec::new();
            for customer in 0..2_000u64 {
                let (early, late): (f64, f64) = if rng.gen_bool(0.5) {
                    (0.1, 0.6)
                } else {
                    (0.6, 0.1)
                };
                let steady: f64 = rng.gen_range(0.1..0.6);
                let (mut decayed, mut total) = ((0.0, 0.0), (0.0, 0.0));
                for k in 0..30 {
                    let rate = match (drift, k < 15) {
                        (false, _) => steady,
                        (true, true) => early,
                        (true, false) => late,
                    };
                    let engaged = rng.gen_bool(rate);
                    let mut r = row(Channel::Email, 0.3, 1.0, 1.0, engaged);
                    r.customer_hash = customer;
                    (r.sends_before, r.engagements_before) = decayed;
                    (r.sends_total_before, r.engagements_total_before) = total;
                    rows.push(r);
                    let y = f64::from(u8::from(engaged));
                    decayed = (0.8 * decayed.0 + 1.0, 0.8 * decayed.1 + y);
                    total = (total.0 + 1.0, total.1 + y);
                }
            }
            rows
        };
        let mut floor = [DEFAULT_FLOOR; 5];
        floor[Channel::Email.index()] = 0.5;
        for (drift, expected) in [(false, RateCounts::Total), (true, RateCounts::Decayed)] {
            let rows = rows_for(drift);
            let train: Vec<&SendRow> = rows.iter().collect();
            let (priors, counts, _) = fit_rate_form(&train, &floor);
            assert!(priors[Channel::Email.index()].is_some());
            assert_eq!(counts, expected, "drift: {drift}");
        }
    }

    /// The form saturates: however much activity a window holds, a send is
    /// worth at most `rate / e(typical)`, and more presence is never worth less.
    #[test]
    fn saturates_and_grows_with_presence() {
        let e = Exposure {
            floor: [0.2; 5],
            rate_prior: [None; 5],
            rate_counts: RateCounts::Decayed,
            sends_at_typical: false,
            calibration: Calibration::default(),
        };
        let at = |p| e.predict(Channel::Sms, 0.1, p, 0.25);
        assert!((at(0.25) - 0.1).abs() < 1e-12);
        assert!((at(1.0) - 0.1 / 0.4).abs() < 1e-12);
        let mut last = 0.0;
        for k in 0..=100 {
            let v = at(f64::from(k) / 100.0);
            assert!(v >= last);
            last = v;
        }
        assert_eq!(e.predict(Channel::Sms, 0.9, 1.0, 0.0), 1.0);
    }

    /// Several lengths at once, from shared hourly factors, give what each
    /// gives alone (a length of 0 among them too); lengths that are not
    /// whole hours are each computed alone.
    #[test]
    fn typical_presences_match_one_length_at_a_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut out = Vec::new();
        for activity in [0.0, 0.5, 6.0, 40.0, 400.0] {
            let week: Vec<f64> = (0..168)
                .map(|_| rng.gen_range(0.0..1.0f64).powi(4))
                .collect();
            let total: f64 = week.iter().sum();
            let week: Vec<f64> = week.iter().map(|v| v / total).collect();
            let mass = QuarterMass::new(&week);
            for lens in [
                &[16, 4, 96][..],
                &[4, 672],
                &[16],
                &[4, 6, 96],
                &[],
                &[16, 0, 4],
                &[0, 96],
                &[0],
            ] {
                typical_presences(&mass, lens, activity, &mut out);
                assert_eq!(out.len(), lens.len());
                for (&len, &got) in lens.iter().zip(&out) {
                    let one = typical_presence(&mass, len, activity);
                    assert!((got - one).abs() < 1e-9, "{activity} {len}: {got} vs {one}");
                }
            }
        }
    }

    /// The typical presence is the mean over the week's hour starts: for an
    /// even week, the presence of an average window.
    #[test]
    fn typical_presence_of_an_even_week() {
        let mass = QuarterMass::new(&[1.0 / 168.0; 168]);
        let expected = presence(7.0 * 4.0 / 672.0);
        assert!((typical_presence(&mass, 4, 7.0) - expected).abs() < 1e-12);
        assert_eq!(typical_presence(&mass, 4, 0.0), 0.0);
    }
}
