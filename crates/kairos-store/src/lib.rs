//! Kairos storage: the [`Store`] trait every backend implements, and the
//! embedded backend (redb) that `kairos serve` uses by default.
//!
//! A store keeps, per customer: their attributes, every accepted event (which
//! is also the idempotency record, keyed by customer and event id), the
//! learned profile state, and which messages they already responded to. It
//! also keeps trained models shared by every server using it.
//!
//! Ingest is atomic and durable: a batch is one transaction, committed and
//! fsynced before the call returns, and the profile update happens in the same
//! transaction as the events it reflects.

mod cache;
#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod error;
#[cfg(feature = "conformance")]
pub mod redis_harness;
mod redis_store;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kairos_core::{instant_serde, Customer, CustomerId, CustomerPatch, Event};
use kairos_learn::{ProfileConfig, ProfileState};
use serde::Serialize;

pub use embedded::EmbeddedStore;
pub use error::{Result, StoreError};
pub use redis_store::{RedisStore, RedisTarget};

/// What every backend needs to know to maintain profiles.
#[derive(Debug, Clone)]
pub struct StoreContext {
    /// Decay and attribution of the online profile update.
    pub profile: ProfileConfig,
    /// Zone used for customers whose own zone is unknown.
    pub default_tz: Tz,
    /// Customer records kept in memory in front of the embedded store (0: none).
    pub cache_customers: usize,
    /// The embedded store's page cache, in MiB (at least 1). The record
    /// cache holds what is in use and a campaign reads each customer's pages
    /// once, so a large page cache mostly holds memory (PERFORMANCE.md).
    pub page_cache_mib: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub duplicates: u64,
}

/// A planned send: a `send` decision holds room under the frequency caps
/// until it is confirmed and reported, refused, or its deadline passes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reservation {
    pub decision_id: String,
    pub channel: kairos_core::Channel,
    #[serde(with = "instant_serde::one")]
    pub send_at: DateTime<Utc>,
    #[serde(with = "instant_serde::one")]
    pub deadline: DateTime<Utc>,
    #[serde(with = "instant_serde::one")]
    pub created_at: DateTime<Utc>,
    pub confirmed: bool,
    #[serde(with = "instant_serde::option")]
    pub cancel_if_active_after: Option<DateTime<Utc>>,
}

/// The first byte of a stored [`Reservation`] with numeric instants. One
/// stored before (instants as text) starts with its decision id's length,
/// never 0: a decision id is never empty.
const RESERVATION_NUMERIC: u8 = 0;

/// A reservation stored with its instants as text, as read back.
#[derive(serde::Deserialize)]
struct TextReservation {
    decision_id: String,
    channel: kairos_core::Channel,
    send_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
    created_at: DateTime<Utc>,
    confirmed: bool,
    cancel_if_active_after: Option<DateTime<Utc>>,
}

impl Reservation {
    /// Whether it still holds room at `now`: confirmed ones until a week after
    /// their send (by then no cap can count them), others until the deadline.
    pub fn holds(&self, now: DateTime<Utc>) -> bool {
        if self.confirmed {
            now <= self.send_at + chrono::Duration::days(8)
        } else {
            now <= self.deadline
        }
    }

    /// The stored form, the same in every backend.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_extend(self, vec![RESERVATION_NUMERIC]).map_err(StoreError::corrupt)
    }

    /// Reads [`Self::encode`]'s form, or the one stored before it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((&RESERVATION_NUMERIC, rest)) => {
                postcard::from_bytes(rest).map_err(StoreError::corrupt)
            }
            _ => {
                let r: TextReservation =
                    postcard::from_bytes(bytes).map_err(StoreError::corrupt)?;
                Ok(Self {
                    decision_id: r.decision_id,
                    channel: r.channel,
                    send_at: r.send_at,
                    deadline: r.deadline,
                    created_at: r.created_at,
                    confirmed: r.confirmed,
                    cancel_if_active_after: r.cancel_if_active_after,
                })
            }
        }
    }
}

/// The first byte of a customer's attributes in their binary form.
/// Attributes stored before as JSON start with `{`.
const CUSTOMER_BINARY: u8 = 1;

