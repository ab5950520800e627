//! The response model: P(engagement within the channel's window | a send on
//! channel c at time t), by logistic regression (linfa-logistic) on logged
//! sends and their attributed outcomes.
//!
//! Features, taken from the customer's profile as it was just before the send:
//! - `ln_lift`: log of the activity mass in the channel's response window after
//!   the send, relative to an average window of that length;
//! - `ln_activity`: how often the customer is around (activities per week,
//!   [`crate::ProfileState::weekly_activity`]), alone, per channel, and as
//!   how much the lift matters (a customer around every day gains less from
//!   a better day than one around twice a week);
//! - `ln_lift_x_evidence` (and per channel): how much the lift matters given
//!   the decayed activity count behind it (a lift read off little history is
//!   partly noise, the more so at the slot a search picks for being highest);
//! - `logit_rate`: the channel's engagement rate (Beta posterior mean);
//! - `ln_days_since_active`: recency;
//! - `sends_7d`: sends on any channel in the previous 7 days (fatigue);
//! - `hour_sin`, `hour_cos`, `weekend`: local time of the send;
//! - one indicator per channel other than email, and `ln_lift` per channel
//!   (a 1-hour push window depends on timing far more than a 24-hour in-app one).
//!
//! Features are standardized with the training means and deviations. 20% of
//! customers (by a hash of their id) are held out to report calibration.
//!
//! The time-of-day terms are only trusted at local hours the training sends
//! covered: a company that only ever sent between 08:00 and 21:00 says nothing
//! about 03:00, where the fitted sinusoid would extrapolate freely. Each
//! uncovered hour uses the term of the nearest covered hour
//! ([`ResponseModel::hour_terms_from`]); how active the customer is then still
//! counts through the lift.
//!
//! The same sends fit the model's exposure form ([`crate::exposure`]), which
//! scores slots by default: unlike this regression, it saturates, so the
//! busiest slots of the week are not extrapolated.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use kairos_core::{Channel, QUARTERS_PER_WEEK};
use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::exposure::{fit_exposure, Exposure};
use crate::{LearnError, Result};

pub const FEATURES: [&str; 30] = [
    "ln_lift",
    "ln_activity",
    "logit_rate",
    "ln_days_since_active",
    "sends_7d",
    "hour_sin",
    "hour_cos",
    "weekend",
    "push",
    "sms",
    "in_app",
    "web",
    "ln_lift_push",
    "ln_lift_sms",
    "ln_lift_in_app",
    "ln_lift_web",
    "ln_activity_push",
    "ln_activity_sms",
    "ln_activity_in_app",
    "ln_activity_web",
    "ln_lift_x_activity",
    "ln_lift_x_activity_push",
    "ln_lift_x_activity_sms",
    "ln_lift_x_activity_in_app",
    "ln_lift_x_activity_web",
    "ln_lift_x_evidence",
    "ln_lift_x_evidence_push",
    "ln_lift_x_evidence_sms",
    "ln_lift_x_evidence_in_app",
    "ln_lift_x_evidence_web",
];
const N: usize = FEATURES.len();

/// Everything the model looks at for one (customer, channel, time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendContext {
    /// Activity mass in the response window relative to an average window.
    pub lift: f64,
    /// How often the customer is around: activities per week
    /// ([`crate::ProfileState::weekly_activity`]).
    pub activity: f64,
    /// The channel's engagement rate for this customer.
    pub rate: f64,
    pub days_since_active: f64,
    pub sends_7d: f64,
    /// Local hour of day, with fraction (19.5 = 19:30).
    pub local_hour: f64,
    pub weekend: bool,
    pub channel: Channel,
    /// The customer's decayed activity count behind the lift: how far the
    /// lift can be trusted. A lift read off little history is partly noise,
    /// the more so at the slot a search picks for having the highest.
    pub evidence: f64,
}

impl SendContext {
    pub fn local_time(at: DateTime<Utc>, tz: Tz) -> (f64, bool) {
        let l = at.with_timezone(&tz);
        (
            f64::from(l.hour()) + f64::from(l.minute()) / 60.0,
            l.weekday().number_from_monday() >= 6,
        )
    }

