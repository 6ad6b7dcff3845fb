//! Training checkpoints: a folder holding `state.safetensors` (every tensor of the training
//! state: trainable weights, optimizer moments) and `state.json` (everything else: step counts,
//! RNG and data-loader positions, configs), written atomically as a whole.
//!
//! [`save`] builds the new checkpoint in a temporary sibling folder (`.<name>.tmp-<pid>`), lets
//! the caller add files to it (a PEFT `adapter/` export, say), then swaps it into place: an
//! existing `dir` is renamed to `.<name>.old-<pid>`, the temporary folder to `dir`, and the old
//! one is removed. A failure before the swap leaves the previous checkpoint untouched.
//!
//! Random generators are [`ChaCha12Rng`] (the algorithm behind `rand`'s `StdRng`, with the
//! same stream for the same `seed_from_u64`), whose full state is a seed, a stream number and a
//! word position: [`rng_state`] and [`rng_restore`] turn it into JSON and back, so a restored
//! generator continues exactly where the saved one stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde_json::{json, Value};

use crate::data::dataset::Cursor;
use crate::model::{Llada, LoadOptions, LoraConfig, WeightSource};
use crate::train::optim::AdamW;

/// The `format` tag of `state.json`.
pub const FORMAT: &str = "workbench-checkpoint/1";
/// The tensor file of a checkpoint.
pub const TENSORS_FILE: &str = "state.safetensors";
/// The JSON file of a checkpoint.
pub const META_FILE: &str = "state.json";

/// A training state: named tensors plus JSON metadata.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Every tensor, by name (saved from the CPU, contiguous, dtype kept).
    pub tensors: HashMap<String, Tensor>,
    /// Everything else; [`save`] adds `"format"` when it is an object.
    pub meta: Value,
}

fn sibling(dir: &Path, tag: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .filter(|n| !n.is_empty() && n != "..")
        .ok_or_else(|| anyhow!("{}: a checkpoint needs a folder name", dir.display()))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{name}.{tag}-{}", std::process::id())))
}

fn write_into(tmp: &Path, ckpt: &Checkpoint) -> Result<()> {
    std::fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let tensors: HashMap<String, Tensor> = ckpt
        .tensors
        .iter()
        .map(|(n, t)| {
            let t = t
                .detach()
                .to_device(&Device::Cpu)
                .and_then(|t| t.contiguous())
                .with_context(|| format!("tensor `{n}`"))?;
            Ok((n.clone(), t))
        })
        .collect::<Result<_>>()?;
    let tpath = tmp.join(TENSORS_FILE);
    candle_core::safetensors::save(&tensors, &tpath)
        .with_context(|| format!("cannot write {}", tpath.display()))?;
    let mut meta = ckpt.meta.clone();
    if meta.is_null() {
        meta = json!({});
    }
    match meta.as_object_mut() {
        Some(o) => {
            o.insert("format".into(), FORMAT.into());
        }
        None => bail!("checkpoint metadata must be a JSON object"),
    }
    let mpath = tmp.join(META_FILE);
    std::fs::write(&mpath, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("cannot write {}", mpath.display()))?;
    Ok(())
}

/// Whether `dir` holds a checkpoint written by [`save`] (its `state.json` carries [`FORMAT`]).
pub fn is_checkpoint(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(META_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|m| m.get("format").and_then(Value::as_str) == Some(FORMAT))
}

/// The temporary and old siblings of `dir` that [`save`] left behind when it was killed
/// (`.<name>.tmp-<pid>` / `.<name>.old-<pid>` of a process that is no longer running, or of
/// this one), as `(path, is_old)`.
fn stale_siblings(dir: &Path) -> Vec<(PathBuf, bool)> {
    let (Some(name), Some(parent)) = (dir.file_name(), dir.parent()) else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        for (tag, is_old) in [("tmp", false), ("old", true)] {
            let Some(pid) = file.strip_prefix(&format!(".{name}.{tag}-")) else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            // Another live process may be saving right now: leave its folders alone.
            let alive = crate::fsio::pid_alive(pid) == Some(true);
            if pid == me || !alive {
                out.push((e.path(), is_old));
            }
        }
    }
    out.sort();
    out
}

