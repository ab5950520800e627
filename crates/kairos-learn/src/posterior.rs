//! From a profile's counts to a proper distribution over the 168 local hours
//! of the week, and to per-channel engagement estimates.

use chrono::{DateTime, Utc};
use kairos_core::time::window_label;
use kairos_core::{HourOfWeek, HOURS_PER_WEEK};
use serde::{Deserialize, Serialize};

use crate::profile::ChannelStats;
use crate::{Population, ProfileState, ValidLearnParams};

/// Where a distribution's weight mostly comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    Personal,
    Segment,
    Global,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Personal => "personal",
            Basis::Segment => "segment",
            Basis::Global => "global",
        }
    }
}

/// A run of consecutive hours where the customer is most likely around.
/// `end_how` is exclusive (mod 168): hours 19 and 20 are `19..21`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakWindow {
    pub start_how: usize,
    pub end_how: usize,
    pub label: String,
    /// Probability mass inside the window.
    pub mass: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivityPosterior {
    /// 168 probabilities summing to 1.
    pub hour_of_week: Vec<f64>,
    pub basis: Basis,
    /// Decayed personal evidence, in events.
    pub evidence: f64,
    /// Weight of the personal part, `evidence / (evidence + prior_strength)`.
    pub personal_weight: f64,
    /// The segment most responsible for the prior, when there are segments.
    pub segment: Option<crate::activity::SegmentMatch>,
}

/// Circular Gaussian smoothing over neighbouring hours (the week wraps).
pub fn smooth(counts: &[f32], bandwidth_hours: f64) -> Vec<f64> {
    let n = counts.len();
    let reach = (3.0 * bandwidth_hours).ceil() as i64;
    let kernel: Vec<f64> = (-reach..=reach)
        .map(|d| (-(d as f64).powi(2) / (2.0 * bandwidth_hours.powi(2))).exp())
        .collect();
    let norm: f64 = kernel.iter().sum();
    let mut out = vec![0.0; n];
    for (i, &c) in counts.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        for (k, w) in kernel.iter().enumerate() {
            let j = (i as i64 + k as i64 - reach).rem_euclid(n as i64) as usize;
            out[j] += f64::from(c) * w / norm;
        }
    }
    out
}

impl ActivityPosterior {
    /// The posterior predictive distribution of the customer's next activity:
    /// smoothed personal counts shrunk toward the prior,
    /// `p = (smooth(c) + α·prior) / (n + α)`.
    pub fn new(
        profile: &ProfileState,
        prior: &Population,
        params: &ValidLearnParams,
        now: DateTime<Utc>,
    ) -> Self {
        let decay = profile.decay_to(now, params);
        let smoothed = smooth(&profile.activity, params.bandwidth_hours);
        let evidence: f64 = smoothed.iter().sum::<f64>() * decay;
        let alpha = params.prior_strength;
        let mut probs: Vec<f64> = smoothed
            .iter()
            .zip(&prior.hour_of_week)
            .map(|(s, q)| s * decay + alpha * q)
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        let personal_weight = evidence / (evidence + alpha);
        let basis = if personal_weight > 0.5 {
            Basis::Personal
        } else {
            prior.basis
        };
        Self {
            hour_of_week: probs,
            basis,
            evidence,
            personal_weight,
            segment: None,
        }
    }

    /// Up to `max` windows of consecutive hours clearly above the typical
    /// hour, heaviest first.
    pub fn peak_windows(&self, max: usize) -> Vec<PeakWindow> {
        let p = &self.hour_of_week;
        let top = p.iter().copied().fold(0.0, f64::max);
        let threshold = (0.6 * top).max(1.5 / HOURS_PER_WEEK as f64);
        let above: Vec<bool> = p.iter().map(|&v| v >= threshold).collect();
        if above.iter().all(|&a| a) || !above.iter().any(|&a| a) {
            return Vec::new();
        }
        // Start scanning just after an hour that is below the threshold so
        // that runs crossing the end of the week stay whole.
        let start = above.iter().position(|&a| !a).unwrap_or(0);
        let mut windows = Vec::new();
        let mut run: Option<(usize, usize, f64)> = None;
        for step in 1..=HOURS_PER_WEEK {
            let h = (start + step) % HOURS_PER_WEEK;
            match (above[h], run.as_mut()) {
                (true, Some((_, len, mass))) => {
                    *len += 1;
                    *mass += p[h];
                }
                (true, None) => run = Some((h, 1, p[h])),
                (false, Some(_)) => windows.extend(run.take()),
                (false, None) => {}
            }
        }
        windows.extend(run);
        windows.sort_by(|a, b| b.2.total_cmp(&a.2));
        windows
            .into_iter()
            .take(max)
            .map(|(s, len, mass)| {
                let last = (s + len - 1) % HOURS_PER_WEEK;
                let how = HourOfWeek::wrapping;
                PeakWindow {
                    start_how: s,
                    end_how: (last + 1) % HOURS_PER_WEEK,
                    label: window_label(how(s), how(last)),
                    mass,
                }
            })
            .collect()
    }
}

