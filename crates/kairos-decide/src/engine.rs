//! Scoring every (channel, 15-minute slot) in a window and choosing the best.
//!
//! Timing comes from the customer's activity distribution in local time, cut
//! into 672 quarter hours with prefix sums, so the activity mass in the hours
//! after any slot costs two lookups. A slot's predicted engagement on channel
//! `c` is `rate_c · 2·lift / (1 + lift)`, where `rate_c` is the channel's
//! engagement rate for a send at a typical time and `lift` is the activity
//! mass in the channel's response window after the slot, relative to an
//! average window of that length. It equals `rate_c` at an average time,
//! falls to 0 when the customer is never around, and timing alone at most
//! doubles a channel's rate. That is the formula without a trained model;
//! with one, the response model scores (by default its exposure form,
//! `kairos_learn::exposure`, which also grows with the mass, so each
//! channel's best slot is its most active one).

use std::cell::OnceCell;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use chrono_tz::Tz;
use kairos_core::time::local_minute_of_day;
use kairos_core::time::{LocalClock, LocalReading};
use kairos_core::{Channel, ChannelPrefs, QUARTERS_PER_WEEK};
use kairos_learn::exposure::{
    mean_presence, presence, scaled_rate, typical_presences, typical_sends, RateCounts, RatePrior,
};
use kairos_learn::response::{lift, sigmoid, LinearScore};
use kairos_learn::stats::fast_ln;
use kairos_learn::{
    ActivityPosterior, Basis, ChannelEstimate, ChannelStats, QuarterMass, ResponseModel,
    SendContext,
};
use serde::Serialize;

use crate::caps::{CapHit, CapState, PreparedCaps};
use crate::{DecideError, QuietHours, ResponseScorer, Result, ValidDecideParams};
use text::Text;

const SLOT: Duration = Duration::minutes(15);
/// Decayed events below which a customer's history says nothing.
const MIN_EVIDENCE: f64 = 0.5;
/// Relative score difference under which two slots count as tied.
const TIE: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub not_before: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
}

