//! What every handler shares.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use kairos_learn::{ModelBundle, ProfileConfig, PROFILE_LAYOUT};
use kairos_store::{EmbeddedStore, RedisStore, Store, StoreContext};
use serde::{Deserialize, Serialize};

use crate::config::ValidConfig;

/// Where "now" comes from; tests pin it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The current model bundle among the store's models.
pub const CURRENT_MODEL: &str = "current";
/// The profile configuration and layout every stored profile was last
/// computed with ([`ProfilesMarker`]).
pub const PROFILES_MARKER: &str = "profiles";

/// What the stored profiles were computed with. Stores keep profiles in
/// postcard, which keeps no field names: a profile written with other fields
/// ([`PROFILE_LAYOUT`]) does not read back, and is recomputed from its events.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProfilesMarker {
    pub config: ProfileConfig,
    pub layout: u32,
}

/// The model shipped with Kairos: trained on real check-in data (see models/default).
pub const BUILTIN_MODEL: &str = include_str!("../../../models/default/model.json");

pub struct AppState {
    pub config: ValidConfig,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    models: RwLock<Arc<ModelBundle>>,
    /// Per-customer posteriors and prefix sums, derived from stored profiles.
    pub(crate) derived: crate::derived::DerivedCache,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub(crate) limiter: crate::auth::RateLimiter,
    pub(crate) experiments: crate::routes::experiments::Registry,
    /// Pages of `layouts.dir`, by name.
    pub(crate) layouts: std::collections::BTreeMap<String, crate::routes::layouts::PageDef>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] kairos_store::StoreError),
    #[error("the {0} model is invalid: {1}")]
    Model(&'static str, String),
    #[error("experiment file {0}")]
    Experiments(String),
    #[error("layout file {0}")]
    Layouts(String),
}

/// The profile update a model implies: its half-life, the configured attribution.
pub fn profile_config(config: &ValidConfig, bundle: &ModelBundle) -> ProfileConfig {
    ProfileConfig {
        half_life_days: bundle.activity.params.half_life_days,
        ..config.learn.profile
    }
}

impl AppState {
    /// Opens the configured store and loads the models it holds.
    pub async fn open(config: ValidConfig) -> Result<Self, StartError> {
        let ctx = StoreContext {
            profile: config.learn.profile,
            default_tz: config.decide.default_tz,
            cache_customers: config.raw.store.cache_customers,
            page_cache_mib: config.raw.store.page_cache_mib,
        };
        let store: Arc<dyn Store> = match config.raw.store.redis_target() {
            None => Arc::new(EmbeddedStore::open(&config.raw.store.path, ctx)?),
            Some(target) => Arc::new(RedisStore::connect(target, ctx).await?),
        };
        Self::with_store(config, store, Arc::new(Utc::now)).await
    }

    /// State over an open store: the store's model, else the built-in one (if
    /// configured), else an untrained one; stored profiles are brought in line
    /// with the model's decay.
    pub async fn with_store(
        config: ValidConfig,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let bundle = match store.model(CURRENT_MODEL).await? {
            Some(bytes) => ModelBundle::from_json(&bytes)
                .map_err(|e| StartError::Model("stored", e.to_string()))?,
            None if config.raw.models.builtin => {
                ModelBundle::from_json(BUILTIN_MODEL.as_bytes())
                    .map_err(|e| StartError::Model("built-in", e.to_string()))?
            }
            None => ModelBundle::untrained(config.learn.activity, config.learn.channel_prior),
        };
        let derived = crate::derived::DerivedCache::new(config.raw.store.cache_customers);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let store: Arc<dyn Store> = Arc::new(crate::metrics::InstrumentedStore::new(
            store,
            Arc::clone(&metrics),
        ));
        let limiter = crate::auth::RateLimiter::new(&config);
        let layouts =
            crate::routes::layouts::load(&config.raw.layouts.dir).map_err(StartError::Layouts)?;
        let state = Self {
            config,
            store,
            clock,
            models: RwLock::new(Arc::new(bundle)),
            derived,
            metrics,
            limiter,
            experiments: Default::default(),
            layouts,
        };
        let n =
            crate::routes::experiments::load_dir(&*state.store, &state.config.raw.experiments.dir)
                .await
                .map_err(StartError::Experiments)?;
        if n > 0 {
            tracing::info!(experiments = n, "experiments loaded from files");
        }
        state.align_profiles().await?;
        Ok(state)
    }

    /// Recomputes stored profiles if they were computed with another decay or
    /// attribution than the current model needs, or stored in another layout
    /// (or a recomputation was cut short).
    pub async fn align_profiles(&self) -> Result<(), kairos_store::StoreError> {
        let needed = profile_config(&self.config, &self.models());
        let marker = ProfilesMarker {
            config: needed,
            layout: PROFILE_LAYOUT,
        };
        let applied: Option<ProfilesMarker> = self
            .store
            .model(PROFILES_MARKER)
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok());
        if applied != Some(marker) {
            let n = self.store.rebuild_profiles(needed).await?;
            tracing::info!(
                profiles = n,
                half_life_days = needed.half_life_days,
                layout = PROFILE_LAYOUT,
                "profiles recomputed for the current model"
            );
            let marker = serde_json::to_vec(&marker).unwrap_or_default();
            self.store.put_model(PROFILES_MARKER, marker).await?;
        } else {
            self.store.set_profile_config(needed);
        }
        Ok(())
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    pub fn models(&self) -> Arc<ModelBundle> {
        match self.models.read() {
            Ok(m) => Arc::clone(&m),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set_models(&self, bundle: ModelBundle) {
        let bundle = Arc::new(bundle);
        match self.models.write() {
            Ok(mut guard) => *guard = bundle,
            Err(poisoned) => *poisoned.into_inner() = bundle,
        }
    }
}