    pub fn features(&self) -> [f64; N] {
        let rate = self.rate.clamp(1e-4, 1.0 - 1e-4);
        let angle = self.local_hour / 24.0 * std::f64::consts::TAU;
        let is = |c| if self.channel == c { 1.0 } else { 0.0 };
        let ln_lift = self.lift.max(0.01).ln();
        let logit_rate = (rate / (1.0 - rate)).ln();
        let ln_activity = (1.0 + self.activity.max(0.0)).ln();
        let ln_evidence = (1.0 + self.evidence.max(0.0)).ln();
        [
            ln_lift,
            ln_activity,
            logit_rate,
            (1.0 + self.days_since_active.clamp(0.0, 365.0)).ln(),
            self.sends_7d.min(50.0),
            angle.sin(),
            angle.cos(),
            if self.weekend { 1.0 } else { 0.0 },
            is(Channel::Push),
            is(Channel::Sms),
            is(Channel::InApp),
            is(Channel::Web),
            ln_lift * is(Channel::Push),
            ln_lift * is(Channel::Sms),
            ln_lift * is(Channel::InApp),
            ln_lift * is(Channel::Web),
            ln_activity * is(Channel::Push),
            ln_activity * is(Channel::Sms),
            ln_activity * is(Channel::InApp),
            ln_activity * is(Channel::Web),
            ln_lift * ln_activity,
            ln_lift * ln_activity * is(Channel::Push),
            ln_lift * ln_activity * is(Channel::Sms),
            ln_lift * ln_activity * is(Channel::InApp),
            ln_lift * ln_activity * is(Channel::Web),
            ln_lift * ln_evidence,
            ln_lift * ln_evidence * is(Channel::Push),
            ln_lift * ln_evidence * is(Channel::Sms),
            ln_lift * ln_evidence * is(Channel::InApp),
            ln_lift * ln_evidence * is(Channel::Web),
        ]
    }

    /// The derivative of [`Self::features`] with respect to ln(lift): every
    /// feature is linear in it.
    pub fn lift_derivative(&self) -> [f64; N] {
        let is = |c| if self.channel == c { 1.0 } else { 0.0 };
        let ln_activity = (1.0 + self.activity.max(0.0)).ln();
        let mut d = [0.0; N];
        d[0] = 1.0;
        d[12] = is(Channel::Push);
        d[13] = is(Channel::Sms);
        d[14] = is(Channel::InApp);
        d[15] = is(Channel::Web);
        d[20] = ln_activity;
        d[21] = ln_activity * is(Channel::Push);
        d[22] = ln_activity * is(Channel::Sms);
        d[23] = ln_activity * is(Channel::InApp);
        d[24] = ln_activity * is(Channel::Web);
        let ln_evidence = (1.0 + self.evidence.max(0.0)).ln();
        d[25] = ln_evidence;
        d[26] = ln_evidence * is(Channel::Push);
        d[27] = ln_evidence * is(Channel::Sms);
        d[28] = ln_evidence * is(Channel::InApp);
        d[29] = ln_evidence * is(Channel::Web);
        d
    }
}

/// Lift of `mass` over a window of `quarters` quarter hours.
#[inline]
pub fn lift(mass: f64, quarters: usize) -> f64 {
    mass / (quarters.max(1) as f64 / QUARTERS_PER_WEEK as f64)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub predicted: f64,
    pub observed: f64,
    pub sends: u64,
}

/// How well the predicted probabilities match outcomes on held-out sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub train_sends: u64,
    pub heldout_sends: u64,
    pub heldout_base_rate: f64,
    pub log_loss: f64,
    /// Log loss of always predicting the training base rate.
    pub log_loss_base_rate: f64,
    pub brier: f64,
    /// Deciles of predicted probability: mean prediction vs observed rate.
    pub bins: Vec<CalibrationBin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseModel {
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// Response window per channel (quarter hours) the lift was computed over.
    pub window_quarters: [usize; 5],
    pub calibration: Calibration,
    /// For each local hour, the hour whose time-of-day term it uses: itself
    /// where training sends covered it, else the nearest covered hour. Empty
    /// (models from before it existed): every hour uses its own.
    #[serde(default)]
    pub hour_terms_from: Vec<u8>,
    /// The exposure form, fitted on the same sends (absent from models
    /// trained before it existed).
    #[serde(default)]
    pub exposure: Option<Exposure>,
}

