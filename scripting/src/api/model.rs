//! `Model` and `Tokenizer`: loading checkpoints, forward passes, encoding and chat templates.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::DType;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};
use workbench_core::device::{default_device, resolve};
use workbench_core::model::{resolve_model_dir, Llada, LoadOptions};
use workbench_core::tokenizer::{ChatMessage, Tokenizer};

use workbench_core::train::options::ModelOptions;

use super::convert::{err, options, script_err, to_script, IntoScript, RResult};
use super::tensor::{from_nested, ScriptTensor};

/// A loaded model with its tokenizer (when the checkpoint has one).
#[derive(Clone)]
pub struct ScriptModel {
    /// The network.
    pub model: Arc<Llada>,
    /// The checkpoint's tokenizer, if `tokenizer.json` is present.
    pub tokenizer: Option<Arc<Tokenizer>>,
    /// The checkpoint directory.
    pub dir: PathBuf,
}

/// A tokenizer with its chat template.
impl ScriptModel {
    /// A model derived from this one (adapters added, merged, toggled): its trainable
    /// variables registered as parameters, the tokenizer and folder kept.
    pub fn derived(&self, model: Llada) -> ScriptModel {
        for (_, v) in model.trainable_vars() {
            crate::api::tensor::register_param(v.as_tensor());
        }
        ScriptModel {
            model: Arc::new(model),
            tokenizer: self.tokenizer.clone(),
            dir: self.dir.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ScriptTokenizer(pub Arc<Tokenizer>);

/// A Tensor argument, or a nested array of ids turned into one (a flat array becomes one row).
pub(crate) fn ids_tensor(v: &Dynamic, what: &str) -> RResult<candle_core::Tensor> {
    if let Some(t) = v.clone().try_cast::<ScriptTensor>() {
        return Ok(t.t);
    }
    if let Some(a) = v.clone().try_cast::<Array>() {
        let t = from_nested(&a)?;
        return Ok(if t.rank() == 1 {
            t.unsqueeze(0).map_err(script_err)?
        } else {
            t
        });
    }
    Err(err(format!(
        "{what} must be a Tensor or an array of token ids, found {}",
        v.type_name()
    )))
}

fn ids_list(v: &Dynamic) -> RResult<Vec<u32>> {
    let t = ids_tensor(v, "ids")?;
    t.flatten_all()
        .and_then(|t| t.to_dtype(DType::U32))
        .and_then(|t| t.to_vec1::<u32>())
        .map_err(script_err)
}

fn load_options(o: &ModelOptions, device_default: candle_core::Device) -> RResult<LoadOptions> {
    let (device, dtype) =
        resolve(o.device.as_deref(), o.dtype.as_deref(), device_default).map_err(script_err)?;
    Ok(LoadOptions {
        device,
        dtype,
        trainable: o.trainable,
    })
}

fn register_vars(model: &Llada) {
    for (_, v) in model.vars() {
        crate::api::tensor::register_param(v.as_tensor());
    }
}

/// `decode` options.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct DecodeOptions {
    skip_special: bool,
}

/// `chat` options.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ChatOptions {
    add_generation_prompt: bool,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            add_generation_prompt: true,
        }
    }
}

#[export_module]
mod model_api {
    use super::*;

