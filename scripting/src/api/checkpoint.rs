//! `save_checkpoint`, `checkpoint_policy` and `resume`: the script side of
//! `workbench_core::train::checkpoint` (the whole training state of a run — trainable weights,
//! optimizer, data loader, random generators, LoRA dropout stream, step, config, extra values —
//! in one atomically written folder, restored in place so a run continues bit for bit). This
//! file only turns a state map into the core's borrowed `TrainState`.

use std::path::Path;
use std::sync::MutexGuard;

use rand_chacha::ChaCha12Rng;
use rhai::plugin::*;
use rhai::{Engine, Map};
use serde_json::Value;
use workbench_core::train::checkpoint::{
    self, LoaderPart, ModelPart, ResumePolicy, SaveOptions, TrainState,
};
use workbench_core::train::optim::AdamW;

use super::convert::{dynamic_to_json, err, options, to_script, RResult};
use super::data::{LoaderState, ScriptLoader};
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
    "synced_base",
];

/// The typed parts of a state map (shared handles; locked by [`with_state`]).
struct Parts {
    model: Option<ScriptModel>,
    optimizer: Option<ScriptOptimizer>,
    loader: Option<ScriptLoader>,
    rngs: Vec<(Option<String>, ScriptRng)>,
    step: Option<i64>,
    config: Option<Value>,
    extra: Option<Value>,
    synced_base: bool,
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
    if let Some(k) = state.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(err(format!(
            "{what}: unknown state key `{k}`; accepted: {}",
            KEYS.join(", ")
        )));
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
    Ok(Parts {
        model: typed(state, "model", "Model", what)?,
        optimizer: typed(state, "optimizer", "Optimizer", what)?,
        loader: typed(state, "loader", "DataLoader", what)?,
        rngs,
        step: typed(state, "step", "integer", what)?,
        config: state.get("config").map(dynamic_to_json),
        extra: state.get("extra").map(dynamic_to_json),
        synced_base: typed(state, "synced_base", "bool", what)?.unwrap_or(false),
    })
}

/// Locks every part of `p` and hands the core's borrowed view of them to `f`.
fn with_state<R>(
    p: &Parts,
    what: &str,
    f: impl FnOnce(&mut TrainState) -> anyhow::Result<R>,
) -> RResult<R> {
    let busy = |key: &str| {
        err(format!(
            "{what}: `{key}` is in use (the same object twice in the state?)"
        ))
    };
    let mut opt: Option<MutexGuard<'_, AdamW>> = match &p.optimizer {
        Some(o) => Some(o.0.try_lock().map_err(|_| busy("optimizer"))?),
        None => None,
    };
    let mut loader: Option<MutexGuard<'_, LoaderState>> = match &p.loader {
        Some(l) => Some(l.0.try_lock().map_err(|_| busy("loader"))?),
        None => None,
    };
    let mut rngs: Vec<(Option<String>, MutexGuard<'_, ChaCha12Rng>)> = Vec::new();
    for (name, g) in &p.rngs {
        let key = name
            .as_ref()
            .map_or("rng".to_string(), |n| format!("rngs.{n}"));
        rngs.push((name.clone(), g.rng.try_lock().map_err(|_| busy(&key))?));
    }
    let mut state = TrainState {
        model: p.model.as_ref().map(|m| ModelPart {
            model: &m.model,
            base_dir: m.dir.display().to_string(),
            synced_base: p.synced_base,
        }),
        optimizer: opt.as_deref_mut(),
        loader: loader.as_deref_mut().map(|l| LoaderPart {
            rows: l.rows.len(),
            batch_size: l.loader.options.batch_size,
            shuffle: l.loader.options.shuffle,
            drop_last: l.loader.options.drop_last,
            cursor: &mut l.loader.cursor,
        }),
        rngs: rngs
            .iter_mut()
            .map(|(n, g)| (n.clone(), &mut **g))
            .collect(),
        step: p.step,
        config: p.config.clone(),
        extra: p.extra.clone(),
    };
    f(&mut state).map_err(|e| err(format!("{what}: {e:#}")))
}

#[export_module]
mod checkpoint_api {
    use super::*;