/// Training sends an hour needs, relative to an even spread over 24 hours,
/// for its time-of-day term to be trusted.
const HOUR_SUPPORT: f64 = 0.2;

/// For each local hour, the nearest hour (itself first, then the earlier on
/// a tie) with at least [`HOUR_SUPPORT`] of an even share of the sends.
fn hour_terms_from(local_hours: impl Iterator<Item = f64>) -> Vec<u8> {
    let mut counts = [0u64; 24];
    let mut total = 0u64;
    for h in local_hours {
        counts[(h.floor() as usize).min(23)] += 1;
        total += 1;
    }
    let covered: Vec<bool> = counts
        .iter()
        .map(|&n| n > 0 && n as f64 >= HOUR_SUPPORT * total as f64 / 24.0)
        .collect();
    (0..24)
        .map(|h: usize| {
            (0..=12)
                .flat_map(|d| [(h + 24 - d) % 24, (h + d) % 24])
                .find(|&k| covered[k])
                .unwrap_or(h) as u8
        })
        .collect()
}

/// The response model's logit for one customer and channel as a function of
/// the send slot only: `z = constant + ln_lift·ln(lift) + by_quarter_of_day[q]
/// (+ weekend)`. The decision engine compares slots on it.
#[derive(Debug, Clone)]
pub struct LinearScore {
    pub constant: f64,
    pub ln_lift: f64,
    pub by_quarter_of_day: [f64; 96],
    pub weekend: f64,
}

impl LinearScore {
    /// The logit for `ln_lift` (of the lift clamped at 0.01, as the model
    /// does) at local quarter of the week `quarter`.
    #[inline]
    pub fn z(&self, ln_lift: f64, quarter: usize) -> f64 {
        let weekend = if quarter / 96 >= 5 { self.weekend } else { 0.0 };
        self.constant + self.ln_lift * ln_lift + self.by_quarter_of_day[quarter % 96] + weekend
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Indices in [`FEATURES`] the linear form needs by name.
const LN_LIFT: usize = 0;
const HOUR_SIN: usize = 5;
const HOUR_COS: usize = 6;
const WEEKEND: usize = 7;

/// sin and cos of the local time of day at each quarter hour, computed once.
fn quarter_trig() -> &'static [(f64, f64); 96] {
    static TABLE: std::sync::OnceLock<[(f64, f64); 96]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [(0.0, 0.0); 96];
        for (q, v) in t.iter_mut().enumerate() {
            let angle = q as f64 / 96.0 * std::f64::consts::TAU;
            *v = (angle.sin(), angle.cos());
        }
        t
    })
}

impl ResponseModel {
    /// Everything of `ctx` but the slot (lift, local hour, weekend) folded
    /// into a [`LinearScore`].
    /// The local hour (with fraction) whose time-of-day term applies at `local_hour`.
    #[inline]
    fn term_hour(&self, local_hour: f64) -> f64 {
        let h = (local_hour.floor() as usize).min(23);
        match self.hour_terms_from.get(h) {
            Some(&from) => local_hour - h as f64 + f64::from(from),
            None => local_hour,
        }
    }

    pub fn linearize(&self, ctx: &SendContext) -> LinearScore {
        self.linearize_with(ctx, &self.quarter_terms())
    }

    /// The time-of-day part of the logit at each local quarter hour of the
    /// day: the same for every channel and customer, so computed once.
    pub fn quarter_terms(&self) -> [f64; 96] {
        let coef = |i: usize| self.weights[i] / self.scale[i];
        let trig = quarter_trig();
        let mut terms = [0.0; 96];
        for (q, v) in terms.iter_mut().enumerate() {
            let from = match self.hour_terms_from.get(q / 4) {
                Some(&h) => usize::from(h) * 4 + q % 4,
                None => q,
            };
            let (sin, cos) = trig[from];
            *v = coef(HOUR_SIN) * sin + coef(HOUR_COS) * cos;
        }
        terms
    }

