//! One LoRA training step (d1 one-step estimator, clipped surrogate, backward, AdamW) on CPU at
//! the bench size (d_model 256, 6 layers, 8 heads, mlp 704, vocab 8192; batch 4 × (32 prompt +
//! 128 completion) tokens; LoRA r 16 on every linear layer), with and without per-block
//! activation checkpointing — and the peak-memory saving of checkpointing.
//!
//! Run: `cargo bench --bench train`. Before divan's timings it prints the peak resident memory
//! of one step each way, measured by resetting the kernel's high-water mark
//! (`/proc/self/clear_refs`, Linux only) and reading `VmHWM` (first step of each model, so
//! one-off buffers such as the optimizer state are included in both).

use candle_core::{Device, Tensor};
use workbench_core::memstat;
use workbench_core::model::{remat, Config, Llada, LoadOptions, LoraConfig};
use workbench_core::train::estimators::logp_d1;
use workbench_core::train::losses::{clipped_surrogate, reduce, RatioLevel, Reduction};
use workbench_core::train::optim::{AdamW, AdamWConfig, Schedule};

const BATCH: usize = 4;
const PROMPT: usize = 32;
const GEN: usize = 128;

fn bench_model(checkpointing: bool) -> Llada {
    let cfg = Config::small(256, 6, 8, 8, 704, 8192);
    let lora = LoraConfig {
        r: 16,
        alpha: 32.0,
        dropout: 0.0,
        ..LoraConfig::default()
    };
    Llada::random(cfg, 0, &LoadOptions::default())
        .unwrap()
        .add_lora(&lora)
        .unwrap()
        .with_checkpointing(checkpointing)
}

fn ids(len: usize, salt: usize) -> Tensor {
    let data: Vec<u32> = (0..BATCH * len)
        .map(|i| ((i + salt) * 7919 % 8000) as u32)
        .collect();
    Tensor::from_vec(data, (BATCH, len), &Device::Cpu).unwrap()
}

struct Step {
    model: Llada,
    opt: AdamW,
    prompt: Tensor,
    completion: Tensor,
    old: Tensor,
    adv: Tensor,
}

impl Step {
    fn new(checkpointing: bool) -> Step {
        let model = bench_model(checkpointing);
        let opt = AdamW::new(
            model.trainable_vars(),
            AdamWConfig::default(),
            Schedule::Constant,
        )
        .unwrap();
        let (prompt, completion) = (ids(PROMPT, 1), ids(GEN, 2));
        let old = logp_d1(
            &model.with_checkpointing(false),
            &prompt,
            &completion,
            0.15,
            1,
            None,
        )
        .unwrap()
        .logp
        .detach();
        let adv = Tensor::new(&[1f32, -1.0, 0.5, -0.5], &Device::Cpu).unwrap();
        Step {
            model,
            opt,
            prompt,
            completion,
            old,
            adv,
        }
    }

    fn run(&mut self) {
        let est = logp_d1(&self.model, &self.prompt, &self.completion, 0.15, 1, None).unwrap();
        let out = clipped_surrogate(
            &est.logp,
            &self.old,
            &self.adv,
            &est.mask,
            0.2,
            0.2,
            RatioLevel::Token,
        )
        .unwrap();
        let loss = reduce(&out.loss, &est.mask, Reduction::TokenMean).unwrap();
        let grads = remat::backward(&loss).unwrap();
        self.opt.step_with(&grads).unwrap();
    }
}

#[divan::bench(args = [false, true], sample_count = 10)]
fn lora_d1_step(bencher: divan::Bencher, checkpointing: bool) {
    let mut step = Step::new(checkpointing);
    bencher.bench_local(|| step.run());
}

/// Peak resident set (KiB) while running `f`, or None where /proc does not support resetting it.
fn peak_kib(f: impl FnOnce()) -> Option<u64> {
    if !memstat::reset_peak() {
        return None;
    }
    f();
    memstat::status_kib("VmHWM")
}

fn main() {
    // Freed memory stays resident in the allocator, so the high-water mark can only be read
    // growing: run the checkpointed step first (smaller peak), then the plain one on top.
    let mut plain = Step::new(false);
    let mut ckpt = Step::new(true);
    let base = peak_kib(|| {}).unwrap_or(0);
    let c = peak_kib(|| ckpt.run());
    let p = peak_kib(|| plain.run());
    if let (Some(p), Some(c)) = (p, c) {
        let (p, c) = (p.saturating_sub(base), c.saturating_sub(base));
        println!(
            "peak memory of one step above the resident baseline: plain {:.1} MiB, checkpointed {:.1} MiB ({:.0}% less)",
            p as f64 / 1024.0,
            c as f64 / 1024.0,
            100.0 * (1.0 - c as f64 / p.max(1) as f64)
        );
    }
    divan::main();
}