    /// Saves the training state into the folder `dir`, atomically (a temporary sibling folder
    /// swapped into place; a failure leaves the previous checkpoint intact). `state` is a map
    /// with any of: `model` (its trainable variables, LoRA config and dropout stream; a LoRA
    /// model also gets a PEFT export in `dir/adapter/`), `optimizer`, `loader` (its cursor),
    /// `rng` or `rngs` (a map of generators; their exact positions), `step`, `config` and
    /// `extra` (any JSON-able values), `synced_base` (true: also the base matrices under the
    /// adapters, for runs whose reference sync merged adapters into the base). Files:
    /// `state.safetensors`, `state.json`. A non-empty `dir` that is not a checkpoint is
    /// refused; folders left by an interrupted save are removed.
    #[rhai_fn(return_raw)]
    pub fn save_checkpoint(dir: &str, state: Map) -> RResult<()> {
        let p = parts(&state, "save_checkpoint")?;
        with_state(&p, "save_checkpoint", |s| {
            checkpoint::save_state(Path::new(dir), s, None)
        })
    }
    /// `save_checkpoint(dir, state)` with options: `keep_last` (keep only the newest N
    /// checkpoints of `dir`'s series, the sibling folders named like `dir` up to its final
    /// `-<number>`, e.g. `checkpoint-*`).
    #[rhai_fn(name = "save_checkpoint", return_raw)]
    pub fn save_checkpoint_with(dir: &str, state: Map, opts: Map) -> RResult<()> {
        let o: SaveOptions = options("save_checkpoint", opts)?;
        let p = parts(&state, "save_checkpoint")?;
        with_state(&p, "save_checkpoint", |s| {
            checkpoint::save_state(Path::new(dir), s, o.keep_last)
        })
    }
    /// The policy to resume into from the checkpoint `dir`: `m` itself, or, when the
    /// checkpoint carries a synced reference base (a run with reference sync), `m` rebuilt on
    /// that base with fresh adapters of the checkpoint's LoRA config. Call it before building
    /// the optimizer; `resume` then restores the values.
    #[rhai_fn(return_raw)]
    pub fn checkpoint_policy(dir: &str, m: ScriptModel) -> RResult<ScriptModel> {
        let rebuilt = checkpoint::synced_policy(Path::new(dir), &m.model)
            .map_err(|e| err(format!("checkpoint_policy: {e:#}")))?;
        Ok(match rebuilt {
            None => m,
            Some(model) => m.derived(model),
        })
    }
    /// Restores a `save_checkpoint` folder into the objects of `state` in place (same keys as
    /// `save_checkpoint`): model weights and dropout stream, optimizer moments and step count,
    /// generator positions and the loader's cursor, so the run continues bit for bit. Names,
    /// shapes and `state.config` against the saved config are checked before anything changes:
    /// a changed key is refused by name (keys `out`, `resume_from`, `resume`, `resume_force`,
    /// `keep_last` may always change). Returns `#{step, config, extra, changed, warnings}`
    /// (the saved values; `changed` lists the keys that differ and apply): continue from
    /// `step + 1`.
    #[rhai_fn(return_raw)]
    pub fn resume(dir: &str, state: Map) -> RResult<Map> {
        resume_with(dir, state, Map::new())
    }
    /// `resume(dir, state)` with options: `safe` (config keys that may change and are applied,
    /// e.g. `["updates", "eval_every"]`), `force` (apply every changed key; each is reported).
    #[rhai_fn(name = "resume", return_raw)]
    pub fn resume_with(dir: &str, state: Map, opts: Map) -> RResult<Map> {
        let policy: ResumePolicy = options("resume", opts)?;
        let p = parts(&state, "resume")?;
        let r = with_state(&p, "resume", |s| {
            checkpoint::restore(Path::new(dir), s, &policy)
        })?;
        for w in &r.warnings {
            eprintln!("warning: resume {dir}: {w}");
        }
        to_script(r)?
            .try_cast::<Map>()
            .ok_or_else(|| err("resume: the result is not a map"))
    }
}

/// Registers `save_checkpoint`, `checkpoint_policy` and `resume`.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(checkpoint_api).into());
}
