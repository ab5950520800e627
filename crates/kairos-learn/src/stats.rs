//! Small numerical helpers: the regularized incomplete beta function and its
//! inverse, for credible intervals of Beta posteriors.

/// ln Γ(x) by the Lanczos approximation (g = 7, n = 9), accurate to ~1e-15.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x <= 0.0 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    if x < 0.5 {
        // Γ(x) = Γ(x + 1) / x: one logarithm, where the reflection above
        // takes a sine and two.
        return ln_gamma(x + 1.0) - x.ln();
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized incomplete beta I_x(a, b) (continued fraction, Lentz's method).
pub fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    beta_cdf_with(x, a, b, ln_beta(a, b))
}

/// ln B(a, b).
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// [`beta_cdf`] with ln B(a, b) already known.
fn beta_cdf_with(x: f64, a: f64, b: f64, ln_beta: f64) -> f64 {
    beta_cdf_within(x, a, b, ln_beta, 1e-14)
}

/// [`beta_cdf_with`], the continued fraction stopped once a term changes
/// it by less than `tolerance`, relatively.
fn beta_cdf_within(x: f64, a: f64, b: f64, ln_beta: f64, tolerance: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta;
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_cf(x, a, b, tolerance) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_cf(1.0 - x, b, a, tolerance) / b).clamp(0.0, 1.0)
    }
}

fn beta_cf(x: f64, a: f64, b: f64, tolerance: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < tolerance {
            break;
        }
    }
    h
}

/// The p-quantile of Beta(a, b): Halley's method on [`beta_cdf`], kept
/// inside a shrinking bracket (bisecting whenever a step would leave it).
///
/// It starts from the normal approximation corrected for skewness
/// (Cornish-Fisher, with Abramowitz and Stegun 26.2.23 for the normal
/// quantile), which is close for all but the most skewed shapes, so a few
/// steps suffice.
pub fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    beta_quantile_within(p, a, b, 1e-14)
}

