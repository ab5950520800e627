//! What every handler shares.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use kairos_learn::Population;
use kairos_store::{EmbeddedStore, Store, StoreContext};

use crate::config::{Backend, ValidConfig};

/// Where "now" comes from; tests pin it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Name of the population prior among the store's models.
pub const POPULATION_MODEL: &str = "population";

pub struct AppState {
    pub config: ValidConfig,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    population: RwLock<Arc<Population>>,
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
    #[error("the stored population model is invalid: {0}")]
    Model(String),
}

impl AppState {
    /// Opens the configured store and loads the models it holds.
    pub async fn open(config: ValidConfig) -> Result<Self, StartError> {
        let ctx = StoreContext {
            learn: config.learn.clone(),
            default_tz: config.decide.default_tz,
        };
        let store: Arc<dyn Store> = match config.raw.store.backend {
            Backend::Embedded => Arc::new(EmbeddedStore::open(&config.raw.store.path, ctx)?),
        };
        Self::with_store(config, store, Arc::new(Utc::now)).await
    }

    pub async fn with_store(
        config: ValidConfig,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let population = match store.model(POPULATION_MODEL).await? {
            Some(bytes) => serde_json::from_slice::<Population>(&bytes)
                .map_err(|e| StartError::Model(e.to_string()))?
                .validate()
                .map_err(|e| StartError::Model(e.to_string()))?,
            None => Population::uniform(),
        };
        Ok(Self {
            config,
            store,
            clock,
            population: RwLock::new(Arc::new(population)),
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    pub fn population(&self) -> Arc<Population> {
        match self.population.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set_population(&self, p: Population) {
        let p = Arc::new(p);
        match self.population.write() {
            Ok(mut guard) => *guard = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
    }
}