    /// [`Self::linearize`] with [`Self::quarter_terms`] already computed.
    pub fn linearize_with(&self, ctx: &SendContext, terms: &[f64; 96]) -> LinearScore {
        let x = ctx.features();
        let d = ctx.lift_derivative();
        let mut constant = self.intercept;
        let mut lift_coef = 0.0;
        for i in 0..N {
            let coef = self.weights[i] / self.scale[i];
            constant += coef * (x[i] - self.mean[i]);
            lift_coef += coef * d[i];
        }
        let coef = |i: usize| self.weights[i] / self.scale[i];
        constant -= lift_coef * x[LN_LIFT];
        constant -= coef(HOUR_SIN) * x[HOUR_SIN]
            + coef(HOUR_COS) * x[HOUR_COS]
            + coef(WEEKEND) * x[WEEKEND];
        LinearScore {
            constant,
            ln_lift: lift_coef,
            by_quarter_of_day: *terms,
            weekend: coef(WEEKEND),
        }
    }

    pub fn predict(&self, ctx: &SendContext) -> f64 {
        let x = SendContext {
            local_hour: self.term_hour(ctx.local_hour),
            ..*ctx
        }
        .features();
        let z: f64 = self.intercept
            + x.iter()
                .zip(&self.mean)
                .zip(&self.scale)
                .zip(&self.weights)
                .map(|(((x, m), s), w)| w * (x - m) / s)
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }

    pub fn validate(&self) -> Result<()> {
        let ok = self.features.len() == N
            && self.mean.len() == N
            && self.scale.len() == N
            && self.weights.len() == N
            && self.scale.iter().all(|s| s.is_finite() && *s > 0.0)
            && self.weights.iter().chain(&self.mean).all(|v| v.is_finite())
            && self.intercept.is_finite()
            && (self.hour_terms_from.is_empty()
                || (self.hour_terms_from.len() == 24
                    && self.hour_terms_from.iter().all(|h| *h < 24)))
            && self.exposure.as_ref().is_none_or(Exposure::validate);
        if ok {
            Ok(())
        } else {
            Err(LearnError::InvalidModel(
                "response model is malformed".into(),
            ))
        }
    }
}

/// One logged send: its context, whether it was engaged with, and a hash of
/// the customer (for the held-out split).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendRow {
    pub context: SendContext,
    pub engaged: bool,
    pub customer_hash: u64,
    /// [`crate::exposure::presence`] in the response window after the send.
    pub presence: f64,
    /// [`crate::exposure::typical_presence`] for the customer then.
    pub typical_presence: f64,
    /// The customer's decayed sends and engagements on the channel before
    /// this send (what their rate was estimated from then).
    pub sends_before: f64,
    pub engagements_before: f64,
    /// The same, counted without decay.
    pub sends_total_before: f64,
    pub engagements_total_before: f64,
    /// The mean [`crate::exposure::presence`] after the customer's earlier
    /// sends on the channel (the latest 32), read with the profile at this
    /// send; its `typical_presence` when there were none.
    pub sent_presence_before: f64,
}

/// Training sends the logistic regression is fitted on, at most (an even
/// sample): its gradient passes over every row hundreds of times, and a
/// million customers' sends cost minutes without adding anything to a fit of
/// a few dozen weights. The exposure form and the calibration use every send.
const MAX_REGRESSION_SENDS: usize = 250_000;

/// Fits the response model; `None` with fewer than `min_sends` sends or a
/// single outcome class.
pub fn fit_response(
    rows: &[SendRow],
    window_quarters: [usize; 5],
    min_sends: usize,
) -> Result<Option<ResponseModel>> {
    fit_response_sampled(rows, window_quarters, min_sends, MAX_REGRESSION_SENDS)
}

