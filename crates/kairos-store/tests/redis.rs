//! The Redis backend passes the conformance suite on one server and on a
//! 3-node Redis Cluster, each started by the test on free ports.

use std::sync::Arc;

use kairos_learn::ProfileConfig;
use kairos_store::redis_harness::{RedisCluster, RedisServer};
use kairos_store::{conformance, RedisStore, RedisTarget, ReserveCheck, StoreContext};

/// With reads kept for reservations, as `kairos serve` keeps them.
fn ctx() -> StoreContext {
    StoreContext {
        profile: ProfileConfig::default(),
        default_tz: chrono_tz::Tz::UTC,
        cache_customers: 1000,
        page_cache_mib: 16,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_conformance() {
    let server = RedisServer::start();
    let store = RedisStore::connect(RedisTarget::Single(server.url()), ctx())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_conformance() {
    let cluster = RedisCluster::start();
    let store = RedisStore::connect(RedisTarget::Cluster(cluster.urls()), ctx())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    conformance::run_all(Arc::new(store)).await;
}

/// Two replicas on one Redis: a reservation starts from the read its
/// decision was made on, and is still checked against the state it is made in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_start_from_the_decisions_read_and_recheck() {
    use kairos_store::Store;
    let server = RedisServer::start();
    let connect = || async {
        RedisStore::connect(RedisTarget::Single(server.url()), ctx())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (a, b) = (connect().await, connect().await);
    conformance::reservations_check_the_state_they_are_made_in(&a, &b).await;

    // The read is kept for the reservation, which takes it.
    let c = kairos_core::CustomerId::parse("c-kept").unwrap_or_else(|e| panic!("{e}"));
    let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    a.ingest(vec![conformance::event(&c, "e0", "app_open", at)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = a.kept_reads();
    assert!(a.customer(&c).await.ok().flatten().is_some());
    assert_eq!(a.kept_reads(), before + 1);
    let r = conformance::reservation("d-kept", at + chrono::Duration::hours(2));
    assert!(a
        .reserve(&c, r, at, ReserveCheck::new(|_, live| live.is_empty()))
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(a.kept_reads(), before);
    let held = b.customer(&c).await.ok().flatten().map(|r| r.reservations);
    assert_eq!(held.map(|h| h.len()), Some(1));

    // Erasing the customer drops their kept read too.
    assert!(a.customer(&c).await.ok().flatten().is_some());
    assert_eq!(a.kept_reads(), before + 1);
    assert!(a.delete_customer(&c).await.unwrap_or(false));
    assert_eq!(a.kept_reads(), before);
}

/// A profile stored in an earlier layout (postcard keeps no field names)
/// cannot be read, and a rebuild (which the server runs on start when the
/// layout changed) replaces it with one computed from the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_replaces_profiles_in_an_earlier_layout() {
    use kairos_store::Store;
    let server = RedisServer::start();
    let store = RedisStore::connect(RedisTarget::Single(server.url()), ctx())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = kairos_core::CustomerId::parse("c-old").unwrap_or_else(|e| panic!("{e}"));
    let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let events = (0..3)
        .map(|k| {
            let t = at + chrono::Duration::minutes(50 * k);
            conformance::event(&c, &format!("e{k}"), "app_open", t)
        })
        .collect();
    store.ingest(events).await.unwrap_or_else(|e| panic!("{e}"));
    let profile = store
        .customer(&c)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("stored"))
        .profile;
    assert!(profile.quarter_of_day.iter().sum::<f32>() > 2.9);
    // The profile without its last field, as an earlier release wrote it.
    let mut old = profile.clone();
    old.quarter_of_day.clear();
    let mut bytes = postcard::to_stdvec(&old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bytes.pop(), Some(0), "an empty list is one zero byte, last");
    let client = redis::Client::open(server.url()).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: i64 = redis::cmd("HSET")
        .arg("kairos:{c-old}:meta")
        .arg("profile")
        .arg(bytes)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(store.customer(&c).await.is_err(), "unreadable as it is");
    let n = store
        .rebuild_profiles(ProfileConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1);
    let record = store.customer(&c).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(record.map(|r| r.profile), Some(profile));
}
