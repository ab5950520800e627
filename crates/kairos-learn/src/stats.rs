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
    // Γ(x) = Γ(x + 1) / x below 1/2, where the reflection above takes a
    // sine and two logarithms: the division joins the series' logarithm.
    let (x, divisor) = if x < 0.5 { (x + 1.0, x) } else { (x, 1.0) };
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    // (`a / x` overflows for x below about 1e-306.)
    let ln_a = if divisor > 1e-290 {
        (a / divisor).ln()
    } else {
        a.ln() - divisor.ln()
    };
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + ln_a
}

/// Regularized incomplete beta I_x(a, b) (its continued fraction, see
/// `beta_cf`).
pub fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    beta_cdf_within(x, a, b, ln_beta(a, b), 1e-14)
}

/// ln B(a, b).
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// [`beta_cdf`] with ln B(a, b) already known, the continued fraction
/// stopped once a term changes it by less than `tolerance`, relatively.
fn beta_cdf_within(x: f64, a: f64, b: f64, ln_beta: f64, tolerance: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    cdf_and_density(x, a, b, ln_beta, tolerance).0
}

/// [`beta_cdf_within`] for x in (0, 1), and the density at x: both come
/// from x^a·(1 - x)^b / B(a, b), its logarithms taken once.
fn cdf_and_density(x: f64, a: f64, b: f64, ln_beta: f64, tolerance: f64) -> (f64, f64) {
    let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta).exp();
    let density = front / (x * (1.0 - x));
    let cdf = if x < (a + 1.0) / (a + b + 2.0) {
        (front * beta_cf(x, a, b, tolerance) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - front * beta_cf(1.0 - x, b, a, tolerance) / b).clamp(0.0, 1.0)
    };
    (cdf, density)
}

/// The continued fraction of I_x(a, b) (Numerical Recipes' `betacf`),
/// 1/(1 + d₁/(1 + d₂/(1 + ...))), by its convergents A/B from the forward
/// recurrence A_n = A_(n-1) + d·A_(n-2) (and the same for B): no division
/// on the chain from one term to the next, where the modified Lentz method
/// has two. Stops once a full term changes the value by less than
/// `tolerance`, relatively, compared without dividing.
fn beta_cf(x: f64, a: f64, b: f64, tolerance: f64) -> f64 {
    // Convergents n-1 and n, begun at 1/1 and 1/(1 + d₁).
    let (mut a_prev, mut b_prev) = (1.0, 1.0);
    let (mut a_n, mut b_n) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let even = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        let odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        let (a_mid, b_mid) = (a_n + even * a_prev, b_n + even * b_prev);
        (a_prev, b_prev) = (a_mid, b_mid);
        (a_n, b_n) = (a_mid + odd * a_n, b_mid + odd * b_n);
        // |A_n/B_n ÷ A_(n-1)/B_(n-1) - 1| < tolerance.
        let (now, before) = (a_n * b_prev, a_prev * b_n);
        if (now - before).abs() < tolerance * before.abs() {
            break;
        }
        // Kept in range by powers of two (exact); the ratios are unchanged.
        const BIG: f64 = f64::from_bits((1023 + 256) << 52);
        const SMALL: f64 = f64::from_bits((1023 - 256) << 52);
        let size = b_n.abs();
        if !(SMALL..=BIG).contains(&size) {
            let scale = if size > 1.0 { SMALL } else { BIG };
            a_prev *= scale;
            b_prev *= scale;
            a_n *= scale;
            b_n *= scale;
        }
    }
    let h = a_n / b_n;
    // A zero denominator (never seen) reads as the modified Lentz method's.
    if h.is_finite() {
        h
    } else {
        1e300
    }
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
    quantile_within(p, a, b, ln_beta(a, b), tolerance)
}

/// The `p[0]`- and `p[1]`-quantiles of Beta(a, b) as
/// [`beta_quantile_within`] gives them, B(a, b) computed once for both.
pub fn beta_quantiles_within(p: [f64; 2], a: f64, b: f64, tolerance: f64) -> [f64; 2] {
    let ln_beta = ln_beta(a, b);
    p.map(|p| quantile_within(p, a, b, ln_beta, tolerance))
}

