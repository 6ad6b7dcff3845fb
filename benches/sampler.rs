//! Decoding throughput of the sampler on CPU at the bench size (random model d_model 256,
//! 6 layers, 8 heads, mlp 704, vocab 8192): batch 2, prompt 32, gen 128, block 32, LLaDA
//! low-confidence remasking in 64 steps and Fast-dLLM threshold decoding (τ 0.9), each without
//! a cache and with the prefix / dual key-value cache.
//!
//! Run: `cargo bench --bench sampler` (tokens/s is divan's `item` throughput: generated tokens
//! of the whole batch per second). Before the timings, one run of each configuration prints
//! its forward passes, the positions it recomputed and its agreement with exact decoding
//! (the cache is an approximation; see `docs/samplers.md`). The weights are random, so
//! confidences are tiny and threshold decoding commits one token per forward.

use divan::counter::ItemsCount;
use workbench_core::model::{Config, Llada, LoadOptions};
use workbench_core::sampler::{
    generate, CacheMode, GenerateOptions, GenerateOutput, SamplerConfig,
};

const BATCH: usize = 2;
const PROMPT: usize = 32;
const GEN: usize = 128;
const STEPS: usize = 64;
const BLOCK: usize = 32;
const CACHES: [&str; 3] = ["none", "prefix", "dual"];

fn bench_model() -> Llada {
    // Config::small sets mask = vocab − 1 and eos = pad = vocab − 6.
    let cfg = Config::small(256, 6, 8, 8, 704, 8192);
    Llada::random(cfg, 0, &LoadOptions::default()).unwrap()
}

fn prompts() -> Vec<Vec<u32>> {
    (0..BATCH)
        .map(|b| {
            (0..PROMPT)
                .map(|i| ((i + 31 * b) * 7919 % 8000) as u32)
                .collect()
        })
        .collect()
}

fn cache_mode(name: &str) -> CacheMode {
    match name {
        "none" => CacheMode::None,
        "prefix" => CacheMode::Prefix,
        "dual" => CacheMode::Dual,
        other => panic!("unknown cache {other}"),
    }
}

fn config(threshold: Option<f64>, cache: &str) -> SamplerConfig {
    SamplerConfig {
        gen_length: GEN,
        steps: STEPS,
        block_length: Some(BLOCK),
        threshold,
        cache: cache_mode(cache),
        ..SamplerConfig::default()
    }
}

fn decode(model: &Llada, prompts: &[Vec<u32>], cfg: &SamplerConfig) -> GenerateOutput {
    generate(model, prompts, cfg, GenerateOptions::default()).unwrap()
}

#[divan::bench(args = CACHES, sample_count = 5, sample_size = 1)]
fn low_confidence(bencher: divan::Bencher, cache: &str) {
    let model = bench_model();
    let prompts = prompts();
    let cfg = config(None, cache);
    bencher
        .counter(ItemsCount::new(BATCH * GEN))
        .bench_local(|| decode(&model, &prompts, &cfg));
}

#[divan::bench(args = CACHES, sample_count = 5, sample_size = 1)]
fn threshold_0_9(bencher: divan::Bencher, cache: &str) {
    let model = bench_model();
    let prompts = prompts();
    let cfg = config(Some(0.9), cache);
    bencher
        .counter(ItemsCount::new(BATCH * GEN))
        .bench_local(|| decode(&model, &prompts, &cfg));
}

/// One run per configuration: NFE, recomputed positions and agreement with exact decoding.
fn report() {
    let model = bench_model();
    let prompts = prompts();
    for (name, threshold) in [("low_confidence", None), ("threshold_0_9", Some(0.9))] {
        let exact = decode(&model, &prompts, &config(threshold, "none"));
        for cache in CACHES {
            let t = std::time::Instant::now();
            let out = decode(&model, &prompts, &config(threshold, cache));
            let secs = t.elapsed().as_secs_f64();
            let total = out.completions.iter().map(Vec::len).sum::<usize>();
            let same: usize = out
                .completions
                .iter()
                .zip(&exact.completions)
                .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x == y).count())
                .sum();
            eprintln!(
                "{name} cache {cache:<6}: nfe {:>3}, positions/row {:>6} ({:>5.1} per forward), \
                 agreement with exact {:.3}, one run {:.2} s",
                out.nfe,
                out.positions_processed,
                out.positions_processed as f64 / out.nfe as f64,
                same as f64 / total as f64,
                secs
            );
        }
    }
}

fn main() {
    report();
    divan::main();
}