/// [`beta_quantile`] to within about `tolerance` (at least 1e-14): it
/// stops once a step is shorter, and the CDF's continued fraction stops
/// at a tenth of it, relatively (the CDF is below 1, its slope at the
/// quantile not far from 1 or more, so the quantile moves by less). Where
/// a quantile is only shown to whole percents, 1e-7 spares a CDF
/// evaluation and a third of the fraction's terms.
pub fn beta_quantile_within(p: f64, a: f64, b: f64, tolerance: f64) -> f64 {
    let tolerance = tolerance.max(1e-14);
    let cf_tolerance = (tolerance / 10.0).max(1e-14);
    let ln_beta = ln_beta(a, b);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut x = quantile_start(p, a, b, ln_beta);
    for _ in 0..100 {
        let f = beta_cdf_within(x, a, b, ln_beta, cf_tolerance) - p;
        if f.abs() < 1e-12 {
            break;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let density = ((a - 1.0) * x.ln() + (b - 1.0) * (1.0 - x).ln() - ln_beta).exp();
        // Halley's step: the density's slope relative to the density is
        // (a - 1) / x - (b - 1) / (1 - x), so the step of third order costs
        // no more evaluations of the CDF than Newton's; Newton's where the
        // correction would be large (near a pole of the density).
        let newton = f / density;
        let halley = 1.0 - 0.5 * newton * ((a - 1.0) / x - (b - 1.0) / (1.0 - x));
        let step = if halley > 0.5 && halley < 2.0 {
            newton / halley
        } else {
            newton
        };
        let mut next = x - step;
        if !(next.is_finite() && next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - x).abs() < tolerance || hi - lo < tolerance {
            x = next;
            break;
        }
        x = next;
    }
    x
}

/// Where Newton starts for the p-quantile of Beta(a, b): the normal
/// quantile corrected for the Beta's skewness (Cornish-Fisher); where that
/// falls outside (0, 1), the leading term of the tail it fell into
/// (`I_x(a, b) ≈ x^a / (a·B(a, b))` near 0, and its mirror near 1).
fn quantile_start(p: f64, a: f64, b: f64, ln_beta: f64) -> f64 {
    let mean = a / (a + b);
    let sd = (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
    let z = normal_quantile(p);
    let skew = 2.0 * (b - a) * (a + b + 1.0).sqrt() / ((a + b + 2.0) * (a * b).sqrt());
    let start = mean + (z + (z * z - 1.0) * skew / 6.0) * sd;
    let tail = if start.is_finite() && start > 0.0 && start < 1.0 {
        return start;
    } else if start <= 0.0 {
        ((p.ln() + a.ln() + ln_beta) / a).exp()
    } else {
        1.0 - (((1.0 - p).ln() + b.ln() + ln_beta) / b).exp()
    };
    if tail.is_finite() && tail > 0.0 && tail < 1.0 {
        tail
    } else {
        mean.clamp(1e-9, 1.0 - 1e-9)
    }
}

/// The standard normal p-quantile to within 4.5e-4 (Abramowitz and Stegun
/// 26.2.23): a starting point, not an answer.
fn normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let (q, sign) = if p < 0.5 { (p, -1.0) } else { (1.0 - p, 1.0) };
    let t = (-2.0 * q.ln()).sqrt();
    let z = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    sign * z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Γ(5) = 24, Γ(0.5) = √π
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // Below 0.5: Γ(0.25) = 3.6256099082219083, Γ(1e-3) = 999.4237724845955.
        assert!((ln_gamma(0.25) - 3.625_609_908_221_908_f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(1e-3) - 999.423_772_484_595_5f64.ln()).abs() < 1e-12);
        // Beta(1,1) is uniform; Beta(2,2) cdf at 0.25 = 3x²-2x³ = 0.15625
        assert!((beta_cdf(0.3, 1.0, 1.0) - 0.3).abs() < 1e-12);
        assert!((beta_cdf(0.25, 2.0, 2.0) - 0.15625).abs() < 1e-12);
        // Symmetry and the median of a symmetric Beta.
        assert!((beta_quantile(0.5, 3.0, 3.0) - 0.5).abs() < 1e-9);
        let q = beta_quantile(0.025, 5.0, 9.0);
        assert!((beta_cdf(q, 5.0, 9.0) - 0.025).abs() < 1e-9);
        // Beta(5, 9) 2.5% quantile, 0.1385793... by direct numerical integration.
        assert!((q - 0.138_579_3).abs() < 1e-6, "{q}");
    }
}

/// ln(1 + i/256) for i in 0..=256.
fn ln_table() -> &'static [f64; 257] {
    static TABLE: std::sync::OnceLock<[f64; 257]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0.0; 257];
        for (i, v) in t.iter_mut().enumerate() {
            *v = (1.0 + i as f64 / 256.0).ln();
        }
        t
    })
}

/// Natural logarithm of a positive normal `x`, to about 2e-6: the exponent
/// bits plus a table of the mantissa, interpolated. For hot loops that compare.
#[inline]
pub fn fast_ln(x: f64) -> f64 {
    const FRACTION_BITS: u32 = 44;
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mantissa = bits & 0x000f_ffff_ffff_ffff;
    let i = (mantissa >> FRACTION_BITS) as usize;
    let frac = (mantissa & ((1u64 << FRACTION_BITS) - 1)) as f64 / (1u64 << FRACTION_BITS) as f64;
    let t = ln_table();
    exponent as f64 * std::f64::consts::LN_2 + t[i] + (t[i + 1] - t[i]) * frac
}

/// e^x for x ≤ 0, within 2 ulp of [`f64::exp`], without a call: x is
/// split into k·ln 2 + r (|r| ≤ ln 2 / 2, Cody and Waite's two-part ln 2),
/// e^r is the Taylor polynomial of degree 13 (truncation under 5e-18) and
/// 2^k goes into the exponent bits. x is held at -708 (e^-708 is 3e-308:
/// where 1 - e^x is taken, 1 already) and the rounding to k is an addition:
/// no branch.
#[inline]
pub fn exp_nonpositive(x: f64) -> f64 {
    // ln 2 in two parts (fdlibm's): the first with its low 21 bits zero, so
    // that k times it is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // 1.5·2^52: adding it rounds to an integer held in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    const INV_FACTORIAL: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let x = x.clamp(-708.0, 0.0);
    let t = x * std::f64::consts::LOG2_E + SHIFT;
    let k = t - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = INV_FACTORIAL[13];
    for c in INV_FACTORIAL[..13].iter().rev() {
        p = p * r + c;
    }
    // k in -1021..=0: 2^k is a normal number with exponent k + 1023.
    let k_bits = t.to_bits().wrapping_sub(SHIFT.to_bits());
    p * f64::from_bits(k_bits.wrapping_add(1023) << 52)
}

