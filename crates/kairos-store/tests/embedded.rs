//! The embedded backend passes the conformance suite and survives reopening.

use std::sync::Arc;

use kairos_learn::ProfileConfig;
use kairos_store::{conformance, EmbeddedStore, ReserveCheck, Store, StoreContext};

fn ctx() -> StoreContext {
    StoreContext {
        profile: ProfileConfig::default(),
        default_tz: chrono_tz::Tz::UTC,
        cache_customers: 10_000,
        page_cache_mib: 16,
    }
}

/// With the in-memory record cache, as `kairos serve` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_passes_conformance() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EmbeddedStore::open(dir.path(), ctx()).unwrap_or_else(|e| panic!("{e}"));
    conformance::run_all(Arc::new(store)).await;
}

/// Without the cache: every read goes to the redb file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_without_cache_passes_conformance() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ctx = StoreContext {
        cache_customers: 0,
        ..ctx()
    };
    let store = EmbeddedStore::open(dir.path(), ctx).unwrap_or_else(|e| panic!("{e}"));
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let c = kairos_core::CustomerId::parse("reopen").unwrap_or_else(|e| panic!("{e}"));
    {
        let store = EmbeddedStore::open(dir.path(), ctx()).unwrap_or_else(|e| panic!("{e}"));
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        store
            .ingest(vec![conformance::event(&c, "e1", "app_open", at)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = EmbeddedStore::open(dir.path(), ctx()).unwrap_or_else(|e| panic!("{e}"));
    let x = store
        .export_customer(&c)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("lost"));
    assert_eq!(x.events.len(), 1);
}

/// A reservation whose check panics is refused alone: the group-commit
/// writer goes on, and later reservations are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_check_does_not_stop_reservations() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EmbeddedStore::open(dir.path(), ctx()).unwrap_or_else(|e| panic!("{e}"));
    let c = kairos_core::CustomerId::parse("c-panic").unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let r = |id: &str| conformance::reservation(id, now + chrono::Duration::hours(2));
    let failed = store
        .reserve(
            &c,
            r("d-1"),
            now,
            ReserveCheck::new(|_, _| panic!("a broken check")),
        )
        .await;
    assert!(matches!(failed, Ok(false)), "{failed:?}");
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.reserve(&c, r("d-2"), now, ReserveCheck::new(|_, _| true)),
    )
    .await
    .unwrap_or_else(|_| panic!("reservations stopped after a panic"));
    assert!(matches!(next, Ok(true)), "{next:?}");
    let stored = store.reservation("d-2").await.ok().flatten();
    assert!(stored.is_some(), "the second reservation was written");
}

/// A check known to accept the customer's state as a read found it is not
/// run again while the stored state is byte for byte the same; any change
/// since the read (a reservation, an event) runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_accepted_on_the_state_read_stands_until_the_state_changes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EmbeddedStore::open(dir.path(), ctx()).unwrap_or_else(|e| panic!("{e}"));
    let c = kairos_core::CustomerId::parse("c-read").unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let r = |id: &str| conformance::reservation(id, now + chrono::Duration::hours(2));
    let event = |id: &str| conformance::event(&c, id, "app_open", now - chrono::Duration::hours(1));
    store
        .ingest(vec![event("e1")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = || async {
        store
            .customers(vec![c.clone()])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .pop()
            .flatten()
            .and_then(|r| r.stored)
            .unwrap_or_else(|| panic!("the embedded store reads the stored bytes"))
    };
    // A check that refuses everything, said to accept the state read.
    let refusing = |read| ReserveCheck::new(|_, _| false).accepting(read);
    let first = read().await;
    assert_eq!(read().await, first, "the same state reads the same");
    assert!(matches!(
        store
            .reserve(&c, r("d-1"), now, refusing(first.clone()))
            .await,
        Ok(true)
    ));
    // d-1 is stored since: the read is out of date and the check runs.
    assert!(matches!(
        store.reserve(&c, r("d-2"), now, refusing(first)).await,
        Ok(false)
    ));
    let second = read().await;
    store
        .ingest(vec![event("e2")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        store.reserve(&c, r("d-3"), now, refusing(second)).await,
        Ok(false)
    ));
    let held: Vec<String> = store
        .customers(vec![c.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .flatten()
        .map(|r| r.reservations.into_iter().map(|r| r.decision_id).collect())
        .unwrap_or_default();
    assert_eq!(held, vec!["d-1".to_owned()]);
}

/// Concurrent batches are committed together: each is answered with its own
/// counts, every distinct event is accepted exactly once, and the profile
/// counts every accepted event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_are_counted_each_and_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(EmbeddedStore::open(dir.path(), ctx()).unwrap_or_else(|e| panic!("{e}")));
    let c = kairos_core::CustomerId::parse("c-many").unwrap_or_else(|e| panic!("{e}"));
    let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = Arc::clone(&store);
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let (mut accepted, mut duplicates) = (0u64, 0u64);
            for b in 0..25 {
                // Ids 0..300 overlap between tasks: each is accepted once overall.
                let batch: Vec<_> = (0..12)
                    .map(|k| {
                        let id = format!("e{}", (t * 37 + b * 12 + k) % 300);
                        conformance::event(&c, &id, "app_open", at)
                    })
                    .collect();
                sent += batch.len() as u64;
                let o = store.ingest(batch).await.unwrap_or_else(|e| panic!("{e}"));
                accepted += o.accepted;
                duplicates += o.duplicates;
            }
            (sent, accepted, duplicates)
        }));
    }
    let (mut sent, mut accepted, mut duplicates) = (0, 0, 0);
    for t in tasks {
        let (s, a, d) = t.await.unwrap_or_else(|e| panic!("{e}"));
        sent += s;
        accepted += a;
        duplicates += d;
    }
    assert_eq!(accepted + duplicates, sent);
    assert_eq!(accepted, 300, "every distinct event once");
    let record = store.customer(&c).await.ok().flatten();
    assert_eq!(record.map(|r| r.profile.events), Some(300));
}