/// Cleans what an interrupted [`save`] of `dir` left behind. When the swap was cut between its
/// two renames (`dir` gone, the previous checkpoint parked in `.<name>.old-<pid>`), the parked
/// checkpoint is moved back first. Returns one line per action, for the run log.
pub fn clean_stale(dir: &Path) -> Vec<String> {
    let mut done = Vec::new();
    for (p, is_old) in stale_siblings(dir) {
        if is_old && !dir.exists() && is_checkpoint(&p) && std::fs::rename(&p, dir).is_ok() {
            done.push(format!(
                "restored the previous checkpoint {} from {} (an interrupted save)",
                dir.display(),
                p.display()
            ));
            continue;
        }
        if std::fs::remove_dir_all(&p).is_ok() {
            done.push(format!(
                "removed {} (left by an interrupted save)",
                p.display()
            ));
        }
    }
    done
}

/// Writes `ckpt` as the checkpoint folder `dir`, atomically replacing any previous one; `extra`
/// may add files to the new folder (it receives the temporary path) before the swap. On error
/// the previous checkpoint, if any, is left as it was and the temporary folder is removed.
/// A non-empty `dir` that is not a checkpoint is refused (its files are not ours to replace),
/// and the temporary/old siblings of interrupted earlier saves are cleaned first.
pub fn save(dir: &Path, ckpt: &Checkpoint, extra: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
        bail!("{} exists and is not a folder", dir.display());
    }
    clean_stale(dir);
    if dir.is_dir() && !is_checkpoint(dir) {
        let non_empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
        if non_empty {
            bail!(
                "{} is a non-empty folder that is not a workbench checkpoint (no {META_FILE} with \"format\": \"{FORMAT}\"): refusing to replace it; choose another folder",
                dir.display()
            );
        }
    }
    let tmp = sibling(dir, "tmp")?;
    let old = sibling(dir, "old")?;
    let _ = std::fs::remove_dir_all(&tmp);
    let built = write_into(&tmp, ckpt).and_then(|()| extra(&tmp));
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("cannot save the checkpoint {}", dir.display())));
    }
    let had_old = dir.exists();
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
        if let Err(e) = std::fs::rename(dir, &old) {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!(
                "cannot move the previous checkpoint {} aside: {e}",
                dir.display()
            );
        }
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        bail!("cannot move the new checkpoint into {}: {e}", dir.display());
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Keeps the `keep` newest checkpoints of the series `dir` belongs to and removes the older
/// ones: the series is the sibling folders named like `dir` up to its final `-<number>`
/// (`run/checkpoint-300` → `run/checkpoint-*`), ordered by that number; only folders that
/// [`is_checkpoint`] are touched. Returns the removed folders.
pub fn keep_last(dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let Some((prefix, num)) = name.rsplit_once('-') else {
        bail!(
            "keep_last: {} does not end in -<number> (e.g. checkpoint-100), so it has no series",
            dir.display()
        );
    };
    if num.parse::<u64>().is_err() {
        bail!("keep_last: {} does not end in -<number>", dir.display());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut series: Vec<(u64, PathBuf)> = std::fs::read_dir(parent)
        .with_context(|| format!("cannot read {}", parent.display()))?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            let k = n
                .strip_prefix(prefix)?
                .strip_prefix('-')?
                .parse::<u64>()
                .ok()?;
            Some((k, e.path()))
        })
        .filter(|(_, p)| is_checkpoint(p))
        .collect();
    series.sort();
    let drop = series.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (_, p) in series.into_iter().take(drop) {
        std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        removed.push(p);
    }
    Ok(removed)
}

