//! Block layout and per-step commit counts.
//!
//! * **Linear** (LLaDA `get_num_transfer_tokens`): a block with n masked positions and S steps
//!   commits `n / S` per step, the first `n % S` steps one more.
//! * **MaskGIT** (MDPO `get_num_transfer_tokens_maskgit`): after step i of S the cumulative
//!   count is `n − floor(n · γ((i+1)/S))`, γ(r) = 1 − r (linear) or cos(rπ/2) (cosine), clipped
//!   to [1e-6, 1]; the per-step counts are the differences.
//! * **ASS** (EOSER/ASS `eoser_ass_generate`): S = floor(log2 L) steps, step i < S−1 commits
//!   2^i and step S−1 the rest. With `block_num` blocks built from the right the last block
//!   holds 2^(S−1) + 1 + (L − 2^S) positions (step S−1), each earlier block 2^p for
//!   p = S−2 downward (one step each) and the first block the remainder (steps 0..=p).
//!   Example L = 128, 4 blocks: 15 (steps 0–3), 16 (step 4), 32 (step 5), 65 (step 6).
//! * **EOSER γ** (EOSER/ASS `sampling`, `ass_sampling`): uniform steps
//!   `γ = γmin + (γmax − γmin) · min(i, S−1)/(S−1)` with i the step index *within the block* and
//!   S the *total* step count (the reference code's convention); under ASS
//!   `γ = γmin + (γmax − γmin) · (2^(s+1) − 1)/2^S` with s the global step index.

use super::config::{SamplerConfig, Schedule};

/// One block of the generation region and the steps that decode it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// First position of the block, as an offset into the generation region.
    pub start: usize,
    /// One past the last position (generation offset).
    pub end: usize,
    /// Global step indices of the block's steps, in order (empty under threshold decoding,
    /// which loops until the block is full).
    pub steps: Vec<usize>,
    /// Fixed per-step commit counts (ASS); `None` means computed from the masked count at the
    /// block's start with [`step_counts`].
    pub fixed_counts: Option<Vec<usize>>,
}

/// The blocks of `cfg` (assumed valid), left to right.
pub fn plan(cfg: &SamplerConfig) -> Vec<Block> {
    if cfg.schedule == Schedule::Ass {
        return ass_plan(cfg.gen_length, cfg.block_num.unwrap_or(1));
    }
    let bl = cfg.block_len();
    let nb = cfg.gen_length / bl;
    let spb = if cfg.threshold.is_some() {
        0
    } else {
        cfg.steps / nb
    };
    (0..nb)
        .map(|b| Block {
            start: b * bl,
            end: (b + 1) * bl,
            steps: (b * spb..(b + 1) * spb).collect(),
            fixed_counts: None,
        })
        .collect()
}

/// Per-step commit counts for a block with `masked` masked positions decoded in `steps` steps
/// (linear or MaskGIT schedules; they sum to `masked`).
pub fn step_counts(schedule: Schedule, masked: usize, steps: usize) -> Vec<usize> {
    match schedule {
        Schedule::Linear | Schedule::Ass => {
            let base = masked / steps;
            let rem = masked % steps;
            (0..steps).map(|i| base + usize::from(i < rem)).collect()
        }
        Schedule::MaskgitLinear | Schedule::MaskgitCosine => {
            let n = masked as f64;
            let mut prev = 0usize;
            (0..steps)
                .map(|i| {
                    let r = (i + 1) as f64 / steps as f64;
                    let gamma = if schedule == Schedule::MaskgitLinear {
                        1.0 - r
                    } else {
                        (r * std::f64::consts::PI / 2.0).cos()
                    };
                    let gamma = gamma.clamp(1e-6, 1.0);
                    let cum = masked - (n * gamma).floor() as usize;
                    let c = cum.saturating_sub(prev);
                    prev = prev.max(cum);
                    c
                })
                .collect()
        }
    }
}

