//! The Redis backend: several `kairos serve` replicas share one Redis (or a
//! Redis Cluster), so replicas hold no state of their own.
//!
//! # Keys
//!
//! Each customer's keys share the hash tag `{<customer id>}`, so a Redis
//! Cluster keeps them in one slot and one Lua script may touch all of them:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `kairos:{c}:meta` | hash | `attrs` (as the embedded store's `customers`), `profile` (postcard), `v` (version token) |
//! | `kairos:{c}:ev` | hash | event id -> event (JSON); also the idempotency record |
//! | `kairos:{c}:msg` | hash | `channel:message_id` -> attribution state (postcard) |
//! | `kairos:{c}:res` | hash | decision id -> reservation (postcard) |
//! | `kairos:decision:{d}` | string | decision id -> customer id, expiring when the reservation stops holding room |
//! | `kairos:customers` | set | every customer id with stored state (training, profile rebuilds) |
//! | `kairos:models` | hash | model name -> bytes, shared by every replica |
//! | `kairos:{c}:asg` | hash | experiment key -> exposure (postcard) |
//! | `kairos:experiments` | hash | experiment key -> definition (JSON) |
//! | `kairos:exp:{e}:counts` | hash | `e:<arm>` / `c:<arm>` -> exposures / conversions |
//!
//! # Atomicity
//!
//! Every change to a customer is optimistic and checked in Redis: one Lua
//! script ([`READ`]) returns a consistent snapshot with the customer's version
//! token; Kairos computes the new state (profile update, attribution, cap
//! check) in Rust; a second Lua script ([`WRITE`]) applies it only if the
//! version token is unchanged, and sets a new one. A changed token means
//! another replica wrote in between: the change is recomputed from a fresh
//! snapshot. A reservation first tries the snapshot its decision was made
//! on (kept for the latest [`RECENT_CAP`] reads, or `store.cache_customers`): if the
//! token is still the same, nothing changed and the cap check ran on the
//! current state, so one round trip less; otherwise it reads afresh.
//! So idempotent ingest, profile updates and cap reservations are
//! atomic per customer across any number of replicas. A batch naming several
//! customers is atomic per customer, not as a whole (a cluster cannot commit
//! across slots); a batch answered with an error may be retried as it is,
//! since a repeated event id is counted once.
//!
//! Durability is Redis's: run it with `appendonly yes` (and `appendfsync
//! always` for the embedded store's guarantee that an acknowledged event
//! survives a crash of the machine).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use kairos_core::{Customer, CustomerId, CustomerPatch, Event, EventType};
use kairos_learn::{
    concerns_attribution, message_key, Attribution, MessageState, ProfileConfig, ProfileState,
};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use crate::{
    converts, customer_tz, ArmCounts, Conversion, CustomerExport, CustomerHistory, CustomerRecord,
    Exposure, HistoryVisitor, IngestOutcome, Reservation, ReserveCheck, Result, Store,
    StoreContext, StoreError,
};

/// How often a change is recomputed when other writers keep changing the
/// customer first, before the store reports itself unavailable.
const MAX_ATTEMPTS: usize = 64;
/// Customers read or written concurrently by batch operations.
const CONCURRENCY: usize = 64;
/// Customers whose latest read is kept for a reservation to start from,
/// at most (and at most `store.cache_customers`; 0 keeps none), the oldest
/// reads dropped first (a reservation then reads afresh): twice what a
/// campaign's chunks in flight read ahead of their reservations.
pub const RECENT_CAP: usize = 16_384;
/// Every Redis call gives up after this long (the caller answers 503).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

const CUSTOMERS_SET: &str = "kairos:customers";
const MODELS_HASH: &str = "kairos:models";
const EXPERIMENTS_HASH: &str = "kairos:experiments";

/// Stores an exposure unless the customer has one: returns `{1, new}` or `{0, stored}`.
const EXPOSE: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then return {0, cur} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, ARGV[2]}
";

/// Replaces an exposure if it is still `ARGV[2]`: 1, else -1.
const REPLACE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// A consistent snapshot of one customer.
///
/// ARGV: events mode (`none` | `all` | `check` followed by a count and the
/// event ids to look up), then messages mode (`none` | `all` | `get`
/// followed by a count and the keys).
/// Returns `{v, attrs, profile, reservations (flat pairs), events, messages}`:
/// events are flat pairs (`all`) or 1/0 per id (`check`); messages are flat
/// pairs (`all`) or values (`get`).
const READ: &str = r"
local meta = redis.call('HMGET', KEYS[1], 'v', 'attrs', 'profile')
local res = redis.call('HGETALL', KEYS[4])
local i = 1
local evmode = ARGV[i]; i = i + 1
local ev = {}
if evmode == 'all' then
  ev = redis.call('HGETALL', KEYS[2])
elseif evmode == 'check' then
  local n = tonumber(ARGV[i]); i = i + 1
  for j = 1, n do
    ev[j] = redis.call('HEXISTS', KEYS[2], ARGV[i]); i = i + 1
  end
end
local msgmode = ARGV[i]; i = i + 1
local msg = {}
if msgmode == 'all' then
  msg = redis.call('HGETALL', KEYS[3])
