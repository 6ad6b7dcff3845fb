//! Table tests of the RL losses and advantages with hand-worked values (the arithmetic is in the
//! comments), gradients of the clipped surrogate against the hand-derived ones, and shape errors.

use candle_core::{Device, Tensor, Var};
use workbench_core::train::losses::{
    clipped_surrogate, entropy, entropy_filter, entropy_filter_with, group_advantages, kl,
    mdpo_loss, mdpo_step_advantages, mdpo_step_advantages_with, reduce, top_k_steps, EntropyCut,
    KlKind, MdpoLastStep, MdpoLossConfig, Normalise, RatioLevel, Reduction,
};

const TOL: f64 = 1e-5;

fn t1(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn t2(rows: &[&[f32]]) -> Tensor {
    let cols = rows[0].len();
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu).unwrap()
}

fn vec1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < TOL, "{what}: got {got:?}, want {want:?}");
    }
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

#[test]
fn group_advantages_table() {
    let r = t1(&[1., 0., 0., 1., 1., 1.]);
    // Group [1, 0, 0]: mean 1/3 → [2/3, −1/3, −1/3]; group [1, 1, 1]: mean 1 → [0, 0, 0].
    let a = group_advantages(&r, 3, Normalise::None).unwrap();
    assert_close(
        &vec1(&a),
        &[2. / 3., -1. / 3., -1. / 3., 0., 0., 0.],
        "no std",
    );
    // Std: Σ d² = 4/9 + 1/9 + 1/9 = 2/3, / (3 − 1) = 1/3, std = √(1/3) ≈ 0.57735;
    // 2/3 / (0.57735 + 1e-4) ≈ 1.15450, −1/3 / (…) ≈ −0.57725; the constant group: 0 / 1e-4 = 0.
    let s = (1f64 / 3.).sqrt() + 1e-4;
    let a = group_advantages(&r, 3, Normalise::Std { eps: 1e-4 }).unwrap();
    assert_close(
        &vec1(&a),
        &[2. / 3. / s, -1. / 3. / s, -1. / 3. / s, 0., 0., 0.],
        "std",
    );
    // G = 2: [1, 0] → mean 0.5 → ±0.5; [0, 1] → ∓0.5; [1, 1] → 0.
    let a = group_advantages(&r, 2, Normalise::None).unwrap();
    assert_close(&vec1(&a), &[0.5, -0.5, -0.5, 0.5, 0., 0.], "G = 2");
    // G = 1 without std: every advantage is 0.
    let a = group_advantages(&r, 1, Normalise::None).unwrap();
    assert_close(&vec1(&a), &[0.; 6], "G = 1");
}

#[test]
fn mdpo_step_advantages_on_a_hand_table() {
    // r = [[0, 1, 1], [1, 0, 1]], r[k, −1] := 0.
    // Row 0: t0: (0 − 0) + mean(1, 1) = 1; t1: (1 − 0) + mean(1) = 2;
    //   t2 (last, the release's rule): (1 − 1) + 1 = 1.
    // Row 1: t0: (1 − 0) + mean(0, 1) = 1.5; t1: (0 − 1) + mean(1) = 0; t2: (1 − 0) + 1 = 2.
    // Per step across the group (G = 2, unbiased std):
    //   t0: [1, 1.5], mean 1.25, d = ∓0.25, std = √(0.125/1) → ∓0.25/(√0.125 + 1e-4)
    //   t1: [2, 0], mean 1, d = ±1, std = √2 → ±1/(√2 + 1e-4)
    //   t2: [1, 2], mean 1.5, d = ∓0.5, std = √0.5 → ∓0.5/(√0.5 + 1e-4)
    //   (the paper's A = r at the last step, [1, 1], gives 0 there: our old behaviour).
    let r = t2(&[&[0., 1., 1.], &[1., 0., 1.]]);
    let a = mdpo_step_advantages(&r, 1e-4).unwrap();
    assert_eq!(a.dims(), &[2, 3]);
    let s0 = 0.125f64.sqrt() + 1e-4;
    let s1 = 2f64.sqrt() + 1e-4;
    let s2 = 0.5f64.sqrt() + 1e-4;
    assert_close(
        &vec1(&a),
        &[
            -0.25 / s0,
            1. / s1,
            -0.5 / s2,
            0.25 / s0,
            -1. / s1,
            0.5 / s2,
        ],
        "mdpo",
    );
    let paper = mdpo_step_advantages_with(&r, 1e-4, MdpoLastStep::RewardOnly).unwrap();
    assert_close(
        &vec1(&paper),
        &[-0.25 / s0, 1. / s1, 0., 0.25 / s0, -1. / s1, 0.],
        "mdpo, paper's last step",
    );
    // T = 1: the last-step rule alone with r[−1] = 0, A = 2r; [[1], [0]] → ±1 / (√2 + eps).
    let a = mdpo_step_advantages(&t2(&[&[1.], &[0.]]), 0.0).unwrap();
    let s = 2f64.sqrt();
    assert_close(&vec1(&a), &[1. / s, -1. / s], "T = 1");
}

