//! Likelihood estimators and diffusion losses against direct computations written here
//! independently: build the masked input by hand, run `model.forward` on the full sequence,
//! log-softmax over the full vocabulary, gather.
// The direct computations index parallel host arrays by (row, position) on purpose.
#![allow(clippy::needless_range_loop)]

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use workbench_core::model::{Llada, LoadOptions};
use workbench_core::ops::log_softmax;
use workbench_core::sampler::{generate, GenerateOptions, SamplerConfig};
use workbench_core::train::estimators::{
    coupled_mask, d1_prompt_mask, elbo, elbo_counts, elbo_draws, logp_coupled, logp_d1,
    logp_masked, logp_mdpo, logp_step, MDPO_EPS,
};
use workbench_core::train::sft::{draw_noise, pretrain_loss, sft_loss, PRETRAIN_EPS};

const MASK: u32 = 999;
const EOS: u32 = 994;
const TOL: f32 = 1e-5;

fn model(trainable: bool) -> Llada {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llada-tiny");
    Llada::load(
        &dir,
        &LoadOptions {
            trainable,
            ..Default::default()
        },
    )
    .unwrap()
}

fn ids(rows: &[Vec<u32>]) -> Tensor {
    let (b, t) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu).unwrap()
}

fn mat(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap()
}

/// log_softmax(forward(input) / divisor)[b, j, target[b][j]] for every position.
fn direct(
    m: &Llada,
    input: &[Vec<u32>],
    target: &[Vec<u32>],
    attn: Option<&Tensor>,
    divisor: f64,
) -> Vec<Vec<f32>> {
    let logits = m.forward(&ids(input), attn).unwrap();
    let lsm = log_softmax(&(logits / divisor).unwrap(), D::Minus1)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    target
        .iter()
        .enumerate()
        .map(|(b, row)| {
            row.iter()
                .enumerate()
                .map(|(j, &y)| lsm[b][j][y as usize])
                .collect()
        })
        .collect()
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 17, 42, 8, 100, 3], vec![250, 251, 7, 9, 11, 13]]
}

fn completions() -> Vec<Vec<u32>> {
    vec![vec![21, 22, 23, EOS, EOS], vec![400, 401, 402, 403, 404]]
}

fn concat(p: &[Vec<u32>], c: &[Vec<u32>]) -> Vec<Vec<u32>> {
    p.iter()
        .zip(c)
        .map(|(a, b)| [a.clone(), b.clone()].concat())
        .collect()
}

fn assert_close(got: f32, want: f32, tol: f32, what: &str) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn d1_matches_a_hand_built_masked_forward() {
    let m = model(false);
    let (p, c) = (prompts(), completions());
    let (pl, cl) = (p[0].len(), c[0].len());
    let est = logp_d1(&m, &ids(&p), &ids(&c), 0.5, 7, None).unwrap();
    let noise = d1_prompt_mask(2, pl, 0.5, 7, None);
    assert!(noise.iter().any(|&x| x) && noise.iter().any(|&x| !x));
    let seq = concat(&p, &c);
    let input: Vec<Vec<u32>> = seq
        .iter()
        .enumerate()
        .map(|(r, row)| {
            row.iter()
                .enumerate()
                .map(|(j, &y)| {
                    if j >= pl || noise[r * pl + j] {
                        MASK
                    } else {
                        y
                    }
                })
                .collect()
        })
        .collect();
    let want = direct(&m, &input, &seq, None, 1.0);
    let got = mat(&est.logp);
    assert_eq!(mat(&est.mask), vec![vec![1.0; cl]; 2]);
    for r in 0..2 {
        for k in 0..cl {
            assert_close(got[r][k], want[r][pl + k], TOL, "d1 logp");
        }
    }
}

