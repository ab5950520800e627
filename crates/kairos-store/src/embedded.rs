//! The embedded backend: one redb file, so `kairos serve` needs nothing else.
//!
//! Every write is one redb transaction with `Durability::Immediate`: committed
//! and fsynced before the call returns. redb calls block, so each runs on
//! tokio's blocking pool, never on an async worker thread.
//!
//! Event batches and single reservations are group-committed: concurrent
//! `ingest` (or `reserve`) calls queue, and one blocking task writes
//! everything queued in one transaction (one fsync), then answers each
//! caller, so what is acknowledged is durable while concurrent requests share
//! the disk flush.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kairos_core::{Customer, CustomerId, CustomerPatch, Event};
use kairos_learn::{
    concerns_attribution, message_key, Attribution, MessageState, ProfileConfig, ProfileState,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::cache::RecordCache;
use crate::{
    converts, customer_tz, decode_customer, ArmCounts, Conversion, CustomerExport, CustomerHistory,
    CustomerRecord, Exposure, HistoryVisitor, IngestOutcome, MatchBytes, Reservation, ReserveCheck,
    Result, Store, StoreContext, StoreError, StoredBytes,
};

/// (customer, event id) -> event as JSON. Also the idempotency record.
const EVENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("events");
/// customer -> attributes (`encode_customer`; JSON before).
const CUSTOMERS: TableDefinition<&str, &[u8]> = TableDefinition::new("customers");
/// customer -> profile state (postcard).
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
/// (customer, "channel:message_id") -> attribution state (postcard).
const MESSAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("messages");
/// Customers recomputed per transaction by `rebuild_profiles`.
const REBUILD_CHUNK: usize = 256;
/// (customer, decision id) -> reservation (postcard).
const RESERVATIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("reservations");
/// decision id -> customer.
const DECISIONS: TableDefinition<&str, &str> = TableDefinition::new("decisions");
/// model name -> bytes.
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
/// experiment key -> definition (JSON).
const EXPERIMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("experiments");
/// (customer, experiment) -> exposure (postcard).
const ASSIGNMENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("assignments");
/// (experiment, arm) -> counts (postcard).
const EXP_COUNTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("experiment_counts");

pub const FILE_NAME: &str = "kairos.redb";

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// Shared by the handles: the last one dropped closes the file.
    _closer: Arc<Closer>,
}

/// Closes the database when the last handle of the store is dropped, so
/// that it can be opened again at once: a group-commit writer that has
/// answered its last caller may still hold [`Inner`] for a moment.
#[derive(Debug)]
struct Closer(Arc<Inner>);

impl Drop for Closer {
    fn drop(&mut self) {
        drop(self.0.take_db());
    }
}

#[derive(Debug)]
struct Inner {
    /// The open database; `None` while it is being reopened.
    db: RwLock<Option<Arc<Database>>>,
    /// Set when a write failed on I/O: redb then refuses every write until
    /// the file is reopened, which the next call does.
    poisoned: std::sync::atomic::AtomicBool,
    default_tz: chrono_tz::Tz,
    profile: RwLock<ProfileConfig>,
    path: PathBuf,
    /// The page cache, in bytes, for opening the file again.
    page_cache: usize,
    reservations: Mutex<Queue<QueuedReservation, bool>>,
    ingests: Mutex<Queue<Vec<Event>, IngestOutcome>>,
    cache: RecordCache,
}

/// The tables a reservation reads and writes, opened once per transaction.
struct ReserveTables<'txn> {
    profiles: redb::Table<'txn, &'static str, &'static [u8]>,
    reservations: redb::Table<'txn, (&'static str, &'static str), &'static [u8]>,
    decisions: redb::Table<'txn, &'static str, &'static str>,
}

/// One queued reservation.
struct QueuedReservation {
    id: CustomerId,
    reservation: Reservation,
    now: DateTime<Utc>,
    check: ReserveCheck,
}

type Reply<R> = tokio::sync::oneshot::Sender<Result<R>>;

/// Work waiting for the next group commit, each item with where its answer
/// goes; `writing` while a writer task is at it (it takes everything queued
/// before it stops).
struct Queue<T, R> {
    queued: Vec<(T, Reply<R>)>,
    writing: bool,
}

impl<T, R> Default for Queue<T, R> {
    fn default() -> Self {
        Self {
            queued: Vec::new(),
            writing: false,
        }
    }
}

impl<T, R> std::fmt::Debug for Queue<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("queued", &self.queued.len())
            .field("writing", &self.writing)
            .finish()
    }
}

