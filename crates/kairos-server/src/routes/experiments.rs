//! Experiments: definitions, assignment with exposure, conversions from
//! ingested goal events, and results.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use kairos_core::{CustomerId, Event, EventType};
use kairos_experiments::stats::{self, Arm};
use kairos_experiments::{assign, bandit, ExperimentDef, Mode, Reason, SavedGroups};
use kairos_store::{Conversion, CustomerRecord, Exposure, StoreError, HOLDOUT_ARM};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::body::json_body;
use crate::config::Scope;
use crate::error::{ApiError, ErrorResponse};
use crate::openapi::{BodyErrors, KeyErrors, StoreErrors};
use crate::routes::customers::customer_id;
use crate::state::AppState;

/// How long definitions and bandit weights are reused before they are read
/// again (other replicas may have changed them).
const REFRESH: Duration = Duration::from_secs(1);

/// Every definition by key, shared.
pub type Definitions = Arc<BTreeMap<String, ExperimentDef>>;

/// Definitions and bandit weights, refreshed from the store.
#[derive(Debug, Default)]
pub struct Registry {
    defs: RwLock<Option<(Instant, Definitions)>>,
    weights: Mutex<HashMap<String, (Instant, Vec<f64>)>>,
}

impl Registry {
    pub fn forget(&self) {
        if let Ok(mut d) = self.defs.write() {
            *d = None;
        }
    }
}

fn not_found(key: &str) -> ApiError {
    ApiError::not_found(
        "experiment_not_found",
        format!("no experiment {key:?} is defined"),
    )
}

fn check_key(key: &str) -> Result<(), ApiError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_field",
            "key: must be 1-128 characters of letters, digits, '-', '_' and '.'",
        ))
    }
}

/// Checks a definition, the goal included.
pub fn check_def(def: &ExperimentDef) -> Result<(), ApiError> {
    def.check().map_err(|e| {
        ApiError::bad_request("invalid_field", e.to_string())
            .with_details(vec![json!({"field": e.field, "message": e.message})])
    })?;
    if serde_json::from_value::<EventType>(Value::String(def.goal.clone())).is_err() {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("goal: must be an event type: {}", names.join(", ")),
        ));
    }
    Ok(())
}

/// Every experiment definition, at most [`REFRESH`] old.
pub async fn definitions(state: &AppState) -> Result<Definitions, StoreError> {
    if let Ok(d) = state.experiments.defs.read() {
        if let Some((at, defs)) = d.as_ref() {
            if at.elapsed() < REFRESH {
                return Ok(Arc::clone(defs));
            }
        }
    }
    let mut defs = BTreeMap::new();
    for (key, bytes) in state.store.experiments().await? {
        match serde_json::from_slice::<ExperimentDef>(&bytes) {
            Ok(d) => {
                defs.insert(key, d);
            }
            Err(e) => tracing::warn!(experiment = key, error = %e, "stored experiment unreadable"),
        }
    }
    let defs = Arc::new(defs);
    if let Ok(mut d) = state.experiments.defs.write() {
        *d = Some((Instant::now(), Arc::clone(&defs)));
    }
    Ok(defs)
}

/// Arms in variant order, from the store's counts (within `context`, for a
/// contextual bandit).
async fn arms(
    state: &AppState,
    key: &str,
    def: &ExperimentDef,
    context: Option<&str>,
) -> Result<Vec<Arm>, StoreError> {
    let counts = state.store.experiment_counts(key).await?;
    Ok(arms_of(&counts, def, context))
}

/// Arms in variant order from counts already read.
fn arms_of(
    counts: &BTreeMap<String, kairos_store::ArmCounts>,
    def: &ExperimentDef,
    context: Option<&str>,
) -> Vec<Arm> {
    def.variants
        .iter()
        .map(|v| {
            let arm = match context {
                Some(c) => kairos_store::context_arm(&v.key, c),
                None => v.key.clone(),
            };
            let c = counts.get(&arm).copied().unwrap_or_default();
            Arm {
                exposures: c.exposures,
                conversions: c.conversions,
            }
        })
        .collect()
}

