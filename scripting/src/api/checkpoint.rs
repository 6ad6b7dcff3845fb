//! `save_checkpoint` and `resume`: the whole training state of a script (trainable weights,
//! optimizer, data loader, random generators, LoRA dropout stream, step, config, extra values)
//! in one atomically written folder, restored in place so a run continues bit for bit.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::{json, Value};
use workbench_core::data::Cursor;
use workbench_core::train::checkpoint::{self, Checkpoint};

use super::convert::{dynamic_to_json, err, json_to_dynamic, script_err, RResult};
use super::data::ScriptLoader;
use super::model::ScriptModel;
use super::optim::ScriptOptimizer;
use super::tensor::ScriptRng;

const KEYS: &[&str] = &[
    "model",
    "optimizer",
    "loader",
    "rng",
    "rngs",
    "step",
    "config",
    "extra",
];

/// The typed parts of a state map.
struct Parts {
    model: Option<ScriptModel>,
    optimizer: Option<ScriptOptimizer>,
    loader: Option<ScriptLoader>,
    rngs: Vec<(Option<String>, ScriptRng)>,
    step: Option<i64>,
    config: Option<Value>,
    extra: Option<Value>,
}

fn typed<T: Clone + 'static>(state: &Map, key: &str, ty: &str, what: &str) -> RResult<Option<T>> {
    match state.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v.clone().try_cast::<T>().map(Some).ok_or_else(|| {
            err(format!(
                "{what}: `{key}` must be a {ty}, found {}",
                v.type_name()
            ))
        }),
    }
}

fn parts(state: &Map, what: &str) -> RResult<Parts> {
    for k in state.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(err(format!(
                "{what}: unknown state key `{k}`; accepted: {}",
                KEYS.join(", ")
            )));
        }
    }
    let mut rngs = Vec::new();
    if let Some(g) = typed::<ScriptRng>(state, "rng", "Rng", what)? {
        rngs.push((None, g));
    }
    if let Some(m) = typed::<Map>(state, "rngs", "map of Rng", what)? {
        for (name, v) in m {
            let g = v.clone().try_cast::<ScriptRng>().ok_or_else(|| {
                err(format!(
                    "{what}: `rngs.{name}` must be an Rng, found {}",
                    v.type_name()
                ))
            })?;
            rngs.push((Some(name.to_string()), g));
        }
    }
    let step = match state.get("step") {
        None => None,
        Some(v) => Some(v.as_int().map_err(|_| {
            err(format!(
                "{what}: `step` must be an integer, found {}",
                v.type_name()
            ))
        })?),
    };
    Ok(Parts {
        model: typed(state, "model", "Model", what)?,
        optimizer: typed(state, "optimizer", "Optimizer", what)?,
        loader: typed(state, "loader", "DataLoader", what)?,
        rngs,
        step,
        config: state.get("config").map(dynamic_to_json),
        extra: state.get("extra").map(dynamic_to_json),
    })
}

fn rng_key(name: &Option<String>) -> String {
    match name {
        None => "rng".to_string(),
        Some(n) => format!("rngs.{n}"),
    }
}