fn quantile_within(p: f64, a: f64, b: f64, ln_beta: f64, tolerance: f64) -> f64 {
    let tolerance = tolerance.max(1e-14);
    let cf_tolerance = (tolerance / 10.0).max(1e-14);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut x = quantile_start(p, a, b, ln_beta);
    for _ in 0..100 {
        // x stays inside (0, 1): the start does, and every step stays
        // inside the bracket.
        let (cdf, density) = cdf_and_density(x, a, b, ln_beta, cf_tolerance);
        let f = cdf - p;
        if f.abs() < 1e-12 {
            break;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
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
        // Γ(x) ≈ 1/x near 0, where x's reciprocal overflows.
        assert!((ln_gamma(1e-300) - 300.0 * 10f64.ln()).abs() < 1e-9);
        assert!((ln_gamma(5e-324) + 5e-324f64.ln()).abs() < 1e-9);
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

/// 2^(j/64) for j in 0..64, each the double nearest the exact value.
const EXP2_SIXTY_FOURTHS: [f64; 64] = [
    f64::from_bits(0x3ff0_0000_0000_0000),
    f64::from_bits(0x3ff0_2c9a_3e77_8061),
    f64::from_bits(0x3ff0_59b0_d315_8574),
    f64::from_bits(0x3ff0_8745_1875_9bc8),
    f64::from_bits(0x3ff0_b558_6cf9_890f),
    f64::from_bits(0x3ff0_e3ec_32d3_d1a2),
    f64::from_bits(0x3ff1_1301_d012_5b51),
    f64::from_bits(0x3ff1_429a_aea9_2de0),
    f64::from_bits(0x3ff1_72b8_3c7d_517b),
    f64::from_bits(0x3ff1_a35b_eb6f_cb75),
    f64::from_bits(0x3ff1_d487_3168_b9aa),
    f64::from_bits(0x3ff2_063b_8862_8cd6),
    f64::from_bits(0x3ff2_387a_6e75_6238),
    f64::from_bits(0x3ff2_6b45_65e2_7cdd),
    f64::from_bits(0x3ff2_9e9d_f51f_dee1),
    f64::from_bits(0x3ff2_d285_a6e4_030b),
    f64::from_bits(0x3ff3_06fe_0a31_b715),
    f64::from_bits(0x3ff3_3c08_b264_16ff),
    f64::from_bits(0x3ff3_71a7_373a_a9cb),
    f64::from_bits(0x3ff3_a7db_34e5_9ff7),
    f64::from_bits(0x3ff3_dea6_4c12_3422),
    f64::from_bits(0x3ff4_160a_21f7_2e2a),
    f64::from_bits(0x3ff4_4e08_6061_892d),
    f64::from_bits(0x3ff4_86a2_b5c1_3cd0),
    f64::from_bits(0x3ff4_bfda_d536_2a27),
    f64::from_bits(0x3ff4_f9b2_769d_2ca7),
    f64::from_bits(0x3ff5_342b_569d_4f82),
    f64::from_bits(0x3ff5_6f47_36b5_27da),
    f64::from_bits(0x3ff5_ab07_dd48_5429),
    f64::from_bits(0x3ff5_e76f_15ad_2148),
    f64::from_bits(0x3ff6_247e_b03a_5585),
    f64::from_bits(0x3ff6_6238_8255_2225),
    f64::from_bits(0x3ff6_a09e_667f_3bcd),
    f64::from_bits(0x3ff6_dfb2_3c65_1a2f),
    f64::from_bits(0x3ff7_1f75_e8ec_5f74),
    f64::from_bits(0x3ff7_5feb_5642_67c9),
    f64::from_bits(0x3ff7_a114_73eb_0187),
    f64::from_bits(0x3ff7_e2f3_36cf_4e62),
    f64::from_bits(0x3ff8_2589_994c_ce13),
    f64::from_bits(0x3ff8_68d9_9b44_92ed),
    f64::from_bits(0x3ff8_ace5_422a_a0db),
    f64::from_bits(0x3ff8_f1ae_9915_7736),
    f64::from_bits(0x3ff9_3737_b0cd_c5e5),
    f64::from_bits(0x3ff9_7d82_9fde_4e50),
    f64::from_bits(0x3ff9_c491_82a3_f090),
    f64::from_bits(0x3ffa_0c66_7b5d_e565),
    f64::from_bits(0x3ffa_5503_b23e_255d),
    f64::from_bits(0x3ffa_9e6b_5579_fdbf),
    f64::from_bits(0x3ffa_e89f_995a_d3ad),
    f64::from_bits(0x3ffb_33a2_b84f_15fb),
    f64::from_bits(0x3ffb_7f76_f2fb_5e47),
    f64::from_bits(0x3ffb_cc1e_904b_c1d2),
    f64::from_bits(0x3ffc_199b_dd85_529c),
    f64::from_bits(0x3ffc_67f1_2e57_d14b),
    f64::from_bits(0x3ffc_b720_dcef_9069),
    f64::from_bits(0x3ffd_072d_4a07_897c),
    f64::from_bits(0x3ffd_5818_dcfb_a487),
    f64::from_bits(0x3ffd_a9e6_03db_3285),
    f64::from_bits(0x3ffd_fc97_337b_9b5f),
    f64::from_bits(0x3ffe_502e_e78b_3ff6),
    f64::from_bits(0x3ffe_a4af_a2a4_90da),
    f64::from_bits(0x3ffe_fa1b_ee61_5a27),
    f64::from_bits(0x3fff_5076_5b6e_4540),
    f64::from_bits(0x3fff_a7c1_819e_90d8),
];

/// e^x for x ≤ 0, within an ulp of [`f64::exp`] wherever tested,
/// without a call or a branch: x is split into n·ln 2/64 + r (|r| ≤ ln 2/128,
/// Cody and Waite's two-part ln 2), so that e^x = 2^(n div 64) · 2^((n mod
/// 64)/64) · e^r; the middle factor comes from a table of 64, e^r - 1 from
/// its Taylor polynomial of degree 5 (truncation under 4e-17), and 2^(n div
/// 64) goes into the exponent bits. The table's value t is combined as
/// t + t·(e^r - 1), so that the rounding of the small term hardly shows. x
/// is held at -708 (e^-708 is 3e-308: where 1 - e^x is taken, 1 already)
/// and the rounding to n is an addition.
#[inline]
pub fn exp_nonpositive(x: f64) -> f64 {
    // ln 2 / 64 in two parts (fdlibm's ln 2 over 64): the first with its low
    // 21 bits zero, so that n times it is exact (|n| < 2^17).
    const LN2_64_HI: f64 = f64::from_bits(0x3f86_2e42_fee0_0000);
    const LN2_64_LO: f64 = f64::from_bits(0x3d8a_39ef_3579_3c76);
    const INV_LN2_64: f64 = f64::from_bits(0x4057_1547_652b_82fe);
    // 1.5·2^52: adding it rounds to an integer held in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let x = x.clamp(-708.0, 0.0);
    let t = x * INV_LN2_64 + SHIFT;
    let n_f = t - SHIFT;
    let r = (x - n_f * LN2_64_HI) - n_f * LN2_64_LO;
    let r2 = r * r;
    let em1 = r + r2 * ((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0)));
    // n in -65_371..=0 (x ≥ -708): two's complement in the low bits of t.
    let n = t.to_bits().wrapping_sub(SHIFT.to_bits()) as i64;
    let middle = EXP2_SIXTY_FOURTHS[(n & 63) as usize];
    // n div 64 in -1022..=0: 2^(n div 64) is a normal number.
    let scale = f64::from_bits((((n >> 6) + 1023) as u64) << 52);
    (middle + middle * em1) * scale
}

#[cfg(test)]
mod exp_tests {
    use super::*;

    /// The table holds 2^(j/64), each within an ulp of the library's exp2
    /// (the table is the nearest double; exp2 may be an ulp off).
    #[test]
    fn sixty_fourths_of_an_octave() {
        let ulp = |v: f64| f64::from_bits(v.to_bits() + 1) - v;
        for (j, &t) in EXP2_SIXTY_FOURTHS.iter().enumerate() {
            let exact = (j as f64 / 64.0).exp2();
            assert!((t - exact).abs() <= ulp(exact), "{j}: {t:e} vs {exact:e}");
        }
        assert_eq!(EXP2_SIXTY_FOURTHS[0], 1.0);
        assert_eq!(EXP2_SIXTY_FOURTHS[32], std::f64::consts::SQRT_2);
    }

    #[test]
    fn within_an_ulp_of_exp() {
        let ulp = |v: f64| f64::from_bits(v.to_bits() + 1) - v;
        let mut x = 0.0f64;
        let mut seen = 0;
        while x > -708.0 {
            let (fast, exact) = (exp_nonpositive(x), x.exp());
            assert!(
                (fast - exact).abs() <= ulp(exact),
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
                (fast - exact).abs() <= ulp(exact),
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

    /// For whole-number shapes I_x(a, b) is a binomial tail: the chance of
    /// at least a successes in a + b - 1 trials of chance x. The continued
    /// fraction agrees with that sum (each term from logarithms of
    /// factorials) on both sides of the mean, where it works on x and on
    /// 1 - x, and for every tolerance within that tolerance.
    #[test]
    fn cdf_is_the_binomial_tail_for_whole_shapes() {
        let ln_choose = |n: u32, k: u32| {
            ln_gamma(f64::from(n) + 1.0)
                - ln_gamma(f64::from(k) + 1.0)
                - ln_gamma(f64::from(n - k) + 1.0)
        };
        for (a, b) in [
            (1u32, 1u32),
            (2, 30),
            (5, 5),
            (50, 3),
            (400, 900),
            (1, 40),
            (12, 1),
            (3, 7),
        ] {
            let n = a + b - 1;
            for i in 1..100 {
                let x = f64::from(i) / 100.0;
                let tail: f64 = (a..=n)
                    .map(|j| {
                        (ln_choose(n, j)
                            + f64::from(j) * x.ln()
                            + f64::from(n - j) * (1.0 - x).ln())
                        .exp()
                    })
                    .sum();
                let (af, bf) = (f64::from(a), f64::from(b));
                let got = beta_cdf(x, af, bf);
                assert!(
                    (got - tail).abs() < 1e-11,
                    "I_{x}({a}, {b}): {got} vs {tail}"
                );
                let lb = ln_beta(af, bf);
                for tolerance in [1e-4, 1e-8] {
                    let near = beta_cdf_within(x, af, bf, lb, tolerance);
                    assert!(
                        (near - tail).abs() < tolerance,
                        "I_{x}({a}, {b}) to {tolerance}: {near} vs {tail}"
                    );
                }
            }
        }
    }

    /// I_x(a + 1, b) = I_x(a, b) - x^a (1 - x)^b / (a B(a, b)), for shapes
    /// that are not whole numbers too.
    #[test]
    fn cdf_steps_down_with_a() {
        for (a, b) in [
            (0.6, 3.4),
            (0.3, 0.3),
            (2.5, 30.5),
            (50.2, 3.1),
            (400.5, 900.25),
        ] {
            for i in 1..100 {
                let x = f64::from(i) / 100.0;
                let step = (a * f64::ln(x) + b * (1.0 - x).ln() - ln_beta(a, b)).exp() / a;
                let (up, here) = (beta_cdf(x, a + 1.0, b), beta_cdf(x, a, b));
                assert!(
                    (up - (here - step)).abs() < 1e-11,
                    "x={x} Beta({a}, {b}): {up} vs {here} - {step}"
                );
            }
        }
    }

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
            // Two at once, the same as one at a time.
            let pair = beta_quantiles_within([0.025, 0.975], a, b, 1e-7);
            assert_eq!(
                pair,
                [0.025, 0.975].map(|p| beta_quantile_within(p, a, b, 1e-7))
            );
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