/// Reads the checkpoint folder `dir` (tensors on the CPU).
pub fn load(dir: &Path) -> Result<Checkpoint> {
    if !dir.is_dir() {
        bail!("checkpoint {}: no such folder", dir.display());
    }
    let mpath = dir.join(META_FILE);
    let tpath = dir.join(TENSORS_FILE);
    for p in [&mpath, &tpath] {
        if !p.is_file() {
            bail!(
                "checkpoint {}: {} is missing (not a workbench checkpoint folder?)",
                dir.display(),
                p.file_name().unwrap_or_default().to_string_lossy()
            );
        }
    }
    let text = std::fs::read_to_string(&mpath)
        .with_context(|| format!("cannot read {}", mpath.display()))?;
    let meta: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", mpath.display()))?;
    match meta.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        other => bail!(
            "{}: expected \"format\": \"{FORMAT}\", found {}",
            mpath.display(),
            other.map_or("none".to_string(), |f| format!("\"{f}\""))
        ),
    }
    let tensors = crate::model::weights::load_file(&tpath, &Device::Cpu)?;
    Ok(Checkpoint { tensors, meta })
}

/// The full state of a generator: `{"seed": 64 hex digits, "word_pos": decimal string,
/// "stream": integer}`.
pub fn rng_state(rng: &ChaCha12Rng) -> Value {
    let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    json!({
        "seed": seed,
        "word_pos": rng.get_word_pos().to_string(),
        "stream": rng.get_stream(),
    })
}

/// A generator in the state [`rng_state`] recorded.
pub fn rng_restore(state: &Value) -> Result<ChaCha12Rng> {
    let hex = state
        .get("seed")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("rng state: missing \"seed\" (64 hex digits)"))?;
    if hex.len() != 64 || !hex.is_ascii() {
        bail!("rng state: \"seed\" must be 64 hex digits, found {hex:?}");
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| anyhow!("rng state: \"seed\" must be 64 hex digits, found {hex:?}"))?;
    }
    let pos: u128 = state
        .get("word_pos")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("rng state: missing \"word_pos\" (a decimal string)"))?
        .parse()
        .map_err(|e| anyhow!("rng state: invalid \"word_pos\": {e}"))?;
    let stream = state
        .get("stream")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("rng state: missing or invalid \"stream\""))?;
    let mut rng = ChaCha12Rng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(pos);
    Ok(rng)
}

// ---- the training state of a run: save, check, restore -------------------------------------

/// The model part of a [`TrainState`].
pub struct ModelPart<'a> {
    /// The policy (its trainable variables, LoRA config and dropout stream are saved).
    pub model: &'a Llada,
    /// The folder the base weights came from (recorded, and named in the PEFT export).
    pub base_dir: String,
    /// Also save the base weights the adapters sit on (the LoRA-targeted matrices): needed
    /// when the base is not the one on disk any more, i.e. after a reference sync merged
    /// adapters into it (see [`synced_policy`]).
    pub synced_base: bool,
}

/// The data-loader part of a [`TrainState`]: its cursor and the shape of its rows.
pub struct LoaderPart<'a> {
    /// Where the next batch starts (restored in place).
    pub cursor: &'a mut Cursor,
    /// Number of rows.
    pub rows: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Whether each epoch is shuffled.
    pub shuffle: bool,
    /// Whether short batches are dropped.
    pub drop_last: bool,
}

/// Everything a training script checkpoints, borrowed from its owners: [`save_state`] reads
/// it, [`restore`] writes into it (in place) after checking every part.
#[derive(Default)]
pub struct TrainState<'a> {
    /// The policy.
    pub model: Option<ModelPart<'a>>,
    /// Its optimizer (moments, step count, settings).
    pub optimizer: Option<&'a mut AdamW>,
    /// A data loader's position.
    pub loader: Option<LoaderPart<'a>>,
    /// Random generators: `None` is the state's `rng`, `Some(name)` an entry of `rngs`.
    pub rngs: Vec<(Option<String>, &'a mut ChaCha12Rng)>,
    /// The number of finished updates.
    pub step: Option<i64>,
    /// The run's configuration (compared on [`restore`]).
    pub config: Option<Value>,
    /// Any other values the script wants back.
    pub extra: Option<Value>,
}

