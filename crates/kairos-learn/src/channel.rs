//! Channel engagement rates: a Beta prior per channel, fitted across
//! customers by empirical Bayes (maximum Beta-Binomial marginal likelihood).

use kairos_core::Channel;
use serde::{Deserialize, Serialize};

use crate::stats::ln_gamma;

/// Beta(alpha, beta): prior engagements and non-engagements, in sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BetaPrior {
    pub alpha: f64,
    pub beta: f64,
}

impl BetaPrior {
    pub fn from_mean(mean: f64, strength: f64) -> Self {
        Self {
            alpha: mean * strength,
            beta: (1.0 - mean) * strength,
        }
    }

    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    pub fn strength(&self) -> f64 {
        self.alpha + self.beta
    }
}

/// A fitted prior per channel, with how many customers it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelPriors {
    /// By [`Channel::index`].
    pub priors: Vec<BetaPrior>,
    pub customers: Vec<u64>,
}

impl ChannelPriors {
    pub fn uniform(prior: BetaPrior) -> Self {
        Self {
            priors: vec![prior; Channel::ALL.len()],
            customers: vec![0; Channel::ALL.len()],
        }
    }

    pub fn get(&self, channel: Channel) -> BetaPrior {
        self.priors[channel.index()]
    }

    /// Fits each channel's prior to customers' (sends, engagements). A
    /// channel with fewer than `min_customers` gets the lowest mean among the
    /// fitted channels (an untried channel should not win on optimism) with
    /// the fallback's strength, or `fallback` when no channel could be fitted.
    pub fn fit(
        observations: &[Vec<(u32, u32)>],
        fallback: BetaPrior,
        min_customers: usize,
    ) -> Self {
        let mut out = Self::uniform(fallback);
        let mut fitted = [false; 5];
        for (i, obs) in observations.iter().enumerate().take(Channel::ALL.len()) {
            let obs: Vec<(u32, u32)> = obs.iter().copied().filter(|(s, _)| *s > 0).collect();
            out.customers[i] = obs.len() as u64;
            if obs.len() >= min_customers {
                out.priors[i] = fit_beta_binomial(&obs);
                fitted[i] = true;
            }
        }
        let lowest = out
            .priors
            .iter()
            .zip(fitted)
            .filter(|(_, f)| *f)
            .map(|(p, _)| p.mean())
            .fold(None, |acc: Option<f64>, m| {
                Some(acc.map_or(m, |a| a.min(m)))
            });
        if let Some(mean) = lowest {
            for (p, f) in out.priors.iter_mut().zip(fitted) {
                if !f {
                    *p = BetaPrior::from_mean(mean, fallback.strength());
                }
            }
        }
        out
    }
}

/// ln B(a, b)
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln P(k engagements in n sends) under a Beta(a, b) rate, without the
/// binomial coefficient (the same for every prior).
#[inline]
pub(crate) fn beta_binomial_ll(n: f64, k: f64, a: f64, b: f64) -> f64 {
    let k = k.min(n);
    ln_beta(k + a, n - k + b) - ln_beta(a, b)
}

/// The engagement rate of `engagements` in `sends`, pooled over customers
/// (with half an engagement added), and the prior means searched around it.
pub(crate) fn prior_means(sends: f64, engagements: f64) -> (f64, Vec<f64>) {
    let pooled = ((engagements + 0.5) / (sends + 1.0)).clamp(1e-4, 1.0 - 1e-4);
    let means = (1..=40)
        .map(|m| (pooled * (0.25 + 0.05 * f64::from(m))).clamp(1e-4, 1.0 - 1e-4))
        .collect();
    (pooled, means)
}

/// Maximum marginal likelihood Beta prior for (sends, engagements) pairs,
/// over a grid of means around the pooled rate and strengths 0.5-1000.
pub fn fit_beta_binomial(obs: &[(u32, u32)]) -> BetaPrior {
    let (s, e) = obs.iter().fold((0u64, 0u64), |(s, e), (a, b)| {
        (s + u64::from(*a), e + u64::from(*b.min(a)))
    });
    let (pooled, means) = prior_means(s as f64, e as f64);
    let loglik = |p: BetaPrior| -> f64 {
        obs.iter()
            .map(|&(n, k)| beta_binomial_ll(f64::from(n), f64::from(k), p.alpha, p.beta))
            .sum()
    };
    let mut best = (f64::NEG_INFINITY, BetaPrior::from_mean(pooled, 4.0));
    for mean in means {
        for strength in [
            0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 35.0, 60.0, 100.0, 200.0, 400.0, 1000.0,
        ] {
            let p = BetaPrior::from_mean(mean, strength);
            let ll = loglik(p);
            if ll > best.0 {
                best = (ll, p);
            }
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_homogeneous_rate_as_a_strong_prior() {
        // Everyone engages with 30% of sends: the prior should be strong and near 0.3.
        let obs: Vec<(u32, u32)> = (0..400)
            .map(|i| (10, if i % 10 < 3 { 4 } else { 2 }))
            .collect();
        let p = fit_beta_binomial(&obs);
        assert!((p.mean() - 0.28).abs() < 0.03, "{p:?}");
        assert!(p.strength() >= 35.0, "{p:?}");
    }

    #[test]
    fn heterogeneous_customers_get_a_weak_prior() {
        // Half never engage, half nearly always do.
        let obs: Vec<(u32, u32)> = (0..400)
            .map(|i| (10, if i % 2 == 0 { 0 } else { 9 }))
            .collect();
        let p = fit_beta_binomial(&obs);
        // A U-shaped Beta; its maximum-likelihood mean need not be the pooled rate.
        assert!((p.mean() - 0.45).abs() < 0.15, "{p:?}");
        assert!(p.strength() <= 3.0, "{p:?}");
    }

    #[test]
    fn too_few_customers_keep_the_fallback() {
        let fallback = BetaPrior::from_mean(0.15, 4.0);
        let mut obs = vec![Vec::new(); 5];
        obs[0] = vec![(5, 1); 3];
        let fitted = ChannelPriors::fit(&obs, fallback, 20);
        assert_eq!(fitted.get(Channel::Email), fallback);
        assert_eq!(fitted.customers[0], 3);
        // With a fitted channel, untried ones take the lowest fitted mean.
        obs[1] = (0..50)
            .map(|i| (10, if i % 10 == 0 { 1 } else { 0 }))
            .collect();
        let fitted = ChannelPriors::fit(&obs, fallback, 20);
        let push = fitted.get(Channel::Push).mean();
        assert!(push < 0.05, "{push}");
        assert!((fitted.get(Channel::Web).mean() - push).abs() < 1e-12);
    }
}
