//! The split-gemm matmul (`ops::matmul`) against candle's own matmul: the same bits for every
//! layout the model and the fused kernels use, and the same gradients.

use candle_core::{DType, Device, Tensor, Var};
use workbench_core::ops::matmul::{linear, linear_add, matmul, matmul_add};

fn rand(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    // A host-side LCG: candle's CPU RNG cannot be seeded.
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn bits(t: &Tensor) -> Vec<u64> {
    let t = t.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    t.to_vec1::<f64>()
        .unwrap()
        .into_iter()
        .map(f64::to_bits)
        .collect()
}

#[test]
fn products_equal_candle_bit_for_bit_for_every_layout() {
    for dtype in [DType::F32, DType::F64] {
        // (m, k, n): one task, split along rows, split along columns, k over gemm's k block.
        for (i, &(m, k, n)) in [(3, 5, 4), (640, 256, 96), (64, 256, 704), (130, 700, 300)]
            .iter()
            .enumerate()
        {
            let a = rand(&[m, k], i as u64, dtype);
            let w = rand(&[n, k], 100 + i as u64, dtype);
            let b = rand(&[k, n], 200 + i as u64, dtype);
            assert_eq!(
                bits(&linear(&a, &w).unwrap()),
                bits(&a.matmul(&w.t().unwrap()).unwrap())
            );
            assert_eq!(bits(&matmul(&a, &b).unwrap()), bits(&a.matmul(&b).unwrap()));
            // A transposed left operand (the weight gradient dyᵀ x).
            let at = rand(&[k, m], 300 + i as u64, dtype);
            let lhs = at.t().unwrap();
            assert_eq!(
                bits(&matmul(&lhs, &b).unwrap()),
                bits(&lhs.matmul(&b).unwrap())
            );
        }
        // Batched, as attention: [B, H, L, hd] · [B, H, hd, L], and a batch that is a
        // narrowed (non-contiguous) view.
        let q = rand(&[2, 3, 40, 16], 7, dtype);
        let k = rand(&[2, 3, 40, 16], 8, dtype);
        let kt = k.t().unwrap();
        assert_eq!(
            bits(&matmul(&q, &kt).unwrap()),
            bits(&q.matmul(&kt).unwrap())
        );
        let qn = q.narrow(1, 1, 2).unwrap();
        let kn = kt.narrow(1, 0, 2).unwrap();
        // (candle's own matmul refuses this layout; compare with contiguous copies.)
        let want = qn
            .contiguous()
            .unwrap()
            .matmul(&kn.contiguous().unwrap())
            .unwrap();
        assert_eq!(bits(&matmul(&qn, &kn).unwrap()), bits(&want));
    }
}

#[test]
fn products_with_a_residual_equal_the_sum_bit_for_bit() {
    for dtype in [DType::F32, DType::F64] {
        // One task, split along rows, split along columns, k over gemm's k block, k = 0.
        for (i, &(m, k, n)) in [
            (3, 5, 4),
            (640, 256, 96),
            (64, 256, 704),
            (130, 700, 300),
            (4, 0, 3),
        ]
        .iter()
        .enumerate()
        {
            let a = rand(&[m, k], i as u64, dtype);
            let w = rand(&[n, k], 100 + i as u64, dtype);
            let res = rand(&[m, n], 400 + i as u64, dtype);
            let want = (&res + a.matmul(&w.t().unwrap()).unwrap()).unwrap();
            assert_eq!(bits(&linear_add(&a, &w, &res).unwrap()), bits(&want));
            let at = rand(&[k, m], 300 + i as u64, dtype);
            let lhs = at.t().unwrap();
            let b = rand(&[k, n], 200 + i as u64, dtype);
            let want = (lhs.matmul(&b).unwrap() + &res).unwrap();
            assert_eq!(bits(&matmul_add(&lhs, &b, &res).unwrap()), bits(&want));
        }
        // Batched, with a residual that is a transposed (non-contiguous) view.
        let q = rand(&[2, 3, 40, 16], 7, dtype);
        let kt = rand(&[2, 3, 40, 16], 8, dtype).t().unwrap();
        let res = rand(&[2, 3, 40, 40], 9, dtype).t().unwrap();
        let want = (q.matmul(&kt).unwrap() + &res).unwrap();
        assert_eq!(bits(&matmul_add(&q, &kt, &res).unwrap()), bits(&want));
        // A residual of the wrong shape is an error, not a read out of bounds.
        assert!(matmul_add(&q, &kt, &rand(&[2, 3, 40], 10, dtype)).is_err());
    }
}

#[test]
fn degenerate_and_mismatched_shapes_behave_as_candle() {
    let a = rand(&[4, 0], 1, DType::F32);
    let b = rand(&[0, 3], 2, DType::F32);
    let z = matmul(&a, &b).unwrap();
    assert_eq!(z.dims(), &[4, 3]);
    assert!(z
        .to_vec2::<f32>()
        .unwrap()
        .iter()
        .flatten()
        .all(|&x| x == 0.0));
    let e = matmul(&rand(&[0, 5], 3, DType::F32), &rand(&[5, 2], 4, DType::F32)).unwrap();
    assert_eq!(e.dims(), &[0, 2]);
    // Shapes candle rejects get candle's error, not a panic.
    assert!(matmul(&rand(&[2, 3], 5, DType::F32), &rand(&[4, 2], 6, DType::F32)).is_err());
    // Other dtypes go to candle's matmul.
    let h = rand(&[2, 3], 5, DType::F32).to_dtype(DType::F16).unwrap();
    let hb = rand(&[3, 2], 6, DType::F32).to_dtype(DType::F16).unwrap();
    assert_eq!(
        bits(&matmul(&h, &hb).unwrap()),
        bits(&h.matmul(&hb).unwrap())
    );
}

#[test]
fn gradients_equal_candles_and_skip_arguments_that_track_nothing() {
    let x = Var::from_tensor(&rand(&[33, 20], 11, DType::F64)).unwrap();
    let w = Var::from_tensor(&rand(&[17, 20], 12, DType::F64)).unwrap();
    let up = rand(&[33, 17], 13, DType::F64);
    let ours = (linear(x.as_tensor(), w.as_tensor()).unwrap() * &up)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let theirs = (x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap() * &up)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for v in [&x, &w] {
        let (g, h) = (ours.get(v).unwrap(), theirs.get(v).unwrap());
        let diff = (g - h).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    }
    // A frozen weight (a plain tensor) gets no gradient; the input still does.
    let frozen = rand(&[17, 20], 12, DType::F64);
    let g = linear(x.as_tensor(), &frozen)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&frozen).is_none());
    assert!(g.get(x.as_tensor()).is_some());
}
