//! Thompson sampling over Beta posteriors: each arm's weight is the share of
//! joint posterior draws in which it has the highest conversion rate, with
//! a floor per arm so no arm starves, renormalised to sum to 1.

use rand::SeedableRng;
use rand_distr::{Beta, Distribution};

use crate::stats::Arm;

/// Posterior draws per weight update.
const DRAWS: usize = 10_000;

/// Weights for `arms` (uniform Beta(1, 1) priors), at least `min_weight`
/// each. `seed` makes the update reproducible.
pub fn thompson_weights(arms: &[Arm], min_weight: f64, seed: u64) -> Vec<f64> {
    let k = arms.len();
    if k == 0 {
        return Vec::new();
    }
    let posteriors: Vec<Option<Beta<f64>>> = arms
        .iter()
        .map(|a| {
            let wins = a.conversions.min(a.exposures) as f64;
            let losses = (a.exposures - a.conversions.min(a.exposures)) as f64;
            Beta::new(1.0 + wins, 1.0 + losses).ok()
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut best = vec![0usize; k];
    for _ in 0..DRAWS {
        let mut top = (0, f64::MIN);
        for (i, p) in posteriors.iter().enumerate() {
            let draw = p.as_ref().map_or(0.0, |p| p.sample(&mut rng));
            if draw > top.1 {
                top = (i, draw);
            }
        }
        best[top.0] += 1;
    }
    let raw: Vec<f64> = best.iter().map(|n| *n as f64 / DRAWS as f64).collect();
    with_floor(&raw, min_weight)
}

/// `weights` with every one at least `floor` (at most 1/k), the rest
/// shared in proportion to how far each was above it.
pub fn with_floor(weights: &[f64], floor: f64) -> Vec<f64> {
    let k = weights.len();
    if k == 0 {
        return Vec::new();
    }
    let floor = floor.clamp(0.0, 1.0 / k as f64);
    let free = 1.0 - floor * k as f64;
    let total: f64 = weights.iter().map(|w| w.max(0.0)).sum();
    weights
        .iter()
        .map(|w| {
            if total > 0.0 {
                floor + free * w.max(0.0) / total
            } else {
                1.0 / k as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_arm_gets_most_weight_and_none_starves() {
        let arms = [
            Arm {
                exposures: 500,
                conversions: 25,
            },
            Arm {
                exposures: 500,
                conversions: 30,
            },
            Arm {
                exposures: 500,
                conversions: 75,
            },
            Arm {
                exposures: 500,
                conversions: 20,
            },
        ];
        let w = thompson_weights(&arms, 0.01, 7);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(w[2] > 0.9, "{w:?}");
        assert!(w.iter().all(|x| *x >= 0.01 - 1e-12), "{w:?}");
        assert_eq!(w, thompson_weights(&arms, 0.01, 7), "reproducible");
    }

    #[test]
    fn without_data_arms_are_equal() {
        let arms = [Arm {
            exposures: 0,
            conversions: 0,
        }; 4];
        let w = thompson_weights(&arms, 0.01, 1);
        assert!(w.iter().all(|x| (x - 0.25).abs() < 0.03), "{w:?}");
    }
}