/// The bandit's current weights (Thompson sampling on the counts so far,
/// within `context` for a contextual bandit).
async fn bandit_weights(
    state: &AppState,
    key: &str,
    def: &ExperimentDef,
    context: Option<&str>,
) -> Result<Vec<f64>, StoreError> {
    let cache_key = match context {
        Some(c) => kairos_store::context_arm(key, c),
        None => key.to_owned(),
    };
    if let Ok(w) = state.experiments.weights.lock() {
        if let Some((at, weights)) = w.get(&cache_key) {
            if at.elapsed() < REFRESH {
                return Ok(weights.clone());
            }
        }
    }
    let arms = arms(state, key, def, context).await?;
    // Seeded by the counts: the same counts give the same weights on every replica.
    let seed = arms
        .iter()
        .fold(u64::from(kairos_experiments::hash::fnv1a32(key)), |s, a| {
            s.wrapping_mul(1_000_003) ^ (a.exposures << 20) ^ a.conversions
        });
    let weights = bandit::thompson_weights(&arms, def.min_weight, seed);
    if let Ok(mut w) = state.experiments.weights.lock() {
        w.insert(cache_key, (Instant::now(), weights.clone()));
    }
    Ok(weights)
}

/// What conditions see: the customer's traits and attributes, their learned
/// traits (`learned_traits.has_app`, `.email_open_mobile_share`,
/// `.category_affinity`), and the request's attributes (which win), with
/// `id` the customer id.
pub fn condition_attributes(
    id: &CustomerId,
    record: Option<CustomerRecord>,
    request: Option<&Map<String, Value>>,
) -> Value {
    let mut attrs = Map::new();
    if let Some(record) = record {
        if let Some(a) = &record.attributes {
            for (k, v) in &a.traits {
                attrs.insert(k.clone(), v.clone());
            }
            if let Some(tz) = &a.timezone {
                attrs.insert("timezone".into(), json!(tz));
            }
            if let Some(l) = &a.locale {
                attrs.insert("locale".into(), json!(l));
            }
        }
        let p = &record.profile;
        attrs.insert(
            "learned_traits".into(),
            json!({
                "has_app": p.has_app(),
                "email_open_mobile_share": p.email_open_mobile_share(),
                "category_affinity": p.category_affinity(),
            }),
        );
    }
    if let Some(req) = request {
        for (k, v) in req {
            attrs.insert(k.clone(), v.clone());
        }
    }
    attrs.insert("id".into(), json!(id.as_str()));
    Value::Object(attrs)
}

/// A contextual bandit's context: the attribute at `path` as text ("(none)" when missing).
fn context_value(attrs: &Value, path: &str) -> String {
    let v = path
        .split('.')
        .try_fold(attrs, |v, part| v.get(part))
        .unwrap_or(&Value::Null);
    match v {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AssignResponse {
    pub experiment: String,
    pub variant: Option<String>,
    pub in_experiment: bool,
    pub hash: f64,
    /// hashed | bandit | holdout | condition_failed | not_covered
    pub reason: String,
}

/// Assigns the customer (sticky) and records the exposure.
pub async fn assign_customer(
    state: &AppState,
    key: &str,
    id: &CustomerId,
    record: Option<CustomerRecord>,
    request_attributes: Option<&Map<String, Value>>,
    now: DateTime<Utc>,
) -> Result<AssignResponse, ApiError> {
    let defs = definitions(state).await?;
    let def = defs.get(key).ok_or_else(|| not_found(key))?;
    let segment = record.as_ref().and_then(|r| {
        crate::derived::derived_for(
            state,
            &state.models(),
            id,
            &r.profile,
            r.attributes.as_ref(),
            true,
        )
        .segment_id
        .clone()
    });
    let mut attrs = condition_attributes(id, record, request_attributes);
    if let (Some(s), Value::Object(m)) = (segment, &mut attrs) {
        m.entry("segment").or_insert(json!(s));
    }
    let context = def
        .context
        .as_deref()
        .map(|path| context_value(&attrs, path));
    let weights = match def.mode {
        Mode::Bandit => Some(bandit_weights(state, key, def, context.as_deref()).await?),
        Mode::Ab => None,
    };
    let a = assign(
        key,
        def,
        id.as_str(),
        &attrs,
        &SavedGroups::new(),
        weights.as_deref(),
    );
    let answer = |variant: Option<String>, hash: f64, reason: &str| AssignResponse {
        experiment: key.to_owned(),
        in_experiment: variant.is_some(),
        variant,
        hash,
        reason: reason.to_owned(),
    };
    if !(a.in_experiment || a.reason == Reason::Holdout) {
        return Ok(answer(None, a.hash, a.reason.as_str()));
    }
    let proposed = Exposure {
        variant: a.variant.map(|i| def.variants[i].key.clone()),
        reason: a.reason.as_str().to_owned(),
        hash: a.hash,
        exposed_at: now,
        converted_at: None,
        context,
    };
    let (stored, _new) = state.store.expose(id, key, proposed).await?;
    Ok(answer(stored.variant, stored.hash, &stored.reason))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub experiment: String,
    pub customer_id: String,
    /// Request-time attributes for the experiment's condition.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
}

/// Assign a variant (sticky) and record the exposure.
#[utoipa::path(post, path = "/v1/assign", tag = "experiments",
    request_body(content = AssignRequest),
    responses(
        (status = 200, description = "The variant, or why none", body = AssignResponse),
        (status = 400, description = "Invalid request", body = ErrorResponse),
        (status = 404, description = "No such experiment", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["decide"]), ()))]
