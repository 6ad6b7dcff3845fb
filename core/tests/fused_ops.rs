//! The fused CPU kernels (`ops::fused`) against the composite ops of `ops`: values and
//! gradients on random inputs, in f32 (relative tolerance 1e-5) and f64 (1e-11), including
//! strided inputs, per-row RoPE tables, a padding bias and bad input.

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use workbench_core::ops::{self, fused};

fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize], dtype: DType, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a − b| / max(max |b|, tiny).
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (to_f64(a), to_f64(b));
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-11
    } else {
        1e-5
    }
}

/// Runs `fused` and `composite` on the same fresh variables and checks their outputs and the
/// gradients of `sum(out · w)` (random w) with respect to every variable.
fn check(
    name: &str,
    dtype: DType,
    inputs: &[Tensor],
    fused_f: impl Fn(&[Tensor]) -> Tensor,
    composite_f: impl Fn(&[Tensor]) -> Tensor,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let a = fused_f(&ts);
    let b = composite_f(&ts);
    let e = rel_err(&a, &b);
    assert!(
        e <= tol(dtype),
        "{name} {dtype:?}: values differ, rel err {e:e}"
    );
    let w = rand_tensor(&mut rng, a.dims(), a.dtype(), 1.0);
    let ga = (&a * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gb = (&b * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let x = ga
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name}: the fused op gives input {i} no gradient"));
        let y = gb.get(v.as_tensor()).unwrap();
        let e = rel_err(x, y);
        assert!(
            e <= tol(dtype),
            "{name} {dtype:?}: gradient of input {i} differs, rel err {e:e}"
        );
        assert!(to_f64(x).iter().any(|&g| g != 0.0), "{name}: zero gradient");
    }
}

#[test]
fn rms_norm_matches_composite() {
    for dtype in [DType::F32, DType::F64] {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = rand_tensor(&mut rng, &[3, 5, 48], dtype, 2.0);
        let w = (rand_tensor(&mut rng, &[48], dtype, 0.5) + 1.0).unwrap();
        check(
            "rms_norm",
            dtype,
            &[x, w],
            |t| fused::rms_norm(&t[0], &t[1], 1e-5).unwrap(),
            |t| ops::rms_norm(&t[0], &t[1], 1e-5).unwrap(),
            2,
        );
    }
}

#[test]
fn rope_matches_composite_on_strided_input_and_both_table_layouts() {
    for dtype in [DType::F32, DType::F64] {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (b, l, h, hd) = (2, 7, 3, 8);
        // [B, L, H, hd] viewed as [B, H, L, hd], as the model's projections are.
        let x = rand_tensor(&mut rng, &[b, l, h, hd], dtype, 1.0);
        let shared = (
            rand_tensor(&mut rng, &[l, hd], DType::F32, 1.0),
            rand_tensor(&mut rng, &[l, hd], DType::F32, 1.0),
        );
        let per_row = (
            rand_tensor(&mut rng, &[b, 1, l, hd], DType::F32, 1.0),
            rand_tensor(&mut rng, &[b, 1, l, hd], DType::F32, 1.0),
        );
        for (cos, sin) in [shared, per_row] {
            check(
                "rope",
                dtype,
                std::slice::from_ref(&x),
                |t| fused::rope(&t[0].transpose(1, 2).unwrap(), &cos, &sin).unwrap(),
                |t| ops::rope(&t[0].transpose(1, 2).unwrap(), &cos, &sin).unwrap(),
                4,
            );
        }
    }
}

#[test]
fn swiglu_matches_silu_times_up() {
    for dtype in [DType::F32, DType::F64] {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let g = rand_tensor(&mut rng, &[4, 6, 20], dtype, 4.0);
        let u = rand_tensor(&mut rng, &[4, 6, 20], dtype, 1.0);
        check(
            "swiglu",
            dtype,
            &[g, u],
            |t| fused::swiglu(&t[0], &t[1]).unwrap(),
            |t| (t[0].silu().unwrap() * &t[1]).unwrap(),
            6,
        );
    }
}

#[test]
fn attention_softmax_matches_composite_with_and_without_padding_bias() {
    for dtype in [DType::F32, DType::F64] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (b, h, lq, lk) = (2, 3, 5, 9);
        let s = rand_tensor(&mut rng, &[b, h, lq, lk], dtype, 6.0);
        let scale = 1.0 / 8f64.sqrt();
        // Row 0 has its first two keys padded, row 1 none, as the model builds the bias.
        let mut m = vec![1f32; b * lk];
        m[0] = 0.0;
        m[1] = 0.0;
        let mask = Tensor::from_vec(m, (b, lk), &Device::Cpu).unwrap();
        let bias = ((mask - 1.0).unwrap() * f64::from(f32::MAX))
            .unwrap()
            .reshape((b, 1, 1, lk))
            .unwrap();
        for bias in [None, Some(&bias)] {
            check(
                "attention_softmax",
                dtype,
                std::slice::from_ref(&s),
                |t| fused::attention_softmax(&t[0], scale, bias).unwrap(),
                |t| {
                    let mut x = (&t[0] * scale).unwrap();
                    if let Some(bias) = bias {
                        x = x.broadcast_add(&bias.to_dtype(dtype).unwrap()).unwrap();
                    }
                    ops::softmax(&x, D::Minus1).unwrap()
                },
                8,
            );
        }
        // Padded keys get no probability.
        let p = fused::attention_softmax(&s, scale, Some(&bias)).unwrap();
        let p0 = to_f64(&p.narrow(0, 0, 1).unwrap().narrow(3, 0, 2).unwrap());
        assert!(p0.iter().all(|&v| v == 0.0), "padded keys got {p0:?}");
    }
}

