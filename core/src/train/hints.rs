//! IGPO hint construction (`reference/ALGORITHMS.md` §4, Zhao et al. 2025, released
//! `create_spacing_scaled_inpainting_sequence` / `scale_chunk_positions`): the reference
//! solution's tokens, truncated to `gen_length − margin`, are cut into consecutive chunks of
//! random size `min_chunk..=max_chunk` (a tail shorter than `min_chunk` is dropped);
//! `total − ⌊total·(1 − η)⌋` chunks are revealed, chosen at random with the last chunk always
//! among them; the revealed chunks are placed with the gaps between them stretched by
//! `s = clamp(effective_len / trace_len, 1, max_stretch)` (each gap at most `max_spacing`,
//! the first chunk at `⌊start·s⌋`), never past `effective_len = gen_length − margin`.
//! The result is a map generation offset → token, the sampler's inpainting `hints`.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The knobs of the hint builder (IGPO's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct HintConfig {
    /// Positions at the end of the generation left free (30 in IGPO).
    pub margin: usize,
    /// Smallest chunk (5).
    pub min_chunk: usize,
    /// Largest chunk (10).
    pub max_chunk: usize,
    /// Largest stretched gap between revealed chunks (100).
    pub max_spacing: usize,
    /// Upper clamp of the stretch factor (1.5).
    pub max_stretch: f64,
}

impl Default for HintConfig {
    fn default() -> Self {
        HintConfig {
            margin: 30,
            min_chunk: 5,
            max_chunk: 10,
            max_spacing: 100,
            max_stretch: 1.5,
        }
    }
}

/// Consecutive chunks `(start, end)` of `0..n` with random sizes in `min..=max`; a tail
/// shorter than `min` is dropped.
pub fn chunk_spans<R: Rng>(n: usize, min: usize, max: usize, rng: &mut R) -> Vec<(usize, usize)> {
    let (min, max) = (min.max(1), max.max(min.max(1)));
    let mut out = Vec::new();
    let mut start = 0;
    while n - start >= min {
        let size = rng.random_range(min..=max).min(n - start);
        out.push((start, start + size));
        start += size;
    }
    out
}

/// Number of chunks revealed out of `total` for a hint ratio `eta`: `total − ⌊total·(1 − η)⌋`.
pub fn revealed_count(total: usize, eta: f64) -> usize {
    let masked = (total as f64 * (1.0 - eta.clamp(0.0, 1.0))).floor() as usize;
    total - masked.min(total)
}

/// The stretch factor `clamp(effective_len / trace_len, 1, max_stretch)`.
pub fn stretch(effective_len: usize, trace_len: usize, max_stretch: f64) -> f64 {
    if trace_len == 0 {
        return 1.0;
    }
    (effective_len as f64 / trace_len as f64).clamp(1.0, max_stretch.max(1.0))
}

/// Where one hinted rollout's hints come from and go: the chunks of the truncated trace,
/// the revealed ones (indices, ascending; the last chunk always) and, per revealed chunk that
/// fits, its placed `(offset, len)` in the generation.
#[derive(Debug, Clone, PartialEq)]
pub struct HintPlan {
    /// Length of the truncated trace, `min(tokens, gen_length − margin)`.
    pub trace_len: usize,
    /// Consecutive chunks `(start, end)` of the trace.
    pub chunks: Vec<(usize, usize)>,
    /// Indices of the revealed chunks, ascending.
    pub revealed: Vec<usize>,
    /// Per revealed chunk (in order, possibly fewer when space ran out): placed offset and length.
    pub placed: Vec<(usize, usize)>,
    /// The stretch factor applied to the gaps.
    pub stretch: f64,
}

/// Plans the hints of one rollout with ratio `eta` for a trace of `n_tokens` tokens.
pub fn plan_hints<R: Rng>(
    n_tokens: usize,
    gen_length: usize,
    eta: f64,
    cfg: &HintConfig,
    rng: &mut R,
) -> HintPlan {
    let effective = gen_length.saturating_sub(cfg.margin);
    let trace_len = n_tokens.min(effective);
    let chunks = chunk_spans(trace_len, cfg.min_chunk, cfg.max_chunk, rng);
    let s = stretch(effective, trace_len, cfg.max_stretch);
    let mut plan = HintPlan {
        trace_len,
        chunks,
        revealed: Vec::new(),
        placed: Vec::new(),
        stretch: s,
    };
    let total = plan.chunks.len();
    if total == 0 {
        return plan;
    }
    let k = revealed_count(total, eta).max(1);
    // The last chunk always; the others drawn without replacement.
    let mut others: Vec<usize> = (0..total - 1).collect();
    others.shuffle(rng);
    let mut chosen: Vec<usize> = others.into_iter().take(k - 1).collect();
    chosen.push(total - 1);
    chosen.sort_unstable();
    let mut prev: Option<(usize, usize)> = None; // (original end, placed end)
    for &c in &chosen {
        let (start, end) = plan.chunks[c];
        let at = match prev {
            None => (start as f64 * s).floor() as usize,
            Some((orig_end, placed_end)) => {
                let gap = ((start - orig_end) as f64 * s).floor() as usize;
                placed_end + gap.min(cfg.max_spacing)
            }
        };
        if at >= effective {
            break;
        }
        let len = (end - start).min(effective - at);
        plan.placed.push((at, len));
        prev = Some((end, at + len));
    }
    plan.revealed = chosen;
    plan
}

