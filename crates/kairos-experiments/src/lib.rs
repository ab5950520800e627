//! Kairos experiments, with no IO: experiment definitions and their checks,
//! assignment exactly as the GrowthBook SDKs assign (`hash`), targeting
//! conditions in GrowthBook's syntax (`condition`), Thompson-sampling
//! bandits (`bandit`) and results as GrowthBook's stats engine computes
//! them (`stats`).

pub mod bandit;
pub mod condition;
pub mod hash;
pub mod stats;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use condition::{eval_condition, SavedGroups};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Fixed weights, hashed as GrowthBook hashes.
    #[default]
    Ab,
    /// Weights follow the conversions (Thompson sampling).
    Bandit,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    pub key: String,
    /// Share of traffic; all variants give one or none does (equal weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

fn default_hash_version() -> u32 {
    2
}
fn one() -> f64 {
    1.0
}
fn default_attribution_hours() -> f64 {
    72.0
}
fn default_min_weight() -> f64 {
    0.01
}

/// An experiment as clients define it (`PUT /v1/experiments/{key}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentDef {
    pub variants: Vec<VariantDef>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_hash_version")]
    pub hash_version: u32,
    /// Hash seed; default the experiment's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    #[serde(default = "one")]
    pub coverage: f64,
    /// A GrowthBook condition over request attributes, customer attributes
    /// and learned traits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub condition: Option<Value>,
    /// Share of customers kept out as the untreated baseline.
    #[serde(default)]
    pub holdout: f64,
    /// The event type that counts as a conversion.
    pub goal: String,
    #[serde(default = "default_attribution_hours")]
    pub attribution_hours: f64,
    /// Bandit mode: the least share any arm gets.
    #[serde(default = "default_min_weight")]
    pub min_weight: f64,
    /// Bandit mode: learn separate weights per value of this attribute
    /// (a contextual bandit), e.g. `segment` or a trait such as `plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// A rule an experiment definition breaks: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DefError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> DefError {
    DefError {
        field: field.into(),
        message: message.into(),
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Hashed => "hashed",
            Reason::Bandit => "bandit",
            Reason::Holdout => "holdout",
            Reason::ConditionFailed => "condition_failed",
            Reason::NotCovered => "not_covered",
            Reason::Sticky => "sticky",
        }
    }
}

impl ExperimentDef {
    /// Every rule of a definition but the goal's name (the caller knows the
    /// event types).
    pub fn check(&self) -> Result<(), DefError> {
        let n = self.variants.len();
        if !(2..=100).contains(&n) {
            return Err(bad("variants", "must list 2 to 100 variants"));
        }
        let mut keys = std::collections::HashSet::new();
        for (i, v) in self.variants.iter().enumerate() {
            if v.key.is_empty() || v.key.len() > 128 {
                return Err(bad(&format!("variants[{i}].key"), "must be 1-128 bytes"));
            }
            if !keys.insert(v.key.as_str()) {
                return Err(bad(
                    &format!("variants[{i}].key"),
                    format!("{:?} appears twice", v.key),
                ));
            }
            if let Some(w) = v.weight {
                if !(0.0..=1.0).contains(&w) {
                    return Err(bad(&format!("variants[{i}].weight"), "must be in [0, 1]"));
                }
            }
        }
        let given = self.variants.iter().filter(|v| v.weight.is_some()).count();
        if given != 0 && given != n {
            return Err(bad(
                "variants",
                "give every variant a weight, or none (equal weights)",
            ));
        }
        if given == n {
            let total: f64 = self.variants.iter().filter_map(|v| v.weight).sum();
            if !(0.99..=1.01).contains(&total) {
                return Err(bad(
                    "variants",
                    format!("weights must sum to 1, not {total}"),
                ));
            }
        }
        if !matches!(self.hash_version, 1 | 2) {
            return Err(bad("hash_version", "must be 1 or 2"));
        }
        if !(0.0..=1.0).contains(&self.coverage) {
            return Err(bad("coverage", "must be in [0, 1]"));
        }
        if !(0.0..1.0).contains(&self.holdout) {
            return Err(bad("holdout", "must be in [0, 1)"));
        }
        if !(self.attribution_hours > 0.0 && self.attribution_hours <= 24.0 * 365.0) {
            return Err(bad("attribution_hours", "must be in (0, 8760]"));
        }
        if !(0.0..=0.5).contains(&self.min_weight) || self.min_weight * n as f64 > 1.0 {
            return Err(bad(
                "min_weight",
                "must be in [0, 0.5] and at most 1 / the number of variants",
            ));
        }
        if let Some(c) = &self.condition {
            if !c.is_object() {
                return Err(bad("condition", "must be a GrowthBook condition object"));
            }
        }
        if let Some(c) = &self.context {
            if self.mode != Mode::Bandit {
                return Err(bad("context", "applies to bandit mode only"));
            }
            if c.is_empty() || c.len() > 128 {
                return Err(bad("context", "must be an attribute path of 1-128 bytes"));
            }
        }
        if self.seed.as_deref().is_some_and(str::is_empty) {
            return Err(bad("seed", "must not be empty"));
        }
        Ok(())
    }

    /// The configured weights (equal when none are given).
    pub fn weights(&self) -> Vec<f64> {
        if self.variants.iter().all(|v| v.weight.is_some()) {
            self.variants.iter().filter_map(|v| v.weight).collect()
        } else {
            hash::equal_weights(self.variants.len() as i64)
        }
    }
}

