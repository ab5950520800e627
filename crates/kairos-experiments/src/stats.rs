//! Experiment results as GrowthBook's stats engine (gbstats) computes them
//! by default for a conversion (binomial) metric: the relative effect of a
//! variant against the control, its variance by the delta method, a
//! Bayesian test with a flat prior and a frequentist Welch t-test; and a
//! sample-ratio-mismatch check.
//!
//! For the control `a` and a variant `b`, with `n` exposures and `x`
//! conversions each, `m = x / n` and `v = m (1 - m)`:
//!
//! - relative effect `d = m_b / m_a - 1`;
//! - delta-method variance `s² = v_b / (m_a² n_b) + v_a m_b² / (m_a⁴ n_a)`;
//! - **Bayesian** (flat prior: the posterior of the effect is `N(d, s²)`):
//!   `chance_to_win = Φ(d / s)`; `uplift.ci = d ± z₀.₉₇₅ s`; `risk` is the
//!   expected relative loss of choosing the variant,
//!   `E[max(0, -X)] = s φ(d/s) - d (1 - Φ(d/s))`, and of keeping the control,
//!   `E[max(0, X)] = s φ(d/s) + d Φ(d/s)`;
//! - **frequentist** (Welch): `t = d / s`, degrees of freedom
//!   `(v_a/n_a + v_b/n_b)² / (v_a²/(n_a²(n_a-1)) + v_b²/(n_b²(n_b-1)))`,
//!   `p = 2 (1 - T_df(|t|))`, `ci = d ± T⁻¹_df(0.975) s`;
//! - **SRM**: Pearson's chi-square of the observed exposures against the
//!   configured weights, `k - 1` degrees of freedom.

use serde::Serialize;
use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

/// One arm's counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Arm {
    pub exposures: u64,
    pub conversions: u64,
}

impl Arm {
    pub fn rate(&self) -> f64 {
        if self.exposures == 0 {
            0.0
        } else {
            self.conversions as f64 / self.exposures as f64
        }
    }
}

/// A variant against the control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Probability the variant's rate is above the control's.
    pub chance_to_win: f64,
    /// Relative effect: mean and 95% credible interval.
    pub uplift_mean: f64,
    pub uplift_ci: (f64, f64),
    /// Expected relative loss of choosing the variant, and of keeping the control.
    pub risk: f64,
    pub risk_control: f64,
    pub p_value: f64,
    /// 95% confidence interval of the relative effect.
    pub ci: (f64, f64),
}

fn standard_normal() -> Option<Normal> {
    Normal::new(0.0, 1.0).ok()
}

/// `b` against the control `a`; `None` when either arm has no exposures,
/// the control no conversions, or no variance.
pub fn compare(a: Arm, b: Arm) -> Option<Comparison> {
    if a.exposures < 2 || b.exposures < 2 {
        return None;
    }
    let (na, nb) = (a.exposures as f64, b.exposures as f64);
    let (ma, mb) = (a.rate(), b.rate());
    if ma <= 0.0 {
        return None;
    }
    let (va, vb) = (ma * (1.0 - ma), mb * (1.0 - mb));
    let d = mb / ma - 1.0;
    let var = vb / (ma * ma * nb) + va * mb * mb / (ma.powi(4) * na);
    if !(var > 0.0 && var.is_finite()) {
        return None;
    }
    let s = var.sqrt();
    let z = standard_normal()?;
    let q = z.inverse_cdf(0.975);
    let ratio = d / s;
    let ctw = z.cdf(ratio);
    let pdf = z.pdf(ratio);
    let risk = s * pdf - d * (1.0 - ctw);
    let risk_control = s * pdf + d * ctw;

    let df_num = (va / na + vb / nb).powi(2);
    let df_den = va * va / (na * na * (na - 1.0)) + vb * vb / (nb * nb * (nb - 1.0));
    let df = if df_den > 0.0 {
        df_num / df_den
    } else {
        na + nb - 2.0
    };
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let p_value = 2.0 * (1.0 - t.cdf(ratio.abs()));
    let tq = t.inverse_cdf(0.975);
    Some(Comparison {
        chance_to_win: ctw,
        uplift_mean: d,
        uplift_ci: (d - q * s, d + q * s),
        risk,
        risk_control,
        p_value,
        ci: (d - tq * s, d + tq * s),
    })
}

/// The p-value of Pearson's chi-square test of `observed` counts against
/// `weights` (normalised); `None` without at least two arms and one count.
pub fn srm_p_value(observed: &[u64], weights: &[f64]) -> Option<f64> {
    if observed.len() < 2 || observed.len() != weights.len() {
        return None;
    }
    let total: f64 = observed.iter().map(|n| *n as f64).sum();
    let wsum: f64 = weights.iter().sum();
    if total <= 0.0 || wsum <= 0.0 {
        return None;
    }
    let mut chi2 = 0.0;
    for (o, w) in observed.iter().zip(weights) {
        let expected = total * w / wsum;
        if expected > 0.0 {
            chi2 += (*o as f64 - expected).powi(2) / expected;
        }
    }
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    Some(1.0 - dist.cdf(chi2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(conversions: u64, exposures: u64) -> Arm {
        Arm {
            exposures,
            conversions,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    /// gbstats' published checks, to 4 decimals.
    #[test]
    fn bayesian_matches_gbstats() {
        let c = compare(arm(49, 100), arm(51, 100)).unwrap_or_else(|| panic!("no result"));
        assert!(close(c.chance_to_win, 0.60918), "{c:?}");
        assert!(close(c.uplift_ci.0, -0.24779), "{c:?}");
        assert!(close(c.uplift_ci.1, 0.32943), "{c:?}");
    }

    #[test]
    fn frequentist_matches_gbstats() {
        let c = compare(arm(14, 28), arm(16, 30)).unwrap_or_else(|| panic!("no result"));
        assert!(close(c.p_value, 0.80707), "{c:?}");
        assert!(close(c.ci.0, -0.47767), "{c:?}");
        assert!(close(c.ci.1, 0.61101), "{c:?}");
    }

    #[test]
    fn srm_flags_a_5000_5200_split() {
        let p = srm_p_value(&[5000, 5200], &[0.5, 0.5]).unwrap_or(1.0);
        assert!((p - 0.0477).abs() < 5e-4, "{p}");
        assert!(p < 0.05);
        let fine = srm_p_value(&[5000, 5010], &[0.5, 0.5]).unwrap_or(0.0);
        assert!(fine > 0.5, "{fine}");
    }

    #[test]
    fn risk_is_the_expected_loss() {
        let c = compare(arm(100, 1000), arm(150, 1000)).unwrap_or_else(|| panic!("no result"));
        assert!(c.chance_to_win > 0.99);
        assert!(c.risk >= 0.0 && c.risk < 0.001, "{c:?}");
        assert!(c.risk_control > 0.4, "{c:?}");
        assert!(compare(arm(0, 100), arm(5, 100)).is_none());
    }
}