#[test]
fn d1_masks_are_seeded_row_invariant_and_spare_pads() {
    let a = d1_prompt_mask(3, 40, 0.3, 11, None);
    assert_eq!(
        a,
        d1_prompt_mask(3, 40, 0.3, 11, None),
        "same seed, same mask"
    );
    assert_ne!(
        a,
        d1_prompt_mask(3, 40, 0.3, 12, None),
        "new seed, new mask"
    );
    assert_eq!(
        a[..40],
        d1_prompt_mask(1, 40, 0.3, 11, None)[..],
        "a row's mask does not depend on the batch size"
    );
    assert!(d1_prompt_mask(3, 40, 0.0, 11, None).iter().all(|&x| !x));
    // p = 1 masks every real token and no pad.
    let real: Vec<bool> = (0..3 * 40).map(|i| i % 40 >= 5).collect();
    let full = d1_prompt_mask(3, 40, 1.0, 11, Some(&real));
    assert_eq!(full, real);
    // Through the estimator: same seed, identical log-probs; another seed, different ones.
    let m = model(false);
    let (p, c) = (ids(&prompts()), ids(&completions()));
    let x = mat(&logp_d1(&m, &p, &c, 0.5, 3, None).unwrap().logp);
    let y = mat(&logp_d1(&m, &p, &c, 0.5, 3, None).unwrap().logp);
    let z = mat(&logp_d1(&m, &p, &c, 0.5, 4, None).unwrap().logp);
    assert_eq!(x, y);
    assert_ne!(x, z);
}

#[test]
fn fully_masked_estimator_keeps_the_prompt_clean_and_honours_padding() {
    let m = model(false);
    let (mut p, c) = (prompts(), completions());
    // Left-pad row 0 with two EOS pads.
    p[0][0] = EOS;
    p[0][1] = EOS;
    let pl = p[0].len();
    let cl = c[0].len();
    let attn_rows: Vec<Vec<u32>> = vec![
        (0..pl + cl).map(|j| u32::from(j >= 2)).collect(),
        vec![1; pl + cl],
    ];
    let attn = ids(&attn_rows);
    let seq = concat(&p, &c);
    let input: Vec<Vec<u32>> = seq
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(j, &y)| if j >= pl { MASK } else { y })
                .collect()
        })
        .collect();
    let want = direct(&m, &input, &seq, Some(&attn), 1.0);
    let got = mat(&logp_masked(&m, &ids(&p), &ids(&c), Some(&attn))
        .unwrap()
        .logp);
    for r in 0..2 {
        for k in 0..cl {
            assert_close(got[r][k], want[r][pl + k], TOL, "masked logp");
        }
    }
    // d1 with p = 1 and the attention mask masks every real prompt token, never a pad.
    let real: Vec<bool> = attn_rows
        .iter()
        .flat_map(|r| r[..pl].iter().map(|&v| v != 0).collect::<Vec<_>>())
        .collect();
    let noise = d1_prompt_mask(2, pl, 1.0, 5, Some(&real));
    assert_eq!(noise, real);
    let d1 = mat(&logp_d1(&m, &ids(&p), &ids(&c), 1.0, 5, Some(&attn))
        .unwrap()
        .logp);
    let input1: Vec<Vec<u32>> = seq
        .iter()
        .enumerate()
        .map(|(r, row)| {
            row.iter()
                .enumerate()
                .map(|(j, &y)| {
                    if j >= pl || noise[r * pl + j] {
                        MASK
                    } else {
                        y
                    }
                })
                .collect()
        })
        .collect();
    let want1 = direct(&m, &input1, &seq, Some(&attn), 1.0);
    for r in 0..2 {
        for k in 0..cl {
            assert_close(d1[r][k], want1[r][pl + k], TOL, "d1 p=1 padded");
        }
    }
}

fn recorded() -> (workbench_core::sampler::Trajectory, usize) {
    let m = model(false);
    let cfg = SamplerConfig::from_json(
        r#"{"gen_length": 8, "steps": 4, "block_length": 4, "record": true}"#,
    )
    .unwrap();
    let out = generate(
        &m,
        &[vec![5, 17, 42], vec![250, 251, 7, 9]],
        &cfg,
        GenerateOptions::default(),
    )
    .unwrap();
    (out.trajectory.unwrap(), out.prompt_len)
}

