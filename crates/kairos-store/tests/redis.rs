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
