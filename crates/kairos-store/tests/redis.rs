//! The Redis backend passes the conformance suite on one server and on a
//! 3-node Redis Cluster, each started by the test on free ports.

use std::sync::Arc;

use kairos_learn::ProfileConfig;
use kairos_store::redis_harness::{RedisCluster, RedisServer};
use kairos_store::{conformance, RedisStore, RedisTarget, StoreContext};

fn ctx() -> StoreContext {
    StoreContext {
        profile: ProfileConfig::default(),
        default_tz: chrono_tz::Tz::UTC,
        cache_customers: 0,
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