/// Why a customer got (or did not get) a variant.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Hashed,
    Bandit,
    Holdout,
    ConditionFailed,
    NotCovered,
    /// Kept from an earlier exposure.
    Sticky,
}

/// An assignment as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Index into the definition's variants.
    pub variant: Option<usize>,
    pub in_experiment: bool,
    /// The customer's hash for this experiment, in [0, 1).
    pub hash: f64,
    pub reason: Reason,
}

/// The seed used for the holdout split: independent of the variant hash.
fn holdout_seed(seed: &str) -> String {
    format!("{seed}:holdout")
}

/// Assigns `id` (the customer id, GrowthBook's `id` attribute) in the
/// experiment `key`. `attributes` are what the condition sees; `weights` are
/// the bandit's current weights (ignored in `ab` mode).
pub fn assign(
    key: &str,
    def: &ExperimentDef,
    id: &str,
    attributes: &Value,
    groups: &SavedGroups,
    bandit_weights: Option<&[f64]>,
) -> Assignment {
    let seed = def.seed.as_deref().unwrap_or(key);
    let n = hash::hash(seed, id, def.hash_version).unwrap_or(0.0);
    let out = |variant, reason| Assignment {
        variant,
        in_experiment: variant.is_some(),
        hash: n,
        reason,
    };
    if let Some(c) = &def.condition {
        if !eval_condition(attributes, c, groups) {
            return out(None, Reason::ConditionFailed);
        }
    }
    if def.holdout > 0.0 && hash::hash(&holdout_seed(seed), id, 2).is_some_and(|h| h < def.holdout)
    {
        return out(None, Reason::Holdout);
    }
    let configured = def.weights();
    let (weights, reason) = match (def.mode, bandit_weights) {
        (Mode::Bandit, Some(w)) if w.len() == configured.len() => (w.to_vec(), Reason::Bandit),
        (Mode::Bandit, _) => (configured, Reason::Bandit),
        (Mode::Ab, _) => (configured, Reason::Hashed),
    };
    let ranges = hash::bucket_ranges(def.variants.len(), def.coverage, Some(&weights));
    match hash::choose_variation(n, &ranges) {
        Some(i) => out(Some(i), reason),
        None => out(None, Reason::NotCovered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> ExperimentDef {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn definitions_are_checked() {
        let ok = def(json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "converted"}));
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(
            (ok.hash_version, ok.coverage, ok.attribution_hours),
            (2, 1.0, 72.0)
        );
        for (bad_def, field) in [
            (json!({"variants": [{"key": "a"}], "goal": "g"}), "variants"),
            (
                json!({"variants": [{"key": "a"}, {"key": "a"}], "goal": "g"}),
                "variants[1].key",
            ),
            (
                json!({"variants": [{"key": "a", "weight": 0.7}, {"key": "b", "weight": 0.7}], "goal": "g"}),
                "variants",
            ),
            (
                json!({"variants": [{"key": "a", "weight": 1.0}, {"key": "b"}], "goal": "g"}),
                "variants",
            ),
            (
                json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "g", "hash_version": 3}),
                "hash_version",
            ),
            (
                json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "g", "coverage": 1.5}),
                "coverage",
            ),
            (
                json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "g", "holdout": 1.0}),
                "holdout",
            ),
            (
                json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "g", "condition": [1]}),
                "condition",
            ),
        ] {
            let e = def(bad_def.clone()).check().err().map(|e| e.field);
            assert_eq!(e.as_deref(), Some(field), "{bad_def}");
        }
    }

    #[test]
    fn ab_assignment_is_growthbooks() {
        let d =
            def(json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "g", "hash_version": 1}));
        // GrowthBook: hash("exp", "1", 1) = fnv32a("1exp") % 1000 / 1000.
        let expected = hash::hash("exp", "1", 1).unwrap_or(0.0);
        let a = assign("exp", &d, "1", &json!({}), &SavedGroups::new(), None);
        assert_eq!(a.hash, expected);
        assert_eq!(a.variant, Some(usize::from(expected >= 0.5)));
        assert_eq!(a.reason, Reason::Hashed);
    }

    #[test]
    fn conditions_holdouts_and_coverage() {
        let d = def(json!({
            "variants": [{"key": "a"}, {"key": "b"}], "goal": "g",
            "condition": {"learned_traits.has_app": false, "learned_traits.email_open_mobile_share": {"$gt": 0.6}}
        }));
        let phone_reader =
            json!({"learned_traits": {"has_app": false, "email_open_mobile_share": 0.9}});
        let app_user = json!({"learned_traits": {"has_app": true, "email_open_mobile_share": 0.9}});
        let g = SavedGroups::new();
        assert!(assign("e", &d, "c1", &phone_reader, &g, None).in_experiment);
        assert_eq!(
            assign("e", &d, "c1", &app_user, &g, None).reason,
            Reason::ConditionFailed
        );
        let held =
            def(json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "g", "holdout": 0.2}));
        let n = 5000;
        let out = (0..n)
            .filter(|i| {
                assign("e", &held, &format!("c{i}"), &json!({}), &g, None).reason == Reason::Holdout
            })
            .count();
        assert!((out as f64 / n as f64 - 0.2).abs() < 0.03, "{out}");
        let half =
            def(json!({"variants": [{"key": "a"}, {"key": "b"}], "goal": "g", "coverage": 0.5}));
        let covered = (0..n)
            .filter(|i| assign("e", &half, &format!("c{i}"), &json!({}), &g, None).in_experiment)
            .count();
        assert!((covered as f64 / n as f64 - 0.5).abs() < 0.03, "{covered}");
    }
}