#[test]
fn top_k_steps_picks_largest_magnitudes_with_earlier_ties() {
    // Row 0: |a| = [0.5, 2, 1, 1] → 2 (step 1), then the tie 1/1 goes to step 2.
    // Row 1: |a| = [0, 0, 0, 3] → step 3, then the three-way tie of zeros goes to step 0.
    let adv = t2(&[&[0.5, -2., 1., -1.], &[0., 0., 0., 3.]]);
    let m = top_k_steps(&adv, 2).unwrap();
    assert_close(&vec1(&m), &[0., 1., 1., 0., 1., 0., 0., 1.], "k = 2");
    assert_close(&vec1(&top_k_steps(&adv, 0).unwrap()), &[0.; 8], "k = 0");
    assert_close(&vec1(&top_k_steps(&adv, 9).unwrap()), &[1.; 8], "k > T");
}

/// ρ = [1.5, 0.5, 1.1, 1.0] in both rows; A = +2 for row 0, −1 for row 1; the last token of row 1
/// is masked out (and its old log-prob is −inf, which must not leak).
fn clip_case() -> (Var, Tensor, Tensor, Tensor) {
    let lp: [f32; 4] = [-1., -2., -0.5, -3.];
    let rho: [f32; 4] = [1.5, 0.5, 1.1, 1.0];
    let old0: Vec<f32> = lp.iter().zip(&rho).map(|(l, r)| l - r.ln()).collect();
    let mut old1 = old0.clone();
    old1[3] = f32::NEG_INFINITY;
    let logp = Var::from_tensor(&t2(&[&lp, &lp])).unwrap();
    let old = t2(&[&old0, &old1]);
    let adv = t1(&[2., -1.]);
    let mask = t2(&[&[1., 1., 1., 1.], &[1., 1., 1., 0.]]);
    (logp, old, adv, mask)
}

#[test]
fn clipped_surrogate_token_level_table_and_clip_fraction() {
    let (logp, old, adv, mask) = clip_case();
    let out = clipped_surrogate(
        logp.as_tensor(),
        &old,
        &adv,
        &mask,
        0.2,
        0.2,
        RatioLevel::Token,
    )
    .unwrap();
    // ε = 0.2, clip range [0.8, 1.2].
    // Row 0, A = +2: ρ 1.5 > 1.2 ∧ A > 0 → clipped, −1.2·2 = −2.4; ρ 0.5: min(1.0, 1.6) = 1.0
    //   (not clipped) → −1.0; ρ 1.1 → −2.2; ρ 1 → −2.
    // Row 1, A = −1: ρ 1.5: min(−1.5, −1.2) = −1.5 → 1.5 (not clipped); ρ 0.5 < 0.8 ∧ A < 0 →
    //   clipped, min(−0.5, −0.8) = −0.8 → 0.8; ρ 1.1 → 1.1; masked → 0.
    assert_close(
        &vec1(&out.loss),
        &[-2.4, -1.0, -2.2, -2.0, 1.5, 0.8, 1.1, 0.0],
        "loss",
    );
    // Two clipped tokens out of 7 masked ones.
    assert!(
        (out.clip_fraction - 2. / 7.).abs() < 1e-9,
        "{}",
        out.clip_fraction
    );
    assert_close(
        &vec1(&out.ratio),
        &[1.5, 0.5, 1.1, 1.0, 1.5, 0.5, 1.1, 1.0],
        "ratio",
    );
    // Per-token advantages [B, L] give the same loss.
    let adv_bl = t2(&[&[2.; 4], &[-1.; 4]]);
    let out2 = clipped_surrogate(
        logp.as_tensor(),
        &old,
        &adv_bl,
        &mask,
        0.2,
        0.2,
        RatioLevel::Token,
    )
    .unwrap();
    assert_close(&vec1(&out2.loss), &vec1(&out.loss), "adv [B, L]");
    // Asymmetric clip (ε_high 0.6, DAPO-style): ρ 1.5 < 1.6 is no longer clipped in row 0.
    let out3 = clipped_surrogate(
        logp.as_tensor(),
        &old,
        &adv,
        &mask,
        0.2,
        0.6,
        RatioLevel::Token,
    )
    .unwrap();
    assert_close(
        &vec1(&out3.loss),
        &[-3.0, -1.0, -2.2, -2.0, 1.5, 0.8, 1.1, 0.0],
        "eps_high 0.6",
    );
    assert!((out3.clip_fraction - 1. / 7.).abs() < 1e-9);
}

