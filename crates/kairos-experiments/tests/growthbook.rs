//! The GrowthBook SDK conformance cases (spec 0.8.0, tests/fixtures/): the
//! sections for hashing, bucketing, namespaces, equal weights and
//! conditions must all pass.

use kairos_experiments::{condition, hash, SavedGroups};
use serde_json::Value;

fn cases() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/growthbook-cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn section(name: &str) -> Vec<Value> {
    let all = cases();
    assert_eq!(all["specVersion"], "0.8.0");
    let list = all[name].as_array().cloned().unwrap_or_default();
    assert!(!list.is_empty(), "section {name} is empty");
    list
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Runs every case, then fails listing each one that did not pass.
fn check_all(name: &str, mut run: impl FnMut(&Value) -> bool) {
    let list = section(name);
    let failed: Vec<String> = list
        .iter()
        .filter(|c| !run(c))
        .map(|c| c.to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {} of {} cases failed:\n{}",
        failed.len(),
        list.len(),
        failed.join("\n")
    );
}

#[test]
fn hash() {
    // [seed, value, version, expected or null]
    check_all("hash", |c| {
        let got = hash::hash(
            c[0].as_str().unwrap_or(""),
            c[1].as_str().unwrap_or(""),
            c[2].as_u64().unwrap_or(0) as u32,
        );
        match (&c[3], got) {
            (Value::Null, None) => true,
            (v, Some(g)) if !v.is_null() => close(f(v), g),
            _ => false,
        }
    });
}

#[test]
fn get_bucket_range() {
    // [name, [numVariations, coverage, weights or null], expected ranges]
    check_all("getBucketRange", |c| {
        let args = &c[1];
        let weights: Option<Vec<f64>> = args[2].as_array().map(|w| w.iter().map(f).collect());
        let got = hash::bucket_ranges(
            args[0].as_u64().unwrap_or(0) as usize,
            f(&args[1]),
            weights.as_deref(),
        );
        let want: Vec<(f64, f64)> = c[2]
            .as_array()
            .map(|r| r.iter().map(|p| (f(&p[0]), f(&p[1]))).collect())
            .unwrap_or_default();
        got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(g, w)| close(g.0, w.0) && close(g.1, w.1))
    });
}

#[test]
fn choose_variation() {
    // [name, n, ranges, expected index or -1]
    check_all("chooseVariation", |c| {
        let ranges: Vec<(f64, f64)> = c[2]
            .as_array()
            .map(|r| r.iter().map(|p| (f(&p[0]), f(&p[1]))).collect())
            .unwrap_or_default();
        let got = hash::choose_variation(f(&c[1]), &ranges).map_or(-1, |i| i as i64);
        got == c[3].as_i64().unwrap_or(-2)
    });
}

#[test]
fn in_namespace() {
    // [name, user id, [namespace id, start, end], expected]
    check_all("inNamespace", |c| {
        let ns = &c[2];
        let got = hash::in_namespace(
            c[1].as_str().unwrap_or(""),
            (ns[0].as_str().unwrap_or(""), f(&ns[1]), f(&ns[2])),
        );
        c[3].as_bool() == Some(got)
    });
}

#[test]
fn get_equal_weights() {
    // [numVariations, expected weights]
    check_all("getEqualWeights", |c| {
        let got = hash::equal_weights(c[0].as_i64().unwrap_or(0));
        let want: Vec<f64> = c[1]
            .as_array()
            .map(|w| w.iter().map(f).collect())
            .unwrap_or_default();
        got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| close(*g, *w))
    });
}

#[test]
fn eval_condition() {
    // [name, condition, attributes, expected, saved groups?]
    check_all("evalCondition", |c| {
        let groups: SavedGroups = c
            .get(4)
            .and_then(|g| serde_json::from_value(g.clone()).ok())
            .unwrap_or_default();
        c[3].as_bool() == Some(condition::eval_condition(&c[2], &c[1], &groups))
    });
}