    /// The local folder of a model given as a folder or a Hugging Face repo id (resolved
    /// offline from the hub cache), e.g. to hash its `config.json`.
    #[rhai_fn(return_raw)]
    pub fn model_dir(name: &str) -> RResult<String> {
        Ok(resolve_model_dir(name)
            .map_err(script_err)?
            .display()
            .to_string())
    }
    /// Loads a LLaDA checkpoint (directory or Hugging Face repo id in the local cache).
    /// Options: `device` ("cpu", "cuda", "cuda:N"), `dtype` ("f32", "bf16", "f64"),
    /// `trainable` (every weight becomes a parameter).
    #[rhai_fn(name = "load_model", return_raw)]
    pub fn load_model_opts(path: &str, opts: Map) -> RResult<ScriptModel> {
        let o: ModelOptions = options("load_model", opts)?;
        if o.seed.is_some() {
            return Err(err(
                "load_model: option `seed` is for new_model (random weights)",
            ));
        }
        let load = load_options(&o, default_device())?;
        let dir = resolve_model_dir(path).map_err(script_err)?;
        let model = Llada::load(&dir, &load).map_err(script_err)?;
        register_vars(&model);
        let tokenizer = Tokenizer::load_if_present(&dir)
            .map_err(script_err)?
            .map(Arc::new);
        Ok(ScriptModel {
            model: Arc::new(model),
            tokenizer,
            dir,
        })
    }
    /// Loads a LLaDA checkpoint on the default device and dtype.
    #[rhai_fn(name = "load_model", return_raw)]
    pub fn load_model(path: &str) -> RResult<ScriptModel> {
        load_model_opts(path, Map::new())
    }
    /// A LLaDA-architecture model with seeded random weights (N(0, init_std), norms 1), built
    /// from a config map with at least `d_model`, `n_layers`, `n_heads`, `vocab_size` (any other
    /// config.json field may be given). Options: `seed` (default 0), `device`, `dtype`,
    /// `trainable`. It has no tokenizer.
    #[rhai_fn(return_raw)]
    pub fn new_model(config: Map, opts: Map) -> RResult<ScriptModel> {
        let cfg: workbench_core::model::Config = options("new_model: config", config)?;
        let o: ModelOptions = options("new_model", opts)?;
        let load = load_options(&o, candle_core::Device::Cpu)?;
        let model = Llada::random(cfg, o.seed.unwrap_or(0), &load).map_err(script_err)?;
        register_vars(&model);
        Ok(ScriptModel {
            model: Arc::new(model),
            tokenizer: None,
            dir: PathBuf::from("<random>"),
        })
    }
    /// Logits [B, L, V] for token ids [B, L] (a Tensor or nested array).
    #[rhai_fn(name = "forward", return_raw)]
    pub fn forward(m: &mut ScriptModel, ids: Dynamic) -> RResult<ScriptTensor> {
        let ids = ids_tensor(&ids, "forward: ids")?;
        m.model.forward(&ids, None).script()
    }
    /// Logits for left-padded ids [B, L] with an attention mask [B, L] (1 = real token).
    #[rhai_fn(name = "forward", return_raw)]
    pub fn forward_masked(
        m: &mut ScriptModel,
        ids: Dynamic,
        mask: Dynamic,
    ) -> RResult<ScriptTensor> {
        let ids = ids_tensor(&ids, "forward: ids")?;
        let mask = ids_tensor(&mask, "forward: mask")?;
        m.model.forward(&ids, Some(&mask)).script()
    }
    /// The checkpoint's config.json fields as a map.
    #[rhai_fn(get = "config", pure, return_raw)]
    pub fn config(m: &mut ScriptModel) -> RResult<Dynamic> {
        to_script(m.model.config())
    }
    /// Id of the mask token.
    #[rhai_fn(get = "mask_id", pure, return_raw)]
    pub fn mask_id(m: &mut ScriptModel) -> RResult<i64> {
        match &m.tokenizer {
            Some(t) => Ok(i64::from(t.special().mask)),
            None => m
                .model
                .config()
                .mask_id()
                .map(i64::from)
                .map_err(script_err),
        }
    }
    /// Id of the end-of-text token.
    #[rhai_fn(get = "eos_id", pure, return_raw)]
    pub fn eos_id(m: &mut ScriptModel) -> RResult<i64> {
        match (&m.tokenizer, m.model.config().eos_token_id) {
            (Some(t), _) => Ok(i64::from(t.special().eos)),
            (None, Some(id)) => Ok(i64::from(id)),
            (None, None) => Err(err("the model has no eos_token_id and no tokenizer")),
        }
    }
    /// Id of the end-of-turn token (`<|eot_id|>`), or -1 when the tokenizer has none.
    #[rhai_fn(get = "eot_id", pure)]
    pub fn eot_id(m: &mut ScriptModel) -> i64 {
        m.tokenizer
            .as_ref()
            .and_then(|t| t.special().eot)
            .map_or(-1, i64::from)
    }
    /// Number of tokens of the vocabulary.
    #[rhai_fn(get = "vocab_size", pure)]
    pub fn vocab_size(m: &mut ScriptModel) -> i64 {
        m.model.config().vocab_size as i64
    }
    /// Number of parameters.
    #[rhai_fn(pure)]
    pub fn num_params(m: &mut ScriptModel) -> i64 {
        m.model.config().num_params() as i64
    }
    /// The checkpoint's tokenizer.
    #[rhai_fn(pure, return_raw)]
    pub fn tokenizer(m: &mut ScriptModel) -> RResult<ScriptTokenizer> {
        m.tokenizer
            .clone()
            .map(ScriptTokenizer)
            .ok_or_else(|| err(format!("{} has no tokenizer.json", m.dir.display())))
    }
    /// Loads `tokenizer.json` + `tokenizer_config.json` from a checkpoint directory.
    #[rhai_fn(return_raw)]
    pub fn load_tokenizer(path: &str) -> RResult<ScriptTokenizer> {
        let dir = resolve_model_dir(path)
            .or_else(|_| Ok::<_, anyhow::Error>(PathBuf::from(path)))
            .map_err(script_err)?;
        let tok = Tokenizer::load_if_present(&dir)
            .map_err(script_err)?
            .ok_or_else(|| {
                err(format!(
                    "tokenizer file {} not found",
                    dir.join("tokenizer.json").display()
                ))
            })?;
        Ok(ScriptTokenizer(Arc::new(tok)))
    }
    /// Token ids of `text` (no special tokens added, as LLaDA does).
    #[rhai_fn(return_raw)]
    pub fn encode(t: &mut ScriptTokenizer, text: &str) -> RResult<Array> {
        Ok(t.0
            .encode(text)
            .map_err(script_err)?
            .into_iter()
            .map(|i| Dynamic::from(i64::from(i)))
            .collect())
    }
    /// Text of `ids` (array or tensor), keeping special tokens.
    #[rhai_fn(name = "decode", return_raw)]
    pub fn decode(t: &mut ScriptTokenizer, ids: Dynamic) -> RResult<String> {
        t.0.decode(&ids_list(&ids)?, false).map_err(script_err)
    }
    /// Text of `ids`; option `skip_special` drops special tokens.
    #[rhai_fn(name = "decode", return_raw)]
    pub fn decode_opts(t: &mut ScriptTokenizer, ids: Dynamic, opts: Map) -> RResult<String> {
        let o: DecodeOptions = options("decode", opts)?;
        t.0.decode(&ids_list(&ids)?, o.skip_special)
            .map_err(script_err)
    }
    /// Renders `messages` (array of `#{role, content}`) with the chat template;
    /// option `add_generation_prompt` (default true).
    #[rhai_fn(name = "chat", return_raw)]
    pub fn chat_opts(t: &mut ScriptTokenizer, messages: Array, opts: Map) -> RResult<String> {
        let o: ChatOptions = options("chat", opts)?;
        let msgs: Vec<ChatMessage> = rhai::serde::from_dynamic(&Dynamic::from_array(messages))
            .map_err(|e| {
                err(format!(
                    "chat: each message must be a map #{{role, content}}: {e}"
                ))
            })?;
        t.0.chat(&msgs, o.add_generation_prompt).map_err(script_err)
    }
    /// Renders `messages` with the chat template and a generation prompt.
    #[rhai_fn(name = "chat", return_raw)]
    pub fn chat(t: &mut ScriptTokenizer, messages: Array) -> RResult<String> {
        chat_opts(t, messages, Map::new())
    }
}

/// Registers `Model` and `Tokenizer`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptModel>("Model");
    engine.register_type_with_name::<ScriptTokenizer>("Tokenizer");
    engine.register_global_module(exported_module!(model_api).into());
}
