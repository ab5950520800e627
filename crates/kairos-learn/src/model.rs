//! The trained models as one versioned artifact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::{ActivityModel, ActivityParams};
use crate::channel::{BetaPrior, ChannelPriors};
use crate::fit::FitReport;
use crate::response::{Calibration, ResponseModel};
use crate::{LearnError, Result};

/// Artifact format this code reads and writes.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSize {
    pub customers: u64,
    pub events: u64,
    pub activities: u64,
    pub sends: u64,
}

/// What a model is, what it was trained on, and how well it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Increases with every training run on a store ("untrained" before any).
    pub version: String,
    pub trained_at: Option<DateTime<Utc>>,
    /// Where the training data came from.
    pub source: String,
    pub data: DataSize,
    /// Held-out metrics of the activity model, when trained.
    pub activity: Option<FitReport>,
    /// Held-out calibration of the response model, when there is one.
    #[serde(default)]
    pub response: Option<Calibration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBundle {
    pub manifest: Manifest,
    pub activity: ActivityModel,
    pub channels: ChannelPriors,
    /// Absent until there are enough logged sends with outcomes.
    #[serde(default)]
    pub response: Option<ResponseModel>,
}

impl ModelBundle {
    /// Before any training: flat population, no segments, fallback channel priors.
    pub fn untrained(params: ActivityParams, channel_prior: BetaPrior) -> Self {
        Self {
            manifest: Manifest {
                format: FORMAT,
                version: "untrained".into(),
                trained_at: None,
                source: "configuration".into(),
                data: DataSize::default(),
                activity: None,
                response: None,
            },
            activity: ActivityModel::untrained(params),
            channels: ChannelPriors::uniform(channel_prior),
            response: None,
        }
    }

    /// Parses and checks a stored artifact.
    ///
    /// A response model over another feature set (from an older Kairos) is
    /// left out: decisions use the lift formula until the next training
    /// fits one over the current features.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let mut bundle: Self =
            serde_json::from_slice(bytes).map_err(|e| LearnError::InvalidModel(e.to_string()))?;
        if bundle
            .response
            .as_ref()
            .is_some_and(|r| !r.features.iter().eq(crate::response::FEATURES.iter()))
        {
            bundle.response = None;
            bundle.manifest.response = None;
        }
        bundle.validate()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn validate(mut self) -> Result<Self> {
        if self.manifest.format != FORMAT {
            return Err(LearnError::InvalidModel(format!(
                "model format {} is not {FORMAT}, the one this Kairos reads",
                self.manifest.format
            )));
        }
        self.activity = self.activity.validate()?;
        if let Some(r) = &self.response {
            r.validate()?;
        }
        if self.channels.priors.len() != 5
            || self
                .channels
                .priors
                .iter()
                .any(|p| !(p.alpha > 0.0 && p.beta > 0.0))
        {
            return Err(LearnError::InvalidModel(
                "channel priors must be 5 positive Beta priors".into(),
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::FEATURES;

    /// A stored bundle whose response model has another feature set still
    /// loads, without the response model; one with the current set keeps it.
    #[test]
    fn an_outdated_response_model_is_left_out() {
        let n = FEATURES.len();
        let response = |features: Vec<String>| ResponseModel {
            mean: vec![0.0; features.len()],
            scale: vec![1.0; features.len()],
            weights: vec![0.1; features.len()],
            features,
            intercept: -1.0,
            window_quarters: [16, 4, 4, 96, 96],
            calibration: Calibration {
                train_sends: 1,
                ..Calibration::default()
            },
            hour_terms_from: Vec::new(),
            exposure: None,
        };
        let mut bundle =
            ModelBundle::untrained(ActivityParams::default(), BetaPrior::from_mean(0.1, 4.0));
        bundle.response = Some(response(FEATURES.iter().map(|f| f.to_string()).collect()));
        let loaded = ModelBundle::from_json(&bundle.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.response.is_some());

        let older: Vec<String> = FEATURES[..n - 1].iter().map(|f| f.to_string()).collect();
        bundle.response = Some(response(older));
        bundle.manifest.response = bundle.response.as_ref().map(|r| r.calibration.clone());
        let loaded = ModelBundle::from_json(&bundle.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.response, None);
        assert_eq!(loaded.manifest.response, None);
        assert_eq!(loaded.activity, bundle.activity);
    }

    /// A stored exposure form loads with its floors; a floor outside (0, 1]
    /// is refused.
    #[test]
    fn exposure_floors_are_checked_on_load() {
        use crate::exposure::Exposure;
        let n = FEATURES.len();
        let mut response = ResponseModel {
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            mean: vec![0.0; n],
            scale: vec![1.0; n],
            weights: vec![0.0; n],
            intercept: -1.0,
            window_quarters: [16, 4, 4, 96, 96],
            calibration: Calibration::default(),
            hour_terms_from: Vec::new(),
            exposure: Some(Exposure {
                floor: [0.2, 0.1, 0.1, 0.5, 0.5],
                rate_prior: [None; 5],
                rate_counts: Default::default(),
                sends_at_typical: false,
                calibration: Calibration::default(),
            }),
        };
        let mut bundle =
            ModelBundle::untrained(ActivityParams::default(), BetaPrior::from_mean(0.1, 4.0));
        bundle.response = Some(response.clone());
        let loaded = ModelBundle::from_json(&bundle.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.response, bundle.response);
        if let Some(e) = response.exposure.as_mut() {
            e.floor[2] = 0.0;
        }
        bundle.response = Some(response);
        assert!(ModelBundle::from_json(&bundle.to_json()).is_err());
    }
}