pub async fn post_assign(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Decide)?;
    let body: AssignRequest = json_body(&req, payload, state.config.server()).await?;
    let id = customer_id(body.customer_id)?;
    let record = state.store.customer(&id).await?;
    let answer = assign_customer(
        &state,
        &body.experiment,
        &id,
        record,
        body.attributes.as_ref(),
        state.now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExperimentView {
    pub key: String,
    #[serde(flatten)]
    pub definition: ExperimentDef,
}

/// Define or change an experiment (assignments already made are kept).
#[utoipa::path(put, path = "/v1/experiments/{key}", tag = "experiments",
    params(("key" = String, Path, description = "Experiment key")),
    request_body(content = ExperimentDef),
    responses(
        (status = 200, description = "The stored definition", body = ExperimentView),
        (status = 400, description = "Invalid definition, the field named", body = ErrorResponse),
        KeyErrors, BodyErrors, StoreErrors,
    ),
    security(("api_key" = ["admin"]), ()))]
pub async fn put_experiment(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Admin)?;
    let key = path.into_inner();
    check_key(&key)?;
    let def: ExperimentDef = json_body(&req, payload, state.config.server()).await?;
    check_def(&def)?;
    let bytes = serde_json::to_vec(&def)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    state.store.put_experiment(&key, bytes).await?;
    state.experiments.forget();
    tracing::info!(experiment = key, "experiment defined");
    Ok(HttpResponse::Ok().json(ExperimentView {
        key,
        definition: def,
    }))
}

/// One experiment's definition.
#[utoipa::path(get, path = "/v1/experiments/{key}", tag = "experiments",
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, description = "The definition", body = ExperimentView),
        (status = 404, description = "No such experiment", body = ErrorResponse),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["read"]), ()))]
pub async fn get_experiment(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Read)?;
    let key = path.into_inner();
    state.experiments.forget();
    let defs = definitions(&state).await?;
    let def = defs.get(&key).ok_or_else(|| not_found(&key))?;
    Ok(HttpResponse::Ok().json(ExperimentView {
        key,
        definition: def.clone(),
    }))
}

/// Every experiment.
#[utoipa::path(get, path = "/v1/experiments", tag = "experiments",
    responses(
        (status = 200, description = "`{\"experiments\": [...]}`", body = Object),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["read"]), ()))]
pub async fn list_experiments(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Read)?;
    state.experiments.forget();
    let defs = definitions(&state).await?;
    let list: Vec<ExperimentView> = defs
        .iter()
        .map(|(k, d)| ExperimentView {
            key: k.clone(),
            definition: d.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "experiments": list })))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Uplift {
    pub mean: f64,
    pub ci: [f64; 2],
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VariantResult {
    pub variant: String,
    pub exposures: u64,
    pub conversions: u64,
    pub rate: f64,
    /// Against the first variant (absent for it, or without enough data).
    pub chance_to_win: Option<f64>,
    pub uplift: Option<Uplift>,
    /// Expected relative loss of choosing this variant.
    pub risk: Option<f64>,
    pub p_value: Option<f64>,
    pub ci: Option<[f64; 2]>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArmResult {
    pub exposures: u64,
    pub conversions: u64,
    pub rate: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultsResponse {
    pub experiment: String,
    pub mode: Mode,
    pub goal: String,
    pub variants: Vec<VariantResult>,
    /// The untreated baseline, when the experiment has a holdout.
    pub holdout: Option<ArmResult>,
    /// Chi-square test of the exposures against the configured weights (`ab` mode).
    pub srm_p_value: Option<f64>,
    /// The bandit's current weights.
    pub weights: Option<Vec<f64>>,
    /// A contextual bandit's weights per context value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_by_context: Option<BTreeMap<String, Vec<f64>>>,
}

/// Per-variant results against the first variant, as gbstats computes them.
#[utoipa::path(get, path = "/v1/experiments/{key}/results", tag = "experiments",
    params(("key" = String, Path, description = "Experiment key")),
    responses(
        (status = 200, description = "Results", body = ResultsResponse),
        (status = 404, description = "No such experiment", body = ErrorResponse),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["read"]), ()))]