/// ASS blocks for `gen_length` L and `block_num` blocks (see the module docs).
pub fn ass_plan(gen_length: usize, block_num: usize) -> Vec<Block> {
    let s = (usize::BITS - 1 - gen_length.leading_zeros()) as usize;
    let reminder = gen_length - (1usize << s);
    // Sizes and global step lists, right to left.
    let mut sizes = Vec::new();
    let mut steps = Vec::new();
    if block_num <= 1 {
        sizes.push(gen_length);
        steps.push((0..s).collect::<Vec<_>>());
    } else {
        let mut power = s - 1;
        let mut remaining = gen_length;
        for idx in (0..block_num).rev() {
            if idx == block_num - 1 {
                let size = (1usize << power) + 1 + reminder;
                remaining -= size;
                sizes.push(size);
                steps.push(vec![power]);
                power -= 1;
            } else if idx == 0 {
                sizes.push(remaining);
                steps.push((0..=power).collect());
                remaining = 0;
            } else {
                let size = 1usize << power;
                remaining -= size;
                sizes.push(size);
                steps.push(vec![power]);
                power -= 1;
            }
        }
        debug_assert_eq!(remaining, 0);
        sizes.reverse();
        steps.reverse();
    }
    let last_size = *sizes.last().unwrap_or(&0);
    let count = |i: usize| -> usize {
        if i + 1 == s {
            if block_num <= 1 {
                gen_length - ((1usize << i) - 1)
            } else {
                last_size
            }
        } else {
            1usize << i
        }
    };
    let mut start = 0;
    sizes
        .into_iter()
        .zip(steps)
        .map(|(size, st)| {
            let b = Block {
                start,
                end: start + size,
                fixed_counts: Some(st.iter().map(|&i| count(i)).collect()),
                steps: st,
            };
            start += size;
            b
        })
        .collect()
}

/// The EOSER factor of step `step_in_block` (uniform steps) or global step `step` (ASS): see
/// the module docs. `total_steps` is the run's total step count.
pub fn eoser_gamma(
    gamma_min: f64,
    gamma_max: f64,
    ass: bool,
    step: usize,
    step_in_block: usize,
    total_steps: usize,
) -> f64 {
    if total_steps <= 1 {
        return gamma_max;
    }
    let t = if ass {
        ((1u64 << (step + 1)) - 1) as f64 / (1u64 << total_steps) as f64
    } else {
        step_in_block.min(total_steps - 1) as f64 / (total_steps - 1) as f64
    };
    gamma_min + (gamma_max - gamma_min) * t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_llada() {
        assert_eq!(step_counts(Schedule::Linear, 10, 4), vec![3, 3, 2, 2]);
        assert_eq!(step_counts(Schedule::Linear, 2, 4), vec![1, 1, 0, 0]);
    }

    #[test]
    fn maskgit_sums_to_n() {
        for n in [1, 7, 16, 33] {
            for s in [1, 3, 8] {
                for sch in [Schedule::MaskgitLinear, Schedule::MaskgitCosine] {
                    assert_eq!(step_counts(sch, n, s).iter().sum::<usize>(), n);
                }
            }
        }
        assert_eq!(step_counts(Schedule::MaskgitLinear, 16, 8), vec![2; 8]);
    }

    #[test]
    fn ass_example_from_the_paper() {
        let p = ass_plan(128, 4);
        let sizes: Vec<usize> = p.iter().map(|b| b.end - b.start).collect();
        assert_eq!(sizes, vec![15, 16, 32, 65]);
        assert_eq!(p[0].steps, vec![0, 1, 2, 3]);
        assert_eq!(p[0].fixed_counts, Some(vec![1, 2, 4, 8]));
        assert_eq!(p[3].fixed_counts, Some(vec![65]));
        let one = ass_plan(32, 1);
        assert_eq!(one[0].fixed_counts, Some(vec![1, 2, 4, 8, 17]));
    }
}
