//! Per-customer structures a decision derives from the stored profile: the
//! activity posterior (smoothing, segment prior) and its prefix sums over
//! the 672 local quarter hours. They are a pure function of the model, the
//! profile's activity counts and the customer's trait pairs, so they are
//! kept under a fingerprint of exactly those and recomputed when it changes.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use kairos_learn::{ActivityPosterior, ModelBundle, QuarterMass};

const SHARDS: usize = 64;

#[derive(Debug)]
pub struct Derived {
    pub activity: ActivityPosterior,
    pub mass: QuarterMass,
    /// Label of the customer's segment, when the timing comes from it.
    pub segment_label: Option<String>,
    /// Its id.
    pub segment_id: Option<String>,
}

/// The customer's posterior and prefix sums: cached, or computed (and
/// cached if `keep`).
pub fn derived_for(
    state: &crate::state::AppState,
    models: &Arc<ModelBundle>,
    id: &kairos_core::CustomerId,
    profile: &kairos_learn::ProfileState,
    attributes: Option<&kairos_core::Customer>,
    keep: bool,
) -> Arc<Derived> {
    let pairs = attributes
        .map(|a| kairos_learn::activity::trait_pairs(&a.traits))
        .unwrap_or_default();
    let fingerprint = || fingerprint(models, &profile.activity, &profile.quarter_of_day, &pairs);
    state.derived.get(id.as_str(), fingerprint, keep, || {
        let activity = models.activity.posterior_traits(&profile.activity, &pairs);
        let mass = QuarterMass::with_quarters(&activity.hour_of_week, &profile.quarter_of_day);
        let segment = activity
            .segment
            .as_ref()
            .and_then(|m| models.activity.segments.get(m.index));
        Derived {
            segment_label: segment.map(|s| s.label.clone()),
            segment_id: segment.map(|s| s.id.clone()),
            activity,
            mass,
        }
    })
}

type Entry = (u64, Arc<Derived>);

#[derive(Debug)]
pub struct DerivedCache {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    per_shard: usize,
    hasher: RandomState,
}

/// What the posterior and its quarter-hour mass depend on, hashed: the model
/// (by identity of the bundle in memory and its version), the activity
/// counts per hour of the week and per quarter of the day, the trait pairs.
pub fn fingerprint(
    models: &Arc<ModelBundle>,
    counts: &[f32],
    quarters: &[f32],
    pairs: &[String],
) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (Arc::as_ptr(models) as usize).hash(&mut h);
    models.manifest.version.hash(&mut h);
    // No quarters and quarters all zero share each hour alike: one fingerprint.
    for c in counts.iter().chain(quarters) {
        c.to_bits().hash(&mut h);
    }
    pairs.hash(&mut h);
    h.finish()
}

impl DerivedCache {
    /// At most about `capacity` customers (0: compute every time).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Drops whatever is kept for the customer (on erasure).
    pub fn forget(&self, id: &str) {
        self.shard(id).remove(id);
    }

    /// Whether anything is kept for the customer.
    #[cfg(test)]
    pub fn holds(&self, id: &str) -> bool {
        self.shard(id).contains_key(id)
    }