#[test]
fn clipped_surrogate_gradient_matches_hand_derivation() {
    let (logp, old, adv, mask) = clip_case();
    let out = clipped_surrogate(
        logp.as_tensor(),
        &old,
        &adv,
        &mask,
        0.2,
        0.2,
        RatioLevel::Token,
    )
    .unwrap();
    let loss = reduce(&out.loss, &mask, Reduction::TokenMean).unwrap();
    // Token mean over n = 7: (−2.4 − 1 − 2.2 − 2 + 1.5 + 0.8 + 1.1)/7 = −4.2/7 = −0.6.
    assert!((scalar(&loss) + 0.6).abs() < TOL);
    let grads = loss.backward().unwrap();
    let g = vec1(grads.get(logp.as_tensor()).unwrap());
    // ∂/∂logp = −A·ρ/n where not clipped, 0 where clipped or masked.
    // Row 0 (A = 2): [0, −2·0.5/7, −2·1.1/7, −2·1/7]; row 1 (A = −1): [1.5/7, 0, 1.1/7, 0].
    let n = 7.;
    let want = [
        0.,
        -2. * 0.5 / n,
        -2. * 1.1 / n,
        -2. / n,
        1.5 / n,
        0.,
        1.1 / n,
        0.,
    ];
    assert_close(&g, &want, "grad");
}

#[test]
fn gspo_release_ratio_averages_all_positions() {
    // IGPO's release: the mean log-ratio over all L positions, masked or not.
    // Row 0: [ln 2, 0, 1] → mean (ln 2 + 1)/3; row 1: [0.3, 0, 0] → 0.1.
    let lp = t2(&[&[-1., -1., -1.], &[-1., -1., -1.]]);
    let old = t2(&[&[-1. - 2f32.ln(), -1., -2.], &[-1.3, -1., -1.]]);
    let mask = t2(&[&[1., 1., 0.], &[1., 0., 0.]]);
    let out = clipped_surrogate(
        &lp,
        &old,
        &t1(&[1., 1.]),
        &mask,
        0.2,
        10.0,
        RatioLevel::Sequence,
    )
    .unwrap();
    let r0 = ((2f64.ln() + 1.) / 3.).exp();
    let r1 = 0.1f64.exp();
    assert_close(&vec1(&out.ratio), &[r0, r0, r0, r1, r1, r1], "ratio");
    assert_close(&vec1(&out.loss), &[-r0, -r0, 0., -r1, 0., 0.], "loss");
}

