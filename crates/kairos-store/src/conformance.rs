//! The behaviour every [`Store`] backend must have. A backend's tests call
//! [`run_all`] on a fresh store; each check uses its own customer ids, so the
//! checks can share one store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kairos_core::{Channel, CustomerId, CustomerPatch, Event, RawEvent};

use crate::{Reservation, ReserveCheck, Store};

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> CustomerId {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    CustomerId::parse(format!("{prefix}-{pid}-{n}")).unwrap_or_else(|e| panic!("{e}"))
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

/// Monday 2026-11-16 11:30 UTC = 19:30 in Asia/Kuala_Lumpur.
fn monday_evening_kl(week: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-16T11:30:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
        - Duration::weeks(week)
}

pub fn event(customer: &CustomerId, id: &str, kind: &str, at: DateTime<Utc>) -> Event {
    event_on(customer, id, kind, at, None, None)
}

pub fn event_on(
    customer: &CustomerId,
    id: &str,
    kind: &str,
    at: DateTime<Utc>,
    channel: Option<Channel>,
    message_id: Option<&str>,
) -> Event {
    Event::from_raw(
        RawEvent {
            event_id: Some(id.into()),
            customer_id: Some(customer.to_string()),
            kind: Some(kind.into()),
            timestamp: Some(at.to_rfc3339()),
            channel: channel.map(|c| c.to_string()),
            message_id: message_id.map(Into::into),
            ..RawEvent::default()
        },
        now(),
    )
    .unwrap_or_else(|e| panic!("test event invalid: {e:?}"))
}

fn patch(json: serde_json::Value) -> CustomerPatch {
    serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs every check against `store`.
pub async fn run_all(store: Arc<dyn Store>) {
    ping(&*store).await;
    idempotent_ingest(&*store).await;
    profile_in_local_time(&*store).await;
    time_zone_change_recomputes(&*store).await;
    customer_attributes_merge(&*store).await;
    many_customers_patched_at_once(&*store).await;
    one_response_per_message(&*store).await;
    delete_erases_everything(&*store).await;
    customers_whose_ids_extend_another_stay_apart(&*store).await;
    export_has_everything(&*store).await;
    models_round_trip(&*store).await;
    batching_and_order_do_not_matter(&*store).await;
    visits_histories(&*store).await;
    rebuilds_profiles(&*store).await;
    reservations_hold_room(&*store).await;
    reservations_check_the_state_they_are_made_in(&*store, &*store).await;
    concurrent_reservations_cannot_share_the_last_place(Arc::clone(&store)).await;
    many_at_once(&*store).await;
    many_in_any_order_read_as_one_at_a_time(&*store).await;
    experiments_and_exposures(&*store).await;
    concurrent_ingest_counts_once(store).await;
}

pub async fn ping(store: &dyn Store) {
    store.ping().await.unwrap_or_else(|e| panic!("ping: {e}"));
}

pub async fn idempotent_ingest(store: &dyn Store) {
    let c = unique("idem");
    let batch: Vec<Event> = (0..5)
        .map(|i| event(&c, &format!("e{i}"), "app_open", monday_evening_kl(i)))
        .collect();
    let first = store
        .ingest(batch.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((first.accepted, first.duplicates), (5, 0));
    let profile_before = store.customer(&c).await.ok().flatten().map(|r| r.profile);
    let again = store
        .ingest(batch.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((again.accepted, again.duplicates), (0, 5));
    let profile_after = store.customer(&c).await.ok().flatten().map(|r| r.profile);
    assert_eq!(
        profile_before, profile_after,
        "duplicates must not change the profile"
    );
    // A repeat inside one batch counts once.
    let dup = vec![
        batch[0].clone(),
        event(&c, "e9", "app_open", monday_evening_kl(0)),
        event(&c, "e9", "app_open", monday_evening_kl(0)),
    ];
    let mixed = store.ingest(dup).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((mixed.accepted, mixed.duplicates), (1, 2));
    // The same event id for another customer is another event.
    let other = unique("idem-other");
    let o = store
        .ingest(vec![event(&other, "e0", "app_open", monday_evening_kl(0))])
        .await;
    assert_eq!(o.map(|o| o.accepted).ok(), Some(1));
}

pub async fn profile_in_local_time(store: &dyn Store) {
    let c = unique("local");
    store
        .put_customer(
            &c,
            patch(serde_json::json!({"timezone": "Asia/Kuala_Lumpur"})),
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events: Vec<Event> = (0..8)
        .map(|w| event(&c, &format!("s{w}"), "session_start", monday_evening_kl(w)))
        .collect();
    store.ingest(events).await.unwrap_or_else(|e| panic!("{e}"));
    let rec = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no customer"));
    assert_eq!(rec.profile.activity_events, 8);
    assert_eq!(rec.profile.events, 8);
    let peak = rec
        .profile
        .activity
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    assert_eq!(peak, Some(19), "Monday 19:00 local in Kuala Lumpur");
    assert_eq!(rec.profile.last_active_at, Some(monday_evening_kl(0)));
}

pub async fn time_zone_change_recomputes(store: &dyn Store) {
    let c = unique("tzchange");
    // Events arrive before the zone is known: counted in the default zone (UTC here).
    store
        .ingest(vec![event(&c, "a", "app_open", monday_evening_kl(0))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .map(|r| r.profile.activity[11]);
    assert_eq!(before, Some(1.0), "Monday 11:30 UTC");
    store
        .put_customer(
            &c,
            patch(serde_json::json!({"timezone": "Asia/Kuala_Lumpur"})),
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = store.customer(&c).await.ok().flatten().map(|r| r.profile);
    let after = after.unwrap_or_default();
    assert_eq!((after.activity[11], after.activity[19]), (0.0, 1.0));
}

pub async fn customer_attributes_merge(store: &dyn Store) {
    let c = unique("attrs");
    assert!(store.customer(&c).await.ok().flatten().is_none());
    store
        .put_customer(
            &c,
            patch(serde_json::json!({"timezone": "Europe/London", "traits": {"plan": "gold"}})),
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let updated = store
        .put_customer(
            &c,
            patch(serde_json::json!({"channels": {"email": {"reachable": true, "consent": true}}})),
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(updated.timezone.as_deref(), Some("Europe/London"));
    assert_eq!(updated.traits.get("plan"), Some(&serde_json::json!("gold")));
    let rec = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(rec.attributes, Some(updated));
    assert_eq!(rec.profile.events, 0);
}

/// Patches for many customers in one write land as the same patches one at
/// a time would: in order, a zone change recomputing the profile.
pub async fn many_customers_patched_at_once(store: &dyn Store) {
    let (a, b, c) = (unique("many-a"), unique("many-b"), unique("many-c"));
    // a's event arrives before its zone: counted in UTC until the patch.
    store
        .ingest(vec![event(&a, "open", "app_open", monday_evening_kl(0))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answers = store
        .put_customers(
            vec![
                (a.clone(), patch(serde_json::json!({"timezone": "Asia/Kuala_Lumpur"}))),
                (b.clone(), patch(serde_json::json!({"timezone": "Europe/London", "traits": {"plan": "gold"}}))),
                (a.clone(), patch(serde_json::json!({"channels": {"push": {"reachable": false}}}))),
                (c.clone(), patch(serde_json::json!({}))),
            ],
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].customer_id, a);
    assert!(answers[0].channels.is_empty(), "a's first patch alone");
    assert_eq!(answers[2].timezone.as_deref(), Some("Asia/Kuala_Lumpur"));
    assert_eq!(
        answers[2]
            .channels
            .get(&Channel::Push)
            .and_then(|p| p.reachable),
        Some(false),
        "a's second patch over its first"
    );
    assert_eq!(
        answers[1].traits.get("plan"),
        Some(&serde_json::json!("gold"))
    );
    assert_eq!(answers[3].customer_id, c);
    for (id, answer) in [(&a, &answers[2]), (&b, &answers[1]), (&c, &answers[3])] {
        let rec = store.customer(id).await.ok().flatten();
        assert_eq!(
            rec.and_then(|r| r.attributes).as_ref(),
            Some(answer),
            "{id}"
        );
    }
    let profile = store.customer(&a).await.ok().flatten().map(|r| r.profile);
    let profile = profile.unwrap_or_default();
    assert_eq!(
        (profile.activity[11], profile.activity[19]),
        (0.0, 1.0),
        "a's profile recomputed in Kuala Lumpur time"
    );
    let none = store.put_customers(Vec::new(), now()).await;
    assert_eq!(none.ok().map(|v| v.len()), Some(0));
}

pub async fn one_response_per_message(store: &dyn Store) {
    let c = unique("resp");
    let t = monday_evening_kl(1);
    let email = Some(Channel::Email);
    store
        .ingest(vec![
            event_on(&c, "s1", "message_sent", t, email, Some("m1")),
            event_on(
                &c,
                "o1",
                "message_opened",
                t + Duration::minutes(5),
                email,
                Some("m1"),
            ),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The click arrives in a later batch: still the same message.
    store
        .ingest(vec![event_on(
            &c,
            "k1",
            "message_clicked",
            t + Duration::minutes(6),
            email,
            Some("m1"),
        )])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .map(|r| r.profile)
        .unwrap_or_default();
    let stats = &p.channels[Channel::Email.index()];
    assert_eq!((stats.sends_total, stats.engagements_total), (1, 1));
}

pub async fn delete_erases_everything(store: &dyn Store) {
    let c = unique("delete");
    let keep = unique("keep");
    let e = event_on(
        &c,
        "x",
        "message_opened",
        monday_evening_kl(0),
        Some(Channel::Push),
        Some("m"),
    );
    store
        .put_customer(&c, patch(serde_json::json!({"timezone": "UTC"})), now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .ingest(vec![
            e.clone(),
            event(&keep, "x", "app_open", monday_evening_kl(0)),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.delete_customer(&c).await.ok(), Some(true));
    assert!(store.customer(&c).await.ok().flatten().is_none());
    assert!(store.export_customer(&c).await.ok().flatten().is_none());
    assert_eq!(store.delete_customer(&c).await.ok(), Some(false));
    // Nothing remains: not even the idempotency record or the message state.
    let again = store
        .ingest(vec![e])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.accepted, 1);
    let x = store
        .export_customer(&c)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(x.events.len(), 1);
    let m = x.messages.get("push:m").cloned().unwrap_or_default();
    assert_eq!(
        (m.sends.len(), m.responses.len()),
        (0, 1),
        "a fresh message state"
    );
    // Other customers are untouched.
    assert!(store.customer(&keep).await.ok().flatten().is_some());
}

/// Ids that extend one another ("a", "a0", "a-x"): every read, reservation
/// and erasure of one touches only its own keys.
pub async fn customers_whose_ids_extend_another_stay_apart(store: &dyn Store) {
    let a = unique("extend");
    let ids: Vec<CustomerId> = ["", "0", "-x"]
        .iter()
        .map(|suffix| CustomerId::parse(format!("{a}{suffix}")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for (k, id) in ids.iter().enumerate() {
        store
            .ingest(vec![event(id, "open", "app_open", monday_evening_kl(0))])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for d in 0..=k {
            let r = reservation(&format!("{id}-d{d}"), now() + Duration::days(1));
            let held = store
                .reserve(id, r, now(), ReserveCheck::new(|_, _| true))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(held);
        }
    }
    for (k, id) in ids.iter().enumerate() {
        let record = store
            .customer(id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{id} missing"));
        let mut held: Vec<String> = record
            .reservations
            .iter()
            .map(|r| r.decision_id.clone())
            .collect();
        held.sort();
        let expected: Vec<String> = (0..=k).map(|d| format!("{id}-d{d}")).collect();
        assert_eq!(held, expected, "{id} holds only its own reservations");
    }
    assert_eq!(store.delete_customer(&ids[0]).await.ok(), Some(true));
    assert!(store.customer(&ids[0]).await.ok().flatten().is_none());
    for (k, id) in ids.iter().enumerate().skip(1) {
        let x = store
            .export_customer(id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{id} erased with {}", ids[0]));
        assert_eq!(x.events.len(), 1, "{id} keeps its event");
        let record = store.customer(id).await.ok().flatten();
        assert_eq!(
            record.map(|r| r.reservations.len()),
            Some(k + 1),
            "{id} keeps its reservations"
        );
    }
}

pub async fn export_has_everything(store: &dyn Store) {
    let c = unique("export");
    store
        .put_customer(
            &c,
            patch(serde_json::json!({"timezone": "Asia/Kolkata"})),
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = vec![
        event(&c, "late", "page_view", monday_evening_kl(0)),
        event_on(
            &c,
            "early",
            "message_clicked",
            monday_evening_kl(2),
            Some(Channel::Web),
            Some("w1"),
        ),
    ];
    store.ingest(events).await.unwrap_or_else(|e| panic!("{e}"));
    let x = store
        .export_customer(&c)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    let ids: Vec<&str> = x.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, vec!["early", "late"], "oldest first");
    // A click without its send: recorded, not yet attributed.
    let web = x.messages.get("web:w1").cloned().unwrap_or_default();
    assert_eq!(
        (web.sends.len(), web.responses.len(), web.counted_at),
        (0, 1, None)
    );
    assert_eq!(
        x.attributes.and_then(|a| a.timezone).as_deref(),
        Some("Asia/Kolkata")
    );
    assert_eq!(x.profile.events, 2);
}

pub async fn models_round_trip(store: &dyn Store) {
    let name = format!("model-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    assert_eq!(store.model(&name).await.ok(), Some(None));
    store
        .put_model(&name, b"v1".to_vec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .put_model(&name, b"v2".to_vec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.model(&name).await.ok(), Some(Some(b"v2".to_vec())));
}

pub async fn concurrent_ingest_counts_once(store: Arc<dyn Store>) {
    let c = unique("concurrent");
    let batch: Vec<Event> = (0..20)
        .map(|i| event(&c, &format!("e{i}"), "app_open", monday_evening_kl(i % 8)))
        .collect();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&store);
            let b = batch.clone();
            tokio::spawn(async move { s.ingest(b).await })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        let o = t
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.accepted + o.duplicates, 20);
        accepted += o.accepted;
    }
    assert_eq!(accepted, 20);
    let p = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .map(|r| r.profile)
        .unwrap_or_default();
    assert_eq!(p.events, 20);
}

pub async fn visits_histories(store: &dyn Store) {
    let c = unique("history");
    store
        .put_customer(
            &c,
            patch(serde_json::json!({"timezone": "Asia/Kolkata"})),
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .ingest(vec![
            event(&c, "h2", "app_open", monday_evening_kl(0)),
            event(&c, "h1", "app_open", monday_evening_kl(3)),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let n = store
        .visit_histories(Box::new(move |h| {
            if let Ok(mut v) = sink.lock() {
                v.push(h);
            }
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(n as usize, seen.len());
    let mine = seen
        .iter()
        .find(|h| h.customer_id == c)
        .unwrap_or_else(|| panic!("not visited"));
    let ids: Vec<&str> = mine.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, vec!["h1", "h2"], "oldest first");
    assert_eq!(
        mine.attributes.as_ref().and_then(|a| a.timezone.as_deref()),
        Some("Asia/Kolkata")
    );
}

pub async fn rebuilds_profiles(store: &dyn Store) {
    let c = unique("rebuild");
    let original = store.profile_config();
    store
        .ingest(vec![
            event(&c, "r1", "app_open", monday_evening_kl(0)),
            event(&c, "r2", "app_open", monday_evening_kl(1)),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let week_half_life = kairos_learn::ProfileConfig {
        half_life_days: 7.0,
        ..original
    };
    let n = store
        .rebuild_profiles(week_half_life)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 1);
    assert_eq!(store.profile_config(), week_half_life);
    let p = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .map(|r| r.profile)
        .unwrap_or_default();
    // Monday 11:30 UTC both weeks; the older one weighs half with a 7-day half-life.
    assert!((p.activity[11] - 1.5).abs() < 1e-4, "{}", p.activity[11]);
    // New events use the new half-life too.
    store
        .ingest(vec![event(&c, "r3", "app_open", monday_evening_kl(2))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .map(|r| r.profile)
        .unwrap_or_default();
    assert!((p.activity[11] - 1.75).abs() < 1e-4, "{}", p.activity[11]);
    store
        .rebuild_profiles(original)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

pub async fn batching_and_order_do_not_matter(store: &dyn Store) {
    let (a, b) = (unique("batch-a"), unique("batch-b"));
    let email = Some(Channel::Email);
    let events_for = |c: &CustomerId| -> Vec<Event> {
        let mut v = Vec::new();
        for w in 0..6 {
            let t = monday_evening_kl(w);
            v.push(event(c, &format!("s{w}"), "session_start", t));
            v.push(event(
                c,
                &format!("p{w}"),
                "page_view",
                t + Duration::hours(26),
            ));
            let m = format!("m{w}");
            v.push(event_on(
                c,
                &format!("send{w}"),
                "message_sent",
                t - Duration::hours(2),
                email,
                Some(&m),
            ));
            if w % 2 == 0 {
                v.push(event_on(
                    c,
                    &format!("open{w}"),
                    "message_opened",
                    t - Duration::hours(1),
                    email,
                    Some(&m),
                ));
            }
        }
        v
    };
    store
        .ingest(events_for(&a))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for e in events_for(&b).into_iter().rev() {
        store
            .ingest(vec![e])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let pa = store
        .customer(&a)
        .await
        .ok()
        .flatten()
        .map(|r| r.profile)
        .unwrap_or_default();
    let pb = store
        .customer(&b)
        .await
        .ok()
        .flatten()
        .map(|r| r.profile)
        .unwrap_or_default();
    assert_eq!(
        (pa.events, pa.activity_events),
        (pb.events, pb.activity_events)
    );
    assert_eq!(pa.reference, pb.reference);
    for (x, y) in pa.activity.iter().zip(&pb.activity) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    let (ea, eb) = (
        &pa.channels[Channel::Email.index()],
        &pb.channels[Channel::Email.index()],
    );
    assert_eq!((ea.sends_total, ea.engagements_total), (6, 3));
    assert_eq!((eb.sends_total, eb.engagements_total), (6, 3));
    assert!((ea.engagements - eb.engagements).abs() < 1e-4);
}

/// A planned push an hour before `deadline`, made at the suite's `now`.
pub fn reservation(decision: &str, deadline: DateTime<Utc>) -> Reservation {
    Reservation {
        decision_id: decision.to_string(),
        channel: Channel::Push,
        send_at: deadline - Duration::hours(1),
        deadline,
        created_at: now(),
        confirmed: false,
        cancel_if_active_after: Some(now()),
    }
}

pub async fn reservations_hold_room(store: &dyn Store) {
    let c = unique("reserve");
    let d1 = format!("{c}-d1");
    let stored = store
        .reserve(
            &c,
            reservation(&d1, now() + Duration::days(1)),
            now(),
            ReserveCheck::new(|_, live| live.is_empty()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stored);
    // The check sees the live reservation and can refuse.
    let refused = store
        .reserve(
            &c,
            reservation(&format!("{c}-d2"), now() + Duration::days(1)),
            now(),
            ReserveCheck::new(|_, live| live.is_empty()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!refused);
    let (owner, r) = store
        .reservation(&d1)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("not stored"));
    assert_eq!((owner, r.confirmed), (c.clone(), false));
    assert!(store.update_reservation(&d1, true).await.unwrap_or(false));
    assert_eq!(
        store
            .reservation(&d1)
            .await
            .ok()
            .flatten()
            .map(|(_, r)| r.confirmed),
        Some(true)
    );
    // A refusal frees it; an unknown decision is not found.
    assert!(store.update_reservation(&d1, false).await.unwrap_or(false));
    assert!(store.reservation(&d1).await.ok().flatten().is_none());
    assert!(!store
        .update_reservation("no-such-decision", true)
        .await
        .unwrap_or(true));

    // A reported send with the decision id replaces the reservation.
    let d3 = format!("{c}-d3");
    store
        .reserve(
            &c,
            reservation(&d3, now() + Duration::days(1)),
            now(),
            ReserveCheck::new(|_, _| true),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut sent = event_on(
        &c,
        "sent-d3",
        "message_sent",
        now() - Duration::minutes(1),
        Some(Channel::Push),
        Some("m-d3"),
    );
    sent.decision_id = Some(d3.clone());
    store
        .ingest(vec![sent])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rec = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert!(
        rec.reservations.iter().all(|r| r.decision_id != d3),
        "{:?}",
        rec.reservations
    );
    assert_eq!(rec.profile.channels[Channel::Push.index()].sends_total, 1);

    // Expired reservations stop holding room and are dropped by the next reservation.
    let d4 = format!("{c}-d4");
    store
        .reserve(
            &c,
            reservation(&d4, now() - Duration::hours(1)),
            now() - Duration::hours(2),
            ReserveCheck::new(|_, _| true),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = Arc::new(std::sync::Mutex::new(0usize));
    let sink = Arc::clone(&seen);
    store
        .reserve(
            &c,
            reservation(&format!("{c}-d5"), now() + Duration::days(1)),
            now(),
            ReserveCheck::new(move |_, live| {
                if let Ok(mut n) = sink.lock() {
                    *n = live.len();
                }
                true
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        seen.lock().map(|n| *n).unwrap_or(9),
        0,
        "the expired one is not live"
    );
    assert!(store.reservation(&d4).await.ok().flatten().is_none());

    // Erasure takes reservations along.
    store
        .delete_customer(&c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(store
        .reservation(&format!("{c}-d5"))
        .await
        .ok()
        .flatten()
        .is_none());
}

/// A reservation is checked against the customer's state when it is made,
/// not as a decision read it before: room freed since is found, and room
/// taken since (by another replica: `other`, the same store or another
/// handle on the same data) is not given twice.
pub async fn reservations_check_the_state_they_are_made_in(store: &dyn Store, other: &dyn Store) {
    let c = unique("recheck");
    let one: fn() -> ReserveCheck = || ReserveCheck::new(|_, live| live.is_empty());
    let deadline = now() + Duration::days(1);
    let reserve = |s: &'static str| reservation(&format!("{c}-{s}"), deadline);
    // A customer with a history, who stays stored when their reservations go.
    store
        .ingest(vec![event(&c, "e0", "app_open", now() - Duration::days(1))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    async fn read(s: &dyn Store, c: &CustomerId) -> Option<crate::CustomerRecord> {
        s.customer(c).await.unwrap_or_else(|e| panic!("{e}"))
    }
    assert!(store
        .reserve(&c, reserve("d1"), now(), one())
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    // Read while d1 holds the place; d1 is then refused, freeing it.
    assert_eq!(read(store, &c).await.map(|r| r.reservations.len()), Some(1));
    assert!(other
        .update_reservation(&format!("{c}-d1"), false)
        .await
        .unwrap_or(false));
    assert!(
        store
            .reserve(&c, reserve("d2"), now(), one())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "the place d1 held is free again"
    );
    assert!(other
        .update_reservation(&format!("{c}-d2"), false)
        .await
        .unwrap_or(false));
    // Read while the place is free; another handle takes it. The check
    // accepted the state read, which is no longer the stored one.
    let before = store
        .customers(vec![c.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .flatten();
    assert_eq!(before.as_ref().map(|r| r.reservations.len()), Some(0));
    assert!(other
        .reserve(&c, reserve("d3"), now(), one())
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    let accepting_the_read = match before.and_then(|r| r.stored) {
        Some(read) => one().accepting(read),
        None => one(),
    };
    assert!(
        !store
            .reserve(&c, reserve("d4"), now(), accepting_the_read)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "d3 took the place after the read"
    );
    let held: Vec<String> = read(other, &c)
        .await
        .map(|r| r.reservations.into_iter().map(|r| r.decision_id).collect())
        .unwrap_or_default();
    assert_eq!(held, vec![format!("{c}-d3")]);
}

pub async fn concurrent_reservations_cannot_share_the_last_place(store: Arc<dyn Store>) {
    let c = unique("race");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&store);
            let c = c.clone();
            tokio::spawn(async move {
                s.reserve(
                    &c,
                    reservation(&format!("{c}-r{i}"), now() + Duration::days(1)),
                    now(),
                    ReserveCheck::new(|_, live| live.is_empty()),
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"))
        {
            won += 1;
        }
    }
    assert_eq!(
        won, 1,
        "exactly one of the concurrent reservations takes the last place"
    );
}

pub async fn many_at_once(store: &dyn Store) {
    let (a, b, missing) = (unique("many-a"), unique("many-b"), unique("many-missing"));
    store
        .ingest(vec![event(&a, "x", "app_open", monday_evening_kl(0))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .put_customer(&b, patch(serde_json::json!({"timezone": "UTC"})), now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let records = store
        .customers(vec![a.clone(), missing.clone(), b.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].as_ref().map(|r| r.profile.events), Some(1));
    assert!(records[1].is_none());
    assert_eq!(records[2], store.customer(&b).await.ok().flatten());
    // In one transaction, in order: the second reservation for `a` sees the first.
    let stored = store
        .reserve_many(
            vec![
                (
                    a.clone(),
                    reservation(&format!("{a}-1"), now() + Duration::days(1)),
                    ReserveCheck::new(|_, live| live.is_empty()),
                ),
                (
                    a.clone(),
                    reservation(&format!("{a}-2"), now() + Duration::days(1)),
                    ReserveCheck::new(|_, live| live.is_empty()),
                ),
                (
                    b.clone(),
                    reservation(&format!("{b}-1"), now() + Duration::days(1)),
                    ReserveCheck::new(|_, live| live.is_empty()),
                ),
            ],
            now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, vec![true, false, true]);

    // A customer known only by a planned send exists, with the room it holds.
    store
        .reserve(
            &missing,
            reservation(&format!("{missing}-1"), now() + Duration::days(1)),
            now(),
            ReserveCheck::new(|_, _| true),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let only = store
        .customer(&missing)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("not found"));
    assert_eq!((only.reservations.len(), only.profile.events), (1, 0));
    let many = store
        .customers(vec![missing.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(many[0].as_ref().map(|r| r.reservations.len()), Some(1));
    assert_eq!(store.delete_customer(&missing).await.ok(), Some(true));
    assert!(store.customer(&missing).await.ok().flatten().is_none());
}

/// Customers read together, in any order, with repeats, customers whose
/// ids extend another's, customers far apart and close together, come back
/// in the order asked, each as it reads alone.
pub async fn many_in_any_order_read_as_one_at_a_time(store: &dyn Store) {
    let base = unique("order");
    let id = |suffix: String| {
        CustomerId::parse(format!("{base}{suffix}")).unwrap_or_else(|e| panic!("{e}"))
    };
    // 90 customers; each third has events, each fifth attributes, each
    // seventh one to three reservations; some have nothing at all.
    let known: Vec<CustomerId> = (0..90).map(|k| id(format!("-{k}"))).collect();
    for (k, c) in known.iter().enumerate() {
        if k % 3 == 0 {
            let e = event(c, "open", "app_open", monday_evening_kl(0));
            store
                .ingest(vec![e])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        if k % 5 == 0 {
            let p = patch(serde_json::json!({"timezone": "Asia/Kolkata", "traits": {"plan": k}}));
            store
                .put_customer(c, p, now())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for d in 0..(if k % 7 == 0 { 1 + k % 3 } else { 0 }) {
            let r = reservation(&format!("{c}-d{d}"), now() + Duration::days(1));
            let held = store
                .reserve(c, r, now(), ReserveCheck::new(|_, _| true))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(held);
        }
    }
    // Asked: every customer once in a scrambled order, a run of neighbours
    // twice, every eleventh again, the bare prefix and ids that extend a
    // known one (none stored).
    let mut asked: Vec<CustomerId> = (0..90).map(|k| known[k * 37 % 90].clone()).collect();
    asked.extend(known[40..52].iter().rev().cloned());
    asked.extend(known.iter().step_by(11).cloned());
    asked.extend([
        id(String::new()),
        id("-1x".into()),
        id("-89-".into()),
        id("-0".into()),
    ]);
    // Stored: the customers with events, attributes or reservations.
    let stored = |c: &CustomerId| {
        (0..90).any(|k| &known[k] == c && (k % 3 == 0 || k % 5 == 0 || k % 7 == 0))
    };
    // Also a few far apart: every 23rd, last first.
    let sparse: Vec<CustomerId> = known.iter().step_by(23).rev().cloned().collect();
    for asked in [asked, sparse] {
        let many = store
            .customers(asked.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(many.len(), asked.len());
        let mut found = 0;
        for (c, record) in asked.iter().zip(&many) {
            let alone = store.customer(c).await.unwrap_or_else(|e| panic!("{e}"));
            // A cached record keeps no stored bytes: compare those only when read.
            let record = record.clone().map(|mut r| {
                if alone.as_ref().is_some_and(|a| a.stored.is_none()) {
                    r.stored = None;
                }
                r
            });
            assert_eq!(record, alone, "{c} read with others as alone");
            if let Some(r) = &record {
                assert_eq!(&r.customer_id, c);
                found += 1;
            }
        }
        assert_eq!(found, asked.iter().filter(|c| stored(c)).count());
        assert!(found * 3 > asked.len(), "{found} of {}", asked.len());
    }
}

pub async fn experiments_and_exposures(store: &dyn Store) {
    use crate::{Conversion, Exposure, HOLDOUT_ARM};
    let exp = format!("exp-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    store
        .put_experiment(&exp, br#"{"v":1}"#.to_vec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .put_experiment(&exp, br#"{"v":2}"#.to_vec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let all = store.experiments().await.unwrap_or_else(|e| panic!("{e}"));
    let mine: Vec<_> = all.iter().filter(|(k, _)| *k == exp).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0].1,
        br#"{"v":2}"#.to_vec(),
        "the last definition wins"
    );

    let exposure = |variant: Option<&str>| Exposure {
        variant: variant.map(Into::into),
        reason: if variant.is_some() {
            "hashed"
        } else {
            "holdout"
        }
        .into(),
        hash: 0.25,
        exposed_at: now(),
        converted_at: None,
        context: variant.map(|_| "gold".to_owned()),
    };
    let (a, b, held) = (unique("exp-a"), unique("exp-b"), unique("exp-h"));
    let (first, new) = store
        .expose(&a, &exp, exposure(Some("red")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(new);
    assert_eq!(first.variant.as_deref(), Some("red"));
    // Sticky: a later assignment keeps the first one, and is not counted again.
    let (again, new) = store
        .expose(&a, &exp, exposure(Some("blue")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!new);
    assert_eq!(again, first);
    store
        .expose(&b, &exp, exposure(Some("blue")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .expose(&held, &exp, exposure(None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let conversion = |c: &CustomerId, hours: i64| Conversion {
        customer: c.clone(),
        experiment: exp.clone(),
        at: now() + Duration::hours(hours),
        window: Duration::hours(72),
    };
    // a converts once; b's goal comes too late; the holdout converts; a stranger does not count.
    let n = store
        .convert(vec![
            conversion(&a, 1),
            conversion(&a, 2),
            conversion(&b, 100),
            conversion(&held, 3),
            conversion(&unique("never-exposed"), 1),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 2);
    assert_eq!(store.convert(vec![conversion(&a, 5)]).await.ok(), Some(0));
    let counts = store
        .experiment_counts(&exp)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let get = |arm: &str| counts.get(arm).map(|c| (c.exposures, c.conversions));
    assert_eq!(get("red"), Some((1, 1)));
    assert_eq!(get("blue"), Some((1, 0)));
    assert_eq!(get(HOLDOUT_ARM), Some((1, 1)));
    // A contextual bandit's exposures count within their context too.
    assert_eq!(get("red@gold"), Some((1, 1)));
    assert_eq!(get("blue@gold"), Some((1, 0)));

    // The exposure is the customer's: exported, and erased with them.
    let x = store
        .export_customer(&a)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("an exposed customer is exported"));
    assert_eq!(
        x.assignments.get(&exp).and_then(|e| e.converted_at),
        Some(now() + Duration::hours(1))
    );
    assert_eq!(store.delete_customer(&a).await.ok(), Some(true));
    assert!(store.export_customer(&a).await.ok().flatten().is_none());
    let (_, new) = store
        .expose(&a, &exp, exposure(Some("blue")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(new, "after erasure the customer is new to the experiment");
}
