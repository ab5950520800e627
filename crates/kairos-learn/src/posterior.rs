//! From a profile's counts to a proper distribution over the 168 local hours
//! of the week, and to per-channel engagement estimates.

use kairos_core::time::window_label;
use kairos_core::{HourOfWeek, HOURS_PER_WEEK};
use serde::{Deserialize, Serialize};

use crate::channel::BetaPrior;
use crate::profile::ChannelStats;

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

impl ActivityPosterior {
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
        let mut h = start;
        for _ in 0..HOURS_PER_WEEK {
            h = if h + 1 == HOURS_PER_WEEK { 0 } else { h + 1 };
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
    /// The posterior Beta(alpha, beta).
    pub alpha: f64,
    pub beta: f64,
}

impl ChannelEstimate {
    /// The posterior of a channel's rate under `prior`, from the customer's
    /// decayed sends and attributed engagements.
    pub fn new(stats: &ChannelStats, prior: BetaPrior) -> Self {
        let engagements = f64::from(stats.engagements);
        // Guard against rounding: never more engagements than sends.
        let sends = f64::from(stats.sends).max(engagements);
        let alpha = prior.alpha + engagements;
        let beta = prior.beta + sends - engagements;
        Self {
            sends,
            engagements,
            sends_total: stats.sends_total,
            engagements_total: stats.engagements_total,
            rate: alpha / (alpha + beta),
            alpha,
            beta,
        }
    }

    /// Central 95% credible interval (computed on demand: it is not cheap).
    pub fn rate_ci(&self) -> [f64; 2] {
        self.rate_ci_within(1e-14)
    }

    /// [`Self::rate_ci`] to within about `tolerance`
    /// ([`crate::stats::beta_quantile_within`]): cheaper where it is shown
    /// rounded.
    pub fn rate_ci_within(&self, tolerance: f64) -> [f64; 2] {
        crate::stats::beta_quantiles_within([0.025, 0.975], self.alpha, self.beta, tolerance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::{ActivityModel, ActivityParams};

    fn model() -> ActivityModel {
        let mut m = ActivityModel::untrained(ActivityParams::default());
        m.customers = 10;
        m
    }

    fn counts(hours: &[(usize, f64)]) -> Vec<f64> {
        let mut c = vec![0.0; HOURS_PER_WEEK];
        for &(h, v) in hours {
            c[h] = v;
        }
        c
    }

    #[test]
    fn peak_windows_are_labelled() {
        let post = model().posterior64(&counts(&[(19, 150.0), (20, 150.0)]));
        let peaks = post.peak_windows(3);
        assert_eq!((peaks[0].start_how, peaks[0].end_how), (19, 21));
        assert_eq!(peaks[0].label, "Monday 19:00-21:00");
        assert!(model().posterior64(&counts(&[])).peak_windows(3).is_empty());
    }

    #[test]
    fn peak_windows_wrap_the_week() {
        let post = model().posterior64(&counts(&[(167, 200.0), (0, 200.0)]));
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
        let prior = BetaPrior {
            alpha: 0.6,
            beta: 3.4,
        };
        let stats = ChannelStats {
            sends: 9.0,
            engagements: 6.0,
            ..ChannelStats::default()
        };
        let e = ChannelEstimate::new(&stats, prior);
        assert!((e.rate - 6.6 / 13.0).abs() < 1e-12);
        assert!(e.rate_ci()[0] < e.rate && e.rate < e.rate_ci()[1]);
        let none = ChannelEstimate::new(&ChannelStats::default(), prior);
        assert!((none.rate - 0.15).abs() < 1e-12);
        assert!(none.rate_ci()[1] - none.rate_ci()[0] > e.rate_ci()[1] - e.rate_ci()[0]);
    }

    proptest::proptest! {
        /// Whatever the counts and parameters, the posterior is a proper distribution.
        #[test]
        fn posterior_is_a_proper_distribution(
            c in proptest::collection::vec(0f64..50.0, 168),
            sparse in proptest::prelude::any::<bool>(),
            bandwidth in 0.3f64..4.0,
            day_strength in 0.0f64..100.0,
            strength in 0.1f64..100.0,
        ) {
            let mut m = model();
            m.params = ActivityParams { bandwidth_hours: bandwidth, day_strength, prior_strength: strength, ..m.params };
            let c: Vec<f64> = c.iter().enumerate().map(|(i, v)| if sparse && i % 7 != 0 { 0.0 } else { *v }).collect();
            let post = m.posterior64(&c);
            let sum: f64 = post.hour_of_week.iter().sum();
            proptest::prop_assert_eq!(post.hour_of_week.len(), 168);
            proptest::prop_assert!((sum - 1.0).abs() < 1e-9);
            proptest::prop_assert!(post.hour_of_week.iter().all(|v| *v > 0.0 && v.is_finite()));
        }
    }
}