#[test]
fn mdpo_loss_is_the_release_formula() {
    // One pair, L = 4, mask = 2 positions, conf [0.5, 0.25], Â = 2, β = 0.1, ref − logp = [1, −2].
    // ρ = 1 (μ = 1): per token −Â·λ + β·½d² with λ = 4/(2 + 1e-4); loss = Σ (..)·conf / (2 + 1e-4).
    let logp = Var::from_tensor(&t2(&[&[-1., -2., -3., -4.]])).unwrap();
    let rf = t2(&[&[0., -4., 0., 0.]]);
    let mask = t2(&[&[1., 1., 0., 0.]]);
    let conf = t2(&[&[0.5, 0.25, f32::NEG_INFINITY, 0.9]]);
    let cfg = MdpoLossConfig {
        gen_length: 4,
        beta: 0.1,
        ..MdpoLossConfig::default()
    };
    let out = mdpo_loss(
        logp.as_tensor(),
        None,
        Some(&rf),
        &t1(&[2.]),
        &mask,
        &conf,
        &cfg,
    )
    .unwrap();
    let n = 2. + 1e-4;
    let lam = 4. / n;
    let want = ((-2. * lam + 0.1 * 0.5) * 0.5 + (-2. * lam + 0.1 * 2.) * 0.25) / n;
    assert_close(&vec1(&out.loss), &[want], "loss");
    // ∂/∂logp_j = (−Â·λ − β·d_j)·conf_j / n (ρ carries the gradient of logp).
    let g = vec1(
        out.loss
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(logp.as_tensor())
            .unwrap(),
    );
    let want_g = [
        (-2. * lam - 0.1) * 0.5 / n,
        (-2. * lam + 0.2) * 0.25 / n,
        0.,
        0.,
    ];
    assert_close(&g, &want_g, "grad");
    // Without confidence on the KL term.
    let cfg2 = MdpoLossConfig {
        kl_by_confidence: false,
        ..cfg
    };
    let out = mdpo_loss(
        logp.as_tensor(),
        None,
        Some(&rf),
        &t1(&[2.]),
        &mask,
        &conf,
        &cfg2,
    )
    .unwrap();
    let want = ((-2. * lam) * 0.5 + 0.1 * 0.5 + (-2. * lam) * 0.25 + 0.1 * 2.) / n;
    assert_close(&vec1(&out.loss), &[want], "loss, unweighted KL");
}

#[test]
fn gspo_sequence_ratio_on_two_rows() {
    // Row 0: log-ratios [ln 2, 0, 5] with the last masked out → mean ln2/2 → ρ = √2 ≈ 1.41421;
    //   A = +1 and ρ > 1.2 → clipped: −1.2 per masked token, 0 on the masked-out one.
    // Row 1: log-ratios [0.1, −0.1, 0.3], all kept → mean 0.1 → ρ = e^0.1 ≈ 1.10517; A = −1 →
    //   min(−ρ, −ρ) → loss ρ on each token, not clipped.
    let lp: [f32; 3] = [-1., -1., -1.];
    let logp = Var::from_tensor(&t2(&[&lp, &lp])).unwrap();
    let old = t2(&[
        &[-1. - 2f32.ln(), -1., -6.],
        &[-1. - 0.1, -1. + 0.1, -1. - 0.3],
    ]);
    let adv = t1(&[1., -1.]);
    let mask = t2(&[&[1., 1., 0.], &[1., 1., 1.]]);
    let out = clipped_surrogate(
        logp.as_tensor(),
        &old,
        &adv,
        &mask,
        0.2,
        0.2,
        RatioLevel::SequenceMasked,
    )
    .unwrap();
    let r0 = 2f64.sqrt();
    let r1 = 0.1f64.exp();
    assert_close(&vec1(&out.ratio), &[r0, r0, r0, r1, r1, r1], "ratio");
    assert_close(&vec1(&out.loss), &[-1.2, -1.2, 0., r1, r1, r1], "loss");
    // 2 clipped of 5 masked tokens.
    assert!((out.clip_fraction - 0.4).abs() < 1e-9);
    // Gradient of the token mean (n = 5): row 0 clipped → 0; row 1: L ∋ 3ρ/5 with
    // ∂ρ/∂logp_j = ρ/3 → ρ/5 per token.
    let loss = reduce(&out.loss, &mask, Reduction::TokenMean).unwrap();
    let g = vec1(loss.backward().unwrap().get(logp.as_tensor()).unwrap());
    assert_close(&g, &[0., 0., 0., r1 / 5., r1 / 5., r1 / 5.], "grad");
}

