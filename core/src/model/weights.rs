//! Checkpoint weights: one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, memory-mapped and converted to the compute dtype on load.
//!
//! Errors name the tensor, the shape expected and found, and the file, because a wrong
//! checkpoint is the most common way a run fails before it starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

/// Where a model's tensors come from.
pub enum WeightSource {
    /// Memory-mapped safetensors files; `routing` maps a tensor name to its file.
    Files {
        files: Vec<(PathBuf, MmapedSafetensors)>,
        routing: HashMap<String, usize>,
    },
    /// Tensors already in memory (random init, tests, benchmarks).
    Memory(HashMap<String, Tensor>),
}

impl std::fmt::Debug for WeightSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightSource::Files { files, .. } => f
                .debug_list()
                .entries(files.iter().map(|(p, _)| p))
                .finish(),
            WeightSource::Memory(m) => write!(f, "Memory({} tensors)", m.len()),
        }
    }
}

/// `cannot read safetensors file PATH: why`, the path said once (candle attaches it too).
fn read_error(path: &Path, e: &candle_core::Error) -> anyhow::Error {
    let head = format!("cannot read safetensors file {}", path.display());
    anyhow::anyhow!("{head}: {}", crate::error_report::candle_text(e, &head))
}

/// Memory-maps one safetensors file and parses its header.
pub fn mmap_file(path: &Path) -> Result<MmapedSafetensors> {
    // SAFETY: the mapping is read-only; like every safetensors loader we rely on the file not
    // being truncated while the process runs.
    #[allow(unsafe_code)]
    let st = unsafe { MmapedSafetensors::new(path) };
    st.map_err(|e| read_error(path, &e))
}

/// Reads every tensor of one safetensors file into memory on `device` (adapters, checkpoints,
/// scripts' `load_safetensors`); errors name the file once.
pub fn load_file(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| read_error(path, &e))
}

impl WeightSource {
    /// Opens the weights of a checkpoint directory: `model.safetensors`, or the shards named by
    /// `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<WeightSource> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let paths: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index)
                .with_context(|| format!("cannot read {}", index.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("malformed shard index {}", index.display()))?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .with_context(|| {
                    format!("shard index {} has no `weight_map` object", index.display())
                })?;
            let mut names: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else if single.exists() {
            vec![single]
        } else {
            bail!(
                "no weights in {}: expected model.safetensors or model.safetensors.index.json",
                dir.display()
            );
        };
        let mut files = Vec::new();
        let mut routing = HashMap::new();
        for (i, p) in paths.into_iter().enumerate() {
            let st = mmap_file(&p)?;
            for (name, _) in st.tensors() {
                routing.insert(name, i);
            }
            files.push((p, st));
        }
        Ok(WeightSource::Files { files, routing })
    }

    /// Checks, from the headers alone, that every tensor `cfg` needs is present with its shape.
    pub fn check(&self, cfg: &crate::model::Config) -> Result<()> {
        self.check_config(cfg)?;
        for (name, shape) in crate::model::tensor_names(cfg) {
            self.check_tensor(&name, &shape)?;
        }
        Ok(())
    }