/// Saves `state` (see the module docs) into the folder `dir`.
fn save(dir: &str, state: &Map) -> RResult<()> {
    let p = parts(state, "save_checkpoint")?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut meta = serde_json::Map::new();
    if let Some(step) = p.step {
        meta.insert("step".into(), step.into());
    }
    if let Some(m) = &p.model {
        let vars = m.model.trainable_vars();
        if vars.is_empty() {
            return Err(err(
                "save_checkpoint: the model has nothing to train (add LoRA adapters or load it `trainable`)",
            ));
        }
        for (n, v) in &vars {
            tensors.insert(format!("model.{n}"), v.as_tensor().detach());
        }
        let (seed, drawn) = m.model.dropout_state();
        meta.insert(
            "model".into(),
            json!({
                "dir": m.dir.display().to_string(),
                "var_names": vars.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                "dropout": {"seed": seed.to_string(), "drawn": drawn.to_string()},
                "lora": m.model.lora_config(),
            }),
        );
    }
    if let Some(o) = &p.optimizer {
        let opt = o.lock()?;
        for (n, t) in opt.state_tensors() {
            tensors.insert(format!("optim.{n}"), t);
        }
        meta.insert("optimizer".into(), opt.state_json());
    }
    for (name, g) in &p.rngs {
        let s = checkpoint::rng_state(&*g.rng.lock().map_err(script_err)?);
        let s = json!({"created_with_seed": g.seed, "state": s});
        match name {
            None => {
                meta.insert("rng".into(), s);
            }
            Some(n) => {
                meta.entry("rngs")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .map(|o| o.insert(n.clone(), s));
            }
        }
    }
    if let Some(l) = &p.loader {
        let l = l.lock()?;
        meta.insert(
            "loader".into(),
            json!({
                "cursor": l.cursor,
                "rows": l.rows.len(),
                "batch_size": l.options.batch_size,
                "shuffle": l.options.shuffle,
                "drop_last": l.options.drop_last,
            }),
        );
    }
    if let Some(c) = p.config {
        meta.insert("config".into(), c);
    }
    if let Some(e) = p.extra {
        meta.insert("extra".into(), e);
    }
    let ckpt = Checkpoint {
        tensors,
        meta: Value::Object(meta),
    };
    let model = p.model.clone();
    checkpoint::save(Path::new(dir), &ckpt, |tmp| {
        if let Some(m) = &model {
            if m.model.lora_config().is_some() {
                m.model
                    .save_adapters(&tmp.join("adapter"), &m.dir.display().to_string())?;
            }
        }
        Ok(())
    })
    .map_err(|e| err(format!("save_checkpoint: {e:#}")))
}

/// The keys of two JSON objects whose values differ (or the whole value when not objects).
fn config_diff(saved: &Value, now: &Value) -> Vec<String> {
    match (saved.as_object(), now.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| {
                    let show = |v: Option<&Value>| v.map_or("(absent)".into(), |v| v.to_string());
                    format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
                })
                .collect()
        }
        _ if saved != now => vec![format!("{saved} → {now}")],
        _ => Vec::new(),
    }
}