#[test]
fn kl_estimators_table() {
    // lp = [−1, −2], ref = [−2, −1] → d = ref − lp = [−1, 1].
    // k1 = lp − ref = [1, −1]; k2 = ½d² = [0.5, 0.5];
    // k3 = e^d − d − 1 = [e^−1 + 1 − 1, e − 1 − 1] = [0.367879, 0.718282].
    let lp = t1(&[-1., -2.]);
    let rf = t1(&[-2., -1.]);
    assert_close(&vec1(&kl(&lp, &rf, KlKind::K1).unwrap()), &[1., -1.], "k1");
    assert_close(&vec1(&kl(&lp, &rf, KlKind::K2).unwrap()), &[0.5, 0.5], "k2");
    let e = std::f64::consts::E;
    assert_close(
        &vec1(&kl(&lp, &rf, KlKind::K3).unwrap()),
        &[1. / e, e - 2.],
        "k3",
    );
    // Equal policies: every estimator is 0.
    for kind in [KlKind::K1, KlKind::K2, KlKind::K3] {
        assert_close(&vec1(&kl(&lp, &lp, kind).unwrap()), &[0., 0.], "equal");
    }
    // ∂k3/∂lp = 1 − e^d: [1 − e^−1, 1 − e].
    let v = Var::from_tensor(&lp).unwrap();
    let k3 = kl(v.as_tensor(), &rf, KlKind::K3)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = vec1(k3.backward().unwrap().get(v.as_tensor()).unwrap());
    assert_close(&g, &[1. - 1. / e, 1. - e], "k3 grad");
}

#[test]
fn reductions_table() {
    let loss = t2(&[&[1., 2., 3.], &[4., 5., 6.]]);
    let mask = t2(&[&[1., 1., 0.], &[1., 0., 0.]]);
    // token_mean: (1 + 2 + 4)/3 = 7/3.
    let v = scalar(&reduce(&loss, &mask, Reduction::TokenMean).unwrap());
    assert!((v - 7. / 3.).abs() < TOL, "{v}");
    // seq_mean: row 0 (1 + 2)/2 = 1.5, row 1 4/1 = 4 → (1.5 + 4)/2 = 2.75.
    let v = scalar(&reduce(&loss, &mask, Reduction::SeqMean).unwrap());
    assert!((v - 2.75).abs() < TOL, "{v}");
    // constant C = 4: 7/(B·C) = 7/8 = 0.875.
    let v = scalar(&reduce(&loss, &mask, Reduction::Constant(4.)).unwrap());
    assert!((v - 0.875).abs() < TOL, "{v}");
    // micro-batch token mean, one row per micro-batch (d1 with G = 1): the seq mean here; with
    // both rows in one micro-batch: the token mean.
    let mb = |rows| scalar(&reduce(&loss, &mask, Reduction::MicroBatchTokenMean { rows }).unwrap());
    assert!((mb(1) - 2.75).abs() < TOL && (mb(2) - 7. / 3.).abs() < TOL);
    // Three rows in micro-batches of 2: (7/3 + 7/1)/2 (the second block is row 2 alone).
    let loss3 = t2(&[&[1., 2., 3.], &[4., 5., 6.], &[7., 8., 9.]]);
    let mask3 = t2(&[&[1., 1., 0.], &[1., 0., 0.], &[1., 0., 0.]]);
    let v = scalar(&reduce(&loss3, &mask3, Reduction::MicroBatchTokenMean { rows: 2 }).unwrap());
    assert!((v - (7. / 3. + 7.) / 2.).abs() < TOL, "{v}");
    assert!(reduce(&loss, &mask, Reduction::MicroBatchTokenMean { rows: 0 }).is_err());
    // An all-zero mask gives 0 (counts clamped to 1), and non-finite masked-out values vanish.
    let zero = mask.zeros_like().unwrap();
    for r in [
        Reduction::TokenMean,
        Reduction::SeqMean,
        Reduction::Constant(4.),
    ] {
        assert_eq!(scalar(&reduce(&loss, &zero, r).unwrap()), 0.0);
    }
    let nan = t2(&[&[1., f32::NAN, f32::INFINITY]]);
    let m = t2(&[&[1., 0., 0.]]);
    assert_eq!(
        scalar(&reduce(&nan, &m, Reduction::TokenMean).unwrap()),
        1.0
    );
}