elseif msgmode == 'get' then
  local n = tonumber(ARGV[i]); i = i + 1
  for j = 1, n do
    msg[j] = redis.call('HGET', KEYS[3], ARGV[i]); i = i + 1
  end
end
return {meta[1], meta[2], meta[3], res, ev, msg}
";

/// Applies a change computed from a snapshot, if the customer's version
/// token is still the snapshot's. Returns 1, or -1 when it changed.
///
/// ARGV: expected token ('' for none), new token, attrs ('' keeps),
/// profile mode (`keep` | `set` | `del`), profile bytes, whether to clear
/// the messages first (`0` | `1`), then counted lists: events to set
/// (pairs), messages to set (pairs), reservations to set (pairs),
/// reservations to delete (ids).
const WRITE: &str = r"
local current = redis.call('HGET', KEYS[1], 'v') or ''
if current ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'attrs', ARGV[3]) end
if ARGV[4] == 'set' then
  redis.call('HSET', KEYS[1], 'profile', ARGV[5])
elseif ARGV[4] == 'del' then
  redis.call('HDEL', KEYS[1], 'profile')
end
if ARGV[6] == '1' then redis.call('DEL', KEYS[3]) end
local i = 7
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[4], ARGV[i]); i = i + 1 end
return 1
";

/// One Redis server through a reconnecting connection, or a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where the Redis backend connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server, e.g. `redis://127.0.0.1:6379/0`.
    Single(String),
    /// Any nodes of a Redis Cluster; the rest are discovered.
    Cluster(Vec<String>),
}

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    target: RedisTarget,
    default_tz: chrono_tz::Tz,
    profile: RwLock<ProfileConfig>,
    read: Script,
    write: Script,
    expose: Script,
    replace: Script,
    /// Makes version tokens unique across replicas and restarts.
    token_seed: u64,
    token_seq: AtomicU64,
    /// The latest read of customers, by id, for their next reservation.
    recent: Mutex<Kept>,
}

/// Reads kept for reservations, at most `cap`, oldest out first.
#[derive(Default)]
struct Kept {
    cap: usize,
    /// Customer id -> (read number, the read).
    reads: HashMap<String, (u64, Recent)>,
    /// (customer id, read number), oldest first; a number no longer in
    /// `reads` was taken or replaced.
    order: std::collections::VecDeque<(String, u64)>,
    next: u64,
}

impl Kept {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.min(RECENT_CAP),
            ..Self::default()
        }
    }

    fn insert(&mut self, id: &str, read: Recent) {
        if self.cap == 0 {
            return;
        }
        self.next += 1;
        self.reads.insert(id.to_string(), (self.next, read));
        self.order.push_back((id.to_string(), self.next));
        while self.order.len() > self.cap {
            if let Some((old, n)) = self.order.pop_front() {
                if self.reads.get(&old).is_some_and(|(m, _)| *m == n) {
                    self.reads.remove(&old);
                }
            }
        }
    }
}

/// What a reservation's cap check needs of a customer, as read at `version`.
struct Recent {
    version: String,
    profile: ProfileState,
    reservations: Vec<Reservation>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// The keys of one customer, in the order the scripts take them.
fn keys(id: &str) -> [String; 4] {
    [
        format!("kairos:{{{id}}}:meta"),
        format!("kairos:{{{id}}}:ev"),
        format!("kairos:{{{id}}}:msg"),
        format!("kairos:{{{id}}}:res"),
    ]
}

fn assignments_key(id: &str) -> String {
    format!("kairos:{{{id}}}:asg")
}

fn counts_key(experiment: &str) -> String {
    format!("kairos:exp:{{{experiment}}}:counts")
}

fn decision_key(decision_id: &str) -> String {
    format!("kairos:decision:{{{decision_id}}}")
}

/// What a snapshot should include besides attributes, profile and reservations.
enum Events<'a> {
    None,
    All,
    Check(&'a [&'a str]),
}
enum Messages<'a> {
    None,
    All,
    Get(&'a [String]),
}

/// One customer as [`READ`] returned it.
#[derive(Default)]
struct Snapshot {
    version: String,
    attrs: Option<Customer>,
    profile: Option<ProfileState>,
    reservations: Vec<Reservation>,
    /// `Events::All`: every event; `Events::Check`: whether each id is stored.
    events: Vec<Event>,
    exists: Vec<bool>,
    /// `Messages::All`: every state by key; `Messages::Get`: the asked ones found.
    messages: BTreeMap<String, MessageState>,
}

impl Snapshot {
    fn is_empty(&self) -> bool {
        self.attrs.is_none() && self.profile.is_none() && self.reservations.is_empty()
    }

    fn record(self, id: &CustomerId) -> Option<CustomerRecord> {
        if self.is_empty() {
            return None;
        }
        Some(CustomerRecord {
            customer_id: id.clone(),
            attributes: self.attrs,
            profile: self.profile.unwrap_or_default(),
            reservations: self.reservations,
            stored: None,
        })
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        Value::Map(m) => Ok(m.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        other => Err(StoreError::Corrupt(format!(
            "unexpected reply from redis: {other:?}"
        ))),
    }
}

/// Flat `[field, value, field, value...]` pairs.
fn pairs(v: Value) -> Result<Vec<(String, Vec<u8>)>> {
    let items = array(v)?;
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let key = bytes(&k)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| StoreError::corrupt("a hash field that is not a string"))?;
        let value = bytes(&v)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| StoreError::corrupt("a hash value that is not a string"))?;
        out.push((key, value));
    }
    Ok(out)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(StoreError::corrupt)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(StoreError::corrupt)
}