#[test]
fn log_softmax_gather_matches_composite() {
    for dtype in [DType::F32, DType::F64] {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (n, v) = (6, 300);
        let x = rand_tensor(&mut rng, &[n, v], dtype, 8.0);
        let tg: Vec<u32> = (0..n).map(|i| (i * 53 % v) as u32).collect();
        let tg = Tensor::from_vec(tg, n, &Device::Cpu).unwrap();
        check(
            "log_softmax_gather",
            dtype,
            &[x],
            |t| fused::log_softmax_gather(&t[0], &tg).unwrap(),
            |t| {
                ops::log_softmax(&t[0], D::Minus1)
                    .unwrap()
                    .gather(&tg.reshape((n, 1)).unwrap(), 1)
                    .unwrap()
                    .squeeze(1)
                    .unwrap()
            },
            10,
        );
    }
}

#[test]
fn log_softmax_gather_rejects_a_target_outside_the_vocabulary() {
    let x = Tensor::zeros((2, 10), DType::F32, &Device::Cpu).unwrap();
    let tg = Tensor::new(&[3u32, 10], &Device::Cpu).unwrap();
    let err = fused::log_softmax_gather(&x, &tg).unwrap_err().to_string();
    assert!(
        err.contains("target id 10") && err.contains("vocabulary of 10"),
        "{err}"
    );
}

#[test]
fn other_dtypes_fall_back_to_the_composite_ops_with_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = rand_tensor(&mut rng, &[4, 16], DType::BF16, 1.0);
    assert!(!fused::supported(&x));
    let w = Tensor::ones(16, DType::BF16, &Device::Cpu).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let y = fused::rms_norm(v.as_tensor(), &w, 1e-5).unwrap();
    let want = ops::rms_norm(&x, &w, 1e-5).unwrap();
    assert_eq!(to_f64(&y), to_f64(&want));
    let g = y
        .to_dtype(DType::F32)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(
        g.get(v.as_tensor()).is_some(),
        "the fallback lost the gradient"
    );
}

#[test]
fn attention_matches_composite_in_values_and_all_three_gradients() {
    for dtype in [DType::F32, DType::F64] {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let (b, h, l, hd) = (2, 3, 6, 8);
        // q as the model has it: a [B, L, H, hd] projection viewed as [B, H, L, hd].
        let q = rand_tensor(&mut rng, &[b, l, h, hd], dtype, 1.0);
        let k = rand_tensor(&mut rng, &[b, h, l, hd], dtype, 1.0);
        let v = rand_tensor(&mut rng, &[b, h, l, hd], dtype, 1.0);
        let mut m = vec![1f32; b * l];
        m[l] = 0.0;
        let bias = ((Tensor::from_vec(m, (b, l), &Device::Cpu).unwrap() - 1.0).unwrap()
            * f64::from(f32::MAX))
        .unwrap()
        .reshape((b, 1, 1, l))
        .unwrap();
        let scale = 1.0 / (hd as f64).sqrt();
        for bias in [None, Some(&bias)] {
            check(
                "attention",
                dtype,
                &[q.clone(), k.clone(), v.clone()],
                |t| {
                    let q = t[0].transpose(1, 2).unwrap();
                    fused::attention(&q, &t[1], &t[2], scale, bias).unwrap()
                },
                |t| {
                    let q = t[0].transpose(1, 2).unwrap().contiguous().unwrap();
                    let s = q.matmul(&t[1].t().unwrap()).unwrap();
                    let mut x = (s * scale).unwrap();
                    if let Some(bias) = bias {
                        x = x.broadcast_add(&bias.to_dtype(dtype).unwrap()).unwrap();
                    }
                    ops::softmax(&x, D::Minus1).unwrap().matmul(&t[2]).unwrap()
                },
                14,
            );
        }
    }
}

/// The fused attention runs one task per (batch, head); its output must be, bit for bit, the
/// split-gemm product, the fused softmax and the product again run over the whole batch (what
/// it computed before, and what inference and training both rely on), with fewer queries than
/// keys as under a KV cache.
#[test]
fn per_head_attention_gives_the_bits_of_the_batched_ops() {
    use workbench_core::ops::matmul::matmul;
    for dtype in [DType::F32, DType::F64] {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let (b, h, lq, lk, hd) = (2, 3, 5, 9, 8);
        let q = rand_tensor(&mut rng, &[b, h, lq, hd], dtype, 1.0);
        let k = rand_tensor(&mut rng, &[b, h, lk, hd], dtype, 1.0);
        let v = rand_tensor(&mut rng, &[b, h, lk, hd], dtype, 1.0);
        let mut m = vec![0f64; b * lk];
        m[lk] = -f64::from(f32::MAX);
        let bias = Tensor::from_vec(m, (b, 1, 1, lk), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let bits = |t: &Tensor| -> Vec<u64> { to_f64(t).into_iter().map(f64::to_bits).collect() };
        for bias in [None, Some(&bias)] {
            let probs =
                fused::attention_softmax(&matmul(&q, &k.t().unwrap()).unwrap(), 0.3, bias).unwrap();
            let want = matmul(&probs, &v).unwrap();
            let got = fused::attention(&q, &k, &v, 0.3, bias).unwrap();
            assert_eq!(
                bits(&got),
                bits(&want),
                "{dtype:?}, bias {}",
                bias.is_some()
            );
        }
    }
}