#[test]
fn trajectory_steps_partition_the_completion_and_match_direct_logp() {
    let m = model(false);
    let (traj, pl) = recorded();
    let (b, t) = (traj.batch_size(), traj.len());
    let mut sum = vec![vec![0.0f32; t]; b];
    for s in 0..traj.num_steps() {
        let c = mat(&traj.committed(s).unwrap());
        for r in 0..b {
            for j in 0..t {
                sum[r][j] += c[r][j];
            }
        }
    }
    for r in 0..b {
        for j in 0..t {
            let want = if j >= pl { 1.0 } else { 0.0 };
            assert_eq!(sum[r][j], want, "row {r} position {j}");
        }
    }
    let final_ids = traj.state(traj.num_steps()).unwrap();
    for s in 0..traj.num_steps() {
        let state = traj.state(s).unwrap();
        let committed = traj.committed(s).unwrap();
        let est = logp_step(&m, &state, &final_ids, &committed, None).unwrap();
        assert_eq!(mat(&est.mask), mat(&committed));
        let x = state.to_vec2::<u32>().unwrap();
        let y = final_ids.to_vec2::<u32>().unwrap();
        let want = direct(&m, &x, &y, None, 1.0);
        let got = mat(&est.logp);
        let cm = mat(&committed);
        for r in 0..b {
            for j in 0..t {
                if cm[r][j] != 0.0 {
                    assert_close(got[r][j], want[r][j], TOL, "step logp");
                } else {
                    assert_eq!(got[r][j], 0.0);
                }
            }
        }
    }
}

#[test]
fn mdpo_scores_every_masked_completion_position_at_the_tempered_logits() {
    let m = model(false);
    let (traj, pl) = recorded();
    let s = 1;
    let state = traj.state(s).unwrap();
    let pred = traj.prediction(s).unwrap();
    let temp = 0.4;
    let est = logp_mdpo(&m, &state, &pred, pl, temp, MDPO_EPS, None).unwrap();
    let x = state.to_vec2::<u32>().unwrap();
    let y = pred.to_vec2::<u32>().unwrap();
    let want = direct(&m, &x, &y, None, temp + MDPO_EPS);
    let got = mat(&est.logp);
    let mask = mat(&est.mask);
    let mut n = 0;
    for r in 0..x.len() {
        for j in 0..x[0].len() {
            let masked = j >= pl && x[r][j] == MASK;
            assert_eq!(mask[r][j], f32::from(u8::from(masked)));
            if masked {
                n += 1;
                assert_close(got[r][j], want[r][j], TOL, "mdpo logp");
            } else {
                assert_eq!(got[r][j], 0.0);
            }
        }
    }
    assert!(n > 0);
}

#[test]
fn elbo_counts_follow_the_stratified_formula() {
    // linspace(9, 9 + 3·10/4, 4) = 9, 11.5, 14, 16.5 → round half even 9, 12, 14, 16 → wrap.
    assert_eq!(elbo_counts(9, 10, 4), vec![9, 2, 4, 6]);
    assert_eq!(elbo_counts(3, 5, 1), vec![3]);
    // linspace(1, 1 + 2·3/3, 3) = 1, 2, 3.
    assert_eq!(elbo_counts(1, 3, 3), vec![1, 2, 3]);
    for l in 1..12 {
        for b in 1..8 {
            for k in 1..=l {
                let c = elbo_counts(k, l, b);
                assert_eq!(c[0], k);
                assert!(
                    c.iter().all(|&x| (1..=l).contains(&x)),
                    "{k} {l} {b}: {c:?}"
                );
                if b == l {
                    let mut s = c.clone();
                    s.sort_unstable();
                    assert_eq!(s, (1..=l).collect::<Vec<_>>(), "b = L covers every count");
                }
            }
        }
    }
}