impl Window {
    /// The window a request asks for, with the defaults filled in and checked.
    pub fn new(
        not_before: Option<DateTime<Utc>>,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        params: &ValidDecideParams,
    ) -> Result<Self> {
        let not_before = not_before.unwrap_or(now);
        let default_len = Duration::seconds((params.default_window_hours * 3600.0) as i64);
        let deadline = deadline.unwrap_or(not_before + default_len);
        if not_before > deadline {
            return Err(DecideError::InvalidWindow(format!(
                "not_before ({}) is after deadline ({})",
                not_before.to_rfc3339(),
                deadline.to_rfc3339()
            )));
        }
        let max = Duration::seconds((params.max_window_days * 86_400.0) as i64);
        if deadline - not_before > max {
            return Err(DecideError::InvalidWindow(format!(
                "the window from not_before to deadline is longer than {} days",
                params.max_window_days
            )));
        }
        Ok(Self {
            not_before,
            deadline,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    Allowed,
    Unreachable,
    NoConsent,
    Unsubscribed,
    NotDeclared,
}

impl ChannelStatus {
    fn why_not(self, channel: Channel) -> String {
        match self {
            ChannelStatus::Allowed => String::new(),
            ChannelStatus::Unreachable => format!("the customer cannot be reached on {channel}"),
            ChannelStatus::NoConsent => format!("the customer has not consented to {channel}"),
            ChannelStatus::Unsubscribed => format!("the customer unsubscribed from {channel}"),
            ChannelStatus::NotDeclared => {
                format!("{channel} is not declared reachable and consented for the customer")
            }
        }
    }
}

/// Whether a channel may be used. A channel the request names is usable
/// unless the customer's attributes or history rule it out; without a list,
/// only channels declared both reachable and consented are.
pub fn channel_status(
    prefs: Option<&ChannelPrefs>,
    stats: &ChannelStats,
    requested: bool,
) -> ChannelStatus {
    let prefs = prefs.cloned().unwrap_or_default();
    if prefs.reachable == Some(false) {
        return ChannelStatus::Unreachable;
    }
    if prefs.consent == Some(false) {
        return ChannelStatus::NoConsent;
    }
    if let Some(unsub) = stats.unsubscribed_at {
        if prefs.consent_updated_at.is_none_or(|c| c < unsub) {
            return ChannelStatus::Unsubscribed;
        }
    }
    let declared = prefs.reachable == Some(true) && prefs.consent == Some(true);
    if !requested && !declared {
        return ChannelStatus::NotDeclared;
    }
    ChannelStatus::Allowed
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub channel: Channel,
    pub status: ChannelStatus,
    pub estimate: ChannelEstimate,
}

#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    /// Activities per week ([`kairos_learn::ProfileState::weekly_activity`]).
    pub weekly_activity: f64,
    pub now: DateTime<Utc>,
    pub tz: Tz,
    /// The customer's own zone was missing or invalid and `tz` is the default.
    pub tz_assumed: bool,
    pub window: Window,
    /// In preference order: ties go to the earlier one.
    pub candidates: Vec<Candidate>,
    pub activity: &'a ActivityPosterior,
    /// The customer's activity per quarter hour of the week: prefix sums of
    /// `activity.hour_of_week` shared among quarters by the profile's
    /// `quarter_of_day` ([`QuarterMass::with_quarters`]), when the caller
    /// keeps them per customer; from the hours alone otherwise.
    pub activity_mass: Option<&'a QuarterMass>,
    /// No trained population prior exists (the "global" prior is flat).
    pub prior_untrained: bool,
    /// Label of the customer's segment, when the timing comes from it.
    pub segment_label: Option<String>,
    /// The trained response model, if any; otherwise the lift formula scores.
    pub response: Option<&'a ResponseModel>,
    /// Days since the customer was last active (30 when never).
    pub days_since_active: f64,
    /// Sends to the customer on any channel in the last 7 days.
    pub sends_7d: f64,
    /// The customer's sends and planned sends, for frequency caps.
    pub cap_state: &'a CapState,
    /// The customer's last organic activity, if any: within [`IN_SESSION`]
    /// of `now` they are in a session and in-app reaches them at once; a
    /// send soon after it may still find them around
    /// ([`DecideParams::session_minutes`]).
    ///
    /// [`DecideParams::session_minutes`]: crate::params::DecideParams::session_minutes
    pub last_active_at: Option<DateTime<Utc>>,
    pub quiet_hours: Option<QuietHours>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Send,
    Suppress,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionBasis {
    Personal,
    Segment,
    Global,
    Default,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    NoReachableChannel,
    DeadlinePassed,
    QuietHours,
    FrequencyCap,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suppression {
    pub reason: SuppressionReason,
    pub detail: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    pub channel: Channel,
    #[serde(serialize_with = "kairos_core::rfc3339::option")]
    pub send_at: Option<DateTime<Utc>>,
    pub score: Option<f64>,
    pub why_not: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub channel: Option<Channel>,
    pub send_at: Option<DateTime<Utc>>,
    pub send_at_local: Option<DateTime<FixedOffset>>,
    pub score: f64,
    pub basis: DecisionBasis,
    pub alternatives: Vec<Alternative>,
    pub cancel_if_active_after: Option<DateTime<Utc>>,
    pub reasons: Vec<String>,
    pub suppression: Option<Suppression>,
}

/// The distribution used when nothing is known about anyone: all mass at the
/// default local time each day.
fn default_time_distribution(minute_of_day: u32) -> Vec<f64> {
    let hour = (minute_of_day / 60) as usize;
    let mut p = vec![1e-9; 168];
    for day in 0..7 {
        p[day * 24 + hour] = 1.0;
    }
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= total);
    p
}

/// A session that may still be going on at decision time, as the activity
/// mass it adds to the first slots of a window: a customer last active `d`
/// minutes before a slot is still around with probability
/// `s = exp(-d / session_minutes)`, so their presence there is
/// `1 - (1 - s)·exp(-a·m)`, which is the presence of mass `m - ln(1 - s) / a`
/// (`a` their activities a week). Slots compare on mass, so the boost
/// orders them and scores them alike.
#[derive(Debug, Clone, Copy)]
struct SessionBoost {
    /// Unix seconds of the last activity; `None`: no boost.
    last: Option<i64>,
    /// `session_minutes` in seconds.
    span: f64,
    activity: f64,
}

impl SessionBoost {
    fn new(input: &DecisionInput<'_>, params: &ValidDecideParams) -> Self {
        let usable = params.session_minutes > 0.0 && input.weekly_activity > 0.0;
        Self {
            last: input
                .last_active_at
                .filter(|_| usable)
                .map(|t| t.timestamp()),
            span: params.session_minutes * 60.0,
            activity: input.weekly_activity,
        }
    }

    /// The chance the customer is still in the session at `t` (Unix seconds);
    /// 0 below one in a thousand.
    fn still_around(&self, t: i64) -> f64 {
        self.last.map_or(0.0, |last| {
            let x = (t - last).max(0) as f64 / self.span;
            // exp(-6.9) < 0.001; clients' clocks run a little ahead or
            // behind: never above certain.
            if x > 6.9 {
                0.0
            } else {
                (-x).exp().min(0.999)
            }
        })
    }

    /// The mass the session adds to a slot at `t`; 0 once it has surely ended.
    fn mass_at(&self, t: i64) -> f64 {
        let s = self.still_around(t);
        if s < 1e-3 {
            0.0
        } else {
            -(-s).ln_1p() / self.activity
        }
    }
}

/// Recently active enough to be in a session now. Apps and sites report
/// activity all through a session (opens, views, clicks), so a customer
/// quiet for longer has most likely left, and an in-app message sent then
/// waits for their next session; 30 minutes, the gap analytics take to
/// close a session, did worse in simulation than 15. Either way: clients'
/// clocks run a little ahead or behind.
pub const IN_SESSION: Duration = Duration::minutes(15);

/// Whether a customer last active at `last_active_at` is in a session at
/// `now` ([`IN_SESSION`]), either way of `now`.
pub fn in_session(last_active_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_active_at.is_some_and(|l| (now - l).abs() <= IN_SESSION)
}

fn predicted(rate: f64, mass: f64, len: usize) -> f64 {
    let lift = mass / (len as f64 / QUARTERS_PER_WEEK as f64);
    (rate * 2.0 * lift / (1.0 + lift)).min(1.0)
}

/// A slot while searching: compared on `key`, which orders slots like their score.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Unix seconds.
    at: i64,
    key: f64,
    quarter: usize,
    /// Local calendar day.
    day: i64,
}

/// Whether `slot` replaces `best`: a higher key, or an equal key earlier
/// (the earliest slot wins ties, whatever order slots are visited in).
fn improves(slot: &Slot, best: Option<Slot>) -> bool {
    match best {
        None => true,
        Some(b) => {
            let tie = TIE * b.key.abs().max(1e-12);
            slot.key > b.key + tie || (slot.key >= b.key - tie && slot.at < b.at)
        }
    }
}

/// How one channel's slots are scored.
#[derive(Debug, Clone)]
struct Scorer {
    channel: Channel,
    len: usize,
    rate: f64,
    /// The response model's logit as a function of the slot, if there is a model.
    linear: Option<LinearScore>,
    /// The largest time-of-day (and weekend) term of `linear`.
    max_h: f64,
    /// The response model's exposure form, when it scores.
    exposure: Option<ExposureScore>,
}

/// A channel's exposure scoring (`kairos_learn::exposure`).
#[derive(Debug, Clone)]
struct ExposureScore {
    floor: f64,
    activity: f64,
    /// The rate's prior relative to the customer's exposure, with the
    /// customer's sends and engagements on the channel (decayed or in total,
    /// as the model chose).
    rate_prior: Option<RatePrior>,
    sends: f64,
    engagements: f64,
    /// The mean presence after the customer's latest past sends on the
    /// channel, when the model counts sends at a typical time (`None`
    /// otherwise, or without sends): the rate was seen through it.
    sent_presence: Option<f64>,
}

impl Scorer {
    fn new(
        c: &Candidate,
        input: &DecisionInput<'_>,
        params: &ValidDecideParams,
        timing_len: Option<usize>,
        terms: Option<&[f64; 96]>,
        caps: &PreparedCaps<'_>,
        mass: &QuarterMass,
    ) -> Self {
        let exposure = input
            .response
            .and_then(|m| m.exposure.as_ref())
            .filter(|_| params.scorer == ResponseScorer::Exposure);
        match (input.response, timing_len, terms) {
            (Some(model), None, _) if exposure.is_some() => Self {
                channel: c.channel,
                len: model.window_quarters[c.channel.index()],
                rate: c.estimate.rate,
                linear: None,
                max_h: 0.0,
                exposure: exposure.map(|e| ExposureScore {
                    floor: e.floor[c.channel.index()],
                    activity: input.weekly_activity.max(0.0),
                    rate_prior: e.rate_prior[c.channel.index()],
                    sends: match e.rate_counts {
                        RateCounts::Decayed => c.estimate.sends,
                        RateCounts::Total => f64::from(c.estimate.sends_total),
                    },
                    engagements: match e.rate_counts {
                        RateCounts::Decayed => c.estimate.engagements,
                        RateCounts::Total => f64::from(c.estimate.engagements_total),
                    },
                    sent_presence: e
                        .sends_at_typical
                        .then(|| {
                            mean_presence(
                                caps.quarters_until(c.channel, input.now.timestamp()),
                                mass,
                                model.window_quarters[c.channel.index()],
                                input.weekly_activity.max(0.0),
                            )
                        })
                        .flatten(),
                }),
            },
            (Some(model), None, Some(terms)) => {
                let len = model.window_quarters[c.channel.index()];
                let ctx = SendContext {
                    lift: 1.0,
                    activity: input.weekly_activity,
                    evidence: input.activity.evidence,
                    rate: c.estimate.rate,
                    days_since_active: input.days_since_active,
                    sends_7d: input.sends_7d,
                    local_hour: 0.0,
                    weekend: false,
                    channel: c.channel,
                };
                let linear = model.linearize_with(&ctx, terms);
                let max_h = linear
                    .by_quarter_of_day
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max)
                    + linear.weekend.max(0.0);
                Self {
                    channel: c.channel,
                    len,
                    rate: c.estimate.rate,
                    linear: Some(linear),
                    max_h,
                    exposure: None,
                }
            }
            _ => Self {
                channel: c.channel,
                len: timing_len.unwrap_or(params.response_quarters[c.channel.index()]),
                rate: c.estimate.rate,
                linear: None,
                max_h: 0.0,
                exposure: None,
            },
        }
    }

    /// The mass at or below which no slot can have a key above `best`: with
    /// the model, `z ≤ c + a·ln(lift) + max h`, so when `a > 0` a lift under
    /// `exp((best - c - max h) / a)` cannot win; with the formula, the key is the mass.
    fn floor(&self, best: f64) -> f64 {
        match &self.linear {
            Some(lin) if lin.ln_lift > 0.0 => {
                // A little lower than exact, so that ties (and fast_ln's error) are still scored.
                let lift_floor =
                    ((best - lin.constant - self.max_h) / lin.ln_lift).exp() * (1.0 - 1e-4);
                // Slots below 0.01 lift all score as 0.01 (the model clamps).
                if lift_floor <= 0.01 {
                    f64::NEG_INFINITY
                } else {
                    lift_floor * self.len as f64 / kairos_core::QUARTERS_PER_WEEK as f64
                }
            }
            Some(_) => f64::NEG_INFINITY,
            None => best * (1.0 - 1e-6),
        }
    }

    /// Whether a session that may still be going on counts in this
    /// scorer's slots: with the formula and the exposure form, which grow
    /// with the mass (the logistic form orders slots by its own terms).
    fn counts_sessions(&self) -> bool {
        self.linear.is_none()
    }

    /// `mass`, a session's boost to a slot, if this scorer counts it (else 0).
    fn session_mass(&self, mass: f64) -> f64 {
        if self.counts_sessions() {
            mass
        } else {
            0.0
        }
    }

    /// The score of the slot at `quarter`; `typical` gives the presence at a
    /// typical time for the scorer's window length (called only if needed).
    fn score(
        &self,
        mass: &QuarterMass,
        quarter: usize,
        boost: f64,
        typical: impl FnOnce() -> f64,
    ) -> f64 {
        let m = mass.mass(quarter, self.len) + boost;
        match (&self.linear, &self.exposure) {
            (Some(lin), _) => sigmoid(lin.z(lift(m, self.len).max(0.01).ln(), quarter)),
            (None, Some(e)) => {
                let typical = typical();
                let rate = e.rate_prior.map_or(self.rate, |p| {
                    let exposure = e.floor + (1.0 - e.floor) * typical;
                    let sends = e.sent_presence.map_or(e.sends, |sent| {
                        typical_sends(e.sends, e.floor, sent, typical)
                    });
                    p.posterior_mean(exposure, sends, e.engagements)
                });
                scaled_rate(rate, e.floor, presence(e.activity * m), typical)
            }
            (None, None) => predicted(self.rate, m, self.len),
        }
    }
}

const SLOT_SECS: i64 = SLOT.num_seconds();

/// Slots in a row: `n` quarter hours from `t` (Unix seconds), read
/// `quarter`, `minute` and `day` locally, all within that local day; `j`
/// counts the slots of the window before them.
#[derive(Debug, Clone, Copy)]
struct Run {
    t: i64,
    quarter: usize,
    minute: u32,
    day: i64,
    n: usize,
    j: usize,
}

impl Run {
    /// The `i`-th slot: its number in the window, instant and local reading.
    fn slot(&self, i: usize) -> (usize, i64, LocalReading) {
        (
            self.j + i,
            self.t + i as i64 * SLOT_SECS,
            LocalReading {
                quarter: self.quarter + i,
                minute: self.minute + i as u32 * 15,
                day: self.day,
            },
        )
    }