#[test]
fn entropy_of_logits() {
    // [0, 0] → ln 2; [0, −inf] → 0; [1, 0]: p = [e/(e+1), 1/(e+1)] → −Σ p ln p.
    let logits = t2(&[&[0., 0.], &[0., f32::NEG_INFINITY], &[1., 0.]]);
    let v = Var::from_tensor(&logits).unwrap();
    let h = entropy(v.as_tensor()).unwrap();
    assert_eq!(h.dims(), &[3]);
    let e = std::f64::consts::E;
    let (p, q) = (e / (e + 1.), 1. / (e + 1.));
    assert_close(
        &vec1(&h),
        &[2f64.ln(), 0., -(p * p.ln() + q * q.ln())],
        "entropy",
    );
    // The gradient stays finite through the −inf logit.
    let g = vec1(
        h.sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(v.as_tensor())
            .unwrap(),
    );
    assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    // Rank 3 (batch, length, vocab) → [batch, length]: uniform over 4 → ln 4.
    let u = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let h = entropy(&u).unwrap();
    assert_eq!(h.dims(), &[2, 3]);
    assert_close(&vec1(&h), &[4f64.ln(); 6], "uniform");
}

#[test]
fn entropy_filter_keeps_the_top_of_each_rows_subset() {
    // IGPO's trainer: per row, the max(1, ⌊τ·n⌋) highest of its n subset positions.
    let ent = t2(&[&[0.5, 0.9, 0.2, 0.7, 0.6], &[0.1, 0.3, 0.2, 0.8, 0.9]]);
    let subset = t2(&[&[1., 1., 0., 1., 1.], &[1., 1., 1., 0., 0.]]);
    // Row 0: n = 4 → τ 0.2: 1 kept (0.9); τ 0.5: 2 kept (0.9, 0.7). Row 1: n = 3 → τ 0.2: 1
    // (0.3); τ 0.5: ⌊1.5⌋ = 1. Non-subset positions always 1.
    let m = entropy_filter(&ent, &subset, 0.2).unwrap();
    assert_close(
        &vec1(&m),
        &[0., 1., 1., 0., 0., 0., 1., 0., 1., 1.],
        "tau 0.2",
    );
    let m = entropy_filter(&ent, &subset, 0.5).unwrap();
    assert_close(
        &vec1(&m),
        &[0., 1., 1., 1., 0., 0., 1., 0., 1., 1.],
        "tau 0.5",
    );
    let m = entropy_filter(&ent, &subset, 1.0).unwrap();
    assert_close(&vec1(&m), &[1.; 10], "tau 1");
    // τ = 0 still keeps each row's maximum; an empty subset keeps everything.
    let m = entropy_filter(&ent, &subset, 0.0).unwrap();
    assert_close(
        &vec1(&m),
        &[0., 1., 1., 0., 0., 0., 1., 0., 1., 1.],
        "tau 0",
    );
    let m = entropy_filter(&ent, &subset.zeros_like().unwrap(), 0.2).unwrap();
    assert_close(&vec1(&m), &[1.; 10], "empty subset");
}

