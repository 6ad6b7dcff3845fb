//! The fused training block (`model::block_grad`: five graph nodes, hand-written backward)
//! against the block built from candle ops: the same logits bit for bit, and the same
//! gradients of the input embedding and every weight, in f32 and f64, with padding, GQA and
//! activation checkpointing. A plain `loss.backward()` must see every weight, and so must
//! `remat::backward`, whose weight gradients skip candle's accumulation (`ops::deferred`).

use candle_core::{DType, Device, Tensor};
use workbench_core::model::block_grad::with_fused_blocks;
use workbench_core::model::config::Config;
use workbench_core::model::{remat, Llada, LoadOptions};

fn model(n_kv_heads: usize, dtype: DType) -> Llada {
    let mut cfg = Config::small(32, 2, 4, n_kv_heads, 48, 61);
    cfg.mask_token_id = Some(60);
    let opts = LoadOptions {
        trainable: true,
        dtype,
        ..Default::default()
    };
    Llada::random(cfg, 3, &opts).unwrap()
}

fn ids() -> Tensor {
    let v: Vec<u32> = (0..2 * 9).map(|i| (i * 7 + 3) % 60).collect();
    Tensor::from_vec(v, (2, 9), &Device::Cpu).unwrap()
}

/// Logits and the gradient of every trainable tensor of a weighted sum of the logits.
fn run(
    m: &Llada,
    fused: bool,
    mask: Option<&Tensor>,
    plain: bool,
) -> (Vec<f64>, Vec<(String, Vec<f64>)>) {
    with_fused_blocks(fused, || {
        let logits = m.forward(&ids(), mask).unwrap();
        let n = logits.elem_count();
        let w: Vec<f64> = (0..n)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 50.0)
            .collect();
        let w = Tensor::from_vec(w, logits.shape(), &Device::Cpu)
            .unwrap()
            .to_dtype(logits.dtype())
            .unwrap();
        let loss = (&logits * w).unwrap().sum_all().unwrap();
        let grads = if plain {
            loss.backward().unwrap()
        } else {
            remat::backward(&loss).unwrap()
        };
        let flat = |t: &Tensor| -> Vec<f64> {
            t.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let g = m
            .trainable_vars()
            .into_iter()
            .map(|(name, v)| {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient (fused = {fused})"));
                (name, flat(g))
            })
            .collect();
        (flat(&logits), g)
    })
}

fn compare(m: &Llada, mask: Option<&Tensor>, tol: f64, plain: bool) {
    let (l0, g0) = run(m, false, mask, plain);
    let (l1, g1) = run(m, true, mask, plain);
    assert_eq!(
        l0, l1,
        "the fused block must give the same logits bit for bit"
    );
    assert_eq!(g0.len(), g1.len());
    for ((name, a), (_, b)) in g0.iter().zip(&g1) {
        let scale = a.iter().fold(0f64, |s, x| s.max(x.abs()));
        assert!(scale > 0.0, "{name}: zero gradient");
        let err = a.iter().zip(b).fold(0f64, |s, (x, y)| s.max((x - y).abs()));
        assert!(
            err <= tol * scale,
            "{name}: max |Δg| {err:e} > {tol:e} · {scale:e}"
        );
    }
}

#[test]
fn fused_block_matches_the_composite_block_in_f32_and_f64() {
    compare(&model(4, DType::F32), None, 1e-5, false);
    compare(&model(4, DType::F64), None, 1e-11, false);
}

#[test]
fn fused_block_matches_with_padding_gqa_and_a_plain_backward() {
    let mask = Tensor::from_vec(
        vec![0u32, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        (2, 9),
        &Device::Cpu,
    )
    .unwrap();
    compare(&model(2, DType::F32), Some(&mask), 1e-5, false);
    compare(&model(2, DType::F64), Some(&mask), 1e-11, true);
}

#[test]
fn fused_block_matches_under_activation_checkpointing() {
    let m = model(4, DType::F64).with_checkpointing(true);
    compare(&m, None, 1e-11, false);
}

/// Two forwards of one model in one loss: every weight's gradient is the sum over both, the
/// same whether candle accumulates it (a plain backward) or the fused block and the linear
/// layers hand it over (`remat::backward`, through `ops::deferred`).
#[test]
fn a_weight_used_by_two_forwards_gets_both_gradients_either_way() {
    let m = model(4, DType::F64);
    let other: Vec<u32> = (0..2 * 9).map(|i| (i * 5 + 1) % 60).collect();
    let other = Tensor::from_vec(other, (2, 9), &Device::Cpu).unwrap();
    let grads = |plain: bool| {
        let a = m
            .forward(&ids(), None)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let b = m.forward(&other, None).unwrap().sum_all().unwrap();
        let loss = (a + b).unwrap();
        let g = if plain {
            loss.backward().unwrap()
        } else {
            remat::backward(&loss).unwrap()
        };
        m.trainable_vars()
            .into_iter()
            .map(|(name, v)| {
                let t = g
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient"));
                let t = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                (name, t)
            })
            .collect::<Vec<_>>()
    };
    for ((name, a), (_, b)) in grads(true).iter().zip(&grads(false)) {
        let scale = a.iter().fold(0f64, |s, x| s.max(x.abs()));
        assert!(scale > 0.0, "{name}: zero gradient");
        let err = a.iter().zip(b).fold(0f64, |s, (x, y)| s.max((x - y).abs()));
        assert!(
            err <= 1e-12 * scale,
            "{name}: max |Δg| {err:e} vs {scale:e}"
        );
    }
}