    fn slots(&self) -> impl Iterator<Item = (usize, i64, LocalReading)> + '_ {
        (0..self.n).map(|i| self.slot(i))
    }
}

/// The parts outside the quiet hours of `n` quarter hours from local
/// `minute` (within one day), as ranges of their indices, in order: at
/// most two (an empty one is `(0, 0)`).
fn outside_quiet(quiet: Option<QuietHours>, minute: u32, n: usize) -> [(usize, usize); 2] {
    // How many of them start before local minute `x`.
    let before = |x: u32| (x.saturating_sub(minute).div_ceil(15) as usize).min(n);
    match quiet {
        None => [(0, n), (0, 0)],
        Some(q) => {
            let (s, e) = (q.start.minutes(), q.end.minutes());
            if s < e {
                // Quiet from s to e.
                [(0, before(s)), (before(e), n)]
            } else {
                // Quiet from s to midnight and from midnight to e.
                [(before(e), before(s)), (0, 0)]
            }
        }
    }
}

/// The window's slots outside quiet hours, as runs, into `runs`: the
/// window's start `start` (whole seconds), then every quarter hour after
/// it up to `deadline` (Unix seconds), read by `clock`.
fn slot_runs(
    clock: &mut LocalClock,
    start: i64,
    deadline: i64,
    quiet: Option<QuietHours>,
    runs: &mut Vec<Run>,
) {
    let first_aligned = (start + SLOT_SECS - 1).div_euclid(SLOT_SECS) * SLOT_SECS;
    let mut slots = 0;
    let mut keep = |t: i64, local: LocalReading, n: usize| {
        for (from, to) in outside_quiet(quiet, local.minute, n) {
            if from < to {
                runs.push(Run {
                    t: t + from as i64 * SLOT_SECS,
                    quarter: local.quarter + from,
                    minute: local.minute + from as u32 * 15,
                    day: local.day,
                    n: to - from,
                    j: slots,
                });
                slots += to - from;
            }
        }
    };
    if first_aligned != start && start <= deadline {
        keep(start, clock.read_secs(start), 1);
    }
    clock.for_each_run(first_aligned, deadline, &mut keep);
}

