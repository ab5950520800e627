use chrono::{Datelike, Timelike};
use kairos_core::LocalTimeOfDay;
use kairos_learn::{ActivityModel, ActivityParams, BetaPrior};
use proptest::prelude::*;

use super::*;
use crate::caps::CapState;
use crate::DecideParams;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn params() -> ValidDecideParams {
    DecideParams::default()
        .check()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn quiet(start: &str, end: &str) -> Option<QuietHours> {
    let t = |s: &str| {
        s.parse::<LocalTimeOfDay>()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    Some(QuietHours {
        start: t(start),
        end: t(end),
    })
}

/// A posterior with `count` events in each of the given local hours of week.
fn activity(hours: &[usize], count: f32, trained: bool) -> (ActivityPosterior, bool) {
    let mut counts = vec![0.0f32; 168];
    for &h in hours {
        counts[h] = count;
    }
    let mut model = ActivityModel::untrained(ActivityParams::default());
    if trained {
        model.customers = 100;
    }
    (model.posterior(&counts), !trained)
}

fn candidate(channel: Channel, status: ChannelStatus, sends: f32, engagements: f32) -> Candidate {
    let stats = ChannelStats {
        sends,
        engagements,
        ..ChannelStats::default()
    };
    Candidate {
        channel,
        status,
        estimate: ChannelEstimate::new(&stats, BetaPrior::from_mean(0.15, 4.0)),
    }
}

struct Case {
    name: &'static str,
    zone: &'static str,
    now: &'static str,
    not_before: Option<&'static str>,
    deadline: Option<&'static str>,
    hours: Vec<usize>,
    count: f32,
    trained: bool,
    candidates: Vec<Candidate>,
    quiet: Option<QuietHours>,
    /// Expected (channel, local weekday 0=Mon, local "HH:MM") or the suppression reason.
    expect: Result<(Channel, u32, &'static str), SuppressionReason>,
    basis: DecisionBasis,
}

fn run(case: &Case) -> Decision {
    let tz: Tz = case.zone.parse().unwrap_or_else(|e| panic!("{e}"));
    let p = params();
    let now = utc(case.now);
    let window = Window::new(case.not_before.map(utc), case.deadline.map(utc), now, &p)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let (post, untrained) = activity(&case.hours, case.count, case.trained);
    let input = DecisionInput {
        weekly_activity: 4.0,
        now,
        tz,
        tz_assumed: false,
        window,
        candidates: case.candidates.clone(),
        activity: &post,
        activity_mass: None,
        prior_untrained: untrained,
        segment_label: None,
        response: None,
        days_since_active: 1.0,
        sends_7d: 0.0,
        cap_state: &CapState::default(),
        last_active_at: None,
        quiet_hours: case.quiet,
    };
    decide(&input, &p)
}

fn check(case: Case) {
    let d = run(&case);
    assert_eq!(d.basis, case.basis, "{}: {:?}", case.name, d.reasons);
    match case.expect {
        Ok((channel, weekday, hhmm)) => {
            assert_eq!(d.action, Action::Send, "{}: {:?}", case.name, d.suppression);
            assert_eq!(d.channel, Some(channel), "{}", case.name);
            let local = d
                .send_at_local
                .unwrap_or_else(|| panic!("{}: no send_at_local", case.name));
            assert_eq!(
                (
                    local.weekday().num_days_from_monday(),
                    local.format("%H:%M").to_string()
                ),
                (weekday, hhmm.to_string()),
                "{}: {local}",
                case.name
            );
        }
        Err(reason) => {
            assert_eq!(d.action, Action::Suppress, "{}", case.name);
            assert_eq!(
                d.suppression.map(|s| s.reason),
                Some(reason),
                "{}",
                case.name
            );
        }
    }
}

const MON_19_20: [usize; 2] = [19, 20];

#[test]
fn engine_table() {
    use Channel::*;
    use ChannelStatus::*;
    let cases = vec![
        Case {
            name: "Monday evening app user, push, no quiet hours",
            zone: "Asia/Kuala_Lumpur",
            now: "2026-11-22T00:00:00Z",
            not_before: None,
            deadline: Some("2026-11-29T00:00:00Z"),
            hours: MON_19_20.to_vec(),
            count: 12.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: None,
            expect: Ok((Push, 0, "19:00")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "late-night user: best slot outside quiet hours 21-08",
            zone: "Asia/Kuala_Lumpur",
            now: "2026-11-22T00:00:00Z",
            not_before: None,
            deadline: Some("2026-11-29T00:00:00Z"),
            hours: vec![22, 23],
            count: 30.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: quiet("21:00", "08:00"),
            expect: Ok((Push, 0, "20:45")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "quiet hours across midnight cover the whole window",
            zone: "Europe/London",
            now: "2026-11-22T12:00:00Z",
            not_before: Some("2026-11-22T22:00:00Z"),
            deadline: Some("2026-11-23T06:00:00Z"),
            hours: MON_19_20.to_vec(),
            count: 12.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: quiet("21:00", "08:00"),
            expect: Err(SuppressionReason::QuietHours),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "deadline in the past",
            zone: "UTC",
            now: "2026-11-22T12:00:00Z",
            not_before: Some("2026-11-20T00:00:00Z"),
            deadline: Some("2026-11-21T00:00:00Z"),
            hours: vec![],
            count: 0.0,
            trained: true,
            candidates: vec![candidate(Email, Allowed, 0.0, 0.0)],
            quiet: None,
            expect: Err(SuppressionReason::DeadlinePassed),
            basis: DecisionBasis::Global,
        },
        Case {
            name: "unreachable best channel: the next one",
            zone: "UTC",
            now: "2026-11-22T12:00:00Z",
            not_before: None,
            deadline: Some("2026-11-29T12:00:00Z"),
            hours: MON_19_20.to_vec(),
            count: 12.0,
            trained: true,
            candidates: vec![
                candidate(Push, Unreachable, 9.0, 6.0),
                candidate(Email, Allowed, 12.0, 1.0),
            ],
            quiet: None,
            expect: Ok((Email, 0, "18:00")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "no channel allowed",
            zone: "UTC",
            now: "2026-11-22T12:00:00Z",
            not_before: None,
            deadline: None,
            hours: vec![],
            count: 0.0,
            trained: true,
            candidates: vec![
                candidate(Push, NoConsent, 0.0, 0.0),
                candidate(Sms, Unsubscribed, 0.0, 0.0),
            ],
            quiet: None,
            expect: Err(SuppressionReason::NoReachableChannel),
            basis: DecisionBasis::Global,
        },
        Case {
            name: "nothing known about anyone: default local time 17:00",
            zone: "America/New_York",
            now: "2026-11-22T12:00:00Z",
            not_before: None,
            deadline: None,
            hours: vec![],
            count: 0.0,
            trained: false,
            candidates: vec![candidate(Email, Allowed, 0.0, 0.0)],
            quiet: quiet("21:00", "08:00"),
            expect: Ok((Email, 6, "17:00")),
            basis: DecisionBasis::Default,
        },
        Case {
            name: "no trained prior, a little history: the customer's own hours, not the default",
            zone: "Europe/London",
            now: "2026-11-22T12:00:00Z",
            not_before: None,
            deadline: Some("2026-11-29T12:00:00Z"),
            hours: vec![2 * 24 + 10],
            count: 2.0,
            trained: false,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: None,
            expect: Ok((Push, 2, "10:00")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "New York spring-forward day: 19:00 EDT on Sunday 2026-03-08",
            zone: "America/New_York",
            now: "2026-03-07T12:00:00Z",
            not_before: None,
            deadline: Some("2026-03-09T03:00:00Z"),
            hours: vec![6 * 24 + 19],
            count: 20.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: None,
            expect: Ok((Push, 6, "19:00")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "London spring-forward day: 19:00 BST on Sunday 2026-03-29",
            zone: "Europe/London",
            now: "2026-03-28T12:00:00Z",
            not_before: None,
            deadline: Some("2026-03-30T03:00:00Z"),
            hours: vec![6 * 24 + 19],
            count: 20.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: None,
            expect: Ok((Push, 6, "19:00")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "Sydney fall-back day: 02:00 happens twice on Sunday 2026-04-05; 22:00 AEST",
            zone: "Australia/Sydney",
            now: "2026-04-04T00:00:00Z",
            not_before: None,
            deadline: Some("2026-04-06T00:00:00Z"),
            hours: vec![6 * 24 + 22],
            count: 20.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: quiet("23:00", "07:00"),
            expect: Ok((Push, 6, "22:00")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "Sydney spring-forward day: 02:00-03:00 does not exist on 2026-10-04",
            zone: "Australia/Sydney",
            now: "2026-10-03T00:00:00Z",
            not_before: None,
            deadline: Some("2026-10-05T00:00:00Z"),
            hours: vec![6 * 24 + 3],
            count: 20.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: None,
            expect: Ok((Push, 6, "03:00")),
            basis: DecisionBasis::Personal,
        },
        Case {
            name: "window crossing the week boundary (Sunday to Monday) in Kolkata",
            zone: "Asia/Kolkata",
            now: "2026-11-22T12:00:00Z",
            not_before: None,
            deadline: Some("2026-11-23T12:00:00Z"),
            hours: vec![9],
            count: 20.0,
            trained: true,
            candidates: vec![candidate(Push, Allowed, 0.0, 0.0)],
            quiet: None,
            expect: Ok((Push, 0, "09:00")),
            basis: DecisionBasis::Personal,
        },
    ];
    for case in cases {
        check(case);
    }
}

#[test]
fn a_cap_hit_mid_window_moves_the_send_or_suppresses() {
    let tz: Tz = "Asia/Kuala_Lumpur".parse().unwrap_or(Tz::UTC);
    let mut params = DecideParams::default();
    params.caps.push = crate::caps::CapLimits { day: 1, week: 0 };
    let p = params.check().unwrap_or_else(|e| panic!("{e}"));
    // Evenings on Monday and Tuesday.
    let (post, _) = activity(&[19, 20, 24 + 19, 24 + 20], 12.0, true);
    let mut caps_state = CapState::default();
    caps_state.add(Channel::Push, utc("2026-11-23T02:00:00Z")); // Monday 10:00 local, already sent
    let now = utc("2026-11-22T00:00:00Z");
    let ask = |not_before: &str, deadline: &str| {
        let input = DecisionInput {
            weekly_activity: 4.0,
            now,
            tz,
            tz_assumed: false,
            window: Window::new(Some(utc(not_before)), Some(utc(deadline)), now, &p)
                .unwrap_or_else(|e| panic!("{e}")),
            candidates: vec![candidate(Channel::Push, ChannelStatus::Allowed, 0.0, 0.0)],
            activity: &post,
            activity_mass: None,
            prior_untrained: false,
            segment_label: None,
            response: None,
            days_since_active: 1.0,
            sends_7d: 1.0,
            cap_state: &caps_state,
            last_active_at: None,
            quiet_hours: None,
        };
        decide(&input, &p)
    };
    let d = ask("2026-11-22T00:00:00Z", "2026-11-29T00:00:00Z");
    let local = d.send_at_local.unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(
        local.weekday(),
        chrono::Weekday::Tue,
        "Monday is capped: {local}"
    );
    assert!((18..21).contains(&local.hour()), "{local}");
    let text = d.reasons.join(" ");
    assert!(
        text.contains("Moved from Monday 19:00") && text.contains("1 of 1 allowed pushes"),
        "{text}"
    );
    // Only Monday left in the window: suppressed, never over the cap.
    let d = ask("2026-11-22T16:00:00Z", "2026-11-23T15:00:00Z");
    assert_eq!(
        d.suppression.map(|s| s.reason),
        Some(SuppressionReason::FrequencyCap)
    );
}

#[test]
fn window_rules() {
    let p = params();
    let now = utc("2026-11-22T12:00:00Z");
    assert!(matches!(
        Window::new(
            Some(utc("2026-11-23T00:00:00Z")),
            Some(utc("2026-11-22T23:00:00Z")),
            now,
            &p
        ),
        Err(DecideError::InvalidWindow(_))
    ));
    assert!(Window::new(None, Some(utc("2027-02-01T00:00:00Z")), now, &p).is_err());
    let w = Window::new(None, None, now, &p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.deadline - w.not_before, Duration::hours(24));
}

#[test]
fn explains_in_words_a_marketer_reads() {
    let d = run(&Case {
        name: "explain",
        zone: "Asia/Kuala_Lumpur",
        now: "2026-11-22T00:00:00Z",
        not_before: None,
        deadline: Some("2026-11-29T00:00:00Z"),
        hours: MON_19_20.to_vec(),
        count: 12.0,
        trained: true,
        candidates: vec![
            candidate(Channel::Push, ChannelStatus::Allowed, 9.0, 6.0),
            candidate(Channel::Email, ChannelStatus::Allowed, 12.0, 1.0),
        ],
        quiet: None,
        expect: Err(SuppressionReason::QuietHours),
        basis: DecisionBasis::Personal,
    });
    let text = d.reasons.join(" ");
    assert!(
        text.contains("Usually active Monday 19:00-21:00 (Asia/Kuala_Lumpur)"),
        "{text}"
    );
    assert_eq!(d.channel, Some(Channel::Push));
    assert_eq!(d.alternatives.len(), 1);
    assert_eq!(d.alternatives[0].channel, Channel::Email);
    assert!(d.alternatives[0]
        .why_not
        .contains("lower predicted engagement"));
    assert_eq!(d.cancel_if_active_after, Some(utc("2026-11-22T00:00:00Z")));
}

#[test]
fn channel_status_rules() {
    let prefs = |reachable, consent| ChannelPrefs {
        reachable,
        consent,
        consent_updated_at: None,
    };
    let none = ChannelStats::default();
    assert_eq!(channel_status(None, &none, true), ChannelStatus::Allowed);
    assert_eq!(
        channel_status(None, &none, false),
        ChannelStatus::NotDeclared
    );
    assert_eq!(
        channel_status(Some(&prefs(Some(true), Some(true))), &none, false),
        ChannelStatus::Allowed
    );
    assert_eq!(
        channel_status(Some(&prefs(Some(false), None)), &none, true),
        ChannelStatus::Unreachable
    );
    assert_eq!(
        channel_status(Some(&prefs(Some(true), Some(false))), &none, true),
        ChannelStatus::NoConsent
    );
    let unsub = ChannelStats {
        unsubscribed_at: Some(utc("2026-01-01T00:00:00Z")),
        ..ChannelStats::default()
    };
    assert_eq!(
        channel_status(Some(&prefs(Some(true), Some(true))), &unsub, true),
        ChannelStatus::Unsubscribed
    );
    let renewed = ChannelPrefs {
        consent_updated_at: Some(utc("2026-02-01T00:00:00Z")),
        ..prefs(Some(true), Some(true))
    };
    assert_eq!(
        channel_status(Some(&renewed), &unsub, true),
        ChannelStatus::Allowed
    );
}

const ZONES: [&str; 6] = [
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Kuala_Lumpur",
];

proptest! {
    /// The window's runs of slots are its slots outside quiet hours, each
    /// read on its own, in order: whatever the zone, DST, window and quiet
    /// hours (across midnight, empty, or all day).
    #[test]
    fn runs_of_slots_are_the_slots_outside_quiet_hours(
        zone in 0usize..ZONES.len(),
        start in 1_700_000_000i64..1_900_000_000,
        secs in 0i64..16 * 86_400,
        quiet_from in 0u32..96,
        quiet_to in 0u32..96,
        odd_minutes in 0u32..15,
        no_quiet in proptest::bool::ANY,
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap_or(Tz::UTC);
        let q = (!no_quiet).then(|| QuietHours {
            start: LocalTimeOfDay::from_minutes(quiet_from * 15 + odd_minutes).unwrap_or_else(|| panic!("minutes")),
            end: LocalTimeOfDay::from_minutes(quiet_to * 15).unwrap_or_else(|| panic!("minutes")),
        });
        let deadline = start + secs;
        let mut runs = Vec::new();
        slot_runs(&mut LocalClock::new(tz), start, deadline, q, &mut runs);
        let got: Vec<(usize, i64, LocalReading)> = runs.iter().flat_map(Run::slots).collect();
        let mut want = Vec::new();
        let mut single = LocalClock::new(tz);
        let mut t = start;
        while t <= deadline {
            let local = single.read_secs(t);
            if q.is_none_or(|q| !q.contains(local.minute)) {
                want.push((want.len(), t, local));
            }
            t = (t + SLOT_SECS).div_euclid(SLOT_SECS) * SLOT_SECS;
        }
        prop_assert_eq!(got, want);
    }
}

proptest! {
    /// Whatever the zone, DST, window, habits, caps and history: a send lies
    /// in the window, outside quiet hours and within every cap, also when
    /// several decisions for one customer each reserve their slot in turn;
    /// otherwise the answer is a suppression.
    #[test]
    fn send_at_respects_window_quiet_hours_and_caps(
        zone in 0usize..ZONES.len(),
        now_secs in 1_767_225_600i64..1_798_761_600i64, // 2026
        start_offset_min in 0i64..3000,
        len_min in 0i64..8000,
        hours in proptest::collection::vec(0usize..168, 0..6),
        q_start in 0u32..96,
        q_len in 1u32..95,
        has_quiet in any::<bool>(),
        day_cap in 0u32..3,
        week_cap in 0u32..5,
        history in proptest::collection::vec(-14_000i64..14_000, 0..6),
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap_or(Tz::UTC);
        let mut params = DecideParams::default();
        params.caps.push = crate::caps::CapLimits { day: day_cap, week: 0 };
        params.caps.all = crate::caps::CapLimits { day: 0, week: week_cap };
        let p = params.check().unwrap_or_else(|e| panic!("{e}"));
        let now = DateTime::from_timestamp(now_secs, 0).unwrap_or_default();
        let not_before = now + Duration::minutes(start_offset_min) - Duration::minutes(600);
        let deadline = not_before + Duration::minutes(len_min);
        let window = Window::new(Some(not_before), Some(deadline), now, &p).unwrap_or_else(|e| panic!("{e}"));
        let quiet = has_quiet.then(|| QuietHours {
            start: LocalTimeOfDay::from_minutes(q_start * 15).unwrap_or_else(|| unreachable!()),
            end: LocalTimeOfDay::from_minutes(((q_start + q_len) % 96) * 15).unwrap_or_else(|| unreachable!()),
        });
        let (post, untrained) = activity(&hours, 10.0, true);
        let mut caps_state = CapState::default();
        for m in &history {
            caps_state.add(Channel::Email, now + Duration::minutes(*m));
        }
        let mut planned = Vec::new();
        for _ in 0..4 {
            let input = DecisionInput {
                weekly_activity: 4.0,
                now, tz, tz_assumed: false, window,
                candidates: vec![candidate(Channel::Push, ChannelStatus::Allowed, 0.0, 0.0)],
                activity: &post, activity_mass: None, prior_untrained: untrained, segment_label: None,
                response: None, days_since_active: 1.0, sends_7d: 0.0,
                cap_state: &caps_state, last_active_at: None, quiet_hours: quiet,
            };
            let d = decide(&input, &p);
            match d.action {
                Action::Send => {
                    let at = d.send_at.unwrap_or_else(|| panic!("send without send_at"));
                    prop_assert!(at >= not_before.max(now) && at <= deadline, "{} not in [{}, {}]", at, not_before, deadline);
                    if let Some(q) = quiet {
                        let local = at.with_timezone(&tz);
                        prop_assert!(!q.contains(local.hour() * 60 + local.minute()), "{} in quiet hours", local);
                    }
                    prop_assert!(caps_state.check(&p.caps, Channel::Push, at, tz).is_ok(), "over a cap at {}", at);
                    prop_assert!(d.score > 0.0 && d.score < 1.0);
                    caps_state.add(Channel::Push, at);
                    planned.push(at);
                }
                Action::Suppress => {
                    prop_assert!(d.suppression.is_some());
                    prop_assert!(d.send_at.is_none());
                    break;
                }
            }
        }
        // Directly: no local day holds more planned pushes than the day cap.
        if day_cap > 0 {
            for at in &planned {
                let day = at.with_timezone(&tz).date_naive();
                let same = planned.iter().filter(|t| t.with_timezone(&tz).date_naive() == day).count();
                prop_assert!(same as u32 <= day_cap, "{} pushes on {}", same, day);
            }
        }
    }
}

/// Decisions reuse a per-thread buffer of slot readings: one decision's slots
/// never leak into the next, whatever their windows.
#[test]
fn reused_buffers_leave_no_trace_between_decisions() {
    let case = |deadline: &'static str, quiet: Option<QuietHours>| Case {
        name: "reuse",
        zone: "Australia/Sydney",
        now: "2026-11-22T00:00:00Z",
        not_before: None,
        deadline: Some(deadline),
        hours: MON_19_20.to_vec(),
        count: 12.0,
        trained: true,
        candidates: vec![
            candidate(Channel::Push, ChannelStatus::Allowed, 4.0, 1.0),
            candidate(Channel::Email, ChannelStatus::Allowed, 6.0, 1.0),
        ],
        quiet,
        expect: Err(SuppressionReason::QuietHours),
        basis: DecisionBasis::Personal,
    };
    let short = case("2026-11-22T06:00:00Z", quiet("21:00", "08:00"));
    let long = case("2026-12-20T00:00:00Z", None);
    let first = run(&short);
    let long_first = run(&long);
    assert_eq!(run(&short), first);
    assert_eq!(run(&long), long_first);
    assert_eq!(run(&short), first);
    assert_ne!(first.send_at, long_first.send_at);
}

/// A response model whose regression has no weights (the same everywhere),
/// with an exposure form: floors 0.5 for email, in-app and web, 0.1 for push
/// and SMS, no rate priors.
fn exposure_model() -> ResponseModel {
    use kairos_learn::exposure::Exposure;
    use kairos_learn::response::{Calibration, FEATURES};
    let n = FEATURES.len();
    ResponseModel {
        features: FEATURES.iter().map(|f| f.to_string()).collect(),
        mean: vec![0.0; n],
        scale: vec![1.0; n],
        weights: vec![0.0; n],
        intercept: -2.0,
        window_quarters: [16, 4, 4, 96, 96],
        calibration: Calibration::default(),
        hour_terms_from: Vec::new(),
        exposure: Some(Exposure {
            floor: [0.5, 0.1, 0.1, 0.5, 0.5],
            rate_prior: [None; 5],
            rate_counts: Default::default(),
            sends_at_typical: false,
            calibration: Calibration::default(),
        }),
    }
}

/// A customer last active a few minutes ago may still be around: a send
/// now is worth the chance they are, `exp(-minutes / session_minutes)`,
/// on top of their usual presence; once that session has surely ended, or
/// with `session_minutes = 0`, their habit decides.
#[test]
fn a_session_still_going_on_brings_the_send_forward() {
    use kairos_learn::exposure::{presence, scaled_rate, typical_presence};

    let tz: Tz = "Asia/Kuala_Lumpur"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let params = |session_minutes: f64| {
        DecideParams {
            quiet_hours: None,
            session_minutes,
            ..DecideParams::default()
        }
        .check()
        .unwrap_or_else(|e| panic!("{e}"))
    };
    // Wednesday 10:00 local, the week ahead; active Mondays 19:00-21:00,
    // about once a week; reachable by email only (no app).
    let now = utc("2026-11-25T02:00:00Z");
    let window = Window::new(None, Some(utc("2026-12-02T02:00:00Z")), now, &params(15.0))
        .unwrap_or_else(|e| panic!("{e}"));
    let (post, _) = activity(&[19, 20], 20.0, true);
    let model = exposure_model();
    let email = candidate(Channel::Email, ChannelStatus::Allowed, 10.0, 2.0);
    let caps = CapState::default();
    let input = |last_active_at: Option<DateTime<Utc>>| DecisionInput {
        weekly_activity: 1.0,
        now,
        tz,
        tz_assumed: false,
        window,
        candidates: vec![email.clone()],
        activity: &post,
        activity_mass: None,
        prior_untrained: false,
        segment_label: None,
        response: Some(&model),
        days_since_active: 0.0,
        sends_7d: 0.0,
        cap_state: &caps,
        last_active_at,
        quiet_hours: None,
    };
    let on_monday_evening = |d: &Decision, why: &str| {
        let local = d
            .send_at_local
            .unwrap_or_else(|| panic!("{why}: no send_at"));
        assert_eq!(local.weekday(), chrono::Weekday::Mon, "{why}: {local}");
        assert!((15..=20).contains(&local.hour()), "{why}: {local}");
        assert!(
            !d.reasons.iter().any(|r| r.starts_with("Last active")),
            "{why}: {:?}",
            d.reasons
        );
    };

    let d = decide(&input(Some(now - Duration::minutes(2))), &params(15.0));
    assert_eq!(d.channel, Some(Channel::Email), "{:?}", d.reasons);
    assert_eq!(d.send_at, Some(now), "{:?}", d.reasons);
    // The presence now: still in the session, or around anyway.
    let mass = QuarterMass::new(&post.hour_of_week);
    let quarter = kairos_core::time::quarter_of_week(now, tz);
    let still = (-2.0f64 / 15.0).exp();
    let around = 1.0 - (1.0 - still) * (1.0 - presence(mass.mass(quarter, 16)));
    let expected = scaled_rate(
        email.estimate.rate,
        0.5,
        around,
        typical_presence(&mass, 16, 1.0),
    );
    assert!(
        (d.score - expected).abs() < 1e-9,
        "{} vs {expected}",
        d.score
    );
    assert!(
        d.reasons.iter().any(|r| r
            == "Last active 2 minutes before the send: still around then with a chance of 88%."),
        "{:?}",
        d.reasons
    );

    // Three hours on, or with the session not counted, the habit decides.
    on_monday_evening(
        &decide(&input(Some(now - Duration::hours(3))), &params(15.0)),
        "three hours ago",
    );
    on_monday_evening(
        &decide(&input(Some(now - Duration::minutes(2))), &params(0.0)),
        "session_minutes = 0",
    );
    on_monday_evening(&decide(&input(None), &params(15.0)), "never active");
    assert!(DecideParams {
        session_minutes: -1.0,
        ..DecideParams::default()
    }
    .check()
    .is_err());
}

/// A trained response model with its exposure form: each channel's best slot
/// is its most active window, and it is worth the channel's rate times the
/// exposure there relative to a typical time; the channel worth most wins.
/// With `scorer = "logistic"` the regression scores instead.
#[test]
fn the_exposure_form_scores_slots() {
    use kairos_learn::exposure::{
        presence, scaled_rate, typical_presence, typical_sends, RatePrior,
    };

    let tz: Tz = "Asia/Kuala_Lumpur"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut exposure_params = DecideParams {
        quiet_hours: None,
        ..DecideParams::default()
    };
    let p = exposure_params
        .clone()
        .check()
        .unwrap_or_else(|e| panic!("{e}"));
    exposure_params.scorer = crate::ResponseScorer::Logistic;
    let logistic = exposure_params.check().unwrap_or_else(|e| panic!("{e}"));
    // Monday 08:00 local, the week ahead; active Mondays 19:00-21:00.
    let now = utc("2026-11-23T00:00:00Z");
    let window = Window::new(None, Some(utc("2026-11-30T00:00:00Z")), now, &p)
        .unwrap_or_else(|e| panic!("{e}"));
    let (post, _) = activity(&[19, 20], 20.0, true);
    let model = exposure_model();
    let candidates = vec![
        candidate(Channel::Email, ChannelStatus::Allowed, 10.0, 2.0),
        candidate(Channel::Push, ChannelStatus::Allowed, 10.0, 2.0),
    ];
    let input = DecisionInput {
        weekly_activity: 6.0,
        now,
        tz,
        tz_assumed: false,
        window,
        candidates: candidates.clone(),
        activity: &post,
        activity_mass: None,
        prior_untrained: false,
        segment_label: None,
        response: Some(&model),
        days_since_active: 1.0,
        sends_7d: 0.0,
        cap_state: &CapState::default(),
        last_active_at: None,
        quiet_hours: None,
    };
    let d = decide(&input, &p);
    // What each channel is worth at its most active window.
    let mass = QuarterMass::new(&post.hour_of_week);
    let worth = |c: &Candidate| {
        let len = model.window_quarters[c.channel.index()];
        let top = (0..QUARTERS_PER_WEEK)
            .map(|q| mass.mass(q, len))
            .fold(0.0, f64::max);
        let floor = model
            .exposure
            .as_ref()
            .map_or(0.0, |e| e.floor[c.channel.index()]);
        scaled_rate(
            c.estimate.rate,
            floor,
            presence(6.0 * top),
            typical_presence(&mass, len, 6.0),
        )
    };
    let (email, push) = (worth(&candidates[0]), worth(&candidates[1]));
    // A one-hour window with a low floor gains most from the habit.
    assert!(push > email, "{push} vs {email}");
    assert_eq!(d.channel, Some(Channel::Push), "{:?}", d.reasons);
    assert!((d.score - push).abs() < 1e-9, "{:?} vs {push}", d.score);
    let local = d.send_at_local.unwrap_or_else(|| panic!("no send_at"));
    assert_eq!(local.weekday(), chrono::Weekday::Mon);
    assert!((18..=20).contains(&local.hour()), "{local}");
    let email_alt = d.alternatives.iter().find(|a| a.channel == Channel::Email);
    assert!(email_alt
        .and_then(|a| a.score)
        .is_some_and(|s| (s - email).abs() < 1e-9));

    // The regression, with no weights, is the same everywhere.
    let l = decide(&input, &logistic);
    assert_eq!(l.action, Action::Send);
    assert!((l.score - sigmoid(-2.0)).abs() < 1e-9, "{:?}", l.score);

    // With a rate prior relative to exposure, the push's rate starts from
    // the prior scaled to this customer's typical exposure and counts their
    // 2 engagements in 10 sends; a prior set for customers around twice as
    // much starts lower.
    let with_prior = |mean_exposure: f64| {
        let mut m = model.clone();
        if let Some(e) = m.exposure.as_mut() {
            e.rate_prior[Channel::Push.index()] = Some(RatePrior {
                mean: 0.05,
                strength: 20.0,
                mean_exposure,
            });
        }
        m
    };
    let typical = typical_presence(&mass, 4, 6.0);
    let exposure = 0.1 + 0.9 * typical;
    // The push's score, whether it was chosen or not.
    let push_of = |d: &Decision| {
        if d.channel == Some(Channel::Push) {
            d.score
        } else {
            d.alternatives
                .iter()
                .find(|a| a.channel == Channel::Push)
                .and_then(|a| a.score)
                .unwrap_or(f64::NAN)
        }
    };
    let push_score = |m: &ResponseModel| {
        let d = decide(
            &DecisionInput {
                response: Some(m),
                ..input.clone()
            },
            &p,
        );
        push_of(&d)
    };
    let top = (0..QUARTERS_PER_WEEK)
        .map(|q| mass.mass(q, 4))
        .fold(0.0, f64::max);
    let prior_of = |m: &ResponseModel| {
        m.exposure
            .as_ref()
            .and_then(|e| e.rate_prior[Channel::Push.index()])
            .unwrap_or_else(|| panic!("no push prior"))
    };
    for mean_exposure in [exposure, 2.0 * exposure] {
        let m = with_prior(mean_exposure);
        let rate = prior_of(&m).posterior_mean(exposure, 10.0, 2.0);
        if mean_exposure == exposure {
            // A customer of average exposure: the prior as fitted.
            assert!((rate - (0.05 * 20.0 + 2.0) / 30.0).abs() < 1e-12, "{rate}");
        }
        let expected = scaled_rate(rate, 0.1, presence(6.0 * top), typical);
        assert!((push_score(&m) - expected).abs() < 1e-9, "{mean_exposure}");
    }
    let (usual, rarely_around) = (
        push_score(&with_prior(exposure)),
        push_score(&with_prior(2.0 * exposure)),
    );
    assert!(
        rarely_around < usual && usual < 1.0,
        "{rarely_around} vs {usual}"
    );

    // Counting sends at a typical time: the same 2 engagements in 10 pushes
    // say more of a customer who got them while usually around (Mondays
    // 19:00 local) than while never around (Wednesdays 04:00).
    let mut typical_model = with_prior(exposure);
    if let Some(e) = typical_model.exposure.as_mut() {
        e.sends_at_typical = true;
    }
    let prior = prior_of(&typical_model);
    let pushes_at = |first: &str| {
        let mut caps = CapState::default();
        for week in 0..10 {
            caps.add(Channel::Push, utc(first) - Duration::weeks(week));
        }
        caps
    };
    let (around, away) = (
        pushes_at("2026-11-09T11:00:00Z"),
        pushes_at("2026-11-10T20:00:00Z"),
    );
    let score_with = |caps: &CapState| {
        let d = decide(
            &DecisionInput {
                response: Some(&typical_model),
                cap_state: caps,
                ..input.clone()
            },
            &p,
        );
        push_of(&d)
    };
    for (caps, quarter) in [(&around, 19 * 4), (&away, 2 * 96 + 4 * 4)] {
        let sent = presence(6.0 * mass.mass(quarter, 4));
        let sends = typical_sends(10.0, 0.1, sent, typical);
        let rate = prior.posterior_mean(exposure, sends, 2.0);
        let expected = scaled_rate(rate, 0.1, presence(6.0 * top), typical);
        assert!((score_with(caps) - expected).abs() < 1e-9, "{quarter}");
    }
    assert!(score_with(&around) < usual && usual < score_with(&away));
    // Without past sends on record, each counts as one.
    assert!((score_with(&CapState::default()) - usual).abs() < 1e-12);
}

proptest! {
    /// Skipping blocks below the bar visits exactly the slots a plain scan
    /// does, in order, with the bar rising as the visits return it.
    #[test]
    fn visit_above_visits_what_a_plain_scan_does(
        slots in prop::collection::vec(prop_oneof![Just(0.0), 0.0..1.0f64, Just(f64::NAN)], 0..60),
        start in -0.5..1.0f64,
        raise in 0.0..0.2f64,
        strict: bool,
    ) {
        let passes = |m: f64, bar: f64| if strict { m > bar } else { m >= bar };
        // Each visit raises the bar a little above the slot it saw.
        let mut plain = Vec::new();
        let mut bar = start;
        for (i, &m) in slots.iter().enumerate() {
            if passes(m, bar) {
                plain.push(i);
                bar = m + raise;
            }
        }
        let mut blocks = Vec::new();
        let end = visit_above(&slots, start, strict, |i, m| {
            blocks.push(i);
            m + raise
        });
        prop_assert_eq!(blocks, plain);
        prop_assert_eq!(end.to_bits(), bar.to_bits());
    }
}