/// A channel's engagement rate: the Beta posterior of engagements per send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelEstimate {
    pub sends: f64,
    pub engagements: f64,
    pub sends_total: u32,
    pub engagements_total: u32,
    /// Posterior mean.
    pub rate: f64,
    /// Central 95% credible interval.
    pub rate_ci: [f64; 2],
}

impl ChannelEstimate {
    pub fn new(stats: &ChannelStats, decay: f64, params: &ValidLearnParams) -> Self {
        let engagements = f64::from(stats.engagements) * decay;
        // Engagements whose send was never reported still imply a send.
        let sends = (f64::from(stats.sends) * decay).max(engagements);
        let a = params.channel_prior_rate * params.channel_prior_strength + engagements;
        let b =
            (1.0 - params.channel_prior_rate) * params.channel_prior_strength + sends - engagements;
        Self {
            sends,
            engagements,
            sends_total: stats.sends_total,
            engagements_total: stats.engagements_total,
            rate: a / (a + b),
            rate_ci: [
                crate::stats::beta_quantile(0.025, a, b),
                crate::stats::beta_quantile(0.975, a, b),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn profile_with(counts: &[(usize, f32)]) -> ProfileState {
        let mut p = ProfileState::default();
        for &(h, c) in counts {
            p.activity[h] = c;
        }
        p.reference = DateTime::from_timestamp(1_800_000_000, 0);
        p
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn no_events_is_the_prior() {
        let pop = Population::uniform();
        let post = ActivityPosterior::new(
            &ProfileState::default(),
            &pop,
            &ValidLearnParams::default(),
            now(),
        );
        assert_eq!(post.basis, Basis::Global);
        assert!(post
            .hour_of_week
            .iter()
            .all(|p| (p - 1.0 / 168.0).abs() < 1e-12));
        assert!(post.peak_windows(3).is_empty());
    }

    #[test]
    fn few_events_mostly_prior_many_mostly_personal() {
        let pop = Population::uniform();
        let params = ValidLearnParams::default();
        let few = ActivityPosterior::new(&profile_with(&[(19, 3.0)]), &pop, &params, now());
        assert_eq!(few.basis, Basis::Global);
        assert!(few.personal_weight < 0.3);
        let many = ActivityPosterior::new(
            &profile_with(&[(19, 150.0), (20, 150.0)]),
            &pop,
            &params,
            now(),
        );
        assert_eq!(many.basis, Basis::Personal);
        assert!(many.personal_weight > 0.95);
        let peaks = many.peak_windows(3);
        assert_eq!(peaks[0].start_how, 19);
        assert_eq!(peaks[0].end_how, 21);
        assert_eq!(peaks[0].label, "Monday 19:00-21:00");
    }

    #[test]
    fn peak_windows_wrap_the_week() {
        let post = ActivityPosterior::new(
            &profile_with(&[(167, 200.0), (0, 200.0)]),
            &Population::uniform(),
            &ValidLearnParams::default(),
            now(),
        );
        let peaks = post.peak_windows(3);
        assert_eq!(
            (peaks[0].start_how, peaks[0].end_how),
            (167, 1),
            "{peaks:?}"
        );
        assert_eq!(peaks[0].label, "Sunday 23:00-Monday 01:00");
    }

    #[test]
    fn channel_rate_is_a_beta_posterior() {
        let params = ValidLearnParams::default();
        let stats = ChannelStats {
            sends: 9.0,
            engagements: 6.0,
            ..ChannelStats::default()
        };
        let e = ChannelEstimate::new(&stats, 1.0, &params);
        // (0.6 + 6) / (4 + 9)
        assert!((e.rate - 6.6 / 13.0).abs() < 1e-12);
        assert!(e.rate_ci[0] < e.rate && e.rate < e.rate_ci[1]);
        let none = ChannelEstimate::new(&ChannelStats::default(), 1.0, &params);
        assert!((none.rate - 0.15).abs() < 1e-12);
        assert!(none.rate_ci[1] - none.rate_ci[0] > e.rate_ci[1] - e.rate_ci[0]);
    }

    proptest! {
        #[test]
        fn posterior_is_a_proper_distribution(
            counts in proptest::collection::vec(0f32..50.0, 168),
            sparse in any::<bool>(),
            age_days in 0i64..1000,
        ) {
            let mut p = ProfileState::default();
            for (i, c) in counts.iter().enumerate() {
                p.activity[i] = if sparse && i % 7 != 0 { 0.0 } else { *c };
            }
            p.reference = DateTime::from_timestamp(1_700_000_000, 0);
            let at = p.reference.unwrap_or_default() + chrono::Duration::days(age_days);
            let post = ActivityPosterior::new(&p, &Population::uniform(), &ValidLearnParams::default(), at);
            let sum: f64 = post.hour_of_week.iter().sum();
            prop_assert_eq!(post.hour_of_week.len(), 168);
            prop_assert!((sum - 1.0).abs() < 1e-9);
            prop_assert!(post.hour_of_week.iter().all(|v| *v > 0.0 && v.is_finite()));
        }
    }
}