    /// Checks the config's sizes against the weights actually present before anything is
    /// built from them: the embedding's shape (`embedding_size`/`vocab_size`, `d_model`) and the
    /// number of blocks (`n_layers`), naming the config key that disagrees.
    pub fn check_config(&self, cfg: &crate::model::Config) -> Result<()> {
        let names: Vec<&str> = match self {
            WeightSource::Files { routing, .. } => routing.keys().map(String::as_str).collect(),
            WeightSource::Memory(m) => m.keys().map(String::as_str).collect(),
        };
        let blocks = names
            .iter()
            .filter_map(|n| n.strip_prefix("model.transformer.blocks."))
            .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1);
        if blocks != cfg.n_layers {
            bail!(
                "config field `n_layers` = {} but the weights hold {blocks} block(s)",
                cfg.n_layers
            );
        }
        let wte = "model.transformer.wte.weight";
        let shape = match self {
            WeightSource::Files { files, routing } => match routing.get(wte) {
                Some(&i) => Some(files[i].1.get(wte)?.shape().to_vec()),
                None => None,
            },
            WeightSource::Memory(m) => m.get(wte).map(|t| t.dims().to_vec()),
        };
        if let Some(shape) = shape {
            let want = [cfg.embedding_size(), cfg.d_model];
            if shape.len() != 2 || shape[1] != want[1] {
                bail!(
                    "config field `d_model` = {} but `{wte}` has shape {shape:?}",
                    cfg.d_model
                );
            }
            if shape[0] != want[0] {
                let key = if cfg.embedding_size.is_some() {
                    "embedding_size"
                } else {
                    "vocab_size"
                };
                bail!(
                    "config field `{key}` = {} but `{wte}` has shape {shape:?}",
                    want[0]
                );
            }
        }
        Ok(())
    }

    /// Checks that tensor `name` exists with `shape`, naming the file on failure.
    pub fn check_tensor(&self, name: &str, shape: &[usize]) -> Result<()> {
        match self {
            WeightSource::Files { files, routing } => {
                let Some(&i) = routing.get(name) else {
                    let list: Vec<String> =
                        files.iter().map(|(p, _)| p.display().to_string()).collect();
                    bail!(
                        "tensor `{name}` (shape {shape:?}) is missing from the checkpoint ({})",
                        list.join(", ")
                    );
                };
                let (path, st) = &files[i];
                let view = st.get(name)?;
                if view.shape() != shape {
                    bail!(
                        "tensor `{name}` in {} has shape {:?}, expected {shape:?}",
                        path.display(),
                        view.shape()
                    );
                }
            }
            WeightSource::Memory(m) => {
                let Some(t) = m.get(name) else {
                    bail!(
                        "tensor `{name}` (shape {shape:?}) is missing from the in-memory weights"
                    );
                };
                if t.dims() != shape {
                    bail!(
                        "in-memory tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.dims()
                    );
                }
            }
        }
        Ok(())
    }

    /// Loads tensor `name`, checks it has `shape`, and converts it to `dtype` on `device`.
    pub fn get(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        self.check_tensor(name, shape)?;
        let (tensor, origin) = match self {
            WeightSource::Files { files, routing } => {
                let (path, st) = &files[routing[name]];
                let t = st
                    .load(name, &Device::Cpu)
                    .with_context(|| format!("cannot load `{name}` from {}", path.display()))?;
                (t, path.display().to_string())
            }
            WeightSource::Memory(m) => (m[name].clone(), "memory".to_string()),
        };
        if !tensor.dtype().is_float() {
            bail!(
                "tensor `{name}` in {origin} is stored as {:?}; weights must be floating point \
                 (f16, bf16, f32 or f64), integer weights are not cast silently",
                tensor.dtype()
            );
        }
        // Convert on the host first: CPU has no bf16 matmul, and f16/bf16 → f32 is exact.
        let t = tensor
            .to_dtype(dtype)
            .and_then(|t| t.to_device(device))
            .with_context(|| format!("cannot convert `{name}` from {origin} to {dtype:?}"))?;
        let bad = crate::sampler::guard::count_non_finite(&t)
            .with_context(|| format!("cannot check `{name}` for NaN/Inf"))?;
        if bad > 0 {
            bail!(
                "tensor `{name}` in {origin} has {bad} NaN/Inf value(s) (after conversion to \
                 {dtype:?}); refusing to run a model with non-finite weights"
            );
        }
        Ok(t)
    }

    /// Storage dtype of the first tensor (what the checkpoint holds on disk).
    pub fn storage_dtype(&self) -> Option<DType> {
        match self {
            WeightSource::Files { files, .. } => files.iter().find_map(|(_, st)| {
                st.tensors()
                    .first()
                    .and_then(|(_, v)| DType::try_from(v.dtype()).ok())
            }),
            WeightSource::Memory(m) => m.values().next().map(|t| t.dtype()),
        }
    }

    /// Total bytes of the stored tensors.
    pub fn storage_bytes(&self) -> usize {
        match self {
            WeightSource::Files { files, .. } => files
                .iter()
                .flat_map(|(_, st)| st.tensors())
                .map(|(_, v)| v.data().len())
                .sum(),
            WeightSource::Memory(m) => m
                .values()
                .map(|t| t.elem_count() * t.dtype().size_in_bytes())
                .sum(),
        }
    }

    /// The files the weights come from (empty for in-memory weights).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            WeightSource::Files { files, .. } => files.iter().map(|(p, _)| p.clone()).collect(),
            WeightSource::Memory(_) => Vec::new(),
        }
    }
}
