//! Parity of `workbench_core::tokenizer` with Hugging Face `transformers` on the tiny LLaDA
//! fixture: chat-template rendering, token ids and decoding must match the golden outputs in
//! `tests/fixtures/chat_template.json` exactly, and special tokens must resolve (and conflicts
//! fail) as documented.

use std::path::{Path, PathBuf};

use serde_json::Value;
use workbench_core::tokenizer::{ChatMessage, ConfigIds, SpecialTokens, Tokenizer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model_dir() -> PathBuf {
    fixtures().join("llada-tiny")
}

fn config_ids() -> ConfigIds {
    ConfigIds::from_config_file(&model_dir().join("config.json")).expect("read config.json ids")
}

fn load() -> Tokenizer {
    Tokenizer::load(&model_dir(), &config_ids()).expect("load fixture tokenizer")
}

fn golden() -> Value {
    let text = std::fs::read_to_string(fixtures().join("chat_template.json")).expect("read golden");
    serde_json::from_str(&text).expect("parse golden")
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).expect("ids array")
}

#[test]
fn chat_cases_match_transformers() {
    let tok = load();
    let golden = golden();
    let cases = golden["chat"].as_array().expect("chat cases");
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let add_gen = case["add_generation_prompt"].as_bool().unwrap();
        let expected_text = case["text"].as_str().unwrap();
        let expected_ids = ids(&case["ids"]);

        let text = tok.chat(&messages, add_gen).unwrap();
        assert_eq!(text, expected_text, "chat case {i}: rendered text");
        assert_eq!(
            tok.chat_ids(&messages, add_gen).unwrap(),
            expected_ids,
            "chat case {i}: ids"
        );
        assert_eq!(
            tok.encode(&text).unwrap(),
            expected_ids,
            "chat case {i}: encode(text)"
        );
        // Special tokens survive a decode that keeps them, so the rendered text round-trips.
        assert_eq!(
            tok.decode(&expected_ids, false).unwrap(),
            expected_text,
            "chat case {i}: decode"
        );
    }
}

#[test]
fn encode_cases_match_transformers() {
    let tok = load();
    let golden = golden();
    let cases = golden["encode"].as_array().expect("encode cases");
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let expected_ids = ids(&case["ids"]);
        let decoded = case["decoded"].as_str().unwrap();

        assert_eq!(
            tok.encode(text).unwrap(),
            expected_ids,
            "encode case {i}: ids"
        );
        // `decoded` is `tokenizer.decode(ids)` with the default skip_special_tokens=False; the
        // texts hold no special tokens, so skipping them must not change anything either.
        assert_eq!(
            tok.decode(&expected_ids, false).unwrap(),
            decoded,
            "encode case {i}: decode"
        );
        assert_eq!(
            tok.decode(&expected_ids, true).unwrap(),
            decoded,
            "encode case {i}: decode(skip)"
        );
    }
}

#[test]
fn fixture_special_tokens() {
    let tok = load();
    assert_eq!(
        *tok.special(),
        SpecialTokens {
            mask: 999,
            eos: 994,
            eot: Some(998),
            bos: Some(995),
            pad: 994
        }
    );
    // Resolution by name alone (no config.json ids) gives the same answer.
    let by_name = Tokenizer::load(&model_dir(), &ConfigIds::default()).unwrap();
    assert_eq!(by_name.special(), tok.special());
    assert_eq!(tok.vocab_size(), 1000);
    assert_eq!(tok.token_to_id("<|mdm_mask|>"), Some(999));
    assert_eq!(tok.id_to_token(998).as_deref(), Some("<|eot_id|>"));
    assert_eq!(tok.decode(&[995, 998, 999], true).unwrap(), "");
}

#[test]
fn config_id_disagreement_is_an_error() {
    let ids = ConfigIds {
        mask: Some(5),
        ..config_ids()
    };
    let err = Tokenizer::load(&model_dir(), &ids).unwrap_err();
    let msg = format!("{err:#}");
    for needle in [
        "5",
        "999",
        "<|mdm_mask|>",
        "config.json",
        "tokenizer_config.json",
        "mask_token_id",
    ] {
        assert!(
            msg.contains(needle),
            "error should mention {needle:?}: {msg}"
        );
    }
}

#[test]
fn missing_tokenizer_json_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::load(dir.path(), &config_ids()).unwrap_err();
    let msg = format!("{err:#}");
    let path = dir.path().join("tokenizer.json");
    assert!(
        msg.contains(&path.display().to_string()),
        "error should name {}: {msg}",
        path.display()
    );
}

#[test]
fn malformed_tokenizer_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        model_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), "{ not json").unwrap();
    let msg = format!(
        "{:#}",
        Tokenizer::load(dir.path(), &config_ids()).unwrap_err()
    );
    assert!(msg.contains("tokenizer_config.json"), "{msg}");
}

#[test]
fn without_tokenizer_config_chat_fails_clearly_but_encoding_works() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        model_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let tok = Tokenizer::load(dir.path(), &ConfigIds::default()).unwrap();
    // Default names resolve against the vocabulary.
    assert_eq!(tok.special().mask, 999);
    assert_eq!(tok.special().pad, 994);
    assert_eq!(tok.encode("Hi").unwrap(), vec![39, 72]);
    let msg = format!(
        "{:#}",
        tok.chat(&[ChatMessage::user("Hi")], true).unwrap_err()
    );
    assert!(
        msg.contains("chat template") && msg.contains("tokenizer_config.json"),
        "{msg}"
    );
}

#[test]
fn raise_exception_in_template_fails_render_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        model_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let cfg = serde_json::json!({
        "eos_token": {"content": "<|endoftext|>", "__type": "AddedToken"},
        "chat_template": "{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}\
            {{ raise_exception('Unsupported role ' + m['role']) }}{% endif %}{{ m['content'] }}{% endfor %}",
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let tok = Tokenizer::load(dir.path(), &ConfigIds::default()).unwrap();
    assert_eq!(tok.chat(&[ChatMessage::user("ok")], false).unwrap(), "ok");
    let msg = format!(
        "{:#}",
        tok.chat(&[ChatMessage::new("tool", "x")], false)
            .unwrap_err()
    );
    assert!(
        msg.contains("Unsupported role tool") && msg.contains("tokenizer_config.json"),
        "{msg}"
    );
}