    /// The customer's structures for the inputs hashed by `fingerprint`,
    /// computed by `make` when missing or out of date, and then kept if
    /// `keep`. The fingerprint is hashed only when something is kept for
    /// the customer or is to be: a campaign pass over customers not kept
    /// (most of a campaign) does not hash their profiles.
    pub fn get(
        &self,
        id: &str,
        fingerprint: impl Fn() -> u64,
        keep: bool,
        make: impl FnOnce() -> Derived,
    ) -> Arc<Derived> {
        let mut hashed = None;
        let kept = self.shard(id).get(id).cloned();
        if let Some((fp, d)) = kept {
            let current = fingerprint();
            if fp == current {
                return d;
            }
            hashed = Some(current);
        }
        let derived = Arc::new(make());
        if keep && self.per_shard > 0 {
            let fingerprint = hashed.unwrap_or_else(&fingerprint);
            let mut map = self.shard(id);
            if map.len() >= self.per_shard && !map.contains_key(id) {
                if let Some(k) = map.keys().next().cloned() {
                    map.remove(&k);
                }
            }
            map.insert(id.to_owned(), (fingerprint, Arc::clone(&derived)));
        }
        derived
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_learn::{ActivityParams, BetaPrior};

    #[test]
    fn recomputed_exactly_when_its_inputs_change() {
        let models = Arc::new(ModelBundle::untrained(
            ActivityParams::default(),
            BetaPrior::from_mean(0.1, 4.0),
        ));
        let cache = DerivedCache::new(100);
        let mut counts = vec![0.0f32; 168];
        counts[19] = 3.0;
        let make = |counts: &[f32]| {
            let activity = models.activity.posterior(counts);
            let mass = QuarterMass::new(&activity.hour_of_week);
            Derived {
                activity,
                mass,
                segment_label: None,
                segment_id: None,
            }
        };
        let mut computed = 0;
        let fp = fingerprint(&models, &counts, &[], &[]);
        for _ in 0..3 {
            cache.get(
                "c-1",
                || fp,
                true,
                || {
                    computed += 1;
                    make(&counts)
                },
            );
        }
        assert_eq!(computed, 1, "computed once while nothing changed");
        counts[20] = 1.0;
        let fp2 = fingerprint(&models, &counts, &[], &[]);
        assert_ne!(fp, fp2);
        let d = cache.get(
            "c-1",
            || fp2,
            true,
            || {
                computed += 1;
                make(&counts)
            },
        );
        assert_eq!(computed, 2, "a new event means a new posterior");
        let fresh = make(&counts);
        assert_eq!(d.activity.hour_of_week, fresh.activity.hour_of_week);
        let fp3 = fingerprint(&models, &counts, &[], &["plan=pro".into()]);
        assert_ne!(fp2, fp3, "traits place customers in segments");
        let mut quarters = vec![0.0f32; 96];
        quarters[77] = 1.0;
        let fp4 = fingerprint(&models, &counts, &quarters, &[]);
        assert_ne!(fp2, fp4, "the quarters of the day share each hour");
        quarters[77] = 0.0;
        quarters[78] = 1.0;
        assert_ne!(fp4, fingerprint(&models, &counts, &quarters, &[]));
        let other = Arc::new(ModelBundle::untrained(
            ActivityParams::default(),
            BetaPrior::from_mean(0.1, 4.0),
        ));
        assert_ne!(fp2, fingerprint(&other, &counts, &[], &[]), "a new model");
        assert!(cache.holds("c-1"));
        cache.forget("c-1");
        assert!(!cache.holds("c-1"), "erasure leaves nothing behind");

        // A campaign pass computes what is missing without keeping it, and
        // uses what is kept.
        cache.get("c-2", || fp2, false, || make(&counts));
        assert!(!cache.holds("c-2"));
        cache.get("c-2", || fp2, true, || make(&counts));
        let before = computed;
        cache.get(
            "c-2",
            || fp2,
            false,
            || {
                computed += 1;
                make(&counts)
            },
        );
        assert_eq!(computed, before, "kept: not computed again");

        // Nothing kept and nothing to keep: the profile is not hashed.
        let hashed = std::cell::Cell::new(0);
        let hash = || {
            hashed.set(hashed.get() + 1);
            fp2
        };
        cache.get("c-3", hash, false, || make(&counts));
        assert_eq!(hashed.get(), 0, "a campaign pass over a customer not kept");
        cache.get("c-3", hash, true, || make(&counts));
        assert_eq!(hashed.get(), 1, "hashed once to be kept");
        cache.get("c-3", hash, false, || {
            computed += 1;
            make(&counts)
        });
        assert_eq!(hashed.get(), 2, "and once to be checked");
        assert_eq!(computed, before, "kept and current: not computed again");
    }
}