fn resume_impl(dir: &str, state: &Map) -> RResult<Map> {
    let w = "resume";
    let p = parts(state, w)?;
    let ck = checkpoint::load(Path::new(dir)).map_err(|e| err(format!("{w}: {e:#}")))?;
    let tfile = Path::new(dir)
        .join(checkpoint::TENSORS_FILE)
        .display()
        .to_string();
    let mfile = Path::new(dir)
        .join(checkpoint::META_FILE)
        .display()
        .to_string();
    let meta = &ck.meta;
    let mut warnings: Vec<String> = Vec::new();
    let mut model_t: HashMap<String, Tensor> = HashMap::new();
    let mut optim_t: HashMap<String, Tensor> = HashMap::new();
    for (n, t) in &ck.tensors {
        if let Some(s) = n.strip_prefix("model.") {
            model_t.insert(s.to_string(), t.clone());
        } else if let Some(s) = n.strip_prefix("optim.") {
            optim_t.insert(s.to_string(), t.clone());
        } else {
            return Err(err(format!("{w}: {tfile}: unexpected tensor `{n}`")));
        }
    }
    for key in ["model", "optimizer", "loader", "rng", "rngs"] {
        let given = match key {
            "model" => p.model.is_some(),
            "optimizer" => p.optimizer.is_some(),
            "loader" => p.loader.is_some(),
            "rng" => p.rngs.iter().any(|(n, _)| n.is_none()),
            _ => p.rngs.iter().any(|(n, _)| n.is_some()),
        };
        if !given && meta.get(key).is_some() {
            warnings.push(format!(
                "the checkpoint holds `{key}` but the state map has none: not restored"
            ));
        }
    }

    // 1. Check everything before changing anything.
    let mut model_plan = None;
    if let Some(m) = &p.model {
        let mm = meta
            .get("model")
            .ok_or_else(|| err(format!("{w}: {mfile} holds no model state")))?;
        let vars = m.model.trainable_vars();
        let mut problems = Vec::new();
        for (n, v) in &vars {
            match model_t.get(n) {
                None => problems.push(format!("`{n}` is missing")),
                Some(t) if t.dims() != v.dims() => problems.push(format!(
                    "`{n}` has shape {:?}, the model {:?}",
                    t.dims(),
                    v.dims()
                )),
                _ => {}
            }
        }
        let mut unknown: Vec<&String> = model_t
            .keys()
            .filter(|k| !vars.iter().any(|(n, _)| n == *k))
            .collect();
        unknown.sort();
        for k in unknown {
            problems.push(format!("`{k}` is not a trainable variable of this model"));
        }
        if !problems.is_empty() {
            let shown: Vec<String> = problems.iter().take(6).cloned().collect();
            return Err(err(format!(
                "{w}: {tfile} does not fit this model (a checkpoint of another model or adapter setup?): {}{}",
                shown.join("; "),
                if problems.len() > 6 {
                    format!("; … {} more", problems.len() - 6)
                } else {
                    String::new()
                }
            )));
        }
        let lora_now = serde_json::to_value(m.model.lora_config()).map_err(script_err)?;
        if let Some(saved) = mm.get("lora") {
            if *saved != lora_now {
                return Err(err(format!(
                    "{w}: {mfile}: the checkpoint's LoRA config {saved} differs from the model's {lora_now}"
                )));
            }
        }
        let num = |v: Option<&Value>, what: &str| -> RResult<u64> {
            v.and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err(format!("{w}: {mfile}: invalid `model.dropout.{what}`")))
        };
        let d = mm.get("dropout");
        let seed = num(d.and_then(|d| d.get("seed")), "seed")?;
        let drawn = num(d.and_then(|d| d.get("drawn")), "drawn")?;
        let (seed_now, _) = m.model.dropout_state();
        if seed != seed_now {
            return Err(err(format!(
                "{w}: {mfile}: the checkpoint's dropout seed is {seed}, the model's {seed_now}; call `m.seed_dropout({seed})` before resume"
            )));
        }
        model_plan = Some((m, seed, drawn));
    }
    let mut rng_plan = Vec::new();
    for (name, g) in &p.rngs {
        let key = rng_key(name);
        let saved = match name {
            None => meta.get("rng"),
            Some(n) => meta.get("rngs").and_then(|r| r.get(n)),
        }
        .ok_or_else(|| err(format!("{w}: {mfile} holds no `{key}`")))?;
        let st = saved
            .get("state")
            .ok_or_else(|| err(format!("{w}: {mfile}: `{key}` has no \"state\"")))?;
        let r = checkpoint::rng_restore(st)
            .map_err(|e| err(format!("{w}: {mfile}: `{key}`: {e:#}")))?;
        rng_plan.push((g, r));
    }
    let mut loader_plan = None;
    if let Some(l) = &p.loader {
        let lm = meta
            .get("loader")
            .ok_or_else(|| err(format!("{w}: {mfile} holds no loader state")))?;
        let cursor: Cursor = serde_json::from_value(lm.get("cursor").cloned().unwrap_or_default())
            .map_err(|e| err(format!("{w}: {mfile}: invalid loader cursor: {e}")))?;
        let st = l.lock()?;
        if lm.get("rows").and_then(Value::as_u64) != Some(st.rows.len() as u64) {
            warnings.push(format!(
                "the loader had {} rows when saved, {} now: the order differs",
                lm.get("rows").unwrap_or(&Value::Null),
                st.rows.len()
            ));
        }
        if lm.get("batch_size").and_then(Value::as_u64) != Some(st.options.batch_size as u64) {
            warnings.push(format!(
                "the loader's batch size was {} when saved, {} now",
                lm.get("batch_size").unwrap_or(&Value::Null),
                st.options.batch_size
            ));
        }
        if cursor.position > st.rows.len() {
            return Err(err(format!(
                "{w}: {mfile}: the loader cursor is at row {} but the loader has {} rows",
                cursor.position,
                st.rows.len()
            )));
        }
        loader_plan = Some((l, cursor));
    }
    if let (Some(now), Some(saved)) = (&p.config, meta.get("config")) {
        let diff = config_diff(saved, now);
        if !diff.is_empty() {
            warnings.push(format!(
                "the config differs from the checkpoint's: {}",
                diff.join(", ")
            ));
        }
    }

    // 2. Apply: the optimizer first (it checks and changes nothing on error).
    if let Some(o) = &p.optimizer {
        let json = meta
            .get("optimizer")
            .ok_or_else(|| err(format!("{w}: {mfile} holds no optimizer state")))?;
        o.lock()?
            .load_state(&optim_t, json)
            .map_err(|e| err(format!("{w}: {dir}: {e:#}")))?;
    }
    if let Some((m, seed, drawn)) = model_plan {
        m.model
            .set_trainable(&model_t)
            .map_err(|e| err(format!("{w}: {tfile}: {e:#}")))?;
        // The dropout counter is shared by every view of the model: setting it on a copy sets
        // it for the script's model value too (the seed is checked equal above).
        let mut inner = (*m.model).clone();
        inner.set_dropout_state(seed, drawn);
    }
    for (g, r) in rng_plan {
        *g.rng.lock().map_err(script_err)? = r;
    }
    if let Some((l, cursor)) = loader_plan {
        l.lock()?.set_cursor(cursor).map_err(err)?;
    }
    for wn in &warnings {
        eprintln!("warning: resume {dir}: {wn}");
    }
    let mut out = Map::new();
    out.insert(
        "step".into(),
        meta.get("step").map_or(Dynamic::UNIT, json_to_dynamic),
    );
    out.insert(
        "config".into(),
        meta.get("config").map_or(Dynamic::UNIT, json_to_dynamic),
    );
    out.insert(
        "extra".into(),
        meta.get("extra").map_or(Dynamic::UNIT, json_to_dynamic),
    );
    out.insert(
        "warnings".into(),
        Dynamic::from(warnings.into_iter().map(Dynamic::from).collect::<Array>()),
    );
    Ok(out)
}