/// Calls `visit(i, m)` for each of `slots` at or above `bar` (above it,
/// if `strict`), in order; `visit` returns the bar from then on. Blocks of
/// slots all below the bar cost a comparison each and no branch: after the
/// first good slots, most of a week is below the best so far.
fn visit_above(
    slots: &[f64],
    mut bar: f64,
    strict: bool,
    mut visit: impl FnMut(usize, f64) -> f64,
) -> f64 {
    const BLOCK: usize = 8;
    let passes = |m: f64, bar: f64| if strict { m > bar } else { m >= bar };
    let mut blocks = slots.chunks_exact(BLOCK);
    for (b, block) in blocks.by_ref().enumerate() {
        if !block.iter().fold(false, |any, &m| any | passes(m, bar)) {
            continue;
        }
        for (k, &m) in block.iter().enumerate() {
            if passes(m, bar) {
                bar = visit(b * BLOCK + k, m);
            }
        }
    }
    let done = slots.len() - blocks.remainder().len();
    for (k, &m) in blocks.remainder().iter().enumerate() {
        if passes(m, bar) {
            bar = visit(done + k, m);
        }
    }
    bar
}

/// Per-decision work space: the slots' runs, and per distinct window length
/// the mass after each local quarter of the week and its log-lift (NaN
/// until needed).
#[derive(Debug, Default)]
struct Scratch {
    runs: Vec<Run>,
    masses: Vec<Vec<f64>>,
    ln_lifts: Vec<Vec<f64>>,
}