/// A customer's attributes as stored: instants as numbers, channels by
/// [`kairos_core::Channel::index`], traits as their JSON text (empty when
/// there are none). Every decision reads these; parsing them from JSON,
/// seven RFC 3339 instants among them, was a twentieth of a campaign's CPU.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCustomer {
    customer_id: String,
    timezone: Option<String>,
    locale: Option<String>,
    channels: Vec<StoredChannel>,
    traits: String,
    #[serde(with = "instant_serde::one")]
    created_at: DateTime<Utc>,
    #[serde(with = "instant_serde::one")]
    updated_at: DateTime<Utc>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredChannel {
    channel: u8,
    reachable: Option<bool>,
    consent: Option<bool>,
    #[serde(with = "instant_serde::option")]
    consent_updated_at: Option<DateTime<Utc>>,
}

/// A customer's attributes in their stored form, the same in every backend.
pub(crate) fn encode_customer(c: &Customer) -> Result<Vec<u8>> {
    let stored = StoredCustomer {
        customer_id: c.customer_id.to_string(),
        timezone: c.timezone.clone(),
        locale: c.locale.clone(),
        channels: c
            .channels
            .iter()
            .map(|(ch, p)| StoredChannel {
                channel: ch.index() as u8,
                reachable: p.reachable,
                consent: p.consent,
                consent_updated_at: p.consent_updated_at,
            })
            .collect(),
        traits: if c.traits.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&c.traits).map_err(StoreError::corrupt)?
        },
        created_at: c.created_at,
        updated_at: c.updated_at,
    };
    postcard::to_extend(&stored, vec![CUSTOMER_BINARY]).map_err(StoreError::corrupt)
}

/// Reads [`encode_customer`]'s form, or the JSON stored before it.
pub(crate) fn decode_customer(bytes: &[u8]) -> Result<Customer> {
    let Some((&CUSTOMER_BINARY, rest)) = bytes.split_first() else {
        return serde_json::from_slice(bytes).map_err(StoreError::corrupt);
    };
    let s: StoredCustomer = postcard::from_bytes(rest).map_err(StoreError::corrupt)?;
    let channels = s
        .channels
        .into_iter()
        .map(|c| {
            let channel = kairos_core::Channel::ALL
                .get(usize::from(c.channel))
                .copied()
                .ok_or_else(|| StoreError::corrupt(format!("channel index {}", c.channel)))?;
            let prefs = kairos_core::ChannelPrefs {
                reachable: c.reachable,
                consent: c.consent,
                consent_updated_at: c.consent_updated_at,
            };
            Ok((channel, prefs))
        })
        .collect::<Result<_>>()?;
    Ok(Customer {
        customer_id: CustomerId::parse(s.customer_id).map_err(StoreError::corrupt)?,
        timezone: s.timezone,
        locale: s.locale,
        channels,
        traits: if s.traits.is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(&s.traits).map_err(StoreError::corrupt)?
        },
        created_at: s.created_at,
        updated_at: s.updated_at,
    })
}

/// A customer's exposure to an experiment: stored at the first assignment
/// and kept (sticky), with the conversion once it is attributed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exposure {
    /// The variant's key; `None` for the holdout (the untreated baseline).
    pub variant: Option<String>,
    /// Why: "hashed", "bandit" or "holdout".
    pub reason: String,
    pub hash: f64,
    pub exposed_at: DateTime<Utc>,
    pub converted_at: Option<DateTime<Utc>>,
    /// A contextual bandit's context value: also counted under `variant@context`.
    pub context: Option<String>,
}

/// The counts arm name of the holdout.
pub const HOLDOUT_ARM: &str = "(holdout)";

impl Exposure {
    /// The arm it counts under.
    pub fn arm(&self) -> &str {
        self.variant.as_deref().unwrap_or(HOLDOUT_ARM)
    }

    /// Every arm it counts under: its arm, and its arm in its context.
    pub fn arms(&self) -> Vec<String> {
        let mut arms = vec![self.arm().to_owned()];
        if let Some(c) = &self.context {
            arms.push(context_arm(self.arm(), c));
        }
        arms
    }
}

