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
//! The floors are fitted per channel on the logged sends (maximum
//! likelihood, each send read with the profile as it was just before it).
//! Unlike a regression on the log-lift, the form saturates: the slots a
//! search picks, with far more activity ahead than any logged send had, are
//! still scored within what the sends showed.

use kairos_core::{Channel, QUARTERS_PER_WEEK};
use serde::{Deserialize, Serialize};

use crate::activity::QuarterMass;
use crate::response::{Calibration, SendRow};

/// Candidate floors, every 0.02 in (0, 1].
const FLOORS: usize = 50;
/// A channel needs this many training sends (and an engagement) to fit its
/// own floor; others keep [`DEFAULT_FLOOR`].
const MIN_CHANNEL_SENDS: usize = 100;
pub const DEFAULT_FLOOR: f64 = 0.25;

/// The chance of at least one activity where `expected` are expected.
#[inline]
pub fn presence(expected: f64) -> f64 {
    1.0 - (-expected.max(0.0)).exp()
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

/// The fitted floors, per channel by [`Channel::index`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    pub floor: [f64; 5],
    /// Held-out calibration of [`Exposure::predict`].
    pub calibration: Calibration,
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
    }
}

/// `rate · e(p) / e(typical)` for a channel with floor `floor`, at most 1.
#[inline]
pub fn scaled_rate(rate: f64, floor: f64, p: f64, typical: f64) -> f64 {
    let e = |p: f64| floor + (1.0 - floor) * p;
    (rate * e(p) / e(typical).max(1e-9)).clamp(0.0, 1.0)
}

fn log_likelihood(rows: &[&SendRow], f: f64) -> f64 {
    rows.iter()
        .map(|r| {
            let q = scaled_rate(r.context.rate, f, r.presence, r.typical_presence)
                .clamp(1e-9, 1.0 - 1e-9);
            if r.engaged {
                q.ln()
            } else {
                (1.0 - q).ln()
            }
        })
        .sum()
}

/// Fits each channel's floor on `train` by maximum likelihood over a grid;
/// the calibration is measured on `heldout`.
pub fn fit_exposure(train: &[&SendRow], heldout: &[&SendRow], train_base: f64) -> Exposure {
    let mut floor = [DEFAULT_FLOOR; 5];
    for c in Channel::ALL {
        let rows: Vec<&SendRow> = train
            .iter()
            .copied()
            .filter(|r| r.context.channel == c)
            .collect();
        if rows.len() < MIN_CHANNEL_SENDS || !rows.iter().any(|r| r.engaged) {
            continue;
        }
        let mut best = (f64::NEG_INFINITY, DEFAULT_FLOOR);
        for k in 1..=FLOORS {
            let f = k as f64 / FLOORS as f64;
            let ll = log_likelihood(&rows, f);
            if ll > best.0 {
                best = (ll, f);
            }
        }
        floor[c.index()] = best.1;
    }
    let mut model = Exposure {
        floor,
        calibration: Calibration::default(),
    };
    let preds: Vec<(f64, bool)> = heldout
        .iter()
        .map(|r| {
            let c = &r.context;
            (
                model.predict(c.channel, c.rate, r.presence, r.typical_presence),
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
        }
    }

    /// Sends drawn from the exposure form with known floors: the fit finds
    /// each channel's floor, keeps the default where a channel has too few
    /// sends, and predicts held-out sends better than the base rate.
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
        assert_eq!(fitted.floor[Channel::Sms.index()], DEFAULT_FLOOR);
        assert!(fitted.validate());
        let cal = &fitted.calibration;
        assert!(cal.log_loss < cal.log_loss_base_rate, "{cal:?}");
        assert_eq!(cal.heldout_sends as usize, heldout.len());
    }

    /// The form saturates: however much activity a window holds, a send is
    /// worth at most `rate / e(typical)`, and more presence is never worth less.
    #[test]
    fn saturates_and_grows_with_presence() {
        let e = Exposure {
            floor: [0.2; 5],
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