thread_local! {
    /// The work space, reused by every decision on this thread.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The thread's work space, emptied, for one decision (with `lens` window
/// lengths); handed back, with its capacity, when the decision is done.
struct Borrowed(Scratch);

impl Borrowed {
    fn take(lens: usize) -> Self {
        let mut s = SCRATCH.with(|r| {
            r.try_borrow_mut()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default()
        });
        s.runs.clear();
        for v in [&mut s.masses, &mut s.ln_lifts] {
            v.resize_with(lens.max(v.len()), Vec::new);
            v.iter_mut().for_each(Vec::clear);
        }
        Self(s)
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        let s = std::mem::take(&mut self.0);
        SCRATCH.with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                *r = s;
            }
        });
    }
}

#[derive(Debug, Clone, Copy)]
struct Best {
    at: DateTime<Utc>,
    score: f64,
}

/// Decides for one customer. Never breaks a rule to send: when nothing fits,
/// the answer is `suppress` with the reason.
pub fn decide(input: &DecisionInput<'_>, params: &ValidDecideParams) -> Decision {
    // With no trained prior, whatever timing information exists is the
    // customer's own; with none at all, the configured default time.
    let basis = match input.activity.basis {
        Basis::Personal => DecisionBasis::Personal,
        Basis::Segment => DecisionBasis::Segment,
        Basis::Global if input.prior_untrained && input.activity.evidence >= MIN_EVIDENCE => {
            DecisionBasis::Personal
        }
        Basis::Global if input.prior_untrained => DecisionBasis::Default,
        Basis::Global => DecisionBasis::Global,
    };
    let mut reasons = Vec::new();
    if input.tz_assumed {
        reasons.push(format!(
            "Time zone unknown: local times assume {} (configured default).",
            input.tz.name()
        ));
    }

    let suppress = |reason, detail: String, alternatives, mut reasons: Vec<String>| {
        reasons.push(detail.clone());
        Decision {
            action: Action::Suppress,
            channel: None,
            send_at: None,
            send_at_local: None,
            score: 0.0,
            basis,
            alternatives,
            cancel_if_active_after: None,
            reasons,
            suppression: Some(Suppression { reason, detail }),
        }
    };

    let start = input.window.not_before.max(input.now);
    if input.window.deadline < start {
        return suppress(
            SuppressionReason::DeadlinePassed,
            format!(
                "The deadline {} has passed.",
                input.window.deadline.to_rfc3339()
            ),
            Vec::new(),
            reasons,
        );
    }

    if in_session(input.last_active_at, input.now) {
        if let Some(i) = input
            .candidates
            .iter()
            .position(|c| c.channel == Channel::InApp && c.status == ChannelStatus::Allowed)
        {
            let quiet = input
                .quiet_hours
                .is_some_and(|q| q.contains(local_minute_of_day(start, input.tz)));
            let capped = input
                .cap_state
                .check(&params.caps, Channel::InApp, start, input.tz)
                .is_err();
            if !quiet && !capped {
                let cand = &input.candidates[i];
                reasons.push(
                    "Active in the app right now: an in-app message reaches them at once.".into(),
                );
                let local = start.with_timezone(&input.tz).fixed_offset();
                return Decision {
                    action: Action::Send,
                    channel: Some(Channel::InApp),
                    send_at: Some(start),
                    send_at_local: Some(local),
                    score: cand.estimate.rate,
                    basis,
                    alternatives: input
                        .candidates
                        .iter()
                        .filter(|c| c.channel != Channel::InApp)
                        .map(|c| Alternative {
                            channel: c.channel,
                            send_at: None,
                            score: None,
                            why_not: if c.status == ChannelStatus::Allowed {
                                "the customer is in the app right now".into()
                            } else {
                                c.status.why_not(c.channel)
                            },
                        })
                        .collect(),
                    cancel_if_active_after: None,
                    reasons,
                    suppression: None,
                };
            }
        }
    }

    let default_distribution;
    let (distribution, timing_len) = if basis == DecisionBasis::Default {
        default_distribution = default_time_distribution(params.default_send_time.minutes());
        (default_distribution.as_slice(), Some(1))
    } else {
        (input.activity.hour_of_week.as_slice(), None)
    };
    let computed;
    let mass = match (input.activity_mass, timing_len) {
        (Some(m), None) => m,
        _ => {
            computed = QuarterMass::new(distribution);
            &computed
        }
    };

    // Each allowed channel's scorer: slots are compared on a cheap key that
    // orders them like the score; the score itself is computed for winners.
    let terms = input
        .response
        .filter(|m| params.scorer == ResponseScorer::Logistic || m.exposure.is_none())
        .map(ResponseModel::quarter_terms);
    let mut clock = LocalClock::new(input.tz);
    let prepared = input
        .cap_state
        .prepare(&params.caps, &mut clock, input.now.timestamp());
    let unlimited = prepared.unlimited();
    let scorers: Vec<Option<Scorer>> = input
        .candidates
        .iter()
        .map(|c| {
            (c.status == ChannelStatus::Allowed).then(|| {
                Scorer::new(
                    c,
                    input,
                    params,
                    timing_len,
                    terms.as_ref(),
                    &prepared,
                    mass,
                )
            })
        })
        .collect();
    // Channels share window lengths: the mass (and its log) per distinct length once a slot.
    let mut lens: Vec<usize> = Vec::new();
    let len_index: Vec<usize> = scorers
        .iter()
        .map(|s| {
            let len = s.as_ref().map_or(0, |s| s.len);
            lens.iter().position(|l| *l == len).unwrap_or_else(|| {
                lens.push(len);
                lens.len() - 1
            })
        })
        .collect();

    // Best slot per allowed candidate, within the caps and ignoring them.
    let mut best_key: Vec<Option<Slot>> = vec![None; input.candidates.len()];
    let mut best_uncapped_key: Vec<Option<Slot>> = vec![None; input.candidates.len()];
    let mut cap_hits: Vec<Option<CapHit>> = vec![None; input.candidates.len()];
    // The window's own start, then every quarter hour after it, in Unix seconds.
    // Whole seconds inside the window: the start rounded up, the deadline down.
    let start_secs = start.timestamp() + i64::from(start.timestamp_subsec_nanos() > 0);
    let deadline_secs = input.window.deadline.timestamp();
    // Pass 1: every slot outside quiet hours, as runs of quarter hours.
    let mut scratch = Borrowed::take(lens.len());
    let Scratch {
        runs,
        masses,
        ln_lifts,
    } = &mut scratch.0;
    slot_runs(
        &mut clock,
        start_secs,
        deadline_secs,
        input.quiet_hours,
        runs,
    );
    let any_outside_quiet = !runs.is_empty();
    let every_slot = || runs.iter().flat_map(Run::slots);
    // The mass a session that may still be going on adds to the first
    // slots (in time order, so it only falls; 0 after the last listed).
    let session = SessionBoost::new(input, params);
    let boosts: Vec<f64> = every_slot()
        .map(|(_, t, _)| session.mass_at(t))
        .take_while(|b| *b > 0.0)
        .collect();
    let boost = |j: usize| boosts.get(j).copied().unwrap_or(0.0);
    // Per window length, the mass after every quarter of the week (its
    // log-lift computed when first needed), and the slot with the most.
    let mut top: Vec<Option<(usize, i64, LocalReading)>> = vec![None; lens.len()];
    for (k, len) in lens.iter().enumerate() {
        mass.windows(*len, &mut masses[k]);
        let ms = &masses[k];
        // The earliest of slots tied with it, as `improves` has it: the
        // first slot, then each that beats the best so far by more than a tie.
        let mut above = f64::NEG_INFINITY;
        let mut at: Option<(usize, usize)> = None;
        for (r, run) in runs.iter().enumerate() {
            let slots = &ms[run.quarter..run.quarter + run.n];
            // The slots a session boosts one by one (and the very first),
            // then the rest without a boost, by blocks.
            let boosted = boosts.len().saturating_sub(run.j).min(slots.len());
            let first = boosted.max(usize::from(at.is_none())).min(slots.len());
            let mut bar = above;
            let mut consider = |i: usize, m: f64| {
                if m > above || at.is_none() {
                    above = m + TIE * m.abs().max(1e-12);
                    at = Some((r, i));
                }
                above
            };
            for (i, &m) in slots[..first].iter().enumerate() {
                bar = consider(i, m + boost(run.j + i));
            }
            visit_above(&slots[first..], bar, true, |i, m| consider(first + i, m));
        }
        top[k] = at.map(|(r, i)| runs[r].slot(i));
    }
    // Pass 2, channel by channel. The formula grows with the mass: the best
    // slot is the top one. With the response model each channel first scores
    // its window length's top slot: a high best early lets the floor (the
    // mass at or below which a slot cannot beat the best so far) skip most
    // other slots unscored. Channels with one window length share log-lifts.
    for (i, scorer) in scorers.iter().enumerate() {
        let Some(scorer) = scorer else { continue };
        let k = len_index[i];
        let Some(lin) = &scorer.linear else {
            best_uncapped_key[i] = top[k].map(|(j, t, local)| Slot {
                at: t,
                key: masses[k][local.quarter] + boost(j),
                quarter: local.quarter,
                day: local.day,
            });
            continue;
        };
        let (ms, lns) = (&masses[k], &mut ln_lifts[k]);
        // Log-lifts only for the channels scored by the logistic form: the
        // first for a window length sets them all unknown.
        lns.resize(QUARTERS_PER_WEEK, f64::NAN);
        let mut floor = f64::NEG_INFINITY;
        let mut best: Option<Slot> = None;
        let mut visit = |t: i64, quarter: usize, day: i64, m: f64| {
            let ln = &mut lns[quarter];
            if ln.is_nan() {
                *ln = fast_ln(lift(m, lens[k]).max(0.01));
            }
            let key = lin.z(*ln, quarter);
            let slot = Slot {
                at: t,
                key,
                quarter,
                day,
            };
            // A better slot raises the floor.
            improves(&slot, best).then(|| {
                best = Some(slot);
                scorer.floor(key)
            })
        };
        if let Some((_, t, local)) = top[k] {
            if let Some(f) = visit(t, local.quarter, local.day, ms[local.quarter]) {
                floor = f;
            }
        }
        for run in runs.iter() {
            let slots = &ms[run.quarter..run.quarter + run.n];
            let mut current = floor;
            floor = visit_above(slots, floor, false, |i, m| {
                let t = run.t + i as i64 * SLOT_SECS;
                if let Some(f) = visit(t, run.quarter + i, run.day, m) {
                    current = f;
                }
                current
            });
        }
        best_uncapped_key[i] = best;
    }
    // Caps rarely bind: each channel's best slot is checked once, and only a
    // channel whose best is capped is searched again within the caps.
    for (i, scorer) in scorers.iter().enumerate() {
        let (Some(scorer), Some(free)) = (scorer, best_uncapped_key[i]) else {
            continue;
        };
        match if unlimited {
            Ok(())
        } else {
            prepared.check(scorer.channel, free.at, free.day)
        } {
            Ok(()) => best_key[i] = Some(free),
            Err(hit) => {
                cap_hits[i] = Some(hit);
                let k = len_index[i];
                let mut floor = f64::NEG_INFINITY;
                // A hit holds for a span of later slots: skip them unchecked.
                let mut capped: Option<crate::caps::CapSpan> = None;
                for (j, t, local) in every_slot() {
                    let m = masses[k][local.quarter] + scorer.session_mass(boost(j));
                    if m < floor || capped.is_some_and(|c| c.covers(t, local.day)) {
                        continue;
                    }
                    let key = match &scorer.linear {
                        Some(lin) => {
                            let ln = &mut ln_lifts[k][local.quarter];
                            if ln.is_nan() {
                                *ln = fast_ln(lift(m, lens[k]).max(0.01));
                            }
                            lin.z(*ln, local.quarter)
                        }
                        None => m,
                    };
                    let slot = Slot {
                        at: t,
                        key,
                        quarter: local.quarter,
                        day: local.day,
                    };
                    if !improves(&slot, best_key[i]) {
                        continue;
                    }
                    match prepared.check_span(scorer.channel, t, local.day) {
                        Ok(()) => {
                            best_key[i] = Some(slot);
                            floor = scorer.floor(key);
                        }
                        Err((_, span)) => capped = Some(span),
                    }
                }
            }
        }
    }

    // The presence at a typical time, per window length (the same for every
    // channel with that length: it depends on the customer only), all
    // computed together when first needed.
    let typicals: OnceCell<Vec<f64>> = OnceCell::new();
    let typical_of = |k: usize| {
        typicals.get_or_init(|| {
            let mut v = Vec::with_capacity(lens.len());
            typical_presences(mass, &lens, input.weekly_activity.max(0.0), &mut v);
            v
        })[k]
    };
    let score_of = |slots: &[Option<Slot>]| -> Vec<Option<Best>> {
        slots
            .iter()
            .zip(&scorers)
            .zip(&len_index)
            .map(|((b, s), &k)| match (b, s) {
                (Some(b), Some(s)) => Some(Best {
                    at: DateTime::from_timestamp(b.at, 0).unwrap_or(start),
                    score: s.score(
                        mass,
                        b.quarter,
                        s.session_mass(session.mass_at(b.at)),
                        || typical_of(k),
                    ),
                }),
                _ => None,
            })
            .collect()
    };
    let best = score_of(&best_key);
    let best_uncapped = score_of(&best_uncapped_key);

    let chosen = best
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.map(|b| (i, b)))
        .fold(None::<(usize, Best)>, |acc, (i, b)| match acc {
            Some((_, a)) if b.score <= a.score * (1.0 + TIE) => acc,
            _ => Some((i, b)),
        });

    let alternatives = |chosen_idx: Option<usize>, chosen_score: f64| -> Vec<Alternative> {
        input
            .candidates
            .iter()
            .zip(&best)
            .enumerate()
            .filter(|(i, _)| Some(*i) != chosen_idx)
            .map(|(_, (cand, b))| match (cand.status, b) {
                (ChannelStatus::Allowed, Some(b)) => Alternative {
                    channel: cand.channel,
                    send_at: Some(b.at),
                    score: Some(b.score),
                    why_not: Text::new()
                        .s("lower predicted engagement (")
                        .fixed(b.score, 3)
                        .s(" vs ")
                        .fixed(chosen_score, 3)
                        .s(")")
                        .done(),
                },
                (ChannelStatus::Allowed, None) => Alternative {
                    channel: cand.channel,
                    send_at: None,
                    score: None,
                    why_not: match cap_hits[cand_index(input, cand.channel)] {
                        Some(hit) => format!("frequency cap: {}", hit.describe()),
                        None => "no slot outside quiet hours before the deadline".into(),
                    },
                },
                (status, _) => Alternative {
                    channel: cand.channel,
                    send_at: None,
                    score: None,
                    why_not: status.why_not(cand.channel),
                },
            })
            .collect()
    };

    let Some((idx, b)) = chosen else {
        let allowed = input
            .candidates
            .iter()
            .any(|c| c.status == ChannelStatus::Allowed);
        let capped: Vec<String> = cap_hits.iter().flatten().map(CapHit::describe).collect();
        if allowed && !capped.is_empty() {
            return suppress(
                SuppressionReason::FrequencyCap,
                format!(
                    "Every allowed channel is at its frequency cap in the window: {}.",
                    capped.join("; ")
                ),
                alternatives(None, 0.0),
                reasons,
            );
        }
        return if allowed && !any_outside_quiet {
            let q = input
                .quiet_hours
                .map(|q| format!("{}-{}", q.start, q.end))
                .unwrap_or_default();
            suppress(
                SuppressionReason::QuietHours,
                format!(
                    "No time between not_before and the deadline lies outside quiet hours {q} ({}).",
                    input.tz.name()
                ),
                alternatives(None, 0.0),
                reasons,
            )
        } else {
            suppress(
                SuppressionReason::NoReachableChannel,
                "No candidate channel is reachable and allowed for this customer.".into(),
                alternatives(None, 0.0),
                reasons,
            )
        };
    };

    let cand = &input.candidates[idx];
    reasons.push(timing_reason(input, basis, params));
    reasons.push(channel_reason(input, idx));
    let local = b.at.with_timezone(&input.tz).fixed_offset();
    reasons.push(
        Text::new()
            .s("Best time in the window: ")
            .weekday_time(local)
            .s(" local, predicted engagement ")
            .fixed(b.score, 3)
            .s(".")
            .done(),
    );
    let around = session.still_around(b.at.timestamp());
    if around >= 0.05 && scorers[idx].as_ref().is_some_and(Scorer::counts_sessions) {
        let minutes = input
            .last_active_at
            .map_or(0, |l| (b.at - l).num_minutes().max(0));
        reasons.push(
            Text::new()
                .s("Last active ")
                .n(minutes.unsigned_abs())
                .s(" minutes before the send: still around then with a chance of ")
                .fixed(100.0 * around, 0)
                .s("%.")
                .done(),
        );
    }
    if let (Some(hit), Some(free)) = (cap_hits[idx], best_uncapped[idx]) {
        if free.at != b.at {
            let l = free.at.with_timezone(&input.tz).fixed_offset();
            reasons.push(
                Text::new()
                    .s("Moved from ")
                    .weekday_time(l)
                    .s(" local because of the frequency cap: ")
                    .s(&hit.describe())
                    .s(".")
                    .done(),
            );
        }
    }
    if let Some(q) = input.quiet_hours {
        reasons.push(
            Text::new()
                .s("Quiet hours ")
                .hh_mm(q.start.minutes())
                .s("-")
                .hh_mm(q.end.minutes())
                .s(" local are respected.")
                .done(),
        );
    }
    let cancel_if_active_after =
        matches!(cand.channel, Channel::Push | Channel::InApp).then_some(input.now);
    Decision {
        action: Action::Send,
        channel: Some(cand.channel),
        send_at: Some(b.at),
        send_at_local: Some(local),
        score: b.score,
        basis,
        alternatives: alternatives(Some(idx), b.score),
        cancel_if_active_after,
        reasons,
        suppression: None,
    }
}

