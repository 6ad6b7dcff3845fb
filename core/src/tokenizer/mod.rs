//! Text ↔ token ids, special tokens and the chat template of a checkpoint directory.
//!
//! This module reproduces what Hugging Face `transformers` does with a checkpoint's
//! `tokenizer.json`, `tokenizer_config.json` and `config.json`, so that prompts, token ids and
//! decoded completions match the Python reference code token for token:
//!
//! - **Encoding** uses the `tokenizers` crate (the library behind `PreTrainedTokenizerFast`) with
//!   `add_special_tokens = false`, as LLaDA's code does for prompts and as
//!   `apply_chat_template(tokenize=True)` does for rendered chats.
//! - **Decoding** is `tokenizer.decode(ids, skip_special_tokens=...)`; the
//!   `clean_up_tokenization_spaces` pass is applied only when `tokenizer_config.json` asks for it
//!   (current `transformers` defaults it to off).
//! - **Chat templates** are rendered with minijinja configured like `transformers`'
//!   `_compile_jinja_template` / `render_jinja_template`: `trim_blocks` and `lstrip_blocks` on,
//!   no trailing-newline keeping, no auto-escaping, lenient undefined values, a
//!   `raise_exception(msg)` function that aborts rendering with `msg`, a `tojson` filter that
//!   writes like Python's `json.dumps(..., ensure_ascii=False)`, a `trim` filter with Python's
//!   notion of whitespace, and the common Python `str`/`dict` methods (`strip`, `split`,
//!   `startswith`, `items`, `get`, ...). The template sees `messages`, `add_generation_prompt`,
//!   `tools`/`documents` (none) and the special-token strings of `tokenizer_config.json`
//!   (`bos_token`, `eos_token`, `pad_token`, `unk_token`, ...). A `chat_template.jinja` file next
//!   to `tokenizer_config.json` takes precedence, as in `transformers`. Not supported:
//!   `strftime_now`, `{% generation %}` blocks and `break`/`continue`; and template maps iterate
//!   in key order rather than Python's insertion order (this matters only for `tojson`/`items()`
//!   over dicts, not for the usual `message['role']` lookups).
//! - **Special tokens** (mask, EOS, EoT, BOS, pad) are resolved by name from
//!   `tokenizer_config.json` and cross-checked against the ids in the model's `config.json`
//!   ([`ConfigIds`]); a disagreement is an error rather than a silent pick (see [`SpecialTokens`]).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use minijinja::{Environment, Error as JinjaError, Value};
use serde::{Deserialize, Serialize};

mod jinja;

use jinja::{build_env, TEMPLATE_NAME};

/// Default name of the mask token when `tokenizer_config.json` has no `mask_token`.
pub const DEFAULT_MASK_TOKEN: &str = "<|mdm_mask|>";
/// Default name of the end-of-sequence token when `tokenizer_config.json` has no `eos_token`.
pub const DEFAULT_EOS_TOKEN: &str = "<|endoftext|>";
/// Default name of the beginning-of-sequence token when `tokenizer_config.json` has no `bos_token`.
pub const DEFAULT_BOS_TOKEN: &str = "<|startoftext|>";
/// Name of the end-of-turn token (always looked up by this name).
pub const EOT_TOKEN: &str = "<|eot_id|>";

const TOKENIZER_FILE: &str = "tokenizer.json";
const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// One chat turn, as in the `messages` list given to Hugging Face's `apply_chat_template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Speaker: `"system"`, `"user"` or `"assistant"`.
    pub role: String,
    /// Text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `"user"` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `"assistant"` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// A `"system"` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
}

/// Special-token ids given by the model's `config.json` (`mask_token_id`, `eos_token_id`,
/// `pad_token_id`). Where present they take precedence over the tokenizer's names, but a
/// tokenizer that names the same token with a different id makes [`Tokenizer::load`] fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigIds {
    /// `mask_token_id`.
    pub mask: Option<u32>,
    /// `eos_token_id`.
    pub eos: Option<u32>,
    /// `pad_token_id`.
    pub pad: Option<u32>,
}

impl ConfigIds {
    /// Reads `mask_token_id`, `eos_token_id` and `pad_token_id` from a model `config.json`
    /// (absent or `null` fields give `None`; any other non-integer value is an error naming the
    /// file and field).
    pub fn from_config_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("malformed JSON in model config {}", path.display()))?;
        let field = |name: &str| -> Result<Option<u32>> {
            match json.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: `{name}` must be a non-negative integer token id, found {v}",
                            path.display()
                        )
                    }),
            }
        };
        Ok(Self {
            mask: field("mask_token_id")?,
            eos: field("eos_token_id")?,
            pad: field("pad_token_id")?,
        })
    }
}

