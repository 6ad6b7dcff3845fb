//! Files: safetensors maps of tensors, written atomically.

use std::collections::HashMap;
use std::path::Path;

use rhai::plugin::*;
use rhai::{Dynamic, Engine, Map};

use super::convert::{err, script_err, RResult};
use super::tensor::ScriptTensor;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// crash never leaves a half-written file behind.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot move {} into place: {e}", path.display())
    })
}

#[export_module]
mod io_api {
    use super::*;

    /// Reads every tensor of a safetensors file into a map name → Tensor (on the CPU).
    #[rhai_fn(return_raw)]
    pub fn load_safetensors(path: &str) -> RResult<Map> {
        let ts = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| err(format!("cannot read safetensors file {path}: {e}")))?;
        Ok(ts
            .into_iter()
            .map(|(k, v)| (k.into(), Dynamic::from(ScriptTensor::new(v))))
            .collect())
    }
    /// Writes a map name → Tensor to a safetensors file atomically (temp file + rename).
    #[rhai_fn(return_raw)]
    pub fn save_safetensors(path: &str, tensors: Map) -> RResult<()> {
        let mut out = HashMap::new();
        for (k, v) in tensors {
            let t = v.clone().try_cast::<ScriptTensor>().ok_or_else(|| {
                err(format!(
                    "save_safetensors: `{k}` is a {}, not a Tensor",
                    v.type_name()
                ))
            })?;
            out.insert(k.to_string(), t.t.contiguous().map_err(script_err)?);
        }
        write_atomic(Path::new(path), |tmp| {
            Ok(candle_core::safetensors::save(&out, tmp)?)
        })
        .map_err(script_err)
    }
}

/// Registers the file functions.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(io_api).into());
}
