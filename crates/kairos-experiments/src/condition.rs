//! GrowthBook's targeting conditions (a MongoDB-like syntax) evaluated as
//! the GrowthBook SDKs evaluate them, JavaScript's comparison and coercion
//! rules included, so a condition means the same in Kairos as in a
//! GrowthBook front end.
//!
//! Paths are dotted (`learned_traits.has_app`); a missing path is `null`.
//! Operators: `$eq $ne $lt $lte $gt $gte $exists $in $nin $ini $nini $all
//! $alli $elemMatch $size $regex $regexi $type $not $veq $vne $vgt $vgte $vlt
//! $vlte $inGroup $notInGroup`, and `$and $or $nor $not` over conditions.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Value};

/// Named lists of values for `$inGroup` / `$notInGroup`.
pub type SavedGroups = HashMap<String, Vec<Value>>;

/// Whether `attributes` satisfy `condition`.
pub fn eval_condition(attributes: &Value, condition: &Value, groups: &SavedGroups) -> bool {
    let Value::Object(cond) = condition else {
        return false;
    };
    for (k, v) in cond {
        let ok = match k.as_str() {
            "$or" => eval_or(attributes, v, groups),
            "$nor" => !eval_or(attributes, v, groups),
            "$and" => eval_and(attributes, v, groups),
            "$not" => !eval_condition(attributes, v, groups),
            path => eval_value(v, get_path(attributes, path), groups),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn eval_or(attributes: &Value, conditions: &Value, groups: &SavedGroups) -> bool {
    let Value::Array(list) = conditions else {
        return false;
    };
    list.is_empty() || list.iter().any(|c| eval_condition(attributes, c, groups))
}

fn eval_and(attributes: &Value, conditions: &Value, groups: &SavedGroups) -> bool {
    let Value::Array(list) = conditions else {
        return false;
    };
    list.iter().all(|c| eval_condition(attributes, c, groups))
}

static NULL: Value = Value::Null;

/// The value at a dotted path, `null` when any part is missing.
fn get_path<'a>(obj: &'a Value, path: &str) -> &'a Value {
    let mut current = obj;
    for part in path.split('.') {
        current = match current {
            Value::Object(m) => match m.get(part) {
                Some(v) => v,
                None => return &NULL,
            },
            Value::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => v,
                None => return &NULL,
            },
            _ => return &NULL,
        };
    }
    current
}

fn is_operator_object(m: &Map<String, Value>) -> bool {
    !m.is_empty() && m.keys().all(|k| k.starts_with('$'))
}

fn eval_value(condition: &Value, value: &Value, groups: &SavedGroups) -> bool {
    match condition {
        Value::String(s) => js_to_string(value) == *s,
        Value::Number(n) => n.as_f64().is_some_and(|n| js_to_number(value) == n),
        Value::Bool(b) => !value.is_null() && truthy(value) == *b,
        Value::Null => value.is_null(),
        Value::Object(m) if is_operator_object(m) => m
            .iter()
            .all(|(op, expected)| eval_operator(op, value, expected, groups)),
        // Arrays and plain objects: deep equality as JSON.stringify compares them.
        other => value == other,
    }
}

fn eval_operator(op: &str, actual: &Value, expected: &Value, groups: &SavedGroups) -> bool {
    match op {
        "$veq" => padded_version(actual) == padded_version(expected),
        "$vne" => padded_version(actual) != padded_version(expected),
        "$vgt" => padded_version(actual) > padded_version(expected),
        "$vgte" => padded_version(actual) >= padded_version(expected),
        "$vlt" => padded_version(actual) < padded_version(expected),
        "$vlte" => padded_version(actual) <= padded_version(expected),
        "$eq" => strict_eq(actual, expected),
        "$ne" => !strict_eq(actual, expected),
        "$lt" => js_compare(actual, expected) == Some(Ordering::Less),
        "$lte" => matches!(
            js_compare(actual, expected),
            Some(Ordering::Less | Ordering::Equal)
        ),
        "$gt" => js_compare(actual, expected) == Some(Ordering::Greater),
        "$gte" => matches!(
            js_compare(actual, expected),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        "$exists" => {
            if truthy(expected) {
                !actual.is_null()
            } else {
                actual.is_null()
            }
        }
        "$in" => expected
            .as_array()
            .is_some_and(|list| is_in(actual, list, false)),
        "$nin" => expected
            .as_array()
            .is_some_and(|list| !is_in(actual, list, false)),
        "$ini" => expected
            .as_array()
            .is_some_and(|list| is_in(actual, list, true)),
        "$nini" => expected
            .as_array()
            .is_some_and(|list| !is_in(actual, list, true)),
        "$inGroup" => is_in(actual, group(expected, groups), false),
        "$notInGroup" => !is_in(actual, group(expected, groups), false),
        "$not" => !eval_value(expected, actual, groups),
        "$size" => match actual {
            Value::Array(a) => eval_value(expected, &Value::from(a.len()), groups),
            _ => false,
        },
        "$elemMatch" => elem_match(actual, expected, groups),
        "$all" => all(actual, expected, groups, false),
        "$alli" => all(actual, expected, groups, true),
        "$regex" => regex_test(actual, expected, false),
        "$regexi" => regex_test(actual, expected, true),
        "$type" => expected.as_str() == Some(type_of(actual)),
        _ => false,
    }
}

fn group<'a>(name: &Value, groups: &'a SavedGroups) -> &'a [Value] {
    name.as_str()
        .and_then(|n| groups.get(n))
        .map_or(&[], Vec::as_slice)
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
    }
}