/// The counts arm of `arm` within a contextual bandit's `context` value.
pub fn context_arm(arm: &str, context: &str) -> String {
    format!("{arm}@{context}")
}

impl Exposure {}

/// Exposures and conversions of one arm of an experiment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArmCounts {
    pub exposures: u64,
    pub conversions: u64,
}

/// A goal event to attribute: the customer, the experiment, when, and the
/// experiment's attribution window.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub customer: CustomerId,
    pub experiment: String,
    pub at: DateTime<Utc>,
    pub window: chrono::Duration,
}

type CheckFn = dyn Fn(&ProfileState, &[Reservation]) -> bool + Send + Sync;

/// Checks, inside the write transaction, whether a reservation still fits the
/// customer's current profile and live reservations.
/// It may run more than once (a backend retries when another writer came first).
pub struct ReserveCheck {
    check: Box<CheckFn>,
    accepted: Option<StoredBytes>,
}

impl ReserveCheck {
    pub fn new(
        check: impl Fn(&ProfileState, &[Reservation]) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            check: Box::new(check),
            accepted: None,
        }
    }

    /// Says that the check accepts the record read as `read` (its profile,
    /// and its reservations that hold room at the reservation's `now`). A
    /// backend that finds the customer's stored bytes still exactly `read`
    /// stores the reservation without running the check again: its answer
    /// is a function of those bytes.
    pub fn accepting(mut self, read: StoredBytes) -> Self {
        self.accepted = Some(read);
        self
    }

    /// The stored bytes the check is known to accept, if any.
    pub fn accepted(&self) -> Option<&StoredBytes> {
        self.accepted.as_ref()
    }

    /// Runs the check; one that panics refuses.
    pub fn accepts(&self, profile: &ProfileState, live: &[Reservation]) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.check)(profile, live)))
            .unwrap_or(false)
    }
}

impl fmt::Debug for ReserveCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReserveCheck")
            .field("accepted", &self.accepted.is_some())
            .finish_non_exhaustive()
    }
}

/// A customer's profile and reservations exactly as a backend stored them
/// when it read them (the embedded store's bytes, with their lengths): two
/// reads are of the same state exactly when their bytes are equal.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredBytes(std::sync::Arc<Vec<u8>>);

impl StoredBytes {
    /// Starts with the profile's stored bytes (`None`: no profile); add each
    /// stored reservation in key order with [`ReadBytes::reservation`].
    pub(crate) fn read(profile: Option<&[u8]>) -> ReadBytes {
        let mut out = ReadBytes(Vec::with_capacity(profile.map_or(0, <[u8]>::len) + 16));
        out.0.push(u8::from(profile.is_some()));
        out.part(profile.unwrap_or_default());
        out
    }
}

impl StoredBytes {
    /// Compares a state being read (the profile's stored bytes here, each
    /// stored reservation with [`MatchBytes::reservation`]) with these
    /// bytes, part by part, without copying it.
    pub(crate) fn matching(&self, profile: Option<&[u8]>) -> MatchBytes<'_> {
        let mut m = MatchBytes {
            rest: &self.0,
            same: true,
        };
        m.take(&[u8::from(profile.is_some())]);
        m.part(profile.unwrap_or_default());
        m
    }
}

/// A state being compared with [`StoredBytes`]: what [`ReadBytes`] would
/// write, checked against what is there.
pub(crate) struct MatchBytes<'a> {
    rest: &'a [u8],
    same: bool,
}

impl MatchBytes<'_> {
    fn take(&mut self, bytes: &[u8]) {
        match self.rest.strip_prefix(bytes) {
            Some(rest) if self.same => self.rest = rest,
            _ => self.same = false,
        }
    }

    fn part(&mut self, bytes: &[u8]) {
        self.take(&(bytes.len() as u64).to_le_bytes());
        self.take(bytes);
    }

    /// A stored reservation: its decision id and its bytes.
    pub(crate) fn reservation(&mut self, decision: &str, bytes: &[u8]) {
        self.part(decision.as_bytes());
        self.part(bytes);
    }

    /// Whether the state read is exactly the stored bytes.
    pub(crate) fn done(self) -> bool {
        self.same && self.rest.is_empty()
    }
}