#[test]
fn elbo_matches_a_hand_computed_monte_carlo_average() {
    let m = model(false);
    let (p, c) = (prompts(), completions());
    let (pl, cl) = (p[0].len(), c[0].len());
    let (mc, batch, seed) = (6, 3, 21);
    let est = elbo(&m, &ids(&p), &ids(&c), mc, batch, seed, None).unwrap();
    let draws = elbo_draws(2, cl, mc, batch, seed).unwrap();
    assert_eq!(draws.len(), 2 * mc);
    assert_eq!(draws, elbo_draws(2, cl, mc, batch, seed).unwrap());
    let seq = concat(&p, &c);
    let mut want = [0.0f64; 2];
    for d in &draws {
        assert_eq!(d.count, elbo_counts(d.k, cl, batch)[d.copy]);
        assert_eq!(d.masked.iter().filter(|&&x| x).count(), d.count);
        let input: Vec<u32> = seq[d.row]
            .iter()
            .enumerate()
            .map(|(j, &y)| if j >= pl && d.masked[j - pl] { MASK } else { y })
            .collect();
        let lp = direct(&m, &[input], &[seq[d.row].clone()], None, 1.0);
        let ce: f64 = (0..cl)
            .filter(|&k| d.masked[k])
            .map(|k| -f64::from(lp[0][pl + k]))
            .sum();
        want[d.row] += ce / (d.count as f64 / cl as f64);
    }
    let got = est.loglik.to_vec1::<f32>().unwrap();
    let tok = mat(&est.logp);
    for r in 0..2 {
        let w = -(want[r] / mc as f64) as f32;
        assert_close(got[r], w, TOL, "elbo");
        assert_close(tok[r].iter().sum::<f32>(), got[r], TOL, "per-token sum");
    }
}

