//! Files: safetensors maps of tensors, written atomically.

use std::collections::HashMap;
use std::path::Path;

use rhai::plugin::*;
use rhai::{Dynamic, Engine, Map};

use super::tensor::ScriptTensor;
use crate::api::convert::{err, script_err, RResult};

pub use workbench_core::fsio::write_atomic_with as write_atomic;

#[export_module]
mod io_api {
    use super::*;

    /// Reads every tensor of a safetensors file into a map name → Tensor (on the CPU).
    #[rhai_fn(return_raw)]
    pub fn load_safetensors(path: &str) -> RResult<Map> {
        let ts =
            workbench_core::model::weights::load_file(Path::new(path), &candle_core::Device::Cpu)
                .map_err(script_err)?;
        Ok(ts
            .into_iter()
            .map(|(k, v)| (k.into(), Dynamic::from(ScriptTensor::new(v))))
            .collect())
    }
    /// Reads a JSON file into Rhai values (objects → maps, arrays → arrays).
    #[rhai_fn(return_raw)]
    pub fn load_json(path: &str) -> RResult<Dynamic> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {path}: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err(format!("malformed JSON in {path}: {e}")))?;
        crate::api::convert::to_script(v)
    }
    /// Writes a Rhai value as pretty JSON, atomically (temp file + rename).
    #[rhai_fn(return_raw)]
    pub fn save_json(path: &str, value: Dynamic) -> RResult<()> {
        let text =
            serde_json::to_string_pretty(&crate::api::convert::to_json(&value, "save_json")?)
                .map_err(script_err)?;
        write_atomic(Path::new(path), |tmp| Ok(std::fs::write(tmp, text + "\n")?))
            .map_err(script_err)
    }
    /// A 64-bit FNV-1a hash of a file's bytes as 16 hex digits (records which data or config a
    /// result came from).
    #[rhai_fn(return_raw)]
    pub fn file_hash(path: &str) -> RResult<String> {
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read {path}: {e}")))?;
        let h = workbench_core::data::hygiene::content_hash(&bytes);
        Ok(format!("{h:016x}"))
    }
    /// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn now_utc() -> String {
        workbench_core::term::now_utc()
    }
    /// Writes text to a file atomically (temp file + rename), creating folders as needed.
    #[rhai_fn(return_raw)]
    pub fn write_text(path: &str, text: &str) -> RResult<()> {
        let text = text.to_string();
        write_atomic(Path::new(path), |tmp| Ok(std::fs::write(tmp, text)?)).map_err(script_err)
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