#[export_module]
mod checkpoint_api {
    use super::*;

    /// Saves the training state into the folder `dir`, atomically (a temporary sibling folder
    /// swapped into place; a failure leaves the previous checkpoint intact). `state` is a map
    /// with any of: `model` (its trainable variables, LoRA config and dropout stream; a LoRA
    /// model also gets a PEFT export in `dir/adapter/`), `optimizer`, `loader` (its cursor),
    /// `rng` or `rngs` (a map of generators; their exact positions), `step`, `config` and
    /// `extra` (any JSON-able values). Files: `state.safetensors`, `state.json`.
    #[rhai_fn(return_raw)]
    pub fn save_checkpoint(dir: &str, state: Map) -> RResult<()> {
        save(dir, &state)
    }
    /// Restores a `save_checkpoint` folder into the objects of `state` in place (same keys as
    /// `save_checkpoint`): model weights and dropout stream, optimizer moments and step count,
    /// generator positions and the loader's cursor, so the run continues bit for bit. Names and
    /// shapes are checked before anything changes. Returns `#{step, config, extra, warnings}`
    /// (the saved values; `warnings` lists, e.g., config keys that differ from `state.config`):
    /// continue from `step + 1`.
    #[rhai_fn(return_raw)]
    pub fn resume(dir: &str, state: Map) -> RResult<Map> {
        resume_impl(dir, &state)
    }
}

/// Registers `save_checkpoint` and `resume`.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(checkpoint_api).into());
}