fn cand_index(input: &DecisionInput<'_>, channel: Channel) -> usize {
    input
        .candidates
        .iter()
        .position(|c| c.channel == channel)
        .unwrap_or(0)
}

fn timing_reason(
    input: &DecisionInput<'_>,
    basis: DecisionBasis,
    params: &ValidDecideParams,
) -> String {
    let zone = input.tz.name();
    match basis {
        DecisionBasis::Personal => {
            let peaks: Vec<String> = input
                .activity
                .peak_windows(3)
                .into_iter()
                .map(|w| w.label)
                .collect();
            if peaks.is_empty() {
                format!("Active at many times of the week ({zone}); timing from their own history.")
            } else {
                Text::new()
                    .s("Usually active ")
                    .s(&peaks.join(", "))
                    .s(" (")
                    .s(zone)
                    .s(").")
                    .done()
            }
        }
        DecisionBasis::Segment => format!(
            "Little personal history ({:.1} recent events): timing follows similar customers ({}, {zone}).",
            input.activity.evidence,
            input.segment_label.as_deref().unwrap_or("their segment")
        ),
        DecisionBasis::Global => format!(
            "Little personal history ({:.1} recent events): timing follows when customers in general are active ({zone}).",
            input.activity.evidence
        ),
        DecisionBasis::Default => format!(
            "No activity history yet: sending at the default local time {} ({zone}).",
            params.default_send_time
        ),
    }
}