/// The resolved special-token ids of a checkpoint.
///
/// Each of mask, EOS and pad is looked up by the name `tokenizer_config.json` gives it
/// (`mask_token`, `eos_token`, `pad_token`; defaults [`DEFAULT_MASK_TOKEN`],
/// [`DEFAULT_EOS_TOKEN`]) and combined with [`ConfigIds`]: the config id wins where present, a
/// different id for the same token from the tokenizer is an error, and a token found in neither
/// is an error (pad instead falls back to EOS). BOS is looked up by `bos_token` (default
/// [`DEFAULT_BOS_TOKEN`]) and EoT always by [`EOT_TOKEN`]; both are optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// The `[MASK]` token that marks not-yet-decoded positions.
    pub mask: u32,
    /// End of sequence (LLaDA pads generations with it).
    pub eos: u32,
    /// End of turn (`<|eot_id|>`), if the vocabulary has it.
    pub eot: Option<u32>,
    /// Beginning of sequence, if the vocabulary has it.
    pub bos: Option<u32>,
    /// Padding (left padding of prompt batches); EOS when nothing else is given.
    pub pad: u32,
}

/// A token in `tokenizer_config.json`: a plain string or an `AddedToken` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenSpec {
    Plain(String),
    Added { content: String },
}

impl TokenSpec {
    fn content(&self) -> &str {
        match self {
            TokenSpec::Plain(s) => s,
            TokenSpec::Added { content } => content,
        }
    }
}

/// `chat_template` in `tokenizer_config.json`: one template, or a list of named ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TemplateSpec {
    Single(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Clone, Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

/// The parts of `tokenizer_config.json` this module uses (other fields are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    chat_template: Option<TemplateSpec>,
    #[serde(default)]
    bos_token: Option<TokenSpec>,
    #[serde(default)]
    eos_token: Option<TokenSpec>,
    #[serde(default)]
    pad_token: Option<TokenSpec>,
    #[serde(default)]
    mask_token: Option<TokenSpec>,
    #[serde(default)]
    unk_token: Option<TokenSpec>,
    #[serde(default)]
    sep_token: Option<TokenSpec>,
    #[serde(default)]
    cls_token: Option<TokenSpec>,
    #[serde(default)]
    additional_special_tokens: Option<Vec<TokenSpec>>,
    #[serde(default)]
    clean_up_tokenization_spaces: Option<bool>,
}

/// The chat template after loading: compiled, absent, or failed to compile.
#[derive(Clone)]
enum ChatTemplate {
    Absent {
        looked_in: PathBuf,
    },
    Ready {
        env: Box<Environment<'static>>,
        source: PathBuf,
        text: String,
    },
    Invalid {
        source: PathBuf,
        error: String,
    },
}