/// [`StoredBytes`] being read.
pub(crate) struct ReadBytes(Vec<u8>);

impl ReadBytes {
    fn part(&mut self, bytes: &[u8]) {
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
    }

    /// A stored reservation: its decision id and its bytes.
    pub(crate) fn reservation(&mut self, decision: &str, bytes: &[u8]) {
        self.part(decision.as_bytes());
        self.part(bytes);
    }

    pub(crate) fn done(self) -> StoredBytes {
        StoredBytes(std::sync::Arc::new(self.0))
    }
}

impl fmt::Debug for StoredBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredBytes({} bytes)", self.0.len())
    }
}

/// A customer as stored: attributes if the client set any, the profile if
/// any event arrived, and the reservations that still hold room.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRecord {
    pub customer_id: CustomerId,
    pub attributes: Option<Customer>,
    pub profile: ProfileState,
    pub reservations: Vec<Reservation>,
    /// The profile and reservations as stored, where the backend keeps them
    /// as bytes (the embedded store): see [`ReserveCheck::accepting`].
    pub stored: Option<StoredBytes>,
}

/// Everything stored about one customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerExport {
    pub customer_id: CustomerId,
    pub attributes: Option<Customer>,
    pub profile: ProfileState,
    /// Every stored event, oldest first.
    pub events: Vec<Event>,
    /// Attribution state of the customer's messages, by "channel:message_id".
    pub messages: std::collections::BTreeMap<String, kairos_learn::MessageState>,
    pub reservations: Vec<Reservation>,
    /// Experiment exposures, by experiment key.
    pub assignments: std::collections::BTreeMap<String, Exposure>,
}

/// One customer's whole history, for training.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerHistory {
    pub customer_id: CustomerId,
    pub attributes: Option<Customer>,
    /// Every stored event, oldest first.
    pub events: Vec<Event>,
}