pub async fn results(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::authorize(&req, &state, Scope::Read)?;
    let key = path.into_inner();
    let defs = definitions(&state).await?;
    let def = defs.get(&key).ok_or_else(|| not_found(&key))?;
    let counts = state.store.experiment_counts(&key).await?;
    let arms = arms_of(&counts, def, None);
    let control = arms.first().copied().unwrap_or(Arm {
        exposures: 0,
        conversions: 0,
    });
    let variants = def
        .variants
        .iter()
        .zip(&arms)
        .enumerate()
        .map(|(i, (v, arm))| {
            let c = (i > 0).then(|| stats::compare(control, *arm)).flatten();
            VariantResult {
                variant: v.key.clone(),
                exposures: arm.exposures,
                conversions: arm.conversions,
                rate: arm.rate(),
                chance_to_win: c.map(|c| c.chance_to_win),
                uplift: c.map(|c| Uplift {
                    mean: c.uplift_mean,
                    ci: [c.uplift_ci.0, c.uplift_ci.1],
                }),
                risk: c.map(|c| c.risk),
                p_value: c.map(|c| c.p_value),
                ci: c.map(|c| [c.ci.0, c.ci.1]),
            }
        })
        .collect();
    let holdout = counts.get(HOLDOUT_ARM).map(|h| ArmResult {
        exposures: h.exposures,
        conversions: h.conversions,
        rate: Arm {
            exposures: h.exposures,
            conversions: h.conversions,
        }
        .rate(),
    });
    let observed: Vec<u64> = arms.iter().map(|a| a.exposures).collect();
    let (srm_p_value, weights) = match def.mode {
        Mode::Ab => (stats::srm_p_value(&observed, &def.weights()), None),
        Mode::Bandit => (None, Some(bandit_weights(&state, &key, def, None).await?)),
    };
    let weights_by_context = match def.context {
        Some(_) => {
            let contexts: std::collections::BTreeSet<String> = counts
                .keys()
                .filter_map(|k| k.split_once('@').map(|(_, c)| c.to_owned()))
                .collect();
            let mut by = BTreeMap::new();
            for c in contexts {
                let w = bandit_weights(&state, &key, def, Some(&c)).await?;
                by.insert(c, w);
            }
            Some(by)
        }
        None => None,
    };
    Ok(HttpResponse::Ok().json(ResultsResponse {
        experiment: key,
        mode: def.mode,
        goal: def.goal.clone(),
        variants,
        holdout,
        srm_p_value,
        weights,
        weights_by_context,
    }))
}

/// Attributes stored goal events to the experiments whose goal they are.
pub async fn record_conversions(state: &AppState, events: &[Event]) -> Result<u64, StoreError> {
    let defs = definitions(state).await?;
    if defs.is_empty() {
        return Ok(0);
    }
    let mut by_goal: HashMap<&str, Vec<(&String, &ExperimentDef)>> = HashMap::new();
    for (k, d) in defs.iter() {
        by_goal.entry(d.goal.as_str()).or_default().push((k, d));
    }
    let mut conversions = Vec::new();
    for e in events {
        for (k, d) in by_goal.get(e.kind.as_str()).into_iter().flatten() {
            conversions.push(Conversion {
                customer: e.customer_id.clone(),
                experiment: (*k).clone(),
                at: e.timestamp,
                window: chrono::Duration::seconds((d.attribution_hours * 3600.0) as i64),
            });
        }
    }
    let n = state.store.convert(conversions).await?;
    if n > 0 {
        // Bandits see conversions at once.
        if let Ok(mut w) = state.experiments.weights.lock() {
            w.clear();
        }
    }
    Ok(n)
}

/// Stores the experiments of `dir` (`<key>.toml`) at start.
pub async fn load_dir(
    store: &dyn kairos_store::Store,
    dir: &std::path::Path,
) -> Result<usize, String> {
    let mut n = 0;
    for (key, path, text) in crate::config::toml_files(dir)? {
        let def: ExperimentDef =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        check_key(&key).map_err(|e| format!("{}: {}", path.display(), e.message))?;
        check_def(&def).map_err(|e| format!("{}: {}", path.display(), e.message))?;
        let bytes = serde_json::to_vec(&def).map_err(|e| e.to_string())?;
        store
            .put_experiment(&key, bytes)
            .await
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}
