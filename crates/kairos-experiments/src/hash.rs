//! Hashing and bucketing exactly as the GrowthBook SDKs do (spec 0.8.0), so
//! a customer gets the same variant from Kairos as from a GrowthBook SDK
//! given the same key, seed, weights, coverage, hash version and `id`.

/// 32-bit FNV-1a over the UTF-16 code units of `s`, as the JavaScript SDK
/// computes it (`charCodeAt`), which equals the UTF-8 bytes for ASCII.
pub fn fnv1a32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for unit in s.encode_utf16() {
        h ^= u32::from(unit);
        h = h.wrapping_add(
            (h << 1)
                .wrapping_add(h << 4)
                .wrapping_add(h << 7)
                .wrapping_add(h << 8)
                .wrapping_add(h << 24),
        );
    }
    h
}

/// A number in [0, 1) from `seed` and `value`: version 1 is
/// `(fnv(value + seed) % 1000) / 1000`, version 2 is
/// `(fnv(fnv(seed + value).to_string()) % 10000) / 10000`. Unknown
/// versions give `None`.
pub fn hash(seed: &str, value: &str, version: u32) -> Option<f64> {
    match version {
        1 => Some(f64::from(fnv1a32(&format!("{value}{seed}")) % 1000) / 1000.0),
        2 => {
            let inner = fnv1a32(&format!("{seed}{value}"));
            Some(f64::from(fnv1a32(&inner.to_string()) % 10000) / 10000.0)
        }
        _ => None,
    }
}

/// Equal weights for `n` variations (none when `n` < 1).
pub fn equal_weights(n: i64) -> Vec<f64> {
    if n < 1 {
        return Vec::new();
    }
    vec![1.0 / n as f64; n as usize]
}

/// The [start, end) range of each variation: weights laid end to end, each
/// range shrunk to `coverage` of its weight. Coverage is clamped to [0, 1];
/// weights of the wrong length, or summing outside [0.99, 1.01], are
/// replaced by equal weights.
pub fn bucket_ranges(n: usize, coverage: f64, weights: Option<&[f64]>) -> Vec<(f64, f64)> {
    let coverage = coverage.clamp(0.0, 1.0);
    let equal = equal_weights(n as i64);
    let weights = match weights {
        Some(w) if w.len() == n => {
            let total: f64 = w.iter().sum();
            if (0.99..=1.01).contains(&total) {
                w.to_vec()
            } else {
                equal
            }
        }
        _ => equal,
    };
    let mut cumulative = 0.0;
    weights
        .iter()
        .map(|w| {
            let start = cumulative;
            cumulative += w;
            (start, start + coverage * w)
        })
        .collect()
}

/// The variation whose range holds `n`, or `None`.
pub fn choose_variation(n: f64, ranges: &[(f64, f64)]) -> Option<usize> {
    ranges.iter().position(|(s, e)| n >= *s && n < *e)
}

/// Whether the user is in the namespace `(id, start, end)`: version 1 hash
/// of `user_id` with seed `__<id>` in [start, end).
pub fn in_namespace(user_id: &str, namespace: (&str, f64, f64)) -> bool {
    let (id, start, end) = namespace;
    hash(&format!("__{id}"), user_id, 1).is_some_and(|n| n >= start && n < end)
}