/// [`fit_response`] with the regression fitted on at most `max_regression`
/// training sends.
fn fit_response_sampled(
    rows: &[SendRow],
    window_quarters: [usize; 5],
    min_sends: usize,
    max_regression: usize,
) -> Result<Option<ResponseModel>> {
    let (train, heldout): (Vec<&SendRow>, Vec<&SendRow>) =
        rows.iter().partition(|r| r.customer_hash % 5 != 0);
    let positives = train.iter().filter(|r| r.engaged).count();
    if train.len() < min_sends || positives == 0 || positives == train.len() {
        return Ok(None);
    }
    // The regression is fitted on an even sample of at most `max_regression`
    // sends (with both outcomes; otherwise on every send).
    let sample = crate::fit::every_kth(&train, max_regression);
    let fit_on: Vec<&SendRow> =
        if sample.iter().any(|r| r.engaged) && sample.iter().any(|r| !r.engaged) {
            sample.into_iter().copied().collect()
        } else {
            train.clone()
        };
    let raw: Vec<[f64; N]> = fit_on.iter().map(|r| r.context.features()).collect();
    let mut mean = vec![0.0; N];
    let mut scale = vec![0.0; N];
    for x in &raw {
        for (m, v) in mean.iter_mut().zip(x) {
            *m += v / raw.len() as f64;
        }
    }
    for x in &raw {
        for ((s, v), m) in scale.iter_mut().zip(x).zip(&mean) {
            *s += (v - m).powi(2) / raw.len() as f64;
        }
    }
    let scale: Vec<f64> = scale
        .into_iter()
        .map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 })
        .collect();
    let flat: Vec<f64> = raw
        .iter()
        .flat_map(|x| {
            x.iter()
                .zip(&mean)
                .zip(&scale)
                .map(|((v, m), s)| (v - m) / s)
                .collect::<Vec<_>>()
        })
        .collect();
    let x = Array2::from_shape_vec((raw.len(), N), flat)
        .map_err(|e| LearnError::InvalidModel(e.to_string()))?;
    let y: Array1<bool> = fit_on.iter().map(|r| r.engaged).collect();
    let fitted = LogisticRegression::default()
        .alpha(1e-3)
        .max_iterations(200)
        .fit(&DatasetBase::new(x, y))
        .map_err(|e| LearnError::InvalidModel(format!("logistic regression: {e}")))?;
    // The fitted model gives P(labels().pos); orient it as P(engaged).
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let mut model = ResponseModel {
        features: FEATURES.iter().map(|s| s.to_string()).collect(),
        mean,
        scale,
        weights: fitted.params().iter().map(|w| sign * w).collect(),
        intercept: sign * fitted.intercept(),
        window_quarters,
        calibration: Calibration::default(),
        hour_terms_from: hour_terms_from(train.iter().map(|r| r.context.local_hour)),
        exposure: None,
    };
    let base = positives as f64 / train.len() as f64;
    let preds = heldout
        .iter()
        .map(|r| (model.predict(&r.context), r.engaged))
        .collect();
    model.calibration = Calibration::of(preds, base, train.len() as u64);
    model.exposure = Some(fit_exposure(&train, &heldout, base));
    model.validate()?;
    Ok(Some(model))
}

