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

/// Writes `ckpt` as the checkpoint folder `dir`, atomically replacing any previous one; `extra`
/// may add files to the new folder (it receives the temporary path) before the swap. On error
/// the previous checkpoint, if any, is left as it was and the temporary folder is removed.
pub fn save(dir: &Path, ckpt: &Checkpoint, extra: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a folder", dir.display());
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
    let tensors = candle_core::safetensors::load(&tpath, &Device::Cpu)
        .with_context(|| format!("cannot read {}", tpath.display()))?;
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
