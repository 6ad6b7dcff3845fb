//! The one conversion style of the crate: an options map becomes a core struct through
//! `rhai::serde::from_dynamic` (`deny_unknown_fields`, defaults in the struct) and a result
//! comes back through `to_dynamic`. Values serde cannot carry (Tensors, closures, rollouts) are
//! taken out of the map by name first ([`take`]).

use rhai::serde::{from_dynamic, to_dynamic};
use rhai::{Dynamic, EvalAltResult, Map, ParseErrorType, Position};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Result type of Rhai-visible functions.
pub type RResult<T> = Result<T, Box<EvalAltResult>>;

/// A core tensor result as a script Tensor, the error with its full cause chain.
pub trait IntoScript {
    /// `Ok(t)` → a script Tensor; `Err(e)` → a script error.
    fn script(self) -> RResult<super::tensor::ScriptTensor>;
}

impl<E: std::fmt::Display> IntoScript for Result<candle_core::Tensor, E> {
    fn script(self) -> RResult<super::tensor::ScriptTensor> {
        self.map(super::tensor::ScriptTensor::new)
            .map_err(script_err)
    }
}

/// A runtime error carrying `msg`; Rhai fills in the position of the failing call.
pub fn err(msg: impl std::fmt::Display) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(msg.to_string().into(), Position::NONE).into()
}

/// Maps any displayable error (anyhow, candle) to a script error with its full cause chain.
pub fn script_err<E: std::fmt::Display>(e: E) -> Box<EvalAltResult> {
    err(format!("{e:#}"))
}

/// `f` for `map_err`: the error prefixed with the function's name.
pub fn fail<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Box<EvalAltResult> + '_ {
    move |e| err(format!("{what}: {e:#}"))
}

/// The text of a serde error raised by rhai's deserializer.
fn serde_message(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorParsing(ParseErrorType::BadInput(lex), _) => match lex {
            rhai::LexError::ImproperSymbol(_, m) => m.clone(),
            other => other.to_string(),
        },
        EvalAltResult::ErrorMismatchOutputType(want, found, _) => {
            format!("expected {want}, found {found}")
        }
        other => other.to_string(),
    }
}

/// The field names `T` accepts, read from serde's unknown-field message.
fn accepted<T: DeserializeOwned>() -> String {
    let mut probe = Map::new();
    probe.insert("\u{1}".into(), Dynamic::UNIT);
    match from_dynamic::<T>(&Dynamic::from_map(probe)) {
        Err(e) => {
            let m = serde_message(&e);
            m.split_once("expected ").map_or(String::new(), |(_, k)| {
                k.trim_start_matches("one of ").to_string()
            })
        }
        Ok(_) => String::new(),
    }
}

/// Every integer inside `v` as a float (a number option written `1` where `1.0` is meant).
fn widen(v: &Dynamic) -> Dynamic {
    if let Ok(i) = v.as_int() {
        Dynamic::from(i as f64)
    } else if let Some(a) = v.clone().try_cast::<rhai::Array>() {
        Dynamic::from_array(a.iter().map(widen).collect())
    } else if let Some(m) = v.clone().try_cast::<Map>() {
        Dynamic::from_map(m.iter().map(|(k, x)| (k.clone(), widen(x))).collect())
    } else {
        v.clone()
    }
}

/// The options map of function `what` as the core struct `T`. An unknown key or a value of the
/// wrong type is an error naming the key, the function and the accepted keys; an integer is
/// accepted where a float is expected.
pub fn options<T: DeserializeOwned>(what: &str, mut opts: Map) -> RResult<T> {
    'retry: loop {
        let e = match from_dynamic::<T>(&Dynamic::from_map(opts.clone())) {
            Ok(v) => return Ok(v),
            Err(e) => serde_message(&e),
        };
        if let Some(rest) = e.strip_prefix("unknown field ") {
            let key = rest.split(',').next().unwrap_or(rest);
            return Err(err(format!(
                "{what}: unknown option {key}; accepted: {}",
                accepted::<T>()
            )));
        }
        if e.contains("expected f64") || e.contains("expected f32") {
            // Integers where floats are meant: widen each key that fails alone the same way and
            // passes alone once widened.
            let alone = |k: &str, v: &Dynamic| {
                from_dynamic::<T>(&Dynamic::from_map(Map::from_iter([(k.into(), v.clone())])))
                    .map_err(|e| serde_message(&e))
            };
            let mut changed = false;
            for (k, v) in opts.clone() {
                let wide = widen(&v);
                if matches!(alone(k.as_str(), &v), Err(m) if m == e)
                    && alone(k.as_str(), &wide).is_ok()
                {
                    opts.insert(k, wide);
                    changed = true;
                }
            }
            if changed {
                continue 'retry;
            }
        }
        // Name the key at fault: alone, it fails the same way.
        let culprit = opts.iter().find(|(k, v)| {
            let one = Map::from_iter([((*k).clone(), (*v).clone())]);
            from_dynamic::<T>(&Dynamic::from_map(one)).is_err_and(|e1| serde_message(&e1) == e)
        });
        return Err(err(match culprit {
            Some((k, _)) => format!("{what}: option `{k}`: {e}; accepted: {}", accepted::<T>()),
            None => format!("{what}: {e}"),
        }));
    }
}

