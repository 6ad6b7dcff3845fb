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
use minijinja::value::{from_args, Kwargs, ValueKind};
use minijinja::{AutoEscape, Environment, Error as JinjaError, ErrorKind, State, Value};
use serde::{Deserialize, Serialize};

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
const TEMPLATE_NAME: &str = "chat_template";

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

/// A minijinja environment set up like `transformers`' `_compile_jinja_template`.
fn build_env(template: String) -> std::result::Result<Environment<'static>, JinjaError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_function("raise_exception", raise_exception);
    env.add_filter("tojson", tojson);
    env.add_filter("trim", py_trim_filter);
    env.set_unknown_method_callback(py_method);
    env.add_template_owned(TEMPLATE_NAME, template)?;
    Ok(env)
}

fn raise_exception(message: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {message}"),
    ))
}

/// Python's `str.isspace` for one character.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip/lstrip/rstrip(chars)`.
fn py_strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let matches = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_py_space(c),
    };
    let s = if left {
        s.trim_start_matches(matches)
    } else {
        s
    };
    if right {
        s.trim_end_matches(matches)
    } else {
        s
    }
}

/// Jinja2's `trim` filter (`str.strip(chars)`).
fn py_trim_filter(value: &Value, chars: Option<String>) -> String {
    py_strip(&value.to_string(), chars.as_deref(), true, true).to_string()
}

/// Python's `str.split(sep, maxsplit)`.
fn py_split(
    s: &str,
    sep: Option<&str>,
    maxsplit: i64,
) -> std::result::Result<Vec<String>, JinjaError> {
    let limit = usize::try_from(maxsplit).ok();
    match sep {
        Some("") => Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            "split: empty separator",
        )),
        Some(sep) => Ok(match limit {
            Some(n) => s.splitn(n + 1, sep).map(str::to_string).collect(),
            None => s.split(sep).map(str::to_string).collect(),
        }),
        None => {
            let mut out = Vec::new();
            let mut rest = py_strip(s, None, true, false);
            while !rest.is_empty() {
                if limit.is_some_and(|n| out.len() == n) {
                    out.push(py_strip(rest, None, false, true).to_string());
                    break;
                }
                let end = rest.find(is_py_space).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = py_strip(&rest[end..], None, true, false);
            }
            Ok(out)
        }
    }
}

/// Python `str` and `dict` methods that chat templates commonly call.
fn py_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, JinjaError> {
    if let Some(s) = value.as_str() {
        return match method {
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<&str>,) = from_args(args)?;
                let (l, r) = match method {
                    "strip" => (true, true),
                    "lstrip" => (true, false),
                    _ => (false, true),
                };
                Ok(Value::from(py_strip(s, chars, l, r)))
            }
            "split" => {
                let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
                Ok(Value::from(py_split(s, sep, maxsplit.unwrap_or(-1))?))
            }
            "startswith" | "endswith" => {
                let (pat,): (Value,) = from_args(args)?;
                let test = |p: &str| {
                    if method == "startswith" {
                        s.starts_with(p)
                    } else {
                        s.ends_with(p)
                    }
                };
                let hit = match pat.as_str() {
                    Some(p) => test(p),
                    None => pat.try_iter()?.any(|p| p.as_str().is_some_and(test)),
                };
                Ok(Value::from(hit))
            }
            "replace" => {
                let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
                Ok(Value::from(match usize::try_from(count.unwrap_or(-1)) {
                    Ok(n) => s.replacen(old, new, n),
                    Err(_) => s.replace(old, new),
                }))
            }
            "upper" | "lower" | "title" | "capitalize" => {
                let _: () = from_args(args)?;
                state.apply_filter(method, std::slice::from_ref(value))
            }
            _ => Err(JinjaError::from(ErrorKind::UnknownMethod)),
        };
    }
    if value.kind() == ValueKind::Map {
        return match method {
            "items" => {
                let _: () = from_args(args)?;
                state.apply_filter("items", std::slice::from_ref(value))
            }
            "keys" => {
                let _: () = from_args(args)?;
                Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
            }
            "values" => {
                let _: () = from_args(args)?;
                let vals: std::result::Result<Vec<Value>, JinjaError> =
                    value.try_iter()?.map(|k| value.get_item(&k)).collect();
                Ok(Value::from(vals?))
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() {
                    default.unwrap_or(Value::from(()))
                } else {
                    v
                })
            }
            _ => Err(JinjaError::from(ErrorKind::UnknownMethod)),
        };
    }
    Err(JinjaError::from(ErrorKind::UnknownMethod))
}