/// How [`restore`] treats a run config that differs from the checkpoint's.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumePolicy {
    /// Config keys that may change on resume and are applied (besides [`ALWAYS_SAFE`]): the
    /// total number of updates, evaluation and saving cadence, and the like.
    pub safe: Vec<String>,
    /// Apply every changed key, the unsafe ones included (each is still reported).
    pub force: bool,
}

/// Config keys that never change what a resumed run computes: where it writes and how it
/// resumes.
pub const ALWAYS_SAFE: &[&str] = &["out", "resume_from", "resume", "resume_force", "keep_last"];

/// What [`restore`] found besides the restored objects.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Restored {
    /// The saved `step`.
    pub step: Option<i64>,
    /// The saved config.
    pub config: Option<Value>,
    /// The saved `extra`.
    pub extra: Option<Value>,
    /// Config keys that differ from the checkpoint's and now apply, as `key: old → new`.
    pub changed: Vec<String>,
    /// Everything worth telling the user (changed keys, parts not restored, cleanups).
    pub warnings: Vec<String>,
}

fn rng_key(name: &Option<String>) -> String {
    match name {
        None => "rng".to_string(),
        Some(n) => format!("rngs.{n}"),
    }
}

/// The `(name, tensor)` of every base matrix the adapters of `model` sit on (empty without
/// adapters).
fn adapted_base(model: &Llada) -> Vec<(String, Tensor)> {
    let Some(cfg) = model.lora_config() else {
        return Vec::new();
    };
    model
        .named_weights()
        .into_iter()
        .filter(|(n, _)| {
            let mut parts = n.rsplit('.');
            parts.next() == Some("weight")
                && parts
                    .next()
                    .is_some_and(|l| cfg.targets.iter().any(|t| t == l))
        })
        .collect()
}

/// The checkpoint of a training state (see [`save_state`]).
pub fn state_checkpoint(state: &TrainState) -> Result<Checkpoint> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut meta = serde_json::Map::new();
    if let Some(step) = state.step {
        meta.insert("step".into(), step.into());
    }
    if let Some(mp) = &state.model {
        let m = mp.model;
        let vars = m.trainable_vars();
        if vars.is_empty() {
            bail!("the model has nothing to train (add LoRA adapters or load it `trainable`)");
        }
        for (n, v) in &vars {
            tensors.insert(format!("model.{n}"), v.as_tensor().detach());
        }
        let mut base_names = Vec::new();
        if mp.synced_base {
            if m.lora_config().is_none() {
                bail!("a synced base is saved only for a LoRA model (a full finetune saves every weight anyway)");
            }
            for (n, t) in adapted_base(m) {
                tensors.insert(format!("base.{n}"), t.detach());
                base_names.push(n);
            }
        }
        let (seed, drawn) = m.dropout_state();
        meta.insert(
            "model".into(),
            json!({
                "dir": mp.base_dir,
                "var_names": vars.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                "dropout": {"seed": seed.to_string(), "drawn": drawn.to_string()},
                "lora": m.lora_config(),
                "synced_base": base_names,
            }),
        );
    }
    if let Some(opt) = &state.optimizer {
        for (n, t) in opt.state_tensors() {
            tensors.insert(format!("optim.{n}"), t);
        }
        meta.insert("optimizer".into(), opt.state_json());
    }
    for (name, g) in &state.rngs {
        let s = json!({"state": rng_state(g)});
        match name {
            None => {
                meta.insert("rng".into(), s);
            }
            Some(n) => {
                if let Some(o) = meta
                    .entry("rngs")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                {
                    o.insert(n.clone(), s);
                }
            }
        }
    }
    if let Some(l) = &state.loader {
        meta.insert(
            "loader".into(),
            json!({
                "cursor": *l.cursor,
                "rows": l.rows,
                "batch_size": l.batch_size,
                "shuffle": l.shuffle,
                "drop_last": l.drop_last,
            }),
        );
    }
    if let Some(c) = &state.config {
        meta.insert("config".into(), c.clone());
    }
    if let Some(e) = &state.extra {
        meta.insert("extra".into(), e.clone());
    }
    Ok(Checkpoint {
        tensors,
        meta: Value::Object(meta),
    })
}

