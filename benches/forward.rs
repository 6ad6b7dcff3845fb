//! Forward throughput of the LLaDA stack on CPU at the bench size (d_model 256, 6 layers,
//! 8 heads, mlp 704, vocab 8192, batch 2 × 160 tokens). Weights are random, made by the code.
//!
//! Run: `cargo bench --bench forward` (tokens/s is divan's `item` throughput).

use candle_core::{Device, Tensor};
use divan::counter::ItemsCount;
use workbench_core::model::{Config, Llada, LoadOptions};

const BATCH: usize = 2;
const LEN: usize = 160;

fn bench_model() -> Llada {
    let cfg = Config::small(256, 6, 8, 8, 704, 8192);
    Llada::random(cfg, 0, &LoadOptions::default()).unwrap()
}

fn ids() -> Tensor {
    let data: Vec<u32> = (0..BATCH * LEN).map(|i| (i * 7919 % 8000) as u32).collect();
    Tensor::from_vec(data, (BATCH, LEN), &Device::Cpu).unwrap()
}

#[divan::bench(sample_count = 20)]
fn forward_logits(bencher: divan::Bencher) {
    let model = bench_model();
    let ids = ids();
    bencher
        .counter(ItemsCount::new(BATCH * LEN))
        .bench_local(|| model.forward(&ids, None).unwrap());
}

#[divan::bench(sample_count = 20)]
fn forward_hidden_only(bencher: divan::Bencher) {
    let model = bench_model();
    let ids = ids();
    bencher
        .counter(ItemsCount::new(BATCH * LEN))
        .bench_local(|| model.forward_hidden(&ids, None).unwrap());
}

fn main() {
    divan::main();
}