/// The hint map (generation offset → token) of one hinted rollout with ratio `eta`.
pub fn build_hints<R: Rng>(
    tokens: &[u32],
    gen_length: usize,
    eta: f64,
    cfg: &HintConfig,
    rng: &mut R,
) -> BTreeMap<usize, u32> {
    let plan = plan_hints(tokens.len(), gen_length, eta, cfg, rng);
    let mut out = BTreeMap::new();
    for (&c, &(at, len)) in plan.revealed.iter().zip(&plan.placed) {
        let start = plan.chunks[c].0;
        for i in 0..len {
            out.insert(at + i, tokens[start + i]);
        }
    }
    out
}

/// `plan_hints` with a generator seeded by `seed` (what `igpo_hints` uses per row).
pub fn seeded_plan(
    n_tokens: usize,
    gen_length: usize,
    eta: f64,
    cfg: &HintConfig,
    seed: u64,
) -> HintPlan {
    plan_hints(
        n_tokens,
        gen_length,
        eta,
        cfg,
        &mut StdRng::seed_from_u64(seed),
    )
}

/// `build_hints` with a generator seeded by `seed`.
pub fn seeded_hints(
    tokens: &[u32],
    gen_length: usize,
    eta: f64,
    cfg: &HintConfig,
    seed: u64,
) -> BTreeMap<usize, u32> {
    build_hints(
        tokens,
        gen_length,
        eta,
        cfg,
        &mut StdRng::seed_from_u64(seed),
    )
}

/// Which correct hinted candidates replace the first rows of an all-wrong group, as IGPO's
/// trainer picks them (`trainer_igpo.py` 1573–1586): with `correct` the candidates' indices
/// (ascending) and at most `max_replace` replacements, all of them when they fit, else a
/// random `max_replace` of them in random order (`torch.randperm(n)[:k]`; here from `rng`).
/// Entry i of the result replaces row i of the group.
pub fn choose_replacements<R: Rng>(
    correct: &[usize],
    max_replace: usize,
    rng: &mut R,
) -> Vec<usize> {
    if correct.len() <= max_replace {
        return correct.to_vec();
    }
    let mut perm: Vec<usize> = (0..correct.len()).collect();
    perm.shuffle(rng);
    perm.into_iter()
        .take(max_replace)
        .map(|i| correct[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_a_prefix_with_sizes_in_range() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [0, 4, 5, 17, 100, 463] {
            let c = chunk_spans(n, 5, 10, &mut rng);
            let mut pos = 0;
            for &(s, e) in &c {
                assert_eq!(s, pos);
                assert!((5..=10).contains(&(e - s)), "{n}: {s}..{e}");
                pos = e;
            }
            assert!(n - pos < 5, "{n}: dropped tail {}", n - pos);
        }
    }

    #[test]
    fn replacements_take_all_when_they_fit_else_a_random_subset() {
        let mut rng = StdRng::seed_from_u64(5);
        assert_eq!(choose_replacements(&[1, 3], 2, &mut rng), vec![1, 3]);
        assert_eq!(choose_replacements(&[], 2, &mut rng), Vec::<usize>::new());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = choose_replacements(&[0, 2, 5, 7], 2, &mut rng);
            assert_eq!(c.len(), 2);
            assert_ne!(c[0], c[1]);
            assert!(c.iter().all(|x| [0, 2, 5, 7].contains(x)));
            seen.insert(c);
        }
        // Ordered pairs of 4 candidates: 12, all reachable (not always the first two).
        assert_eq!(seen.len(), 12);
    }

    #[test]
    fn reveal_count_and_stretch() {
        assert_eq!(revealed_count(10, 0.5), 5);
        assert_eq!(revealed_count(7, 0.0), 0);
        assert_eq!(revealed_count(7, 1.0), 7);
        assert_eq!(stretch(100, 50, 1.5), 1.5);
        assert_eq!(stretch(100, 200, 1.5), 1.0);
        assert_eq!(stretch(120, 100, 1.5), 1.2);
    }
}
