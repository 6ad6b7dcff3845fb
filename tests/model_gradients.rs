//! The forward pass is differentiable end to end: every weight receives a finite, non-zero
//! gradient, and autograd agrees with float64 finite differences.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::fixture;
use workbench_core::model::{Llada, LoadOptions};
use workbench_core::ops::log_softmax;

fn ids() -> Tensor {
    let rows: Vec<u32> = (0..2 * 12).map(|i| ((i * 37 + 11) % 990) as u32).collect();
    Tensor::from_vec(rows, (2, 12), &Device::Cpu).unwrap()
}

/// Negative mean log-likelihood of `targets` at every position, in the model's dtype.
fn nll(model: &Llada, ids: &Tensor, mask: Option<&Tensor>) -> Tensor {
    let logits = model.forward(ids, mask).unwrap();
    let lp = log_softmax(&logits, 2).unwrap();
    let shifted: Vec<u32> = ids
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()
        .iter()
        .map(|t| (t + 1) % 990)
        .collect();
    let targets = Tensor::from_vec(shifted, ids.shape(), &Device::Cpu)
        .unwrap()
        .unsqueeze(2)
        .unwrap();
    lp.gather(&targets.contiguous().unwrap(), 2)
        .unwrap()
        .mean_all()
        .unwrap()
        .neg()
        .unwrap()
}

fn trainable(dtype: DType) -> Llada {
    let opts = LoadOptions {
        dtype,
        trainable: true,
        ..LoadOptions::default()
    };
    Llada::load(&fixture("llada-tiny"), &opts).unwrap()
}

#[test]
fn every_weight_receives_a_finite_nonzero_gradient() {
    let model = trainable(DType::F32);
    assert_eq!(model.vars().len(), 2 + 2 * 9 + 1);
    let mask = Tensor::new(
        &[[0u32, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1; 12]],
        &Device::Cpu,
    )
    .unwrap();
    let loss = nll(&model, &ids(), Some(&mask));
    let grads = loss.backward().unwrap();
    for (name, var) in model.vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            g.iter().all(|v| v.is_finite()),
            "non-finite gradient in {name}"
        );
        let norm: f32 = g.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(norm > 0.0, "zero gradient for {name}");
    }
}

fn set_elem(var: &Var, idx: usize, value: f64) {
    let shape = var.as_tensor().shape().clone();
    let mut data: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    data[idx] = value;
    var.set(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap())
        .unwrap();
}

#[test]
fn autograd_matches_float64_finite_differences() {
    let model = trainable(DType::F64);
    let mask = Tensor::new(
        &[[0u32, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1; 12]],
        &Device::Cpu,
    )
    .unwrap();
    let ids = ids();
    let loss = nll(&model, &ids, Some(&mask));
    let grads = loss.backward().unwrap();
    let picks = [
        ("model.transformer.wte.weight", 11 * 64 + 3),
        ("model.transformer.blocks.0.q_proj.weight", 5 * 64 + 7),
        ("model.transformer.blocks.0.k_proj.weight", 17),
        ("model.transformer.blocks.0.attn_norm.weight", 9),
        ("model.transformer.blocks.1.v_proj.weight", 63 * 64 + 1),
        ("model.transformer.blocks.1.ff_proj.weight", 100),
        ("model.transformer.blocks.1.up_proj.weight", 2000),
        ("model.transformer.blocks.1.ff_out.weight", 333),
        ("model.transformer.ln_f.weight", 40),
        ("model.transformer.ff_out.weight", 12 * 64 + 5),
    ];
    let h = 1e-5;
    for (name, idx) in picks {
        let var = &model.vars().iter().find(|(n, _)| n == name).unwrap().1;
        let analytic: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let analytic = analytic[idx];
        let orig: f64 = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[idx];
        set_elem(var, idx, orig + h);
        let up = nll(&model, &ids, Some(&mask)).to_scalar::<f64>().unwrap();
        set_elem(var, idx, orig - h);
        let down = nll(&model, &ids, Some(&mask)).to_scalar::<f64>().unwrap();
        set_elem(var, idx, orig);
        let numeric = (up - down) / (2.0 * h);
        let rel = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-8);
        assert!(
            rel <= 1e-3,
            "{name}[{idx}]: autograd {analytic:e} vs finite difference {numeric:e} (rel {rel:e})"
        );
        assert!(
            analytic.abs() > 1e-10,
            "{name}[{idx}]: gradient is zero; pick a live weight"
        );
    }
}