/// Options of Python's `json.dumps` that `transformers`' `tojson` filter passes through.
struct JsonOpts {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// `transformers`' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, unescaped (unlike minijinja's HTML-safe `tojson`).
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an int or str",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    dump_json(value, &opts, 0, &mut out)?;
    Ok(Value::from(out))
}

fn dump_json(
    v: &Value,
    o: &JsonOpts,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), JinjaError> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => {
            let f = f64::try_from(v.clone())?;
            out.push_str(&py_float_repr(f));
        }
        ValueKind::String => dump_json_str(v.as_str().unwrap_or_default(), o.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            dump_container(out, o, level, '[', ']', &items, |item, out| {
                dump_json(item, o, level + 1, out)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if o.sort_keys {
                keys.sort();
            }
            dump_container(out, o, level, '{', '}', &keys, |k, out| {
                match k.as_str() {
                    Some(s) => dump_json_str(s, o.ensure_ascii, out),
                    None => dump_json_str(&k.to_string(), o.ensure_ascii, out),
                }
                out.push_str(&o.key_sep);
                dump_json(&v.get_item(k)?, o, level + 1, out)
            })?;
        }
        _ => dump_json_str(&v.to_string(), o.ensure_ascii, out),
    }
    Ok(())
}

fn dump_container(
    out: &mut String,
    o: &JsonOpts,
    level: usize,
    open: char,
    close: char,
    items: &[Value],
    mut each: impl FnMut(&Value, &mut String) -> std::result::Result<(), JinjaError>,
) -> std::result::Result<(), JinjaError> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    };
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&o.item_sep);
        }
        newline(out, level + 1);
        each(item, out)?;
    }
    newline(out, level);
    out.push(close);
    Ok(())
}

fn dump_json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` as `json.dumps` writes it.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        format!("{mant}e{sign}{digits:0>2}")
    } else {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, ctx: Value) -> String {
        let env = build_env(template.to_string()).unwrap();
        env.get_template(TEMPLATE_NAME)
            .unwrap()
            .render(ctx)
            .unwrap()
    }

    #[test]
    fn trim_blocks_and_lstrip_blocks_like_transformers() {
        let t = "  {% for x in xs %}\n{{ x }}\n  {% endfor %}\n";
        let ctx: Value = [("xs", Value::from(vec![1, 2]))].into_iter().collect();
        assert_eq!(render(t, ctx), "1\n2\n");
    }

    #[test]
    fn raise_exception_aborts_with_message() {
        let env = build_env("{{ raise_exception('bad role') }}".into()).unwrap();
        let err = env
            .get_template(TEMPLATE_NAME)
            .unwrap()
            .render(())
            .unwrap_err();
        assert!(format!("{err:#}").contains("bad role"));
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let ctx =
            Value::from_serialize(serde_json::json!({"x": {"b": [1, 2.5, "é<>\n"], "a": null}}));
        // minijinja maps iterate in key order (no `preserve_order`), so "a" comes first.
        assert_eq!(
            render("{{ x | tojson }}", ctx.clone()),
            r#"{"a": null, "b": [1, 2.5, "é<>\n"]}"#
        );
        assert_eq!(
            render("{{ x | tojson(indent=2, sort_keys=true) }}", ctx),
            "{\n  \"a\": null,\n  \"b\": [\n    1,\n    2.5,\n    \"é<>\\n\"\n  ]\n}"
        );
    }

    #[test]
    fn python_string_methods() {
        let ctx: Value = [("s", Value::from("  a b  c \n"))].into_iter().collect();
        assert_eq!(
            render(
                "{{ s.strip() }}|{{ s.split() | join(',') }}|{{ s.split(' ', 2) | length }}",
                ctx
            ),
            "a b  c|a,b,c|3"
        );
        assert_eq!(
            py_split("a,b,,c", Some(","), -1).unwrap(),
            ["a", "b", "", "c"]
        );
        assert_eq!(py_split("  x  y z ", None, 1).unwrap(), ["x", "y z"]);
    }

    #[test]
    fn float_repr() {
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(1e-7), "1e-07");
        assert_eq!(py_float_repr(1.5e20), "1.5e+20");
        assert_eq!(py_float_repr(0.1), "0.1");
    }
}
