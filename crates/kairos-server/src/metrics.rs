//! `GET /metrics` in the Prometheus text format: requests and their latency
//! by route template, decisions by action, basis, channel and suppression
//! reason, ingest counts, store latency by operation, the model in use.
//!
//! Counters live in memory behind one mutex per family; a scrape renders
//! them. Labels never carry customer ids, keys or anything a client sent
//! beyond the route template.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kairos_core::{Customer, CustomerId, CustomerPatch, Event};
use kairos_learn::{ModelBundle, ProfileConfig};
use kairos_store::{
    ArmCounts, Conversion, CustomerExport, CustomerRecord, Exposure, HistoryVisitor, IngestOutcome,
    Reservation, ReserveCheck, Result, Store,
};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, n) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// A decision as counted: action, basis, channel ("none" when suppressed),
/// suppression reason ("none" when sent), degraded.
pub type DecisionLabels = (&'static str, &'static str, &'static str, &'static str, bool);

#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route template, status) -> requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route template -> latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    decisions: Mutex<BTreeMap<DecisionLabels, u64>>,
    /// outcome ("accepted", "duplicate", "rejected") -> events.
    ingested: Mutex<BTreeMap<&'static str, u64>>,
    /// (operation, ok) -> latency.
    store: Mutex<BTreeMap<(&'static str, bool), Histogram>>,
    rate_limited: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A label value as Prometheus needs it quoted.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        *lock(&self.requests)
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_owned())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    pub fn decision(&self, labels: DecisionLabels) {
        *lock(&self.decisions).entry(labels).or_default() += 1;
    }

    pub fn ingest(&self, accepted: u64, duplicates: u64, rejected: u64) {
        let mut m = lock(&self.ingested);
        *m.entry("accepted").or_default() += accepted;
        *m.entry("duplicate").or_default() += duplicates;
        *m.entry("rejected").or_default() += rejected;
    }

    pub fn rate_limited(&self) {
        *lock(&self.rate_limited) += 1;
    }

    fn store_call(&self, op: &'static str, ok: bool, elapsed: Duration) {
        lock(&self.store)
            .entry((op, ok))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self, model: &ModelBundle) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP kairos_http_requests_total HTTP requests by method, route template and status.\n");
        out.push_str("# TYPE kairos_http_requests_total counter\n");
        for ((method, route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "kairos_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        out.push_str(
            "# HELP kairos_http_request_duration_seconds Time to answer, by route template.\n",
        );
        out.push_str("# TYPE kairos_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            h.render(
                &mut out,
                "kairos_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        out.push_str("# HELP kairos_decisions_total Decisions by action, basis, channel and suppression reason.\n");
        out.push_str("# TYPE kairos_decisions_total counter\n");
        for ((action, basis, channel, reason, degraded), n) in lock(&self.decisions).iter() {
            let _ = writeln!(
                out,
                "kairos_decisions_total{{action=\"{action}\",basis=\"{basis}\",channel=\"{channel}\",suppression=\"{reason}\",degraded=\"{degraded}\"}} {n}"
            );
        }
        out.push_str("# HELP kairos_events_ingested_total Events received, by outcome.\n");
        out.push_str("# TYPE kairos_events_ingested_total counter\n");
        for (outcome, n) in lock(&self.ingested).iter() {
            let _ = writeln!(
                out,
                "kairos_events_ingested_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP kairos_store_operation_duration_seconds Store calls by operation and result.\n",
        );
        out.push_str("# TYPE kairos_store_operation_duration_seconds histogram\n");
        for ((op, ok), h) in lock(&self.store).iter() {
            let result = if *ok { "ok" } else { "error" };
            h.render(
                &mut out,
                "kairos_store_operation_duration_seconds",
                &format!("operation=\"{op}\",result=\"{result}\""),
            );
        }
        out.push_str("# HELP kairos_rate_limited_total Requests refused with 429.\n");
        out.push_str("# TYPE kairos_rate_limited_total counter\n");
        let _ = writeln!(
            out,
            "kairos_rate_limited_total {}",
            *lock(&self.rate_limited)
        );
        out.push_str("# HELP kairos_model_info The model decisions are made with.\n");
        out.push_str("# TYPE kairos_model_info gauge\n");
        let _ = writeln!(
            out,
            "kairos_model_info{{version=\"{}\",trained=\"{}\"}} 1",
            escape(&model.manifest.version),
            model.activity.is_trained()
        );
        if let Some(at) = model.manifest.trained_at {
            out.push_str("# TYPE kairos_model_trained_timestamp_seconds gauge\n");
            let _ = writeln!(
                out,
                "kairos_model_trained_timestamp_seconds {}",
                at.timestamp()
            );
        }
        out
    }
}

/// A store that times every call into [`Metrics`].
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let out = call.await;
        self.metrics.store_call(op, out.is_ok(), started.elapsed());
        out
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome> {
        self.timed("ingest", self.inner.ingest(events)).await
    }

    async fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        self.timed("put_customer", self.inner.put_customer(id, patch, now))
            .await
    }

    async fn put_customers(
        &self,
        patches: Vec<(CustomerId, CustomerPatch)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Customer>> {
        self.timed("put_customers", self.inner.put_customers(patches, now))
            .await
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>> {
        self.timed("customer", self.inner.customer(id)).await
    }

    async fn customers(&self, ids: Vec<CustomerId>) -> Result<Vec<Option<CustomerRecord>>> {
        self.timed("customers", self.inner.customers(ids)).await
    }

    async fn reserve_many(
        &self,
        items: Vec<(CustomerId, Reservation, ReserveCheck)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        self.timed("reserve_many", self.inner.reserve_many(items, now))
            .await
    }

    async fn reserve(
        &self,
        id: &CustomerId,
        reservation: Reservation,
        now: DateTime<Utc>,
        check: ReserveCheck,
    ) -> Result<bool> {
        self.timed("reserve", self.inner.reserve(id, reservation, now, check))
            .await
    }

    async fn reservation(&self, decision_id: &str) -> Result<Option<(CustomerId, Reservation)>> {
        self.timed("reservation", self.inner.reservation(decision_id))
            .await
    }

    async fn update_reservation(&self, decision_id: &str, send: bool) -> Result<bool> {
        self.timed(
            "update_reservation",
            self.inner.update_reservation(decision_id, send),
        )
        .await
    }

    async fn delete_customer(&self, id: &CustomerId) -> Result<bool> {
        self.timed("delete_customer", self.inner.delete_customer(id))
            .await
    }

    async fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>> {
        self.timed("export_customer", self.inner.export_customer(id))
            .await
    }

    async fn visit_histories(&self, visit: HistoryVisitor) -> Result<u64> {
        self.timed("visit_histories", self.inner.visit_histories(visit))
            .await
    }

    fn profile_config(&self) -> ProfileConfig {
        self.inner.profile_config()
    }

    fn set_profile_config(&self, config: ProfileConfig) {
        self.inner.set_profile_config(config);
    }

    async fn rebuild_profiles(&self, config: ProfileConfig) -> Result<u64> {
        self.timed("rebuild_profiles", self.inner.rebuild_profiles(config))
            .await
    }

    async fn put_model(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.timed("put_model", self.inner.put_model(name, bytes))
            .await
    }

    async fn model(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.timed("model", self.inner.model(name)).await
    }

    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn put_experiment(&self, key: &str, definition: Vec<u8>) -> Result<()> {
        self.timed("put_experiment", self.inner.put_experiment(key, definition))
            .await
    }

    async fn experiments(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.timed("experiments", self.inner.experiments()).await
    }

    async fn expose(
        &self,
        id: &CustomerId,
        experiment: &str,
        proposed: Exposure,
    ) -> Result<(Exposure, bool)> {
        self.timed("expose", self.inner.expose(id, experiment, proposed))
            .await
    }

    async fn convert(&self, conversions: Vec<Conversion>) -> Result<u64> {
        self.timed("convert", self.inner.convert(conversions)).await
    }

    async fn experiment_counts(
        &self,
        experiment: &str,
    ) -> Result<std::collections::BTreeMap<String, ArmCounts>> {
        self.timed(
            "experiment_counts",
            self.inner.experiment_counts(experiment),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.003);
        h.observe(0.3);
        let mut out = String::new();
        h.render(&mut out, "x", "route=\"/r\"");
        assert!(
            out.contains("x_bucket{route=\"/r\",le=\"0.0025\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{route=\"/r\",le=\"0.005\"} 1"),
            "{out}"
        );
        assert!(out.contains("x_bucket{route=\"/r\",le=\"0.5\"} 2"), "{out}");
        assert!(
            out.contains("x_bucket{route=\"/r\",le=\"+Inf\"} 2"),
            "{out}"
        );
        assert!(out.contains("x_count{route=\"/r\"} 2"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