fn channel_reason(input: &DecisionInput<'_>, chosen: usize) -> String {
    let describe = |t: Text, c: &Candidate| {
        t.s(c.channel.as_str())
            .s(" engaged ")
            .n(u64::from(c.estimate.engagements_total))
            .s(" of ")
            .n(u64::from(c.estimate.sends_total))
            .s(" times")
    };
    let chosen = &input.candidates[chosen];
    // Shown to whole percents: a ten-millionth is more than enough.
    let ci = chosen.estimate.rate_ci_within(1e-7);
    let mut t = describe(Text::new(), chosen)
        .s(" (estimated rate ")
        .fixed(chosen.estimate.rate * 100.0, 0)
        .s("%, 95% interval ")
        .fixed(ci[0] * 100.0, 0)
        .s("-")
        .fixed(ci[1] * 100.0, 0)
        .s("%)");
    let mut others = input
        .candidates
        .iter()
        .filter(|c| c.channel != chosen.channel && c.status == ChannelStatus::Allowed)
        .peekable();
    if others.peek().is_some() {
        t = t.s(" vs ");
        for (k, c) in others.enumerate() {
            if k > 0 {
                t = t.s(", ");
            }
            t = describe(t, c);
        }
    }
    t.s(".").done()
}

mod text;

#[cfg(test)]
mod tests;