/// Options of [`save_state`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaveOptions {
    /// Keep only the newest N checkpoints of the folder's series (see [`keep_last`]).
    pub keep_last: Option<usize>,
}

/// Saves a training state as the checkpoint folder `dir` (atomically, see [`save`]); a LoRA
/// model also gets a PEFT export in `dir/adapter/`. With `keep`, only the newest `keep`
/// checkpoints of `dir`'s series stay (see [`keep_last`]).
pub fn save_state(dir: &Path, state: &TrainState, keep: Option<usize>) -> Result<()> {
    let ckpt = state_checkpoint(state)?;
    save(dir, &ckpt, |tmp| {
        if let Some(mp) = &state.model {
            if mp.model.lora_config().is_some() {
                mp.model.save_adapters(&tmp.join("adapter"), &mp.base_dir)?;
            }
        }
        Ok(())
    })?;
    if let Some(k) = keep {
        keep_last(dir, k.max(1))?;
    }
    Ok(())
}

/// The keys of two config objects whose values differ, as `key: old → new`.
pub fn config_diff(saved: &Value, now: &Value) -> Vec<(String, String)> {
    let show = |v: Option<&Value>| v.map_or("(absent)".into(), |v| v.to_string());
    match (saved.as_object(), now.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| {
                    let line = format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)));
                    (k.clone(), line)
                })
                .collect()
        }
        _ if saved != now => vec![(String::new(), format!("{saved} → {now}"))],
        _ => Vec::new(),
    }
}

/// `model` rebuilt for resuming from the checkpoint `dir` when that checkpoint carries a synced
/// base (a run with reference sync merged its adapters into the base): the saved base matrices
/// replace the model's and fresh adapters with the checkpoint's LoRA config go on top (their
/// values, like everything else, come with [`restore`]). `None` when the checkpoint has no
/// synced base: the model is right as it is. Build the optimizer on the returned model.
pub fn synced_policy(dir: &Path, model: &Llada) -> Result<Option<Llada>> {
    let ck = load(dir)?;
    let names: Vec<String> = ck.meta["model"]["synced_base"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Ok(None);
    }
    let mfile = dir.join(META_FILE);
    let lora: LoraConfig = serde_json::from_value(ck.meta["model"]["lora"].clone())
        .with_context(|| format!("{}: invalid `model.lora`", mfile.display()))?;
    let mut weights: HashMap<String, Tensor> = model.named_weights().into_iter().collect();
    for n in &names {
        let t = ck.tensors.get(&format!("base.{n}")).with_context(|| {
            format!(
                "{}: the synced base tensor `base.{n}` is missing",
                dir.join(TENSORS_FILE).display()
            )
        })?;
        match weights.get(n) {
            Some(w) if w.dims() == t.dims() => {}
            Some(w) => bail!(
                "{}: the synced base `{n}` has shape {:?}, the model {:?}",
                dir.join(TENSORS_FILE).display(),
                t.dims(),
                w.dims()
            ),
            None => bail!(
                "{}: the model has no weight `{n}`",
                dir.join(TENSORS_FILE).display()
            ),
        }
        weights.insert(n.clone(), t.clone());
    }
    let opts = LoadOptions {
        device: model.device().clone(),
        dtype: model.dtype(),
        trainable: false,
    };
    let base = Llada::from_source(
        model.config().clone(),
        &WeightSource::Memory(weights),
        &opts,
    )?;
    let m = base
        .add_lora(&lora)?
        .with_training(model.training())
        .with_checkpointing(model.checkpointing());
    Ok(Some(m))
}