fn sort_events(events: &mut [Event]) {
    events.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
}

/// A change to one customer, applied by [`WRITE`].
#[derive(Default)]
struct Change {
    attrs: Option<Vec<u8>>,
    profile: ProfileChange,
    clear_messages: bool,
    events: Vec<(String, Vec<u8>)>,
    messages: Vec<(String, Vec<u8>)>,
    reservations: Vec<(String, Vec<u8>)>,
    drop_reservations: Vec<String>,
}

#[derive(Default)]
enum ProfileChange {
    #[default]
    Keep,
    Set(Vec<u8>),
    Delete,
}

impl RedisStore {
    /// Connects to `target`. Fails when Redis cannot be reached now; once
    /// connected, the store reconnects by itself after an outage.
    pub async fn connect(target: RedisTarget, ctx: StoreContext) -> Result<Self> {
        let conn = match &target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| {
                    StoreError::Unavailable(format!("invalid redis url {url:?}: {e}"))
                })?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                Conn::Single(
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(unavailable)?,
                )
            }
            RedisTarget::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(2)
                    .build()
                    .map_err(|e| {
                        StoreError::Unavailable(format!("invalid redis cluster nodes: {e}"))
                    })?;
                Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?)
            }
        };
        let store = Self {
            inner: Arc::new(Inner {
                conn,
                target,
                default_tz: ctx.default_tz,
                profile: RwLock::new(ctx.profile),
                read: Script::new(READ),
                write: Script::new(WRITE),
                expose: Script::new(EXPOSE),
                replace: Script::new(REPLACE),
                token_seed: RandomState::new().hash_one(std::process::id()),
                token_seq: AtomicU64::new(0),
                recent: Mutex::new(Kept::new(ctx.cache_customers)),
            }),
        };
        store.ping().await?;
        Ok(store)
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    fn config(&self) -> ProfileConfig {
        match self.inner.profile.read() {
            Ok(c) => *c,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn token(&self) -> String {
        let n = self.inner.token_seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}.{n:x}", self.inner.token_seed)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        cmd.query_async(&mut self.conn()).await.map_err(unavailable)
    }

    async fn snapshot(
        &self,
        id: &str,
        events: Events<'_>,
        messages: Messages<'_>,
    ) -> Result<Snapshot> {
        self.snapshot_with(id, events, messages, false).await
    }

    /// Like [`RedisStore::snapshot`]; with `any_layout`, a profile stored in
    /// another layout (see `kairos_learn::PROFILE_LAYOUT`) reads as none
    /// instead of failing, for a rebuild that replaces it.
    async fn snapshot_with(
        &self,
        id: &str,
        events: Events<'_>,
        messages: Messages<'_>,
        any_layout: bool,
    ) -> Result<Snapshot> {
        let [meta, ev, msg, res] = keys(id);
        let mut inv = self.inner.read.key(&meta);
        inv.key(&ev).key(&msg).key(&res);
        match &events {
            Events::None => inv.arg("none"),
            Events::All => inv.arg("all"),
            Events::Check(ids) => inv.arg("check").arg(ids.len()).arg(*ids),
        };
        match &messages {
            Messages::None => inv.arg("none"),
            Messages::All => inv.arg("all"),
            Messages::Get(keys) => inv.arg("get").arg(keys.len()).arg(*keys),
        };
        let reply: Value = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut parts = array(reply)?.into_iter();
        let mut next = || parts.next().unwrap_or(Value::Nil);
        let version = bytes(&next())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let attrs = match bytes(&next()) {
            Some(b) => Some(crate::decode_customer(b)?),
            None => None,
        };
        let profile = match bytes(&next()) {
            Some(b) if any_layout => decode(b).ok(),
            Some(b) => Some(decode(b)?),
            None => None,
        };
        let mut reservations = pairs(next())?
            .into_iter()
            .map(|(_, v)| Reservation::decode(&v))
            .collect::<Result<Vec<_>>>()?;
        reservations.sort_by(|a, b| a.decision_id.cmp(&b.decision_id));
        let mut snap = Snapshot {
            version,
            attrs,
            profile,
            reservations,
            ..Snapshot::default()
        };
        let ev_part = next();
        match events {
            Events::None => {}
            Events::All => {
                snap.events = pairs(ev_part)?
                    .into_iter()
                    .map(|(_, v)| serde_json::from_slice(&v).map_err(StoreError::corrupt))
                    .collect::<Result<Vec<Event>>>()?;
                sort_events(&mut snap.events);
            }
            Events::Check(_) => {
                snap.exists = array(ev_part)?
                    .into_iter()
                    .map(|v| matches!(v, Value::Int(1)))
                    .collect();
            }
        }
        let msg_part = next();
        match messages {
            Messages::None => {}
            Messages::All => {
                for (k, v) in pairs(msg_part)? {
                    snap.messages.insert(k, decode(&v)?);
                }
            }
            Messages::Get(keys) => {
                for (k, v) in keys.iter().zip(array(msg_part)?) {
                    if let Some(b) = bytes(&v) {
                        snap.messages.insert(k.clone(), decode(b)?);
                    }
                }
            }
        }
        Ok(snap)
    }

    /// Applies `change` if the customer is still at `version`. False when
    /// another writer came first.
    async fn apply(&self, id: &str, version: &str, change: Change) -> Result<bool> {
        let [meta, ev, msg, res] = keys(id);
        let mut inv = self.inner.write.key(&meta);
        inv.key(&ev).key(&msg).key(&res);
        inv.arg(version).arg(self.token());
        inv.arg(change.attrs.unwrap_or_default());
        match change.profile {
            ProfileChange::Keep => inv.arg("keep").arg(""),
            ProfileChange::Set(b) => inv.arg("set").arg(b),
            ProfileChange::Delete => inv.arg("del").arg(""),
        };
        inv.arg(if change.clear_messages { "1" } else { "0" });
        for list in [change.events, change.messages, change.reservations] {
            inv.arg(list.len());
            for (k, v) in list {
                inv.arg(k).arg(v);
            }
        }
        inv.arg(change.drop_reservations.len())
            .arg(change.drop_reservations);
        let n: i64 = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    /// Indexes a customer about to get their first state. A customer with a
    /// version token was indexed before that token's write (erasure removes
    /// the index entry before the keys, so this holds across erasures too).
    async fn index_new(&self, id: &str, snap: &Snapshot) -> Result<()> {
        if snap.version.is_empty() {
            self.index(id).await?;
        }
        Ok(())
    }

    /// Records that the customer has stored state (before it is written, so
    /// the set never misses a customer).
    async fn index(&self, id: &str) -> Result<()> {
        self.query::<i64>(redis::cmd("SADD").arg(CUSTOMERS_SET).arg(id))
            .await
            .map(drop)
    }

    /// One customer's events of a batch (in order): stored unless their id
    /// is, with the profile and message states updated, atomically.
    async fn ingest_customer(&self, id: &CustomerId, events: &[&Event]) -> Result<IngestOutcome> {
        let cfg = self.config();
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let mut mkeys: Vec<String> = events
            .iter()
            .filter(|e| concerns_attribution(e))
            .filter_map(|e| message_key(e))
            .collect();
        mkeys.sort_unstable();
        mkeys.dedup();
        for _ in 0..MAX_ATTEMPTS {
            let snap = self
                .snapshot(id.as_str(), Events::Check(&ids), Messages::Get(&mkeys))
                .await?;
            self.index_new(id.as_str(), &snap).await?;
            let tz = customer_tz(snap.attrs.as_ref(), self.inner.default_tz);
            let mut profile = snap.profile.clone().unwrap_or_default();
            let mut states = snap.messages.clone();
            let mut changed_states = std::collections::BTreeSet::new();
            let mut seen = std::collections::HashSet::new();
            let mut outcome = IngestOutcome::default();
            let mut change = Change::default();
            for (event, stored) in events.iter().zip(&snap.exists) {
                if *stored || !seen.insert(event.event_id.as_str()) {
                    outcome.duplicates += 1;
                    continue;
                }
                let attribution = match (message_key(event), event.channel) {
                    (Some(mkey), Some(channel)) if concerns_attribution(event) => {
                        let state = states.entry(mkey.clone()).or_default();
                        let a = state.link(event, cfg.window(channel));
                        changed_states.insert(mkey);
                        a
                    }
                    _ => Attribution::None,
                };
                profile.observe(event, tz, &cfg, attribution);
                if let (EventType::MessageSent, Some(decision)) = (event.kind, &event.decision_id) {
                    change.drop_reservations.push(decision.clone());
                }
                change.events.push((
                    event.event_id.as_str().to_owned(),
                    serde_json::to_vec(event).map_err(StoreError::corrupt)?,
                ));
                outcome.accepted += 1;
            }
            if outcome.accepted == 0 {
                return Ok(outcome);
            }
            change.profile = ProfileChange::Set(encode(&profile)?);
            for k in changed_states {
                if let Some(state) = states.get(&k) {
                    change.messages.push((k, encode(state)?));
                }
            }
            let dropped = change.drop_reservations.clone();
            if self.apply(id.as_str(), &snap.version, change).await? {
                self.forget_decisions(&dropped).await?;
                return Ok(outcome);
            }
        }
        Err(contended(id))
    }

    async fn forget_decisions(&self, decisions: &[String]) -> Result<()> {
        for d in decisions {
            self.query::<i64>(redis::cmd("DEL").arg(decision_key(d)))
                .await?;
        }
        Ok(())
    }

    /// Recomputes a customer's profile and message states from their events
    /// (in `tz`), with attributes `attrs` written in the same change.
    fn recomputed(
        &self,
        events: &[Event],
        tz: chrono_tz::Tz,
        cfg: &ProfileConfig,
        attrs: Option<Vec<u8>>,
    ) -> Result<Change> {
        let mut change = Change {
            attrs,
            clear_messages: true,
            ..Change::default()
        };
        if events.is_empty() {
            change.profile = ProfileChange::Delete;
            return Ok(change);
        }
        let (profile, states) = ProfileState::from_events(events, tz, cfg);
        change.profile = ProfileChange::Set(encode(&profile)?);
        for (k, state) in states {
            change.messages.push((k, encode(&state)?));
        }
        Ok(change)
    }

    async fn rebuild_one(&self, id: &str, cfg: &ProfileConfig) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            // The stored profile is replaced, in whatever layout it was written.
            let snap = self
                .snapshot_with(id, Events::All, Messages::None, true)
                .await?;
            if snap.events.is_empty() && snap.profile.is_none() {
                return Ok(());
            }
            let tz = customer_tz(snap.attrs.as_ref(), self.inner.default_tz);
            let change = self.recomputed(&snap.events, tz, cfg, None)?;
            if self.apply(id, &snap.version, change).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "customer {id} kept changing during a profile rebuild"
        )))
    }

    /// Keeps a customer's read at `version` for their next reservation.
    fn remember(&self, id: &str, version: String, record: &CustomerRecord) {
        let recent = Recent {
            version,
            profile: record.profile.clone(),
            reservations: record.reservations.clone(),
        };
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, recent);
    }

    /// The customer's kept read, taken out.
    fn recall(&self, id: &str) -> Option<Recent> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reads
            .remove(id)
            .map(|(_, read)| read)
    }

    /// How many customers' reads are kept (for tests).
    #[doc(hidden)]
    pub fn kept_reads(&self) -> usize {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reads
            .len()
    }

    /// Reserves if `check` accepts, retried while other writers come first.
    /// The first try starts from the customer's kept read, if any: stored only
    /// if nothing changed since (the version token), and when its check
    /// refuses, the current state is read and checked before refusing.
    async fn reserve_one(
        &self,
        id: &CustomerId,
        r: &Reservation,
        now: DateTime<Utc>,
        check: &ReserveCheck,
    ) -> Result<bool> {
        if let Some(kept) = self.recall(id.as_str()) {
            let (live, expired): (Vec<Reservation>, Vec<Reservation>) =
                kept.reservations.into_iter().partition(|x| x.holds(now));
            let accepted = check.accepts(&kept.profile, &live);
            if accepted && self.try_reserve(id, r, &kept.version, expired).await? {
                return Ok(true);
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            let snap = self
                .snapshot(id.as_str(), Events::None, Messages::None)
                .await?;
            let (live, expired): (Vec<Reservation>, Vec<Reservation>) =
                snap.reservations.into_iter().partition(|x| x.holds(now));
            let profile = snap.profile.unwrap_or_default();
            let accepted = check.accepts(&profile, &live);
            if !accepted {
                return Ok(false);
            }
            if snap.version.is_empty() {
                self.index(id.as_str()).await?;
            }
            if self.try_reserve(id, r, &snap.version, expired).await? {
                return Ok(true);
            }
        }
        Err(contended(id))
    }

    /// Stores `r`, dropping `expired`, if the customer is still at `version`.
    async fn try_reserve(
        &self,
        id: &CustomerId,
        r: &Reservation,
        version: &str,
        expired: Vec<Reservation>,
    ) -> Result<bool> {
        let change = Change {
            reservations: vec![(r.decision_id.clone(), r.encode()?)],
            drop_reservations: expired.iter().map(|x| x.decision_id.clone()).collect(),
            ..Change::default()
        };
        if !self.apply(id.as_str(), version, change).await? {
            return Ok(false);
        }
        let expired: Vec<String> = expired.into_iter().map(|x| x.decision_id).collect();
        self.forget_decisions(&expired).await?;
        self.point_decision(id.as_str(), r).await?;
        Ok(true)
    }

    /// `kairos:decision:{d}` -> customer, expiring a week after the
    /// reservation stops holding room. The time to live is measured from the
    /// reservation's own times, not Redis's clock, which may differ from the
    /// one decisions are made with.
    async fn point_decision(&self, customer: &str, r: &Reservation) -> Result<()> {
        let until = if r.confirmed {
            r.send_at + chrono::Duration::days(8)
        } else {
            r.deadline
        };
        let ttl = (until - r.created_at).num_milliseconds().max(0) + 7 * 86_400_000;
        self.query::<()>(
            redis::cmd("SET")
                .arg(decision_key(&r.decision_id))
                .arg(customer)
                .arg("PX")
                .arg(ttl),
        )
        .await
    }

    async fn decision_customer(&self, decision_id: &str) -> Result<Option<String>> {
        self.query(redis::cmd("GET").arg(decision_key(decision_id)))
            .await
    }

    async fn history(&self, id: String) -> Result<Option<CustomerHistory>> {
        let snap = self.snapshot(&id, Events::All, Messages::None).await?;
        if snap.events.is_empty() {
            return Ok(None);
        }
        Ok(Some(CustomerHistory {
            customer_id: CustomerId::parse(id).map_err(StoreError::corrupt)?,
            attributes: snap.attrs,
            events: snap.events,
        }))
    }

    async fn assignments(&self, id: &str) -> Result<BTreeMap<String, Exposure>> {
        let raw: Value = self
            .query(redis::cmd("HGETALL").arg(assignments_key(id)))
            .await?;
        pairs(raw)?
            .into_iter()
            .map(|(k, v)| Ok((k, decode(&v)?)))
            .collect()
    }

    async fn count(&self, experiment: &str, field: &str) -> Result<()> {
        self.query::<i64>(
            redis::cmd("HINCRBY")
                .arg(counts_key(experiment))
                .arg(field)
                .arg(1),
        )
        .await
        .map(drop)
    }

    async fn convert_one(&self, c: &Conversion) -> Result<bool> {
        let key = assignments_key(c.customer.as_str());
        for _ in 0..MAX_ATTEMPTS {
            let current: Option<Vec<u8>> = self
                .query(redis::cmd("HGET").arg(&key).arg(&c.experiment))
                .await?;
            let Some(bytes) = current else {
                return Ok(false);
            };
            let mut e: Exposure = decode(&bytes)?;
            if !converts(&e, c) {
                return Ok(false);
            }
            e.converted_at = Some(c.at);
            let n: i64 = self
                .inner
                .replace
                .key(&key)
                .arg(&c.experiment)
                .arg(bytes)
                .arg(encode(&e)?)
                .invoke_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            if n == 1 {
                for arm in e.arms() {
                    self.count(&c.experiment, &format!("c:{arm}")).await?;
                }
                return Ok(true);
            }
        }
        Err(contended(&c.customer))
    }

    async fn customer_ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(CUSTOMERS_SET))
            .await?;
        ids.sort_unstable();
        Ok(ids)
    }
}