fn elem_match(actual: &Value, expected: &Value, groups: &SavedGroups) -> bool {
    let Value::Array(items) = actual else {
        return false;
    };
    let operator = matches!(expected, Value::Object(m) if is_operator_object(m));
    items.iter().any(|item| {
        truthy(item)
            && if operator {
                eval_value(expected, item, groups)
            } else {
                eval_condition(item, expected, groups)
            }
    })
}

fn all(actual: &Value, expected: &Value, groups: &SavedGroups, insensitive: bool) -> bool {
    let (Value::Array(have), Value::Array(want)) = (actual, expected) else {
        return false;
    };
    want.iter().all(|w| {
        have.iter().any(|h| {
            if insensitive {
                eval_value(&fold(w), &fold(h), groups)
            } else {
                eval_value(w, h, groups)
            }
        })
    })
}

/// Lower-cased strings, anything else as it is.
fn fold(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.to_lowercase()),
        other => other.clone(),
    }
}

fn is_in(actual: &Value, expected: &[Value], insensitive: bool) -> bool {
    let eq = |a: &Value, b: &Value| {
        if insensitive {
            same_value_zero(&fold(a), &fold(b))
        } else {
            same_value_zero(a, b)
        }
    };
    match actual {
        Value::Array(items) => items.iter().any(|a| expected.iter().any(|e| eq(a, e))),
        a => expected.iter().any(|e| eq(a, e)),
    }
}

/// `Array.prototype.includes`: primitives by value, objects never equal.
fn same_value_zero(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => strict_eq(a, b),
    }
}

/// JavaScript's `===` on JSON values (objects and arrays are never equal).
fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JavaScript's `String(v)`.
fn js_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => js_number_string(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Null => String::new(),
                other => js_to_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

fn js_number_string(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// JavaScript's `Number(v)`.
fn js_to_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => string_to_number(s),
        Value::Array(_) => string_to_number(&js_to_string(v)),
        Value::Object(_) => f64::NAN,
    }
}

fn string_to_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).map_or(f64::NAN, |n| n as f64);
    }
    match t {
        "Infinity" | "+Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ if t
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            f64::NAN
        }
        _ => t.parse().unwrap_or(f64::NAN),
    }
}

/// JavaScript's `<` family: strings by UTF-16 code units, anything else as
/// numbers (`None` when a side is NaN).
fn js_compare(a: &Value, b: &Value) -> Option<Ordering> {
    let prim = |v: &Value| match v {
        Value::Array(_) | Value::Object(_) => Value::String(js_to_string(v)),
        other => other.clone(),
    };
    match (prim(a), prim(b)) {
        (Value::String(x), Value::String(y)) => Some(x.encode_utf16().cmp(y.encode_utf16())),
        (x, y) => js_to_number(&x).partial_cmp(&js_to_number(&y)),
    }
}

fn regex_test(actual: &Value, pattern: &Value, insensitive: bool) -> bool {
    let Some(p) = pattern.as_str() else {
        return false;
    };
    let Ok(re) = regex::RegexBuilder::new(p)
        .case_insensitive(insensitive)
        .size_limit(1 << 20)
        .build()
    else {
        return false;
    };
    re.is_match(&js_to_string(actual))
}

/// A version string that compares as text in version order:
/// "v1.2.3-rc.1+build" -> "    1-    2-    3-rc-    1"; a release gets "~",
/// which sorts after any pre-release tag.
fn padded_version(v: &Value) -> String {
    let raw = match v {
        Value::Number(n) => js_number_string(n.as_f64().unwrap_or(0.0)),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => "0".into(),
    };
    let trimmed = raw.strip_prefix('v').unwrap_or(&raw);
    let trimmed = trimmed.split('+').next().unwrap_or("");
    let mut parts: Vec<String> = trimmed.split(['-', '.']).map(str::to_owned).collect();
    if parts.len() == 3 {
        parts.push("~".into());
    }
    parts
        .into_iter()
        .map(|p| {
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                format!("{p:>5}")
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