/// Restores the checkpoint folder `dir` into `state`, in place: model weights and dropout
/// stream, optimizer moments and step, generator positions and the loader's cursor, so the run
/// continues bit for bit. Everything is checked before anything changes: tensor names and
/// shapes, the LoRA setup, the dropout seed, and `state.config` against the saved config —
/// a changed key outside [`ALWAYS_SAFE`] and `policy.safe` is refused by name unless
/// `policy.force`; the changed keys that apply are listed in [`Restored::changed`]. With a run
/// config the optimizer keeps its current settings (built from that config), else it takes
/// the checkpoint's. Stale folders of an interrupted save are cleaned first.
pub fn restore(dir: &Path, state: &mut TrainState, policy: &ResumePolicy) -> Result<Restored> {
    let mut warnings = clean_stale(dir);
    let ck = load(dir)?;
    let tfile = dir.join(TENSORS_FILE).display().to_string();
    let mfile = dir.join(META_FILE).display().to_string();
    let meta = &ck.meta;
    let mut model_t: HashMap<String, Tensor> = HashMap::new();
    let mut optim_t: HashMap<String, Tensor> = HashMap::new();
    for (n, t) in &ck.tensors {
        if let Some(s) = n.strip_prefix("model.") {
            model_t.insert(s.to_string(), t.clone());
        } else if let Some(s) = n.strip_prefix("optim.") {
            optim_t.insert(s.to_string(), t.clone());
        } else if !n.starts_with("base.") {
            bail!("{tfile}: unexpected tensor `{n}`");
        }
    }
    let given = [
        ("model", state.model.is_some()),
        ("optimizer", state.optimizer.is_some()),
        ("loader", state.loader.is_some()),
        ("rng", state.rngs.iter().any(|(n, _)| n.is_none())),
        ("rngs", state.rngs.iter().any(|(n, _)| n.is_some())),
    ];
    for (key, given) in given {
        if !given && meta.get(key).is_some() {
            warnings.push(format!(
                "the checkpoint holds `{key}` but the state has none: not restored"
            ));
        }
    }

    // 1. Check everything before changing anything.
    let mut dropout = None;
    if let Some(mp) = &state.model {
        let m = mp.model;
        let mm = meta
            .get("model")
            .ok_or_else(|| anyhow!("{mfile} holds no model state"))?;
        let vars = m.trainable_vars();
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
            let more = problems.len().saturating_sub(6);
            problems.truncate(6);
            bail!(
                "{tfile} does not fit this model (a checkpoint of another model or adapter setup?): {}{}",
                problems.join("; "),
                if more > 0 { format!("; … {more} more") } else { String::new() }
            );
        }
        let lora_now = serde_json::to_value(m.lora_config())?;
        if let Some(saved) = mm.get("lora") {
            if *saved != lora_now {
                let synced = mm["synced_base"].as_array().is_some_and(|a| !a.is_empty());
                bail!(
                    "{mfile}: the checkpoint's LoRA config {saved} differs from the model's {lora_now}{}",
                    if synced {
                        " (the checkpoint carries a synced reference base: build the model with `checkpoint_policy` before the optimizer)"
                    } else {
                        ""
                    }
                );
            }
        }
        let num = |v: &Value, what: &str| -> Result<u64> {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("{mfile}: invalid `model.dropout.{what}`"))
        };
        let seed = num(&mm["dropout"]["seed"], "seed")?;
        let drawn = num(&mm["dropout"]["drawn"], "drawn")?;
        let (seed_now, _) = m.dropout_state();
        if seed != seed_now {
            bail!(
                "{mfile}: the checkpoint's dropout seed is {seed}, the model's {seed_now}; call `m.seed_dropout({seed})` before resume"
            );
        }
        dropout = Some((seed, drawn));
    }
    let mut rng_plan = Vec::new();
    for (i, (name, _)) in state.rngs.iter().enumerate() {
        let key = rng_key(name);
        let saved = match name {
            None => meta.get("rng"),
            Some(n) => meta.get("rngs").and_then(|r| r.get(n)),
        }
        .ok_or_else(|| anyhow!("{mfile} holds no `{key}`"))?;
        let st = saved
            .get("state")
            .ok_or_else(|| anyhow!("{mfile}: `{key}` has no \"state\""))?;
        let r = rng_restore(st).with_context(|| format!("{mfile}: `{key}`"))?;
        rng_plan.push((i, r));
    }
    let mut cursor_plan = None;
    if let Some(l) = &state.loader {
        let lm = meta
            .get("loader")
            .ok_or_else(|| anyhow!("{mfile} holds no loader state"))?;
        let cursor: Cursor = serde_json::from_value(lm.get("cursor").cloned().unwrap_or_default())
            .with_context(|| format!("{mfile}: invalid loader cursor"))?;
        if lm.get("rows").and_then(Value::as_u64) != Some(l.rows as u64) {
            warnings.push(format!(
                "the loader had {} rows when saved, {} now: the order differs",
                lm.get("rows").unwrap_or(&Value::Null),
                l.rows
            ));
        }
        if lm.get("batch_size").and_then(Value::as_u64) != Some(l.batch_size as u64) {
            warnings.push(format!(
                "the loader's batch size was {} when saved, {} now",
                lm.get("batch_size").unwrap_or(&Value::Null),
                l.batch_size
            ));
        }
        if cursor.position > l.rows {
            bail!(
                "{mfile}: the loader cursor is at row {} but the loader has {} rows",
                cursor.position,
                l.rows
            );
        }
        cursor_plan = Some(cursor);
    }
    let mut changed = Vec::new();
    if let (Some(now), Some(saved)) = (&state.config, meta.get("config")) {
        let mut refused = Vec::new();
        for (k, line) in config_diff(saved, now) {
            let safe = ALWAYS_SAFE.contains(&k.as_str()) || policy.safe.contains(&k);
            if safe || policy.force {
                changed.push(line);
            } else {
                refused.push(line);
            }
        }
        if !refused.is_empty() {
            bail!(
                "the run's config differs from the checkpoint's in {}: resuming would not continue the same run. Use the checkpoint's values, or --set resume_force=true to apply the new ones",
                refused.join(", ")
            );
        }
        if !changed.is_empty() {
            warnings.push(format!(
                "the config differs from the checkpoint's; applying: {}",
                changed.join(", ")
            ));
        }
    }
    let opt_json = match &state.optimizer {
        None => None,
        Some(o) => {
            let saved = meta
                .get("optimizer")
                .ok_or_else(|| anyhow!("{mfile} holds no optimizer state"))?;
            let mut j = saved.clone();
            if state.config.is_some() {
                // The run's config decided the optimizer's settings (its changes were checked
                // above): keep them, take the moments and the step count.
                let now = o.state_json();
                for k in ["config", "schedule"] {
                    if saved.get(k) != now.get(k) {
                        warnings.push(format!(
                            "the optimizer's {k} differs from the checkpoint's ({} → {}): the current one applies",
                            saved.get(k).unwrap_or(&Value::Null),
                            now.get(k).unwrap_or(&Value::Null)
                        ));
                    }
                    j[k] = now[k].clone();
                }
            }
            Some(j)
        }
    };

    // 2. Apply: the optimizer first (it checks and changes nothing on error).
    if let (Some(o), Some(j)) = (state.optimizer.as_mut(), &opt_json) {
        o.load_state(&optim_t, j)
            .with_context(|| format!("{}", dir.display()))?;
    }
    if let (Some(mp), Some((seed, drawn))) = (&state.model, dropout) {
        mp.model
            .set_trainable(&model_t)
            .with_context(|| tfile.clone())?;
        // The dropout counter is shared by every view of the model: setting it on a copy
        // sets it for the caller's model too (the seed is checked equal above).
        let mut inner = mp.model.clone();
        inner.set_dropout_state(seed, drawn);
    }
    for (i, r) in rng_plan {
        *state.rngs[i].1 = r;
    }
    if let (Some(l), Some(c)) = (state.loader.as_mut(), cursor_plan) {
        *l.cursor = c;
    }
    Ok(Restored {
        step: meta.get("step").and_then(Value::as_i64),
        config: meta.get("config").cloned(),
        extra: meta.get("extra").cloned(),
        changed,
        warnings,
    })
}