/// Which queue a kind of work waits in, and how a round of it is written:
/// all of it in one transaction, one answer per item.
struct GroupCommit<T, R> {
    queue: fn(&Inner) -> &Mutex<Queue<T, R>>,
    commit: fn(&Inner, Vec<T>) -> Result<Vec<R>>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, R> Copy for GroupCommit<T, R> {}

const INGESTS: GroupCommit<Vec<Event>, IngestOutcome> = GroupCommit {
    queue: |inner| &inner.ingests,
    commit: Inner::commit_ingests,
};

const RESERVATIONS_QUEUE: GroupCommit<QueuedReservation, bool> = GroupCommit {
    queue: |inner| &inner.reservations,
    commit: Inner::reserve_many,
};

fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    fn lock(self, inner: &Inner) -> std::sync::MutexGuard<'_, Queue<T, R>> {
        (self.queue)(inner)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item`, starts a writer unless one is running, and waits for
    /// the answer (given once the item's transaction is durable).
    async fn submit(self, inner: &Arc<Inner>, item: T) -> Result<R> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.lock(inner);
            q.queued.push((item, reply));
            !std::mem::replace(&mut q.writing, true)
        };
        if start {
            let inner = Arc::clone(inner);
            tokio::task::spawn_blocking(move || self.drain(inner));
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer stopped".into()))?
    }

    /// Writes round after round until nothing is queued.
    fn drain(self, inner: Arc<Inner>) {
        /// Should a round panic, a new writer takes over whatever is still
        /// queued (the round's own callers see the store unavailable).
        struct Writing<T: Send + 'static, R: Send + 'static>(GroupCommit<T, R>, Arc<Inner>);
        impl<T: Send + 'static, R: Send + 'static> Drop for Writing<T, R> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut q = self.0.lock(&self.1);
                    q.writing = false;
                    if !q.queued.is_empty() {
                        if let Ok(rt) = tokio::runtime::Handle::try_current() {
                            q.writing = true;
                            let (group, inner) = (self.0, Arc::clone(&self.1));
                            rt.spawn_blocking(move || group.drain(inner));
                        }
                    }
                }
            }
        }
        let _writing = Writing(self, Arc::clone(&inner));
        loop {
            let items = {
                let mut q = self.lock(&inner);
                if q.queued.is_empty() {
                    q.writing = false;
                    return;
                }
                std::mem::take(&mut q.queued)
            };
            let (work, replies): (Vec<T>, Vec<Reply<R>>) = items.into_iter().unzip();
            match inner.watch((self.commit)(&inner, work)) {
                Ok(answers) => {
                    for (reply, a) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(a));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(same_error(&e)));
                    }
                }
            }
        }
    }
}

impl Inner {
    /// The open database, reopened first if a write failed on I/O (a full
    /// disk that has room again, say).
    fn db(&self) -> Result<Arc<Database>> {
        use std::sync::atomic::Ordering;
        // A handle that saw an I/O error refuses reads too: reopen it, even
        // while the disk is still full (reads work again; a write that fails
        // marks it once more).
        if self.poisoned.swap(false, Ordering::AcqRel) {
            self.reopen();
        }
        match self.db.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
        .ok_or_else(|| StoreError::Unavailable("the store is being reopened".into()))
    }

    /// Marks the database for reopening when `result` failed on I/O.
    fn watch<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(StoreError::Unavailable(m)) = &result {
            if m.contains("I/O error") {
                self.poisoned
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }
        result
    }

    /// Takes the database handle out, leaving none (a poisoned lock too).
    fn take_db(&self) -> Option<Arc<Database>> {
        match self.db.write() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    /// Closes and opens the file again; readers still holding the old
    /// handle finish first (up to a second).
    fn reopen(&self) {
        if let Some(old) = self.take_db() {
            for _ in 0..100 {
                if Arc::strong_count(&old) == 1 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            drop(old);
        }
        let reopened = open_database(&self.path, self.page_cache).map(Arc::new);
        match &reopened {
            Ok(_) => {
                tracing::warn!(path = %self.path.display(), "store reopened after a write error")
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "store could not be reopened");
                self.poisoned
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }
        let mut g = match self.db.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = reopened.ok();
    }

    /// One round of event batches: one transaction, then the touched
    /// customers' cached records are dropped.
    fn commit_ingests(&self, batches: Vec<Vec<Event>>) -> Result<Vec<IngestOutcome>> {
        let mut ids: Vec<String> = batches
            .iter()
            .flatten()
            .map(|e| e.customer_id.as_str().to_owned())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let result = self.ingest_many(batches);
        for id in &ids {
            self.cache.invalidate(id);
        }
        result
    }

    /// Reservations in one transaction, each checked against the
    /// customer's profile and live reservations inside it; then the
    /// customers' cached records are dropped.
    fn reserve_many(&self, items: Vec<QueuedReservation>) -> Result<Vec<bool>> {
        let ids: Vec<CustomerId> = items.iter().map(|q| q.id.clone()).collect();
        let result = (|| {
            let txn = self.db()?.begin_write().map_err(StoreError::unavailable)?;
            let mut out = Vec::with_capacity(items.len());
            {
                let mut tables = ReserveTables {
                    profiles: txn.open_table(PROFILES).map_err(StoreError::unavailable)?,
                    reservations: txn
                        .open_table(RESERVATIONS)
                        .map_err(StoreError::unavailable)?,
                    decisions: txn.open_table(DECISIONS).map_err(StoreError::unavailable)?,
                };
                for q in items {
                    out.push(Self::reserve_in(
                        &mut tables,
                        &q.id,
                        q.reservation,
                        q.now,
                        &q.check,
                    )?);
                }
            }
            txn.commit().map_err(StoreError::unavailable)?;
            Ok(out)
        })();
        for id in &ids {
            self.cache.invalidate(id.as_str());
        }
        result
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `dir`.
    pub fn open(dir: &Path, ctx: StoreContext) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let page_cache = ctx.page_cache_mib.max(1) << 20;
        let db = open_database(&path, page_cache)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // Create every table up front so read transactions never miss one.
        let txn = db.begin_write().map_err(StoreError::unavailable)?;
        {
            txn.open_table(EVENTS).map_err(StoreError::unavailable)?;
            txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
            txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
            txn.open_table(MESSAGES).map_err(StoreError::unavailable)?;
            txn.open_table(RESERVATIONS)
                .map_err(StoreError::unavailable)?;
            txn.open_table(DECISIONS).map_err(StoreError::unavailable)?;
            txn.open_table(MODELS).map_err(StoreError::unavailable)?;
            txn.open_table(EXPERIMENTS)
                .map_err(StoreError::unavailable)?;
            txn.open_table(ASSIGNMENTS)
                .map_err(StoreError::unavailable)?;
            txn.open_table(EXP_COUNTS)
                .map_err(StoreError::unavailable)?;
        }
        txn.commit().map_err(StoreError::unavailable)?;
        let inner = Arc::new(Inner {
            db: RwLock::new(Some(Arc::new(db))),
            poisoned: std::sync::atomic::AtomicBool::new(false),
            default_tz: ctx.default_tz,
            profile: RwLock::new(ctx.profile),
            path,
            page_cache,
            reservations: Mutex::new(Queue::default()),
            ingests: Mutex::new(Queue::default()),
            cache: RecordCache::new(ctx.cache_customers),
        });
        Ok(Self {
            _closer: Arc::new(Closer(Arc::clone(&inner))),
            inner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Where `needle` occurs in the store: every table's keys and values are
    /// searched, and each hit is named "table: key". For erasure audits.
    pub fn audit(&self, needle: &[u8]) -> Result<Vec<String>> {
        fn scan<K: redb::Key + 'static, V: redb::Value + 'static>(
            txn: &redb::ReadTransaction,
            def: TableDefinition<K, V>,
            needle: &[u8],
            hits: &mut Vec<String>,
        ) -> Result<()>
        where
            for<'a> K::SelfType<'a>: std::fmt::Debug,
        {
            let table = txn.open_table(def).map_err(StoreError::unavailable)?;
            for entry in table.iter().map_err(StoreError::unavailable)? {
                let (k, v) = entry.map_err(StoreError::unavailable)?;
                let (kv, vv) = (k.value(), v.value());
                let (kb, vb) = (K::as_bytes(&kv), V::as_bytes(&vv));
                if contains(kb.as_ref(), needle) || contains(vb.as_ref(), needle) {
                    hits.push(format!(
                        "{}: {:?}",
                        redb::TableHandle::name(&def),
                        k.value()
                    ));
                }
            }
            Ok(())
        }
        fn contains(hay: &[u8], needle: &[u8]) -> bool {
            needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
        }
        let txn = self
            .inner
            .db()?
            .begin_read()
            .map_err(StoreError::unavailable)?;
        let mut hits = Vec::new();
        scan(&txn, EVENTS, needle, &mut hits)?;
        scan(&txn, CUSTOMERS, needle, &mut hits)?;
        scan(&txn, PROFILES, needle, &mut hits)?;
        scan(&txn, MESSAGES, needle, &mut hits)?;
        scan(&txn, RESERVATIONS, needle, &mut hits)?;
        scan(&txn, DECISIONS, needle, &mut hits)?;
        scan(&txn, MODELS, needle, &mut hits)?;
        scan(&txn, EXPERIMENTS, needle, &mut hits)?;
        scan(&txn, ASSIGNMENTS, needle, &mut hits)?;
        scan(&txn, EXP_COUNTS, needle, &mut hits)?;
        Ok(hits)
    }

    /// Stores `bytes` under `name` in a table of named blobs, durably.
    async fn put_named(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let name = name.to_owned();
        self.run(move |s| {
            let txn = s.db()?.begin_write().map_err(StoreError::unavailable)?;
            txn.open_table(table)
                .map_err(StoreError::unavailable)?
                .insert(name.as_str(), bytes.as_slice())
                .map_err(StoreError::unavailable)?;
            txn.commit().map_err(StoreError::unavailable)
        })
        .await
    }

    /// Runs blocking store work on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.watch(f(&inner)))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

fn decode_profile(bytes: &[u8]) -> Result<ProfileState> {
    postcard::from_bytes(bytes).map_err(StoreError::corrupt)
}

fn encode_profile(p: &ProfileState) -> Result<Vec<u8>> {
    postcard::to_stdvec(p).map_err(StoreError::corrupt)
}

fn decode_message(bytes: &[u8]) -> Result<MessageState> {
    postcard::from_bytes(bytes).map_err(StoreError::corrupt)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(StoreError::corrupt)
}

/// The least first key part above `customer` and all its extensions
/// (`customer` + NUL): a range of (customer, _) keys bounded by it on both
/// sides, so redb looks for the range's end next to its start rather than
/// at the far end of the table.
fn customer_end(customer: &str) -> String {
    let mut end = String::with_capacity(customer.len() + 1);
    end.push_str(customer);
    end.push('\0');
    end
}

/// Calls `visit` with the second key part and the value of each entry of
/// one customer in a byte-valued table keyed by (customer, _).
fn scan_customer<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    table: &T,
    customer: &str,
    mut visit: impl FnMut(&str, &[u8]) -> Result<()>,
) -> Result<()> {
    let next = customer_end(customer);
    for entry in table
        .range((customer, "")..(next.as_str(), ""))
        .map_err(StoreError::unavailable)?
    {
        let (k, v) = entry.map_err(StoreError::unavailable)?;
        let (c, rest) = k.value();
        if c != customer {
            break;
        }
        visit(rest, v.value())?;
    }
    Ok(())
}

/// The customer's stored reservations, each also given to `visit` as
/// stored (decision id, bytes), in key order.
fn reservations_read<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    table: &T,
    customer: &str,
    mut visit: impl FnMut(&str, &[u8]),
) -> Result<Vec<Reservation>> {
    let mut out = Vec::new();
    scan_customer(table, customer, |decision, v| {
        visit(decision, v);
        out.push(Reservation::decode(v)?);
        Ok(())
    })?;
    Ok(out)
}

fn decode_exposure(bytes: &[u8]) -> Result<Exposure> {
    postcard::from_bytes(bytes).map_err(StoreError::corrupt)
}

/// Adds to an arm's counts inside `txn`.
fn count(
    txn: &WriteTransaction,
    experiment: &str,
    arm: &str,
    exposures: u64,
    conversions: u64,
) -> Result<()> {
    let mut table = txn
        .open_table(EXP_COUNTS)
        .map_err(StoreError::unavailable)?;
    let mut c: ArmCounts = match table
        .get((experiment, arm))
        .map_err(StoreError::unavailable)?
    {
        Some(v) => postcard::from_bytes(v.value()).map_err(StoreError::corrupt)?,
        None => ArmCounts::default(),
    };
    c.exposures += exposures;
    c.conversions += conversions;
    table
        .insert((experiment, arm), encode(&c)?.as_slice())
        .map_err(StoreError::unavailable)?;
    Ok(())
}

fn decode_event(bytes: &[u8]) -> Result<Event> {
    serde_json::from_slice(bytes).map_err(StoreError::corrupt)
}

/// Opens (or creates) the database file with a page cache of `page_cache` bytes.
fn open_database(
    path: &Path,
    page_cache: usize,
) -> std::result::Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(page_cache).create(path)
}

/// Keys of one customer in a table keyed by (customer, _).
fn keys_of<T: ReadableTable<(&'static str, &'static str), V>, V: redb::Value + 'static>(
    table: &T,
    customer: &str,
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let next = customer_end(customer);
    for entry in table
        .range((customer, "")..(next.as_str(), ""))
        .map_err(StoreError::unavailable)?
    {
        let (k, _) = entry.map_err(StoreError::unavailable)?;
        let (c, rest) = k.value();
        if c != customer {
            break;
        }
        keys.push(rest.to_owned());
    }
    Ok(keys)
}

fn events_of<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    table: &T,
    customer: &str,
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    scan_customer(table, customer, |_, v| {
        events.push(decode_event(v)?);
        Ok(())
    })?;
    events.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
    Ok(events)
}

impl Inner {
    fn config(&self) -> ProfileConfig {
        match self.profile.read() {
            Ok(c) => *c,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Stores batches of events in one transaction, each batch counted on its own.
    fn ingest_many(&self, batches: Vec<Vec<Event>>) -> Result<Vec<IngestOutcome>> {
        let cfg = self.config();
        let mut outcomes = vec![IngestOutcome::default(); batches.len()];
        let txn = self.db()?.begin_write().map_err(StoreError::unavailable)?;
        {
            let mut ev_table = txn.open_table(EVENTS).map_err(StoreError::unavailable)?;
            let mut messages = txn.open_table(MESSAGES).map_err(StoreError::unavailable)?;
            let mut profiles = txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
            let customers = txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
            let mut reservations = txn
                .open_table(RESERVATIONS)
                .map_err(StoreError::unavailable)?;
            let mut touched: BTreeMap<String, (ProfileState, chrono_tz::Tz)> = BTreeMap::new();
            for (batch, event) in batches
                .iter()
                .enumerate()
                .flat_map(|(b, events)| events.iter().map(move |e| (b, e)))
            {
                let outcome = &mut outcomes[batch];
                let cid = event.customer_id.as_str();
                let key = (cid, event.event_id.as_str());
                if ev_table
                    .get(key)
                    .map_err(StoreError::unavailable)?
                    .is_some()
                {
                    outcome.duplicates += 1;
                    continue;
                }
                let json = serde_json::to_vec(event).map_err(StoreError::corrupt)?;
                ev_table
                    .insert(key, json.as_slice())
                    .map_err(StoreError::unavailable)?;
                if !touched.contains_key(cid) {
                    let profile = match profiles.get(cid).map_err(StoreError::unavailable)? {
                        Some(v) => decode_profile(v.value())?,
                        None => ProfileState::default(),
                    };
                    let attrs = match customers.get(cid).map_err(StoreError::unavailable)? {
                        Some(v) => Some(decode_customer(v.value())?),
                        None => None,
                    };
                    let tz = customer_tz(attrs.as_ref(), self.default_tz);
                    touched.insert(cid.to_owned(), (profile, tz));
                }
                let attribution = match (message_key(event), event.channel) {
                    (Some(mkey), Some(channel)) if concerns_attribution(event) => {
                        let mut state = match messages
                            .get((cid, mkey.as_str()))
                            .map_err(StoreError::unavailable)?
                        {
                            Some(v) => decode_message(v.value())?,
                            None => MessageState::default(),
                        };
                        let change = state.link(event, cfg.window(channel));
                        messages
                            .insert((cid, mkey.as_str()), encode(&state)?.as_slice())
                            .map_err(StoreError::unavailable)?;
                        change
                    }
                    _ => Attribution::None,
                };
                if let Some((profile, tz)) = touched.get_mut(cid) {
                    profile.observe(event, *tz, &cfg, attribution);
                }
                if let (kairos_core::EventType::MessageSent, Some(decision)) =
                    (event.kind, &event.decision_id)
                {
                    // The send is now counted from the event: its reservation has done its job.
                    reservations
                        .remove((cid, decision.as_str()))
                        .map_err(StoreError::unavailable)?;
                }
                outcome.accepted += 1;
            }
            for (cid, (profile, _)) in &touched {
                let bytes = encode_profile(profile)?;
                profiles
                    .insert(cid.as_str(), bytes.as_slice())
                    .map_err(StoreError::unavailable)?;
            }
        }
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(outcomes)
    }

    /// Recomputes one customer's profile and message states from their
    /// events, inside `txn`. Returns how many events there were.
    fn recompute(
        &self,
        txn: &WriteTransaction,
        cid: &str,
        tz: chrono_tz::Tz,
        cfg: &ProfileConfig,
    ) -> Result<usize> {
        let events = events_of(
            &txn.open_table(EVENTS).map_err(StoreError::unavailable)?,
            cid,
        )?;
        let mut profiles = txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
        let mut messages = txn.open_table(MESSAGES).map_err(StoreError::unavailable)?;
        for k in keys_of(&messages, cid)? {
            messages
                .remove((cid, k.as_str()))
                .map_err(StoreError::unavailable)?;
        }
        if events.is_empty() {
            profiles.remove(cid).map_err(StoreError::unavailable)?;
            return Ok(0);
        }
        let (profile, states) = ProfileState::from_events(&events, tz, cfg);
        profiles
            .insert(cid, encode_profile(&profile)?.as_slice())
            .map_err(StoreError::unavailable)?;
        for (k, state) in states {
            messages
                .insert((cid, k.as_str()), encode(&state)?.as_slice())
                .map_err(StoreError::unavailable)?;
        }
        Ok(events.len())
    }

    fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let txn = self.db()?.begin_write().map_err(StoreError::unavailable)?;
        let updated = self.merge_customer(&txn, id, patch, now)?;
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(updated)
    }

    fn put_customers(
        &self,
        patches: Vec<(CustomerId, CustomerPatch)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Customer>> {
        let txn = self.db()?.begin_write().map_err(StoreError::unavailable)?;
        let updated = patches
            .into_iter()
            .map(|(id, patch)| self.merge_customer(&txn, &id, patch, now))
            .collect::<Result<Vec<_>>>()?;
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(updated)
    }

    /// Merges `patch` into the customer inside `txn`, recomputing the
    /// profile when the time zone changes.
    fn merge_customer(
        &self,
        txn: &WriteTransaction,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let cid = id.as_str();
        {
            let mut customers = txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
            let current = match customers.get(cid).map_err(StoreError::unavailable)? {
                Some(v) => Some(decode_customer(v.value())?),
                None => None,
            };
            let old_tz = customer_tz(current.as_ref(), self.default_tz);
            let updated = patch.apply(id.clone(), current, now);
            let stored = crate::encode_customer(&updated)?;
            customers
                .insert(cid, stored.as_slice())
                .map_err(StoreError::unavailable)?;
            let new_tz = customer_tz(Some(&updated), self.default_tz);
            drop(customers);
            if new_tz != old_tz {
                let n = self.recompute(txn, cid, new_tz, &self.config())?;
                if n > 0 {
                    tracing::info!(customer_id = %id, events = n, timezone = %new_tz.name(), "profile recomputed for new time zone");
                }
            }
            Ok(updated)
        }
    }

    fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>> {
        Ok(self.customers(std::slice::from_ref(id))?.pop().flatten())
    }

    fn delete_customer(&self, id: &CustomerId) -> Result<bool> {
        let cid = id.as_str();
        let txn = self.db()?.begin_write().map_err(StoreError::unavailable)?;
        let mut found = false;
        {
            let mut events = txn.open_table(EVENTS).map_err(StoreError::unavailable)?;
            for k in keys_of(&events, cid)? {
                found |= events
                    .remove((cid, k.as_str()))
                    .map_err(StoreError::unavailable)?
                    .is_some();
            }
            let mut messages = txn.open_table(MESSAGES).map_err(StoreError::unavailable)?;
            for k in keys_of(&messages, cid)? {
                messages
                    .remove((cid, k.as_str()))
                    .map_err(StoreError::unavailable)?;
            }
            let mut reservations = txn
                .open_table(RESERVATIONS)
                .map_err(StoreError::unavailable)?;
            let mut decisions = txn.open_table(DECISIONS).map_err(StoreError::unavailable)?;
            for k in keys_of(&reservations, cid)? {
                found |= reservations
                    .remove((cid, k.as_str()))
                    .map_err(StoreError::unavailable)?
                    .is_some();
                decisions
                    .remove(k.as_str())
                    .map_err(StoreError::unavailable)?;
            }
            for table in [CUSTOMERS, PROFILES] {
                let mut t = txn.open_table(table).map_err(StoreError::unavailable)?;
                found |= t.remove(cid).map_err(StoreError::unavailable)?.is_some();
            }
            let mut assignments = txn
                .open_table(ASSIGNMENTS)
                .map_err(StoreError::unavailable)?;
            for k in keys_of(&assignments, cid)? {
                found |= assignments
                    .remove((cid, k.as_str()))
                    .map_err(StoreError::unavailable)?
                    .is_some();
            }
        }
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(found)
    }

    fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>> {
        let record = self.customer(id)?;
        let txn = self.db()?.begin_read().map_err(StoreError::unavailable)?;
        let events = events_of(
            &txn.open_table(EVENTS).map_err(StoreError::unavailable)?,
            id.as_str(),
        )?;
        let table = txn.open_table(MESSAGES).map_err(StoreError::unavailable)?;
        let mut messages = BTreeMap::new();
        scan_customer(&table, id.as_str(), |key, v| {
            messages.insert(key.to_owned(), decode_message(v)?);
            Ok(())
        })?;
        let table = txn
            .open_table(ASSIGNMENTS)
            .map_err(StoreError::unavailable)?;
        let mut assignments = BTreeMap::new();
        scan_customer(&table, id.as_str(), |key, v| {
            assignments.insert(key.to_owned(), decode_exposure(v)?);
            Ok(())
        })?;
        if record.is_none() && assignments.is_empty() {
            return Ok(None);
        }
        let record = record.unwrap_or_else(|| CustomerRecord {
            customer_id: id.clone(),
            attributes: None,
            profile: ProfileState::default(),
            reservations: Vec::new(),
            stored: None,
        });
        Ok(Some(CustomerExport {
            customer_id: record.customer_id,
            attributes: record.attributes,
            profile: record.profile,
            events,
            messages,
            reservations: record.reservations,
            assignments,
        }))
    }

    /// One reservation inside `txn` (see [`Store::reserve`]). A check that
    /// accepted the customer's state as read needs no second run while the
    /// stored bytes are the same.
    fn reserve_in(
        tables: &mut ReserveTables<'_>,
        id: &CustomerId,
        r: Reservation,
        now: DateTime<Utc>,
        check: &ReserveCheck,
    ) -> Result<bool> {
        let cid = id.as_str();
        let profile = tables.profiles.get(cid).map_err(StoreError::unavailable)?;
        let profile = profile.as_ref().map(|v| v.value());
        // The stored state is only compared when the check accepted one.
        let mut compare = check.accepted().map(|a| a.matching(profile));
        let held = reservations_read(&tables.reservations, cid, |decision, bytes| {
            if let Some(m) = &mut compare {
                m.reservation(decision, bytes);
            }
        })?;
        let unchanged = compare.is_some_and(MatchBytes::done);
        let mut live = Vec::new();
        for old in held {
            if old.holds(now) {
                live.push(old);
            } else {
                tables
                    .reservations
                    .remove((cid, old.decision_id.as_str()))
                    .map_err(StoreError::unavailable)?;
                tables
                    .decisions
                    .remove(old.decision_id.as_str())
                    .map_err(StoreError::unavailable)?;
            }
        }
        let accepted = unchanged || {
            let profile = match profile {
                Some(bytes) => decode_profile(bytes)?,
                None => ProfileState::default(),
            };
            check.accepts(&profile, &live)
        };
        if accepted {
            tables
                .reservations
                .insert((cid, r.decision_id.as_str()), r.encode()?.as_slice())
                .map_err(StoreError::unavailable)?;
            tables
                .decisions
                .insert(r.decision_id.as_str(), cid)
                .map_err(StoreError::unavailable)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn customers(&self, ids: &[CustomerId]) -> Result<Vec<Option<CustomerRecord>>> {
        let txn = self.db()?.begin_read().map_err(StoreError::unavailable)?;
        let customers = txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
        let profiles = txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
        let reservations = txn
            .open_table(RESERVATIONS)
            .map_err(StoreError::unavailable)?;
        ids.iter()
            .map(|id| {
                let attributes = match customers
                    .get(id.as_str())
                    .map_err(StoreError::unavailable)?
                {
                    Some(v) => Some(decode_customer(v.value())?),
                    None => None,
                };
                let profile_bytes = profiles.get(id.as_str()).map_err(StoreError::unavailable)?;
                let profile_bytes = profile_bytes.as_ref().map(|v| v.value());
                let profile = profile_bytes.map(decode_profile).transpose()?;
                let mut stored = StoredBytes::read(profile_bytes);
                let held = reservations_read(&reservations, id.as_str(), |decision, bytes| {
                    stored.reservation(decision, bytes);
                })?;
                let stored = Some(stored.done());
                // A customer known only by a planned send still exists:
                // decisions must see the room it holds.
                if attributes.is_none() && profile.is_none() && held.is_empty() {
                    return Ok(None);
                }
                Ok(Some(CustomerRecord {
                    customer_id: id.clone(),
                    attributes,
                    profile: profile.unwrap_or_default(),
                    reservations: held,
                    stored,
                }))
            })
            .collect()
    }

    fn reservation(&self, decision_id: &str) -> Result<Option<(CustomerId, Reservation)>> {
        let txn = self.db()?.begin_read().map_err(StoreError::unavailable)?;
        let decisions = txn.open_table(DECISIONS).map_err(StoreError::unavailable)?;
        let Some(cid) = decisions
            .get(decision_id)
            .map_err(StoreError::unavailable)?
            .map(|v| v.value().to_owned())
        else {
            return Ok(None);
        };
        let table = txn
            .open_table(RESERVATIONS)
            .map_err(StoreError::unavailable)?;
        let r = table
            .get((cid.as_str(), decision_id))
            .map_err(StoreError::unavailable)?;
        match r {
            Some(v) => Ok(Some((
                CustomerId::parse(cid).map_err(StoreError::corrupt)?,
                Reservation::decode(v.value())?,
            ))),
            None => Ok(None),
        }
    }

    /// Confirms or frees a reservation; answers whether it existed and whose it is.
    fn update_reservation(&self, decision_id: &str, send: bool) -> Result<(bool, Option<String>)> {
        let txn = self.db()?.begin_write().map_err(StoreError::unavailable)?;
        let mut customer = None;
        let found = {
            let mut decisions = txn.open_table(DECISIONS).map_err(StoreError::unavailable)?;
            let mut table = txn
                .open_table(RESERVATIONS)
                .map_err(StoreError::unavailable)?;
            let cid = decisions
                .get(decision_id)
                .map_err(StoreError::unavailable)?
                .map(|v| v.value().to_owned());
            let current = match &cid {
                Some(c) => table
                    .get((c.as_str(), decision_id))
                    .map_err(StoreError::unavailable)?
                    .map(|v| Reservation::decode(v.value()))
                    .transpose()?,
                None => None,
            };
            match (cid, current) {
                (Some(c), Some(mut r)) => {
                    customer = Some(c.clone());
                    if send {
                        r.confirmed = true;
                        table
                            .insert((c.as_str(), decision_id), r.encode()?.as_slice())
                            .map_err(StoreError::unavailable)?;
                    } else {
                        table
                            .remove((c.as_str(), decision_id))
                            .map_err(StoreError::unavailable)?;
                        decisions
                            .remove(decision_id)
                            .map_err(StoreError::unavailable)?;
                    }
                    true
                }
                _ => false,
            }
        };
        txn.commit().map_err(StoreError::unavailable)?;
        Ok((found, customer))
    }

    fn visit_histories(&self, mut visit: HistoryVisitor) -> Result<u64> {
        let txn = self.db()?.begin_read().map_err(StoreError::unavailable)?;
        let events = txn.open_table(EVENTS).map_err(StoreError::unavailable)?;
        let customers = txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
        let mut n = 0;
        let mut current: Option<(String, Vec<Event>)> = None;
        let mut flush = |cid: String, mut evs: Vec<Event>| -> Result<()> {
            evs.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
            let attributes = match customers
                .get(cid.as_str())
                .map_err(StoreError::unavailable)?
            {
                Some(v) => Some(decode_customer(v.value())?),
                None => None,
            };
            visit(CustomerHistory {
                customer_id: CustomerId::parse(cid).map_err(StoreError::corrupt)?,
                attributes,
                events: evs,
            });
            n += 1;
            Ok(())
        };
        for entry in events.iter().map_err(StoreError::unavailable)? {
            let (k, v) = entry.map_err(StoreError::unavailable)?;
            let cid = k.value().0;
            let event = decode_event(v.value())?;
            match current.as_mut() {
                Some((c, evs)) if c == cid => evs.push(event),
                _ => {
                    if let Some((c, evs)) = current.take() {
                        flush(c, evs)?;
                    }
                    current = Some((cid.to_owned(), vec![event]));
                }
            }
        }
        if let Some((c, evs)) = current.take() {
            flush(c, evs)?;
        }
        Ok(n)
    }

    fn set_config(&self, cfg: ProfileConfig) {
        match self.profile.write() {
            Ok(mut c) => *c = cfg,
            Err(poisoned) => *poisoned.into_inner() = cfg,
        }
    }

    fn rebuild_profiles(&self, cfg: ProfileConfig) -> Result<u64> {
        self.set_config(cfg);
        let ids: Vec<String> = {
            let txn = self.db()?.begin_read().map_err(StoreError::unavailable)?;
            let profiles = txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
            let mut ids = Vec::new();
            for entry in profiles.iter().map_err(StoreError::unavailable)? {
                ids.push(entry.map_err(StoreError::unavailable)?.0.value().to_owned());
            }
            ids
        };
        for chunk in ids.chunks(REBUILD_CHUNK) {
            let txn = self.db()?.begin_write().map_err(StoreError::unavailable)?;
            for cid in chunk {
                let attrs = match txn
                    .open_table(CUSTOMERS)
                    .map_err(StoreError::unavailable)?
                    .get(cid.as_str())
                    .map_err(StoreError::unavailable)?
                {
                    Some(v) => Some(decode_customer(v.value())?),
                    None => None,
                };
                let tz = customer_tz(attrs.as_ref(), self.default_tz);
                self.recompute(&txn, cid, tz, &cfg)?;
            }
            txn.commit().map_err(StoreError::unavailable)?;
        }
        Ok(ids.len() as u64)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    /// Batches arriving while another is being written are committed
    /// together, in one transaction and one fsync, each answered with its
    /// own counts once that transaction is durable.
    async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome> {
        INGESTS.submit(&self.inner, events).await
    }

    async fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let key = id.clone();
        let out = self.run(move |s| s.put_customer(&key, patch, now)).await;
        self.inner.cache.invalidate(id.as_str());
        out
    }

    async fn put_customers(
        &self,
        patches: Vec<(CustomerId, CustomerPatch)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Customer>> {
        let ids: Vec<CustomerId> = patches.iter().map(|(id, _)| id.clone()).collect();
        let out = self.run(move |s| s.put_customers(patches, now)).await;
        for id in &ids {
            self.inner.cache.invalidate(id.as_str());
        }
        out
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>> {
        let ticket = match self.inner.cache.get(id.as_str()) {
            Ok(record) => return Ok(Some(record)),
            Err(ticket) => ticket,
        };
        let key = id.clone();
        let record = self.run(move |s| s.customer(&key)).await?;
        if let Some(r) = &record {
            self.inner.cache.insert(ticket, r);
        }
        Ok(record)
    }

    async fn delete_customer(&self, id: &CustomerId) -> Result<bool> {
        let key = id.clone();
        let out = self.run(move |s| s.delete_customer(&key)).await;
        self.inner.cache.invalidate(id.as_str());
        out
    }

    async fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>> {
        let id = id.clone();
        self.run(move |s| s.export_customer(&id)).await
    }

    async fn visit_histories(&self, visit: HistoryVisitor) -> Result<u64> {
        self.run(move |s| s.visit_histories(visit)).await
    }

    async fn reserve(
        &self,
        id: &CustomerId,
        reservation: Reservation,
        now: DateTime<Utc>,
        check: ReserveCheck,
    ) -> Result<bool> {
        let item = QueuedReservation {
            id: id.clone(),
            reservation,
            now,
            check,
        };
        RESERVATIONS_QUEUE.submit(&self.inner, item).await
    }

    async fn customers(&self, ids: Vec<CustomerId>) -> Result<Vec<Option<CustomerRecord>>> {
        self.run(move |s| s.customers(&ids)).await
    }

    async fn reserve_many(
        &self,
        items: Vec<(CustomerId, Reservation, ReserveCheck)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        let items = items
            .into_iter()
            .map(|(id, reservation, check)| QueuedReservation {
                id,
                reservation,
                now,
                check,
            })
            .collect();
        self.run(move |s| s.reserve_many(items)).await
    }

    async fn reservation(&self, decision_id: &str) -> Result<Option<(CustomerId, Reservation)>> {
        let d = decision_id.to_owned();
        self.run(move |s| s.reservation(&d)).await
    }

    async fn update_reservation(&self, decision_id: &str, send: bool) -> Result<bool> {
        let d = decision_id.to_owned();
        let (found, customer) = self.run(move |s| s.update_reservation(&d, send)).await?;
        if let Some(c) = customer {
            self.inner.cache.invalidate(&c);
        }
        Ok(found)
    }

    fn profile_config(&self) -> ProfileConfig {
        self.inner.config()
    }

    fn set_profile_config(&self, config: ProfileConfig) {
        self.inner.set_config(config);
        self.inner.cache.clear();
    }

    async fn rebuild_profiles(&self, config: ProfileConfig) -> Result<u64> {
        let out = self.run(move |s| s.rebuild_profiles(config)).await;
        self.inner.cache.clear();
        out
    }

    async fn put_model(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.put_named(MODELS, name, bytes).await
    }

    async fn model(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.run(move |s| {
            let txn = s.db()?.begin_read().map_err(StoreError::unavailable)?;
            let t = txn.open_table(MODELS).map_err(StoreError::unavailable)?;
            let v = t.get(name.as_str()).map_err(StoreError::unavailable)?;
            Ok(v.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.run(|s| {
            let txn = s.db()?.begin_read().map_err(StoreError::unavailable)?;
            txn.open_table(MODELS).map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn put_experiment(&self, key: &str, definition: Vec<u8>) -> Result<()> {
        self.put_named(EXPERIMENTS, key, definition).await
    }

    async fn experiments(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.run(|s| {
            let txn = s.db()?.begin_read().map_err(StoreError::unavailable)?;
            let t = txn
                .open_table(EXPERIMENTS)
                .map_err(StoreError::unavailable)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(StoreError::unavailable)? {
                let (k, v) = entry.map_err(StoreError::unavailable)?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn expose(
        &self,
        id: &CustomerId,
        experiment: &str,
        proposed: Exposure,
    ) -> Result<(Exposure, bool)> {
        let (cid, exp) = (id.as_str().to_owned(), experiment.to_owned());
        self.run(move |s| {
            // Most calls find the exposure already there: a read, no writer lock.
            {
                let txn = s.db()?.begin_read().map_err(StoreError::unavailable)?;
                let t = txn
                    .open_table(ASSIGNMENTS)
                    .map_err(StoreError::unavailable)?;
                let v = t
                    .get((cid.as_str(), exp.as_str()))
                    .map_err(StoreError::unavailable)?;
                if let Some(v) = v {
                    return Ok((decode_exposure(v.value())?, false));
                }
            }
            let txn = s.db()?.begin_write().map_err(StoreError::unavailable)?;
            let existing = {
                let t = txn
                    .open_table(ASSIGNMENTS)
                    .map_err(StoreError::unavailable)?;
                let v = t
                    .get((cid.as_str(), exp.as_str()))
                    .map_err(StoreError::unavailable)?;
                v.map(|v| decode_exposure(v.value())).transpose()?
            };
            if let Some(e) = existing {
                return Ok((e, false));
            }
            txn.open_table(ASSIGNMENTS)
                .map_err(StoreError::unavailable)?
                .insert((cid.as_str(), exp.as_str()), encode(&proposed)?.as_slice())
                .map_err(StoreError::unavailable)?;
            for arm in proposed.arms() {
                count(&txn, &exp, &arm, 1, 0)?;
            }
            txn.commit().map_err(StoreError::unavailable)?;
            Ok((proposed, true))
        })
        .await
    }

    async fn convert(&self, conversions: Vec<Conversion>) -> Result<u64> {
        if conversions.is_empty() {
            return Ok(0);
        }
        self.run(move |s| {
            let txn = s.db()?.begin_write().map_err(StoreError::unavailable)?;
            let mut n = 0;
            for c in &conversions {
                let key = (c.customer.as_str(), c.experiment.as_str());
                let exposure = {
                    let t = txn
                        .open_table(ASSIGNMENTS)
                        .map_err(StoreError::unavailable)?;
                    let v = t.get(key).map_err(StoreError::unavailable)?;
                    v.map(|v| decode_exposure(v.value())).transpose()?
                };
                let Some(mut e) = exposure else { continue };
                if !converts(&e, c) {
                    continue;
                }
                e.converted_at = Some(c.at);
                txn.open_table(ASSIGNMENTS)
                    .map_err(StoreError::unavailable)?
                    .insert(key, encode(&e)?.as_slice())
                    .map_err(StoreError::unavailable)?;
                for arm in e.arms() {
                    count(&txn, &c.experiment, &arm, 0, 1)?;
                }
                n += 1;
            }
            txn.commit().map_err(StoreError::unavailable)?;
            Ok(n)
        })
        .await
    }

    async fn experiment_counts(&self, experiment: &str) -> Result<BTreeMap<String, ArmCounts>> {
        let exp = experiment.to_owned();
        self.run(move |s| {
            let txn = s.db()?.begin_read().map_err(StoreError::unavailable)?;
            let t = txn
                .open_table(EXP_COUNTS)
                .map_err(StoreError::unavailable)?;
            let mut out = BTreeMap::new();
            scan_customer(&t, &exp, |arm, v| {
                out.insert(
                    arm.to_owned(),
                    postcard::from_bytes(v).map_err(StoreError::corrupt)?,
                );
                Ok(())
            })?;
            Ok(out)
        })
        .await
    }
}