/// Called once per customer with events by [`Store::visit_histories`].
pub type HistoryVisitor = Box<dyn FnMut(CustomerHistory) + Send>;

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Stores a batch of validated events atomically and durably, once per
    /// (customer, event id) forever, and updates the customers' profiles.
    async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome>;

    /// Merges attributes into a customer, creating it if needed. A change of
    /// time zone recomputes the profile from the stored events.
    async fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer>;

    /// [`Store::put_customer`] for many customers, in order: a customer named
    /// twice gets both patches, the later over the earlier. Answers each
    /// customer's attributes as they stood after its patch. Every patch is
    /// durable once this returns. The embedded store writes them all in one
    /// transaction; Redis writes each customer's on its own, several
    /// customers at once, so an error may leave some customers updated.
    async fn put_customers(
        &self,
        patches: Vec<(CustomerId, CustomerPatch)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Customer>>;

    /// The customer, or `None` if nothing at all is stored for them (with
    /// every stored reservation: see [`Reservation::holds`]).
    async fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>>;

    /// Many customers in one read: `None` where nothing is stored.
    async fn customers(&self, ids: Vec<CustomerId>) -> Result<Vec<Option<CustomerRecord>>>;

    /// [`Store::reserve`] for many reservations in one write transaction, in
    /// order (a check sees the reservations stored before it in the batch).
    async fn reserve_many(
        &self,
        items: Vec<(CustomerId, Reservation, ReserveCheck)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>>;

    /// Stores `reservation` if `check` (run inside the write transaction on
    /// the customer's current profile and live reservations) accepts it, so
    /// two concurrent decisions cannot both take the last place under a cap.
    /// Reservations that no longer hold room are dropped. True if stored.
    async fn reserve(
        &self,
        id: &CustomerId,
        reservation: Reservation,
        now: DateTime<Utc>,
        check: ReserveCheck,
    ) -> Result<bool>;

    /// The customer and reservation of a decision, if it is still held.
    async fn reservation(&self, decision_id: &str) -> Result<Option<(CustomerId, Reservation)>>;

    /// Marks a decision's reservation confirmed (`send`) or frees it. False if
    /// there is no such reservation.
    async fn update_reservation(&self, decision_id: &str, send: bool) -> Result<bool>;

    /// Erases every trace of the customer. True if anything was stored.
    async fn delete_customer(&self, id: &CustomerId) -> Result<bool>;

    /// Everything stored about the customer.
    async fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>>;

    /// Calls `visit` with every customer's history; returns how many.
    async fn visit_histories(&self, visit: HistoryVisitor) -> Result<u64>;

    /// The profile update from now on (decay, attribution).
    fn profile_config(&self) -> ProfileConfig;

    /// Uses `config` for new events without recomputing stored profiles (for
    /// profiles already computed with it).
    fn set_profile_config(&self, config: ProfileConfig);

    /// Uses `config` for every profile from now on, recomputing each stored
    /// profile from its events (a few customers per transaction, so ingest
    /// goes on meanwhile). Returns how many profiles were recomputed.
    async fn rebuild_profiles(&self, config: ProfileConfig) -> Result<u64>;

    /// Stores a named model artifact shared by every server on this store.
    async fn put_model(&self, name: &str, bytes: Vec<u8>) -> Result<()>;

    async fn model(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Succeeds when the store can serve reads and writes.
    async fn ping(&self) -> Result<()>;

    /// Stores an experiment definition (JSON), shared by every server.
    async fn put_experiment(&self, key: &str, definition: Vec<u8>) -> Result<()>;

    /// Every stored experiment definition, by key.
    async fn experiments(&self) -> Result<Vec<(String, Vec<u8>)>>;

    /// The customer's exposure to `experiment`: the stored one if there is
    /// one (sticky), else `proposed`, stored and counted. True when new.
    async fn expose(
        &self,
        id: &CustomerId,
        experiment: &str,
        proposed: Exposure,
    ) -> Result<(Exposure, bool)>;

    /// Attributes goal events: an exposed customer converts once, if the
    /// event falls within the window after the exposure. Returns how many
    /// conversions were new.
    async fn convert(&self, conversions: Vec<Conversion>) -> Result<u64>;

    /// Exposures and conversions per arm (variant key, or [`HOLDOUT_ARM`]).
    async fn experiment_counts(
        &self,
        experiment: &str,
    ) -> Result<std::collections::BTreeMap<String, ArmCounts>>;
}

/// Whether `c` converts an exposure `e`: not yet converted, and within the
/// window after it.
pub fn converts(e: &Exposure, c: &Conversion) -> bool {
    e.converted_at.is_none() && c.at >= e.exposed_at && c.at <= e.exposed_at + c.window
}

/// The zone a customer's local times are computed in.
pub fn customer_tz(attributes: Option<&Customer>, default: Tz) -> Tz {
    attributes
        .and_then(|c| c.timezone.as_deref())
        .and_then(|name| name.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    type State<'a> = (Option<&'a [u8]>, Vec<(&'a str, &'a [u8])>);

    fn stored(state: &State<'_>) -> StoredBytes {
        let mut read = StoredBytes::read(state.0);
        for (d, b) in &state.1 {
            read.reservation(d, b);
        }
        read.done()
    }

    fn matches(bytes: &StoredBytes, state: &State<'_>) -> bool {
        let mut m = bytes.matching(state.0);
        for (d, b) in &state.1 {
            m.reservation(d, b);
        }
        m.done()
    }

    /// Comparing in place says what comparing two reads says: equal
    /// exactly when every part is, lengths included.
    #[test]
    fn matching_in_place_is_equality_of_reads() {
        let states: Vec<State<'_>> = vec![
            (None, vec![]),
            (Some(b""), vec![]),
            (Some(b"profile"), vec![]),
            (Some(b"profilf"), vec![]),
            (Some(b"profile!"), vec![]),
            (Some(b"profile"), vec![("d1", b"r1")]),
            (Some(b"profile"), vec![("d1", b"r2")]),
            (Some(b"profile"), vec![("d2", b"r1")]),
            (Some(b"profile"), vec![("d1", b"r1"), ("d2", b"r2")]),
            (Some(b"profile"), vec![("d1r", b"1")]),
            (Some(b"profiled1"), vec![]),
            (None, vec![("d1", b"r1")]),
        ];
        for a in &states {
            let bytes = stored(a);
            for b in &states {
                assert_eq!(
                    matches(&bytes, b),
                    bytes == stored(b),
                    "{a:?} against {b:?}"
                );
                assert_eq!(matches(&bytes, b), a == b, "{a:?} against {b:?}");
            }
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn reservation() -> Reservation {
        Reservation {
            decision_id: "0193b5e2-7c1a-7000-8000-000000000001".into(),
            channel: kairos_core::Channel::Push,
            send_at: at("2026-03-02T20:30:00Z"),
            deadline: at("2026-03-03T00:00:00Z"),
            created_at: at("2026-03-02T09:00:00.123456Z"),
            confirmed: false,
            cancel_if_active_after: Some(at("2026-03-02T09:00:00.123456Z")),
        }
    }

    fn customer() -> Customer {
        let prefs = |reachable, consent, at: Option<&str>| kairos_core::ChannelPrefs {
            reachable,
            consent,
            consent_updated_at: at.map(self::at),
        };
        Customer {
            customer_id: CustomerId::parse("c-ü 42").unwrap_or_else(|e| panic!("{e}")),
            timezone: Some("Asia/Kathmandu".into()),
            locale: Some("ne-NP".into()),
            channels: [
                (kairos_core::Channel::Email, prefs(Some(true), Some(true), Some("2026-03-01T08:00:00.5Z"))),
                (kairos_core::Channel::Push, prefs(Some(false), None, None)),
                (kairos_core::Channel::Web, prefs(None, Some(false), Some("1969-12-31T23:59:59.999999999Z"))),
            ]
            .into_iter()
            .collect(),
            traits: serde_json::json!({"plan": "gold", "nested": {"a": [1, 2.5, null]}, "": "empty key"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            created_at: at("2026-03-01T08:00:00.123456789Z"),
            updated_at: at("2026-03-02T09:00:00Z"),
        }
    }

    #[test]
    fn customers_round_trip_in_binary_and_smaller_than_json() {
        for c in [
            customer(),
            Customer {
                timezone: None,
                locale: None,
                channels: Default::default(),
                traits: Default::default(),
                ..customer()
            },
        ] {
            let bytes = encode_customer(&c).unwrap_or_default();
            assert_eq!(bytes[0], CUSTOMER_BINARY);
            assert_eq!(decode_customer(&bytes).ok(), Some(c.clone()));
            let json = serde_json::to_vec(&c).unwrap_or_default();
            assert!(
                bytes.len() * 2 < json.len(),
                "{} against {}",
                bytes.len(),
                json.len()
            );
        }
        assert!(decode_customer(&[CUSTOMER_BINARY, 0xff]).is_err());
    }

    #[test]
    fn customers_stored_as_json_still_read() {
        let c = customer();
        let json = serde_json::to_vec(&c).unwrap_or_default();
        assert_eq!(json[0], b'{');
        assert_eq!(decode_customer(&json).ok(), Some(c));
    }

    #[test]
    fn reservations_round_trip_and_store_instants_as_numbers() {
        let r = reservation();
        let bytes = r.encode().unwrap_or_default();
        assert_eq!(bytes[0], RESERVATION_NUMERIC);
        assert_eq!(Reservation::decode(&bytes).ok(), Some(r));
        // As text, the four instants alone take over 80 bytes.
        assert!(bytes.len() < 80, "{} bytes", bytes.len());
    }

    #[test]
    fn reservations_stored_with_text_instants_still_read() {
        // The form stored before: the same fields in order (postcard writes
        // a struct as the tuple of its fields), chrono's text instants.
        let r = reservation();
        let old = postcard::to_stdvec(&(
            &r.decision_id,
            r.channel,
            r.send_at,
            r.deadline,
            r.created_at,
            r.confirmed,
            r.cancel_if_active_after,
        ))
        .unwrap_or_default();
        assert_ne!(old[0], RESERVATION_NUMERIC);
        assert_eq!(Reservation::decode(&old).ok(), Some(r));
        assert!(Reservation::decode(&[RESERVATION_NUMERIC, 1, 2]).is_err());
    }
}