#[cfg(test)]
mod exp_tests {
    use super::*;

    #[test]
    fn within_two_ulp_of_exp() {
        let ulp = |v: f64| f64::from_bits(v.to_bits() + 1) - v;
        let mut x = 0.0f64;
        let mut seen = 0;
        while x > -708.0 {
            let (fast, exact) = (exp_nonpositive(x), x.exp());
            assert!(
                (fast - exact).abs() <= 2.0 * ulp(exact),
                "{x}: {fast:e} vs {exact:e}"
            );
            // Steps that are not multiples of ln 2 / 2, small ones near 0.
            x -= 1e-4 + x.abs() * 0.000_731;
            seen += 1;
        }
        assert!(seen > 10_000, "{seen}");
        for x in [
            0.0,
            -0.0,
            -1e-300,
            -0.5 * std::f64::consts::LN_2,
            -1.0,
            -707.9,
        ] {
            let (fast, exact) = (exp_nonpositive(x), x.exp());
            assert!(
                (fast - exact).abs() <= 2.0 * ulp(exact),
                "{x}: {fast:e} vs {exact:e}"
            );
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        // Held at -708 below, and at 0 above.
        assert_eq!(exp_nonpositive(-1e6), exp_nonpositive(-708.0));
        assert!(exp_nonpositive(-1e6) < 1e-307);
        assert_eq!(exp_nonpositive(3.0), 1.0);
    }
}

#[cfg(test)]
mod quantile_tests {
    use super::*;

    #[test]
    fn quantiles_invert_the_cdf_across_shapes() {
        for &(a, b) in &[
            (0.6, 3.4),
            (0.3, 0.3),
            (1.0, 1.0),
            (2.0, 30.0),
            (50.0, 3.0),
            (400.0, 900.0),
            (0.6, 40.0),
        ] {
            for p in [0.001, 0.025, 0.5, 0.975, 0.999] {
                let q = beta_quantile(p, a, b);
                assert!((0.0..=1.0).contains(&q));
                // To the tolerance asked for, and no further from the full answer.
                let near = beta_quantile_within(p, a, b, 1e-7);
                assert!(
                    (near - q).abs() < 1e-7,
                    "Beta({a}, {b}) p={p}: {near} vs {q}"
                );
                assert!(
                    (beta_cdf(q, a, b) - p).abs() < 1e-8,
                    "Beta({a}, {b}) p={p}: q={q}, cdf={}",
                    beta_cdf(q, a, b)
                );
            }
        }
    }
}

#[cfg(test)]
mod fast_ln_tests {
    use super::*;

    #[test]
    fn close_to_ln() {
        let mut x = 1e-6;
        while x < 1e6 {
            assert!(
                (fast_ln(x) - x.ln()).abs() < 3e-6,
                "{x}: {} vs {}",
                fast_ln(x),
                x.ln()
            );
            x *= 1.0137;
        }
    }
}

#[cfg(test)]
mod start_tests {
    use super::*;

    /// The starting point is already close for the shapes channel rates have,
    /// so Newton needs few steps.
    #[test]
    fn the_start_is_close() {
        for &(a, b) in &[(3.6f64, 10.4f64), (1.6, 9.4), (20.0, 60.0), (5.0, 5.0)] {
            for p in [0.025, 0.975] {
                let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
                let start = quantile_start(p, a, b, ln_beta(a, b));
                let exact = beta_quantile(p, a, b);
                assert!(
                    (start - exact).abs() < 0.1 * sd,
                    "Beta({a}, {b}) p={p}: start {start} vs {exact}"
                );
            }
        }
    }
}