/// Splits an options map between two core structs: the keys in `a_keys` go to `A`, the rest
/// to `B`; an unknown key names both structs' accepted keys.
pub fn options2<A: DeserializeOwned, B: DeserializeOwned>(
    what: &str,
    opts: Map,
    a_keys: &[&str],
) -> RResult<(A, B)> {
    let (a, b): (Map, Map) = opts
        .into_iter()
        .partition(|(k, _)| a_keys.contains(&k.as_str()));
    let a = options::<A>(what, a)?;
    let extra: Vec<String> = a_keys.iter().map(|k| format!("`{k}`")).collect();
    let b = options::<B>(what, b).map_err(|e| match *e {
        EvalAltResult::ErrorRuntime(m, _) => err(format!("{m}, {}", extra.join(", "))),
        other => Box::new(other),
    })?;
    Ok((a, b))
}

/// Removes `key` from `opts` and casts it to `T` (a Tensor, a closure, ...); `()` or absent is
/// `None`.
pub fn take<T: Clone + 'static>(opts: &mut Map, key: &str, what: &str) -> RResult<Option<T>> {
    match opts.remove(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => {
            let ty = v.type_name();
            v.try_cast::<T>().map(Some).ok_or_else(|| {
                err(format!(
                    "{what}: option `{key}` must be a {}, found {ty}",
                    short_type::<T>()
                ))
            })
        }
    }
}

/// The script name of a registered type (`ScriptTensor` → `Tensor`).
fn short_type<T>() -> &'static str {
    let t = std::any::type_name::<T>();
    let t = t.rsplit("::").next().unwrap_or(t);
    t.strip_prefix("Script").unwrap_or(t)
}

/// A core result as a Rhai value (structs become maps, `None` becomes `()`).
pub fn to_script<T: Serialize>(v: T) -> RResult<Dynamic> {
    to_dynamic(v)
}

/// A Rhai value as JSON (maps become objects); Tensors and other custom values are an error.
pub fn to_json(v: &Dynamic, what: &str) -> RResult<serde_json::Value> {
    from_dynamic(v).map_err(|e| err(format!("{what}: {}", serde_message(&e))))
}

/// A script value as the plain Rust value `T` (`Vec<u32>` ids, `Vec<f64>`, `Vec<String>`, ...);
/// an integer is accepted where a float is meant; a mismatch is an error saying what `what`
/// must be and what was found.
pub fn value<T: DeserializeOwned>(v: &Dynamic, what: &str, must: &str) -> RResult<T> {
    from_dynamic(v)
        .or_else(|_| from_dynamic(&widen(v)))
        .map_err(|_| err(format!("{what} must be {must}, found {v}")))
}

/// Reads a non-negative integer list (a shape, a list of ids).
pub fn usize_list(a: &rhai::Array, what: &str) -> RResult<Vec<usize>> {
    from_dynamic(&Dynamic::from_array(a.clone())).map_err(|_| {
        err(format!(
            "{what} must be an array of non-negative integers, found {}",
            Dynamic::from_array(a.clone())
        ))
    })
}

/// JSON of a script value (`null` where JSON has no equivalent).
pub fn dynamic_to_json(v: &Dynamic) -> serde_json::Value {
    from_dynamic(v).unwrap_or(serde_json::Value::Null)
}

/// A JSON value as a script value (objects become maps).
pub fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    to_dynamic(v).unwrap_or(Dynamic::UNIT)
}