/// A checkpoint's tokenizer: `tokenizer.json` plus `tokenizer_config.json` (special-token names
/// and chat template), behaving like Hugging Face's `PreTrainedTokenizerFast`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    template: ChatTemplate,
    /// Special-token strings from `tokenizer_config.json`, passed to the chat template.
    template_tokens: Vec<(&'static str, Value)>,
    clean_up_spaces: bool,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("chat_template", &self.chat_template().is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Copies the tokenizer files of checkpoint folder `src` that exist (`tokenizer.json`,
    /// `tokenizer_config.json`, `special_tokens_map.json`) into `out`, atomically each, so a
    /// saved model loads with its tokenizer.
    pub fn copy_files(src: &Path, out: &Path) -> Result<()> {
        for f in [
            TOKENIZER_FILE,
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            let from = src.join(f);
            if from.is_file() {
                let bytes = std::fs::read(&from)
                    .with_context(|| format!("cannot read {}", from.display()))?;
                crate::fsio::write_atomic(&out.join(f), &bytes)?;
            }
        }
        Ok(())
    }

    /// The tokenizer of the checkpoint folder `dir`, or `None` when it has no
    /// `tokenizer.json` (tiny random models): [`Tokenizer::load`] with the special-token ids of
    /// `dir/config.json` when that file exists.
    pub fn load_if_present(dir: &Path) -> Result<Option<Tokenizer>> {
        if !dir.join(TOKENIZER_FILE).is_file() {
            return Ok(None);
        }
        let cfg = dir.join("config.json");
        let ids = if cfg.is_file() {
            ConfigIds::from_config_file(&cfg)?
        } else {
            ConfigIds {
                mask: None,
                eos: None,
                pad: None,
            }
        };
        Tokenizer::load(dir, &ids).map(Some)
    }

    /// Loads `<dir>/tokenizer.json` and, if present, `<dir>/tokenizer_config.json` (and
    /// `<dir>/chat_template.jinja`), then resolves the special tokens against `config_ids` (see
    /// [`SpecialTokens`]). Errors name the file at fault. A chat template that does not compile
    /// is not an error here; [`Tokenizer::chat`] reports it.
    pub fn load(dir: &Path, config_ids: &ConfigIds) -> Result<Tokenizer> {
        let tok_path = dir.join(TOKENIZER_FILE);
        if !tok_path.is_file() {
            bail!("tokenizer file {} not found", tok_path.display());
        }
        let inner = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", tok_path.display()))?;

        let cfg_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config: TokenizerConfig = if cfg_path.is_file() {
            let text = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("cannot read {}", cfg_path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("malformed tokenizer config {}", cfg_path.display()))?
        } else {
            TokenizerConfig::default()
        };

        let special = resolve_special(&inner, &config, config_ids)?;
        let template = load_template(dir, &config)?;

        let mut template_tokens: Vec<(&'static str, Value)> = [
            ("bos_token", &config.bos_token),
            ("eos_token", &config.eos_token),
            ("unk_token", &config.unk_token),
            ("sep_token", &config.sep_token),
            ("pad_token", &config.pad_token),
            ("cls_token", &config.cls_token),
            ("mask_token", &config.mask_token),
        ]
        .into_iter()
        .filter_map(|(name, tok)| tok.as_ref().map(|t| (name, Value::from(t.content()))))
        .collect();
        if let Some(extra) = &config.additional_special_tokens {
            let list: Vec<Value> = extra.iter().map(|t| Value::from(t.content())).collect();
            template_tokens.push(("additional_special_tokens", Value::from(list)));
        }

        Ok(Tokenizer {
            inner,
            special,
            template,
            template_tokens,
            clean_up_spaces: config.clean_up_tokenization_spaces.unwrap_or(false),
        })
    }

    /// Token ids of `text`, without adding special tokens (`add_special_tokens=False`, as LLaDA
    /// does). Special-token strings inside `text` (e.g. `<|eot_id|>`) become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizer encode failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, like Hugging Face's `decode(ids, skip_special_tokens=skip_special)`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let text = self
            .inner
            .decode(ids, skip_special)
            .map_err(|e| anyhow!("tokenizer decode failed: {e}"))?;
        Ok(if self.clean_up_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// The resolved special-token ids.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Number of ids the tokenizer knows, added tokens included (Hugging Face's `len(tokenizer)`).
    /// The model's embedding may be larger.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of the token spelled `token` (vocabulary or added token), if any.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Spelling of token `id` (byte-level form for BPE vocabularies), if the id exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The raw chat template, if the checkpoint has one.
    pub fn chat_template(&self) -> Option<&str> {
        match &self.template {
            ChatTemplate::Ready { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Renders `messages` with the checkpoint's chat template, like Hugging Face's
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    /// Errors if there is no template, it does not compile, or rendering fails (including
    /// `raise_exception`), naming the template's file and the Jinja error.
    pub fn chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let (env, source) = match &self.template {
            ChatTemplate::Ready { env, source, .. } => (env, source),
            ChatTemplate::Absent { looked_in } => bail!(
                "no chat template: {} has no `chat_template` (or is missing) and there is no {}",
                looked_in.join(TOKENIZER_CONFIG_FILE).display(),
                looked_in.join(CHAT_TEMPLATE_FILE).display()
            ),
            ChatTemplate::Invalid { source, error } => {
                bail!(
                    "chat template from {} does not compile: {error}",
                    source.display()
                )
            }
        };
        let mut ctx: Vec<(&str, Value)> = self.template_tokens.clone();
        ctx.push(("messages", Value::from_serialize(messages)));
        ctx.push(("add_generation_prompt", Value::from(add_generation_prompt)));
        ctx.push(("tools", Value::from(())));
        ctx.push(("documents", Value::from(())));
        let ctx: Value = ctx.into_iter().collect();
        let tmpl = env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(source, "load", &e))?;
        tmpl.render(ctx)
            .map_err(|e| template_error(source, "render", &e))
    }

    /// Token ids of the rendered chat ([`Tokenizer::chat`] then [`Tokenizer::encode`], i.e.
    /// `apply_chat_template(..., tokenize=True)`, which does not add special tokens).
    pub fn chat_ids(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.chat(messages, add_generation_prompt)?;
        self.encode(&text)
    }
}

fn template_error(source: &Path, what: &str, err: &JinjaError) -> anyhow::Error {
    anyhow!(
        "chat template from {} failed to {what}: {err:#}",
        source.display()
    )
}

/// Looks `name` up in the tokenizer and reconciles it with the id from `config.json`.
fn reconcile(
    inner: &tokenizers::Tokenizer,
    what: &str,
    config_field: &str,
    name: &str,
    name_origin: &str,
    config_id: Option<u32>,
) -> Result<Option<u32>> {
    let by_name = inner.token_to_id(name);
    match (config_id, by_name) {
        (Some(c), Some(t)) if c != t => bail!(
            "{what} token mismatch: config.json has {config_field} = {c}, but {name_origin} \
             {name:?}, which {TOKENIZER_FILE} maps to id {t}; fix one of config.json or \
             {TOKENIZER_CONFIG_FILE} so they agree"
        ),
        (Some(c), _) => Ok(Some(c)),
        (None, t) => Ok(t),
    }
}

fn resolve_special(
    inner: &tokenizers::Tokenizer,
    config: &TokenizerConfig,
    ids: &ConfigIds,
) -> Result<SpecialTokens> {
    let named = |tok: &Option<TokenSpec>, field: &str, default: &'static str| -> (String, String) {
        match tok {
            Some(t) => (
                t.content().to_string(),
                format!("{TOKENIZER_CONFIG_FILE} names {field}"),
            ),
            None => (
                default.to_string(),
                format!("the default {field} (absent from {TOKENIZER_CONFIG_FILE}) is"),
            ),
        }
    };

    let (mask_name, mask_origin) = named(&config.mask_token, "mask_token", DEFAULT_MASK_TOKEN);
    let mask = reconcile(
        inner,
        "mask",
        "mask_token_id",
        &mask_name,
        &mask_origin,
        ids.mask,
    )?
    .ok_or_else(|| {
        anyhow!(
            "no mask token: config.json has no mask_token_id and {TOKENIZER_FILE} has no \
                 token {mask_name:?} ({mask_origin} {mask_name:?})"
        )
    })?;

    let (eos_name, eos_origin) = named(&config.eos_token, "eos_token", DEFAULT_EOS_TOKEN);
    // Chat checkpoints often name the turn terminator `<|eot_id|>` as eos_token (it is what
    // generation stops on); the diffusion EOS that fills the canvas is config.json's id, and
    // EoT is tracked separately, so that pairing is not a disagreement.
    let eos_lookup = if eos_name == EOT_TOKEN && ids.eos.is_some() {
        DEFAULT_EOS_TOKEN.to_string()
    } else {
        eos_name.clone()
    };
    let eos = reconcile(
        inner,
        "EOS",
        "eos_token_id",
        &eos_lookup,
        &eos_origin,
        ids.eos,
    )?
    .ok_or_else(|| {
        anyhow!(
            "no EOS token: config.json has no eos_token_id and {TOKENIZER_FILE} has no \
                 token {eos_name:?} ({eos_origin} {eos_name:?})"
        )
    })?;

    let pad = match &config.pad_token {
        Some(t) => {
            let origin = format!("{TOKENIZER_CONFIG_FILE} names pad_token");
            reconcile(inner, "pad", "pad_token_id", t.content(), &origin, ids.pad)?
        }
        None => ids.pad,
    }
    .unwrap_or(eos);

    let (bos_name, _) = named(&config.bos_token, "bos_token", DEFAULT_BOS_TOKEN);
    let bos = inner.token_to_id(&bos_name);
    let eot = inner.token_to_id(EOT_TOKEN);

    Ok(SpecialTokens {
        mask,
        eos,
        eot,
        bos,
        pad,
    })
}

/// Finds the chat template (`chat_template.jinja` first, then `tokenizer_config.json`) and
/// compiles it.
fn load_template(dir: &Path, config: &TokenizerConfig) -> Result<ChatTemplate> {
    let jinja_path = dir.join(CHAT_TEMPLATE_FILE);
    let cfg_path = dir.join(TOKENIZER_CONFIG_FILE);
    let (text, source) = if jinja_path.is_file() {
        let text = std::fs::read_to_string(&jinja_path)
            .with_context(|| format!("cannot read {}", jinja_path.display()))?;
        (text, jinja_path)
    } else {
        match &config.chat_template {
            None => {
                return Ok(ChatTemplate::Absent {
                    looked_in: dir.to_path_buf(),
                })
            }
            Some(TemplateSpec::Single(t)) => (t.clone(), cfg_path),
            Some(TemplateSpec::Named(list)) => match list.iter().find(|t| t.name == "default") {
                Some(t) => (t.template.clone(), cfg_path),
                None => {
                    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
                    let error =
                        format!("it holds named templates {names:?} but none named \"default\"");
                    return Ok(ChatTemplate::Invalid {
                        source: cfg_path,
                        error,
                    });
                }
            },
        }
    };
    Ok(match build_env(text.clone()) {
        Ok(env) => ChatTemplate::Ready {
            env: Box::new(env),
            source,
            text,
        },
        Err(e) => ChatTemplate::Invalid {
            source,
            error: format!("{e:#}"),
        },
    })
}

/// Hugging Face's `clean_up_tokenization` (used when `clean_up_tokenization_spaces` is true).
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}