impl Calibration {
    /// Held-out predictions and outcomes against the training base rate.
    pub fn of(mut preds: Vec<(f64, bool)>, train_base: f64, train_sends: u64) -> Self {
        let n = preds.len().max(1) as f64;
        let ll = |p: f64, y: bool| {
            let p = p.clamp(1e-9, 1.0 - 1e-9);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        };
        let log_loss = preds.iter().map(|(p, y)| ll(*p, *y)).sum::<f64>() / n;
        let log_loss_base_rate = preds.iter().map(|(_, y)| ll(train_base, *y)).sum::<f64>() / n;
        let brier = preds
            .iter()
            .map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
            .sum::<f64>()
            / n;
        let base = preds.iter().filter(|(_, y)| *y).count() as f64 / n;
        preds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let bins = preds
            .chunks(preds.len().div_ceil(10).max(1))
            .map(|c| CalibrationBin {
                predicted: c.iter().map(|(p, _)| p).sum::<f64>() / c.len() as f64,
                observed: c.iter().filter(|(_, y)| *y).count() as f64 / c.len() as f64,
                sends: c.len() as u64,
            })
            .collect();
        Calibration {
            train_sends,
            heldout_sends: preds.len() as u64,
            heldout_base_rate: base,
            log_loss,
            log_loss_base_rate,
            brier,
            bins,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// 6,000 sends: lift and rate raise engagement, nothing else does.
    fn synthetic_rows() -> Vec<SendRow> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..6000)
            .map(|i| {
                let lift: f64 = if rng.gen_bool(0.3) {
                    rng.gen_range(2.0..8.0)
                } else {
                    rng.gen_range(0.05..1.0)
                };
                let rate: f64 = rng.gen_range(0.05..0.4);
                let p = (rate * 2.0 * lift / (1.0 + lift)).min(0.95);
                let channel = if i % 2 == 0 {
                    Channel::Email
                } else {
                    Channel::Push
                };
                SendRow {
                    context: SendContext {
                        lift,
                        activity: 10.0,
                        rate,
                        days_since_active: rng.gen_range(0.0..20.0),
                        sends_7d: f64::from(rng.gen_range(0..5)),
                        local_hour: rng.gen_range(0.0..24.0),
                        weekend: rng.gen_bool(2.0 / 7.0),
                        channel,
                        evidence: 20.0,
                    },
                    engaged: rng.gen_bool(p),
                    customer_hash: i as u64,
                    presence: 0.0,
                    typical_presence: 0.0,
                    sends_before: 0.0,
                    engagements_before: 0.0,
                    sends_total_before: 0.0,
                    sent_presence_before: 0.0,
                    engagements_total_before: 0.0,
                }
            })
            .collect()
    }

    /// The model learned that lift and rate raise engagement, and predicts
    /// held-out sends better than the base rate.
    fn learned_timing(model: &ResponseModel) {
        assert!(
            model.weights[0] > 0.2,
            "lift must raise engagement: {:?}",
            model.weights
        );
        assert!(
            model.weights[2] > 0.2,
            "rate must raise engagement: {:?}",
            model.weights
        );
        let c = &model.calibration;
        assert!(c.log_loss < c.log_loss_base_rate - 0.01, "{c:?}");
    }