fn contended(id: &CustomerId) -> StoreError {
    StoreError::Unavailable(format!(
        "customer {id} is being changed by too many writers at once; retry"
    ))
}

#[async_trait]
impl Store for RedisStore {
    async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome> {
        let mut groups: Vec<(CustomerId, Vec<Event>)> = Vec::new();
        let mut slot: HashMap<CustomerId, usize> = HashMap::new();
        for e in events {
            let i = *slot.entry(e.customer_id.clone()).or_insert_with(|| {
                groups.push((e.customer_id.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(e);
        }
        let outcomes: Vec<IngestOutcome> = stream::iter(groups.into_iter().map(|(id, evs)| {
            let store = self.clone();
            async move {
                let evs: Vec<&Event> = evs.iter().collect();
                store.ingest_customer(&id, &evs).await
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
        Ok(outcomes
            .into_iter()
            .fold(IngestOutcome::default(), |a, o| IngestOutcome {
                accepted: a.accepted + o.accepted,
                duplicates: a.duplicates + o.duplicates,
            }))
    }

    async fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        for _ in 0..MAX_ATTEMPTS {
            let snap = self
                .snapshot(id.as_str(), Events::None, Messages::None)
                .await?;
            self.index_new(id.as_str(), &snap).await?;
            let old_tz = customer_tz(snap.attrs.as_ref(), self.inner.default_tz);
            let updated = patch.clone().apply(id.clone(), snap.attrs.clone(), now);
            let stored = crate::encode_customer(&updated)?;
            let new_tz = customer_tz(Some(&updated), self.inner.default_tz);
            let (version, change) = if new_tz != old_tz && snap.profile.is_some() {
                let full = self
                    .snapshot(id.as_str(), Events::All, Messages::None)
                    .await?;
                let change = self.recomputed(&full.events, new_tz, &self.config(), Some(stored))?;
                (full.version, change)
            } else {
                let change = Change {
                    attrs: Some(stored),
                    ..Change::default()
                };
                (snap.version, change)
            };
            if self.apply(id.as_str(), &version, change).await? {
                return Ok(updated);
            }
        }
        Err(contended(id))
    }

    async fn put_customers(
        &self,
        patches: Vec<(CustomerId, CustomerPatch)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Customer>> {
        // Customers in parallel; each customer's own patches in order.
        let n = patches.len();
        let mut groups: Vec<(CustomerId, Vec<(usize, CustomerPatch)>)> = Vec::new();
        let mut slot: HashMap<CustomerId, usize> = HashMap::new();
        for (i, (id, patch)) in patches.into_iter().enumerate() {
            let g = *slot.entry(id.clone()).or_insert_with(|| {
                groups.push((id, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push((i, patch));
        }
        let done: Vec<Vec<(usize, Customer)>> =
            stream::iter(groups.into_iter().map(|(id, group)| async move {
                let mut out = Vec::with_capacity(group.len());
                for (i, patch) in group {
                    out.push((i, self.put_customer(&id, patch, now).await?));
                }
                Ok::<_, StoreError>(out)
            }))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut answers: Vec<Option<Customer>> = vec![None; n];
        for (i, c) in done.into_iter().flatten() {
            answers[i] = Some(c);
        }
        Ok(answers.into_iter().flatten().collect())
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>> {
        let snap = self
            .snapshot(id.as_str(), Events::None, Messages::None)
            .await?;
        let version = snap.version.clone();
        let record = snap.record(id);
        if let (Some(r), false) = (&record, version.is_empty()) {
            self.remember(id.as_str(), version, r);
        }
        Ok(record)
    }

    async fn customers(&self, ids: Vec<CustomerId>) -> Result<Vec<Option<CustomerRecord>>> {
        stream::iter(
            ids.into_iter()
                .map(|id| async move { self.customer(&id).await }),
        )
        .buffered(CONCURRENCY)
        .try_collect()
        .await
    }

    async fn reserve_many(
        &self,
        items: Vec<(CustomerId, Reservation, ReserveCheck)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        // Customers in parallel; each customer's own reservations in order,
        // so a check sees the reservations stored before it.
        let n = items.len();
        let mut groups: Vec<Vec<(usize, Reservation, ReserveCheck)>> = Vec::new();
        let mut ids: Vec<CustomerId> = Vec::new();
        let mut slot: HashMap<CustomerId, usize> = HashMap::new();
        for (i, (id, r, check)) in items.into_iter().enumerate() {
            let g = *slot.entry(id.clone()).or_insert_with(|| {
                groups.push(Vec::new());
                ids.push(id);
                groups.len() - 1
            });
            groups[g].push((i, r, check));
        }
        let mut tasks = Vec::with_capacity(ids.len());
        for (id, group) in ids.into_iter().zip(groups) {
            let store = self.clone();
            tasks.push(async move {
                let mut out = Vec::with_capacity(group.len());
                for (i, r, check) in group {
                    out.push((i, store.reserve_one(&id, &r, now, &check).await?));
                }
                Ok::<_, StoreError>(out)
            });
        }
        let answers: Vec<Vec<(usize, bool)>> = stream::iter(tasks)
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = vec![false; n];
        for (i, stored) in answers.into_iter().flatten() {
            out[i] = stored;
        }
        Ok(out)
    }

    async fn reserve(
        &self,
        id: &CustomerId,
        reservation: Reservation,
        now: DateTime<Utc>,
        check: ReserveCheck,
    ) -> Result<bool> {
        self.reserve_one(id, &reservation, now, &check).await
    }

    async fn reservation(&self, decision_id: &str) -> Result<Option<(CustomerId, Reservation)>> {
        let Some(cid) = self.decision_customer(decision_id).await? else {
            return Ok(None);
        };
        let [_, _, _, res] = keys(&cid);
        let bytes: Option<Vec<u8>> = self
            .query(redis::cmd("HGET").arg(res).arg(decision_id))
            .await?;
        match bytes {
            Some(b) => Ok(Some((
                CustomerId::parse(cid).map_err(StoreError::corrupt)?,
                Reservation::decode(&b)?,
            ))),
            None => Ok(None),
        }
    }

    async fn update_reservation(&self, decision_id: &str, send: bool) -> Result<bool> {
        let Some(cid) = self.decision_customer(decision_id).await? else {
            return Ok(false);
        };
        for _ in 0..MAX_ATTEMPTS {
            let snap = self.snapshot(&cid, Events::None, Messages::None).await?;
            let Some(mut r) = snap
                .reservations
                .into_iter()
                .find(|r| r.decision_id == decision_id)
            else {
                return Ok(false);
            };
            let change = if send {
                r.confirmed = true;
                Change {
                    reservations: vec![(r.decision_id.clone(), r.encode()?)],
                    ..Change::default()
                }
            } else {
                Change {
                    drop_reservations: vec![r.decision_id.clone()],
                    ..Change::default()
                }
            };
            if self.apply(&cid, &snap.version, change).await? {
                if send {
                    self.point_decision(&cid, &r).await?;
                } else {
                    self.forget_decisions(&[r.decision_id]).await?;
                }
                return Ok(true);
            }
        }
        Err(StoreError::Unavailable(format!(
            "decision {decision_id} is being changed by too many writers at once; retry"
        )))
    }

    async fn delete_customer(&self, id: &CustomerId) -> Result<bool> {
        let snap = self
            .snapshot(id.as_str(), Events::None, Messages::None)
            .await?;
        let decisions: Vec<String> = snap
            .reservations
            .iter()
            .map(|r| r.decision_id.clone())
            .collect();
        let n: i64 = self
            .query(
                redis::cmd("DEL")
                    .arg(&keys(id.as_str()))
                    .arg(assignments_key(id.as_str())),
            )
            .await?;
        // Nothing of the customer stays in this replica's memory either
        // (a read from before the erasure is dropped after it).
        self.recall(id.as_str());
        self.forget_decisions(&decisions).await?;
        self.query::<i64>(redis::cmd("SREM").arg(CUSTOMERS_SET).arg(id.as_str()))
            .await?;
        Ok(n > 0)
    }

    async fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>> {
        let snap = self
            .snapshot(id.as_str(), Events::All, Messages::All)
            .await?;
        let assignments = self.assignments(id.as_str()).await?;
        if snap.is_empty() && assignments.is_empty() {
            return Ok(None);
        }
        Ok(Some(CustomerExport {
            customer_id: id.clone(),
            attributes: snap.attrs,
            profile: snap.profile.unwrap_or_default(),
            events: snap.events,
            messages: snap.messages,
            reservations: snap.reservations,
            assignments,
        }))
    }

    async fn visit_histories(&self, mut visit: HistoryVisitor) -> Result<u64> {
        let ids = self.customer_ids().await?;
        let mut histories =
            stream::iter(ids.into_iter().map(|id| self.history(id))).buffered(CONCURRENCY);
        let mut n = 0;
        while let Some(h) = histories.next().await {
            if let Some(h) = h? {
                visit(h);
                n += 1;
            }
        }
        Ok(n)
    }

    fn profile_config(&self) -> ProfileConfig {
        self.config()
    }

    fn set_profile_config(&self, config: ProfileConfig) {
        match self.inner.profile.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    async fn rebuild_profiles(&self, config: ProfileConfig) -> Result<u64> {
        self.set_profile_config(config);
        let ids = self.customer_ids().await?;
        let n = ids.len() as u64;
        stream::iter(ids.into_iter().map(|id| {
            let store = self.clone();
            async move { store.rebuild_one(&id, &config).await }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(n)
    }

    async fn put_model(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.query::<i64>(redis::cmd("HSET").arg(MODELS_HASH).arg(name).arg(bytes))
            .await
            .map(drop)
    }

    async fn model(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.query(redis::cmd("HGET").arg(MODELS_HASH).arg(name))
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn put_experiment(&self, key: &str, definition: Vec<u8>) -> Result<()> {
        self.query::<i64>(
            redis::cmd("HSET")
                .arg(EXPERIMENTS_HASH)
                .arg(key)
                .arg(definition),
        )
        .await
        .map(drop)
    }

    async fn experiments(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let raw: Value = self
            .query(redis::cmd("HGETALL").arg(EXPERIMENTS_HASH))
            .await?;
        let mut out = pairs(raw)?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn expose(
        &self,
        id: &CustomerId,
        experiment: &str,
        proposed: Exposure,
    ) -> Result<(Exposure, bool)> {
        let reply: Value = self
            .inner
            .expose
            .key(assignments_key(id.as_str()))
            .arg(experiment)
            .arg(encode(&proposed)?)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let parts = array(reply)?;
        let new = matches!(parts.first(), Some(Value::Int(1)));
        let stored: Exposure = match parts.get(1).and_then(bytes) {
            Some(b) => decode(b)?,
            None => {
                return Err(StoreError::corrupt(
                    "an exposure reply without the exposure",
                ))
            }
        };
        if new {
            for arm in stored.arms() {
                self.count(experiment, &format!("e:{arm}")).await?;
            }
        }
        Ok((stored, new))
    }

    async fn convert(&self, conversions: Vec<Conversion>) -> Result<u64> {
        let mut n = 0;
        for c in &conversions {
            n += u64::from(self.convert_one(c).await?);
        }
        Ok(n)
    }

    async fn experiment_counts(&self, experiment: &str) -> Result<BTreeMap<String, ArmCounts>> {
        let raw: Value = self
            .query(redis::cmd("HGETALL").arg(counts_key(experiment)))
            .await?;
        let mut out: BTreeMap<String, ArmCounts> = BTreeMap::new();
        for (field, v) in pairs(raw)? {
            let n: u64 = String::from_utf8_lossy(&v).parse().unwrap_or(0);
            if let Some(arm) = field.strip_prefix("e:") {
                out.entry(arm.to_owned()).or_default().exposures = n;
            } else if let Some(arm) = field.strip_prefix("c:") {
                out.entry(arm.to_owned()).or_default().conversions = n;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(version: &str) -> Recent {
        Recent {
            version: version.into(),
            profile: ProfileState::default(),
            reservations: Vec::new(),
        }
    }

    /// The latest reads stay, the oldest go first, and a read replaced by a
    /// newer one of the same customer is not dropped in the older one's turn.
    #[test]
    fn kept_reads_drop_the_oldest_first() {
        let mut off = Kept::new(0);
        off.insert("a", read("1"));
        assert!(off.reads.is_empty() && off.order.is_empty());
        let mut kept = Kept::new(usize::MAX);
        kept.insert("a", read("1"));
        kept.insert("a", read("2"));
        for i in 0..RECENT_CAP - 2 {
            kept.insert(&format!("c{i}"), read("x"));
        }
        // "a"'s first read is the oldest in line: dropping it keeps "a" at "2".
        kept.insert("b", read("3"));
        assert_eq!(
            kept.reads.get("a").map(|(_, r)| r.version.as_str()),
            Some("2")
        );
        kept.insert("d", read("4"));
        assert!(!kept.reads.contains_key("a"), "now the oldest");
        assert!(kept.reads.contains_key("c0") && kept.reads.contains_key("d"));
        assert_eq!(kept.order.len(), RECENT_CAP);
        // Taken reads leave their place in line, which later inserts free.
        for i in 0..100 {
            kept.reads.remove(&format!("c{i}"));
        }
        for i in 0..RECENT_CAP {
            kept.insert(&format!("e{i}"), read("5"));
        }
        assert_eq!(kept.reads.len(), RECENT_CAP);
        assert_eq!(kept.order.len(), RECENT_CAP);
    }
}