#[test]
fn entropy_filter_batch_quantile_keeps_top_fraction_of_the_batch_subset() {
    let entropy_filter =
        |e: &Tensor, s: &Tensor, tau| entropy_filter_with(e, s, tau, EntropyCut::BatchQuantile);
    let ent = t2(&[&[0.5, 0.9, 0.2, 0.7], &[0.9, 0.1, 0.3, 0.8]]);
    let subset = t2(&[&[1., 1., 0., 0.], &[1., 1., 1., 0.]]);
    // Subset entropies over the batch: 0.5, 0.9, 0.9, 0.1, 0.3 → sorted [0.1, 0.3, 0.5, 0.9, 0.9].
    // τ = 0.2: quantile 0.8 at position 0.8·4 = 3.2 → 0.9 + 0.2·(0.9 − 0.9) = 0.9; both tied 0.9s
    // are kept (2 of 5); positions outside the subset are always 1.
    let m = entropy_filter(&ent, &subset, 0.2).unwrap();
    assert_close(&vec1(&m), &[0., 1., 1., 1., 1., 0., 0., 1.], "tau 0.2");
    // τ = 0.5: position 0.5·4 = 2 → threshold 0.5 → keeps 0.5, 0.9, 0.9.
    let m = entropy_filter(&ent, &subset, 0.5).unwrap();
    assert_close(&vec1(&m), &[1., 1., 1., 1., 1., 0., 0., 1.], "tau 0.5");
    // τ = 0.7: position 0.3·4 = 1.2 → 0.3 + 0.2·(0.5 − 0.3) = 0.34 → 0.3 is dropped too.
    let m = entropy_filter(&ent, &subset, 0.7).unwrap();
    assert_close(&vec1(&m), &[1., 1., 1., 1., 1., 0., 0., 1.], "tau 0.7");
    // τ = 0.8: position 0.2·4 = 0.8 → 0.1 + 0.8·0.2 = 0.26 → 0.3 kept, 0.1 dropped.
    let m = entropy_filter(&ent, &subset, 0.8).unwrap();
    assert_close(&vec1(&m), &[1., 1., 1., 1., 1., 0., 1., 1.], "tau 0.8");
    // τ = 1 keeps the whole subset; an empty subset keeps everything.
    let m = entropy_filter(&ent, &subset, 1.0).unwrap();
    assert_close(&vec1(&m), &[1.; 8], "tau 1");
    let m = entropy_filter(&ent, &subset.zeros_like().unwrap(), 0.2).unwrap();
    assert_close(&vec1(&m), &[1.; 8], "empty subset");
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let a23 = t2(&[&[0.; 3], &[0.; 3]]);
    let a24 = t2(&[&[0.; 4], &[0.; 4]]);
    let r5 = t1(&[0.; 5]);
    let e = err_text(group_advantages(&r5, 3, Normalise::None));
    assert!(e.contains("5") && e.contains("group = 3"), "{e}");
    let e = err_text(group_advantages(&a23, 3, Normalise::None));
    assert!(e.contains("rewards") && e.contains("[2, 3]"), "{e}");
    let e = err_text(group_advantages(&r5, 1, Normalise::Std { eps: 1e-4 }));
    assert!(e.contains("group >= 2"), "{e}");
    let e = err_text(mdpo_step_advantages(&t2(&[&[1., 0.]]), 1e-4));
    assert!(e.contains("G >= 2") && e.contains("[1, 2]"), "{e}");
    let e = err_text(mdpo_step_advantages(&r5, 1e-4));
    assert!(e.contains("rewards") && e.contains("[5]"), "{e}");
    let e = err_text(top_k_steps(&r5, 1));
    assert!(e.contains("adv"), "{e}");

    let adv = t1(&[1., 1.]);
    let clip = |lp: &Tensor, old: &Tensor, adv: &Tensor, mask: &Tensor| {
        clipped_surrogate(lp, old, adv, mask, 0.2, 0.2, RatioLevel::Token)
    };
    let e = err_text(clip(&a23, &a24, &adv, &a23));
    assert!(
        e.contains("old_logp") && e.contains("[2, 3]") && e.contains("[2, 4]"),
        "{e}"
    );
    let e = err_text(clip(&a23, &a23, &adv, &a24));
    assert!(e.contains("mask") && e.contains("[2, 4]"), "{e}");
    let e = err_text(clip(&a23, &a23, &r5, &a23));
    assert!(
        e.contains("adv") && e.contains("[5]") && e.contains("[2, 3]"),
        "{e}"
    );
    let e = err_text(clip(&r5, &r5, &adv, &r5));
    assert!(e.contains("logp") && e.contains("[B, L]"), "{e}");
    let e = err_text(clipped_surrogate(
        &a23,
        &a23,
        &adv,
        &a23,
        -0.1,
        0.2,
        RatioLevel::Token,
    ));
    assert!(e.contains("eps_low"), "{e}");

    let e = err_text(kl(&a23, &a24, KlKind::K3));
    assert!(e.contains("ref_logp") && e.contains("[2, 4]"), "{e}");
    let e = err_text(reduce(&a23, &a24, Reduction::TokenMean));
    assert!(
        e.contains("mask") && e.contains("[2, 3]") && e.contains("[2, 4]"),
        "{e}"
    );
    let e = err_text(reduce(&a23, &a23, Reduction::Constant(0.)));
    assert!(e.contains("constant"), "{e}");
    let e = err_text(entropy(&Tensor::new(1f32, &Device::Cpu).unwrap()));
    assert!(e.contains("logits"), "{e}");
    let e = err_text(entropy_filter(&a23, &a24, 0.2));
    assert!(e.contains("subset") && e.contains("[2, 4]"), "{e}");
    let e = err_text(entropy_filter(&a23, &a23, 1.5));
    assert!(e.contains("tau"), "{e}");
}