    /// On many sends the regression is fitted on an even sample: it still
    /// learns, while the calibration and the exposure form use every send.
    #[test]
    fn a_sample_of_the_sends_fits_the_regression() {
        let rows = synthetic_rows();
        let fit = |max| {
            fit_response_sampled(&rows, [16, 4, 4, 96, 96], 200, max)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("no model"))
        };
        let (all, sampled) = (fit(usize::MAX), fit(2500));
        learned_timing(&sampled);
        assert_ne!(all.weights, sampled.weights, "fitted on fewer sends");
        // Half the sends predict the held-out ones nearly as well.
        assert!(
            sampled.calibration.log_loss < all.calibration.log_loss + 0.005,
            "{:?} vs {:?}",
            sampled.calibration,
            all.calibration
        );
        assert_eq!(all.calibration.train_sends, sampled.calibration.train_sends);
        assert_eq!(
            all.calibration.heldout_sends,
            sampled.calibration.heldout_sends
        );
        assert_eq!(all.exposure, sampled.exposure);
    }

    /// Sends at active times engage far more: the model must learn that lift
    /// matters, and its held-out predictions must be calibrated.
    #[test]
    fn learns_timing_and_is_calibrated() {
        let rows = synthetic_rows();
        let model = fit_response(&rows, [16, 4, 4, 96, 96], 200)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no model"));
        learned_timing(&model);
        for bin in &model.calibration.bins {
            assert!((bin.predicted - bin.observed).abs() < 0.08, "{bin:?}");
        }
        let at = |lift| SendContext {
            lift,
            activity: 10.0,
            rate: 0.2,
            days_since_active: 1.0,
            sends_7d: 1.0,
            local_hour: 19.0,
            weekend: false,
            channel: Channel::Email,
            evidence: 20.0,
        };
        assert!(model.predict(&at(5.0)) > model.predict(&at(0.2)) + 0.05);
        // The linear form agrees with predict at every quarter of the week.
        for q in (0..672).step_by(7) {
            let ctx = SendContext {
                local_hour: (q % 96) as f64 / 4.0,
                weekend: q / 96 >= 5,
                ..at(3.0)
            };
            let lin = model.linearize(&ctx);
            let z = lin.z(ctx.lift.max(0.01).ln(), q);
            assert!((sigmoid(z) - model.predict(&ctx)).abs() < 1e-12);
        }
        // The derivative with respect to ln(lift) is exact: every feature is linear in it.
        for channel in Channel::ALL {
            let ctx = SendContext {
                channel,
                activity: 7.0,
                ..at(2.0)
            };
            let e = SendContext {
                lift: 2.0 * std::f64::consts::E,
                ..ctx
            };
            let (x, xe, d) = (ctx.features(), e.features(), ctx.lift_derivative());
            for i in 0..FEATURES.len() {
                assert!(
                    (xe[i] - x[i] - d[i]).abs() < 1e-12,
                    "{channel} {}",
                    FEATURES[i]
                );
            }
        }
        // Sends at every hour: every hour's own term is trusted.
        assert_eq!(model.hour_terms_from, (0..24).collect::<Vec<u8>>());
        // Too little data: no model.
        assert_eq!(
            fit_response(&rows[..100], [16, 4, 4, 96, 96], 200)
                .ok()
                .flatten(),
            None
        );
    }

    /// Sends only between 08:00 and 21:00: night hours take the term of the
    /// nearest covered hour, in the linear form and in `predict` alike.
    #[test]
    fn time_of_day_is_not_extrapolated() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let rows: Vec<SendRow> = (0..4000)
            .map(|i| {
                let local_hour = rng.gen_range(8.0..21.0);
                // Engagement falls through the day: a strong time-of-day effect.
                let p = 0.4 - 0.25 * (local_hour - 8.0) / 13.0;
                SendRow {
                    context: SendContext {
                        lift: rng.gen_range(0.2..3.0),
                        activity: 10.0,
                        rate: 0.2,
                        days_since_active: 1.0,
                        sends_7d: 1.0,
                        local_hour,
                        weekend: false,
                        channel: Channel::Email,
                        evidence: 20.0,
                    },
                    engaged: rng.gen_bool(p),
                    customer_hash: i as u64,
                    presence: 0.0,
                    typical_presence: 0.0,
                    sends_before: 0.0,
                    engagements_before: 0.0,
                    sends_total_before: 0.0,
                    sent_presence_before: 0.0,
                    engagements_total_before: 0.0,
                }
            })
            .collect();
        let model = fit_response(&rows, [16, 4, 4, 96, 96], 200)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no model"));
        let from = &model.hour_terms_from;
        assert_eq!(from[10], 10);
        assert_eq!(from[20], 20);
        assert_eq!(from[22], 20, "22:00 is nearest to 20:00: {from:?}");
        assert_eq!(from[3], 8, "03:00 is nearest to 08:00: {from:?}");
        assert_eq!(
            from[2], 20,
            "02:00 ties 20:00 and 08:00, the earlier wins: {from:?}"
        );
        let at = |local_hour| SendContext {
            lift: 1.0,
            activity: 10.0,
            rate: 0.2,
            days_since_active: 1.0,
            sends_7d: 1.0,
            local_hour,
            weekend: false,
            channel: Channel::Email,
            evidence: 20.0,
        };
        assert!(model.predict(&at(9.0)) > model.predict(&at(20.0)) + 0.05);
        assert_eq!(model.predict(&at(3.25)), model.predict(&at(8.25)));
        assert_eq!(model.predict(&at(23.5)), model.predict(&at(20.5)));
        for q in 0..96 {
            let ctx = at(q as f64 / 4.0);
            let z = model.linearize(&ctx).z(0.0, q);
            assert!(
                (sigmoid(z) - model.predict(&ctx)).abs() < 1e-12,
                "quarter {q}"
            );
        }
        // Models saved before the field existed use every hour's own term.
        let old = ResponseModel {
            hour_terms_from: Vec::new(),
            ..model.clone()
        };
        assert!(old.validate().is_ok());
        assert_ne!(old.predict(&at(3.0)), model.predict(&at(3.0)));
        let bad = ResponseModel {
            hour_terms_from: vec![30; 24],
            ..model
        };
        assert!(bad.validate().is_err());
    }
}
