//! Conversions between Rhai values and core values, and the error helper every binding uses.

use rhai::{Array, Dynamic, EvalAltResult, Map, Position};

/// Result type of Rhai-visible functions.
pub type RResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error carrying `msg`; Rhai fills in the position of the failing call.
pub fn err(msg: impl std::fmt::Display) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(msg.to_string().into(), Position::NONE).into()
}

/// Maps any displayable error (anyhow, candle) to a script error with its full cause chain.
pub fn script_err<E: std::fmt::Display>(e: E) -> Box<EvalAltResult> {
    err(format!("{e:#}"))
}

/// Converts a JSON value to a Rhai value (objects become maps, arrays arrays).
pub fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        serde_json::Value::String(s) => s.clone().into(),
        serde_json::Value::Array(a) => a.iter().map(json_to_dynamic).collect::<Array>().into(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
            .collect::<Map>()
            .into(),
    }
}

/// Converts a Rhai value to JSON (unit → null; other custom types are written as their text).
pub fn dynamic_to_json(v: &Dynamic) -> serde_json::Value {
    if v.is_unit() {
        serde_json::Value::Null
    } else if let Some(b) = v.clone().try_cast::<bool>() {
        b.into()
    } else if let Some(i) = v.clone().try_cast::<i64>() {
        i.into()
    } else if let Some(f) = v.clone().try_cast::<f64>() {
        serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
    } else if v.is_string() {
        v.clone().into_string().unwrap_or_default().into()
    } else if let Some(a) = v.clone().try_cast::<Array>() {
        a.iter().map(dynamic_to_json).collect::<Vec<_>>().into()
    } else if let Some(m) = v.clone().try_cast::<Map>() {
        m.iter()
            .map(|(k, v)| (k.to_string(), dynamic_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    } else {
        v.to_string().into()
    }
}

/// Reads a non-negative integer list (a shape, a list of ids).
pub fn usize_list(a: &Array, what: &str) -> RResult<Vec<usize>> {
    a.iter()
        .map(|d| {
            d.as_int()
                .ok()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| {
                    err(format!(
                        "{what} must be an array of non-negative integers, found {d}"
                    ))
                })
        })
        .collect()
}

/// Reads an optional string option of a map, with a default.
pub fn opt_str(opts: &Map, key: &str, default: &str) -> RResult<String> {
    match opts.get(key) {
        None => Ok(default.to_string()),
        Some(v) if v.is_string() => Ok(v.clone().into_string().unwrap_or_default()),
        Some(v) => Err(err(format!(
            "option `{key}` must be a string, found {}",
            v.type_name()
        ))),
    }
}

/// Reads an optional numeric option (float or integer) of a map, with a default; `what` names
/// the function in the error.
pub fn opt_f64(opts: &Map, key: &str, default: f64, what: &str) -> RResult<f64> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|_| err(format!("{what}: `{key}` must be a number, found {v}"))),
    }
}

/// Reads an optional bool option of a map, with a default.
pub fn opt_bool(opts: &Map, key: &str, default: bool) -> RResult<bool> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_bool()
            .map_err(|_| err(format!("option `{key}` must be true or false, found {v}"))),
    }
}

/// Fails on option keys outside `known`, naming the key and the accepted ones.
pub fn check_keys(opts: &Map, known: &[&str], what: &str) -> RResult<()> {
    for k in opts.keys() {
        if !known.contains(&k.as_str()) {
            return Err(err(format!(
                "unknown option `{k}` for {what}; expected one of: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}