#[test]
fn coupled_masks_are_complementary_and_each_token_is_scored_once() {
    let m = model(false);
    let (p, c) = (prompts(), completions());
    let (pl, cl) = (p[0].len(), c[0].len());
    let t = 0.5;
    let est = logp_coupled(&m, &ids(&p), &ids(&c), Some(t), 9, None).unwrap();
    let first = coupled_mask(2, cl, t, 9);
    assert_eq!(
        mat(&est.first),
        first
            .chunks(cl)
            .map(|r| r.iter().map(|&x| f32::from(u8::from(x))).collect())
            .collect::<Vec<Vec<f32>>>()
    );
    assert!(first.iter().any(|&x| x) && first.iter().any(|&x| !x));
    assert_eq!(mat(&est.mask), vec![vec![1.0; cl]; 2]);
    let seq = concat(&p, &c);
    let build = |in_first: bool| -> Vec<Vec<u32>> {
        seq.iter()
            .enumerate()
            .map(|(r, row)| {
                row.iter()
                    .enumerate()
                    .map(|(j, &y)| {
                        if j >= pl && first[r * cl + j - pl] == in_first {
                            MASK
                        } else {
                            y
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let (a, b) = (build(true), build(false));
    let wa = direct(&m, &a, &seq, None, 1.0);
    let wb = direct(&m, &b, &seq, None, 1.0);
    let got = mat(&est.logp);
    let weight = mat(&est.weight);
    for r in 0..2 {
        for k in 0..cl {
            let j = pl + k;
            // Complementary on the completion: masked in exactly one copy; prompt clean in both.
            assert!((a[r][j] == MASK) != (b[r][j] == MASK));
            let (want, w) = if first[r * cl + k] {
                (wa[r][j], 1.0 / t)
            } else {
                (wb[r][j], 1.0 / (1.0 - t))
            };
            assert_close(got[r][k], want, TOL, "coupled logp");
            assert_close(weight[r][k], w as f32, 1e-6, "coupled weight");
        }
        assert_eq!(a[r][..pl], seq[r][..pl]);
        assert_eq!(b[r][..pl], seq[r][..pl]);
    }
    // Without t, it is drawn from the seed inside DiffuCoder's range.
    let drawn = logp_coupled(&m, &ids(&p), &ids(&c), None, 9, None).unwrap();
    assert!((0.2..0.8).contains(&drawn.t));
}

#[test]
fn d1_gradient_reaches_every_weight() {
    let m = model(true);
    let est = logp_d1(&m, &ids(&prompts()), &ids(&completions()), 0.15, 1, None).unwrap();
    let loss = est.logp.mean_all().unwrap();
    let grads = loss.backward().unwrap();
    assert!(!m.vars().is_empty());
    for (name, v) in m.vars() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no grad for {name}"));
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "{name}: non-finite grad");
        assert!(g.iter().any(|&x| x != 0.0), "{name}: zero grad");
    }
}

#[test]
fn pretrain_and_sft_losses_match_hand_computations() {
    let m = model(false);
    let seq = concat(&prompts(), &completions());
    let (b, t) = (seq.len(), seq[0].len());
    let seed = 13;
    let noise = draw_noise(b, t, seed, PRETRAIN_EPS);
    assert_eq!(noise, draw_noise(b, t, seed, PRETRAIN_EPS));
    assert_ne!(noise, draw_noise(b, t, seed + 1, PRETRAIN_EPS));
    for &p in &noise.p_mask {
        assert!((PRETRAIN_EPS..=1.0).contains(&p));
    }
    // Pretraining.
    let input: Vec<Vec<u32>> = seq
        .iter()
        .enumerate()
        .map(|(r, row)| {
            row.iter()
                .enumerate()
                .map(|(j, &y)| if noise.masked[r * t + j] { MASK } else { y })
                .collect()
        })
        .collect();
    let lp = direct(&m, &input, &seq, None, 1.0);
    let mut want = 0.0f64;
    let mut n = 0;
    for r in 0..b {
        for j in 0..t {
            if noise.masked[r * t + j] {
                want -= f64::from(lp[r][j]) / noise.p_mask[r];
                n += 1;
            }
        }
    }
    want /= (b * t) as f64;
    let got = pretrain_loss(&m, &ids(&seq), seed, PRETRAIN_EPS).unwrap();
    assert_eq!(got.num_masked, n);
    assert_close(
        got.loss.to_scalar::<f32>().unwrap(),
        want as f32,
        TOL,
        "pretrain",
    );

    // SFT: the answer (completion incl. its EOS padding) of each row.
    let pl = [6usize, 4];
    let answer: Vec<Vec<u32>> = pl
        .iter()
        .map(|&p| (0..t).map(|j| u32::from(j >= p)).collect())
        .collect();
    let input: Vec<Vec<u32>> = seq
        .iter()
        .enumerate()
        .map(|(r, row)| {
            row.iter()
                .enumerate()
                .map(|(j, &y)| {
                    if j >= pl[r] && noise.masked[r * t + j] {
                        MASK
                    } else {
                        y
                    }
                })
                .collect()
        })
        .collect();
    let lp = direct(&m, &input, &seq, None, 1.0);
    let mut want = 0.0f64;
    let mut n = 0;
    for r in 0..b {
        let len = (t - pl[r]) as f64;
        for j in pl[r]..t {
            if noise.masked[r * t + j] {
                want -= f64::from(lp[r][j]) / noise.p_mask[r] / len;
                n += 1;
            }
        }
    }
    want /= b as f64;
    let got = sft_loss(&m, &ids(&seq), &ids(&answer), seed, PRETRAIN_EPS).unwrap();
    assert_eq!(got.num_masked, n);
    assert!(n > 0);
    assert_close(
        got.loss.to_scalar::<f32>().unwrap(),
        want as f32,
        TOL,
        "sft",
    );
}
