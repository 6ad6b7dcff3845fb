//! Loss parity with the reference trainers: replays a folder of golden loss fixtures (the
//! format of `tests/fixtures/losses/README.md`: `index.json`, per case `<case>.json`,
//! `<case>.safetensors` and a gradient file) through the same core estimators, advantages,
//! filters and losses the training scripts call, and measures how far our per-token
//! log-probabilities, advantages, losses and gradients are from the reference trainers' own.
//!
//! Every random object (mask seeds and the noisy inputs they made, trajectories, hint
//! placements, SFT's t and mask) is taken from the fixture, never redrawn: the estimators are
//! called on the recorded inputs ([`estimators::logp_on_input`], [`estimators::logp_step`],
//! [`estimators::logp_mdpo`], [`sft::sft_loss_on_noise`]). Discrete results (MDPO's selected
//! steps, IGPO's kept hint positions, the embedding-gradient rows) must be identical; the other
//! comparisons use the README's tolerances ([`Tolerances`]):
//!
//! | quantity | error measured | tolerance |
//! |---|---|---|
//! | per-token log-probs (and the reference model's, recomputed) | max `|Δ| / (1 + |logp|)` | 2.5e-4 (MDPO 6e-4) |
//! | IGPO entropy | max `|Δ|` | 2e-4 |
//! | advantages | max `|Δ|` | 1e-5 |
//! | losses | `|Δ| / max(1, |loss|)` | 1e-5 |
//! | gradients | per tensor `max |Δ| / max |g|`, worst tensor | 5e-4 |
//!
//! Gradient files store `model.transformer.wte.weight` as its non-zero rows with
//! `model.transformer.wte.weight.rows`, and with `grad_stride` s > 1 every tensor as the 1-D
//! sample `flatten(g)[0::s]`; both conventions are honoured.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::estimators::{self, HostIds};
use super::losses::{self, KlKind, MdpoLossConfig, Normalise, RatioLevel, Reduction};
use super::sft::{self, SftNormaliser};
use crate::model::{remat, Llada, LoadOptions};

/// The README's recommended tolerances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Log-probs of d1, CJ-GRPO and IGPO, relative to `1 + |logp|`.
    pub logp: f64,
    /// MDPO's tempered log-probs, relative to `1 + |logp|`.
    pub logp_tempered: f64,
    /// IGPO's entropy, absolute.
    pub entropy: f64,
    /// Advantages, absolute.
    pub advantage: f64,
    /// Losses, relative to `max(1, |loss|)`.
    pub loss: f64,
    /// Gradients, per tensor relative to its max `|g|`.
    pub gradient: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            logp: 2.5e-4,
            logp_tempered: 6e-4,
            entropy: 2e-4,
            advantage: 1e-5,
            loss: 1e-5,
            gradient: 5e-4,
        }
    }
}

/// One measured comparison of a case.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What was compared (`logp`, `ref_logp`, `advantages`, `entropy`, `loss`, `gradients`).
    pub kind: String,
    /// The fixture entries it covers, e.g. `outputs.per_token_logps.mu1`.
    pub what: String,
    /// The error as defined for its kind (see the module docs).
    pub error: f64,
    /// Its tolerance.
    pub tolerance: f64,
}

impl Check {
    /// Whether the error is within the tolerance (a NaN error never is).
    pub fn passed(&self) -> bool {
        self.error <= self.tolerance
    }
}

/// A discrete object that must come out identical.
#[derive(Debug, Clone, PartialEq)]
pub struct Exact {
    /// Its name, e.g. `intermediate.selected_steps`.
    pub what: String,
    /// Whether ours equals the reference's.
    pub equal: bool,
    /// On a mismatch, where (empty when equal).
    pub detail: String,
}

/// The result of replaying one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    /// Case name (`d1_diffu_grpo`, …).
    pub name: String,
    /// Its `algorithm` in `index.json`.
    pub algorithm: String,
    /// Every tolerance comparison.
    pub checks: Vec<Check>,
    /// Every exact comparison.
    pub exact: Vec<Exact>,
    /// The gradient tensor with the largest relative error.
    pub worst_gradient: String,
    /// Number of gradient tensors compared.
    pub gradient_tensors: usize,
}

impl CaseReport {
    /// Whether every check is within tolerance and every discrete object identical.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed) && self.exact.iter().all(|e| e.equal)
    }

    /// The largest error of a kind and its tolerance (`None` when the case has no such check).
    pub fn worst(&self, kind: &str) -> Option<(f64, f64)> {
        self.checks
            .iter()
            .filter(|c| c.kind == kind)
            .fold(None, |acc: Option<(f64, f64)>, c| match acc {
                Some((e, t)) if c.error / c.tolerance <= e / t || (e / t).is_nan() => Some((e, t)),
                _ => Some((c.error, c.tolerance)),
            })
    }

    /// One line: the case, each kind's worst error against its tolerance, the discrete verdict.
    pub fn line(&self) -> String {
        let mut parts = vec![format!(
            "{:<18} {}",
            self.name,
            if self.passed() { "ok  " } else { "FAIL" }
        )];
        for kind in CHECK_KINDS {
            if let Some((e, t)) = self.worst(kind) {
                parts.push(format!("{kind} {e:.1e}/{t:.1e}"));
            }
        }
        let bad: Vec<&Exact> = self.exact.iter().filter(|e| !e.equal).collect();
        parts.push(if bad.is_empty() {
            format!("discrete {}/{} exact", self.exact.len(), self.exact.len())
        } else {
            format!(
                "discrete MISMATCH {}",
                bad.iter()
                    .map(|e| format!("{} ({})", e.what, e.detail))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        parts.join("  ")
    }
}

/// A fixtures folder: its `index.json` and where it lives.
#[derive(Debug, Clone)]
pub struct FixtureSet {
    /// The folder.
    pub dir: PathBuf,
    /// `index.json`.
    pub index: Value,
}

impl FixtureSet {
    /// Opens `dir/index.json`.
    pub fn open(dir: &Path) -> Result<FixtureSet> {
        let path = dir.join("index.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: expected a loss-fixtures folder with an index.json",
                path.display()
            )
        })?;
        let index: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        if !index["cases"].is_array() {
            bail!("{} has no `cases` array", path.display());
        }
        Ok(FixtureSet {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// Case names and algorithms, in index order.
    pub fn cases(&self) -> Vec<(String, String)> {
        self.index["cases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or("").to_string(),
                            c["algorithm"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The reference-policy checkpoint folder `index.json` names (relative to the folder).
    pub fn reference_dir(&self) -> Result<PathBuf> {
        let name = self.index["reference_checkpoint"]
            .as_str()
            .context("index.json has no `reference_checkpoint`")?;
        Ok(self.dir.join(name))
    }

    /// `grad_stride` (1 when absent).
    pub fn grad_stride(&self) -> usize {
        self.index["grad_stride"].as_u64().unwrap_or(1).max(1) as usize
    }
}

/// Replays every case of the fixtures folder `dir` with the policy checkpoint `policy` (the
/// checkpoint the fixtures were made on; the reference policy is the folder `index.json`
/// names) on the CPU in f32, and returns one report per case in index order.
pub fn replay(dir: &Path, policy: &Path, tol: &Tolerances) -> Result<Vec<CaseReport>> {
    let set = FixtureSet::open(dir)?;
    let opts = LoadOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        trainable: true,
    };
    let model = Llada::load(policy, &opts)
        .with_context(|| format!("loading the policy checkpoint {}", policy.display()))?;
    let ref_dir = set.reference_dir()?;
    let reference = Llada::load(
        &ref_dir,
        &LoadOptions {
            trainable: false,
            ..opts
        },
    )
    .with_context(|| format!("loading the reference checkpoint {}", ref_dir.display()))?;
    let mut out = Vec::new();
    for (name, algorithm) in set.cases() {
        let report = replay_case(&set, &name, &algorithm, &model, &reference, tol)
            .with_context(|| format!("loss fixture case `{name}` ({algorithm})"))?;
        out.push(report);
    }
    Ok(out)
}

/// Replays one case (see [`replay`]).
pub fn replay_case(
    set: &FixtureSet,
    name: &str,
    algorithm: &str,
    model: &Llada,
    reference: &Llada,
    tol: &Tolerances,
) -> Result<CaseReport> {
    let fx = Fixture::open(set, name)?;
    let mut rep = Recorder {
        report: CaseReport {
            name: name.to_string(),
            algorithm: algorithm.to_string(),
            checks: Vec::new(),
            exact: Vec::new(),
            worst_gradient: String::new(),
            gradient_tensors: 0,
        },
        tol: *tol,
    };
    let ctx = Ctx {
        model,
        reference,
        fx: &fx,
    };
    let grads = match algorithm {
        "d1" => d1(&ctx, &mut rep)?,
        "cj_eoser_ass" | "cj_semiar" => cj(&ctx, &mut rep)?,
        "mdpo" => mdpo(&ctx, &mut rep)?,
        "igpo" => igpo(&ctx, &mut rep)?,
        "sft" => sft_case(&ctx, &mut rep)?,
        other => bail!(
            "unknown algorithm `{other}`; expected d1, cj_eoser_ass, cj_semiar, mdpo, igpo or sft"
        ),
    };
    compare_gradients(&fx, model, &grads, set.grad_stride(), &mut rep)?;
    Ok(rep.report)
}

struct Ctx<'a> {
    model: &'a Llada,
    reference: &'a Llada,
    fx: &'a Fixture,
}

/// One case's files.
struct Fixture {
    name: String,
    json: Value,
    tensors: HashMap<String, Tensor>,
    grad_file: PathBuf,
    /// Which scalar the gradient file differentiates (`loss`, `loss.mu1`, `loss_total`).
    grad_of: String,
}

impl Fixture {
    fn open(set: &FixtureSet, name: &str) -> Result<Fixture> {
        let json_path = set.dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&json_path)
            .with_context(|| format!("cannot read {}", json_path.display()))?;
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", json_path.display()))?;
        let st = set.dir.join(format!("{name}.safetensors"));
        let tensors = candle_core::safetensors::load(&st, &Device::Cpu)
            .with_context(|| format!("cannot read {}", st.display()))?;
        let grads = json["gradients"]
            .as_object()
            .with_context(|| format!("{} has no `gradients` object", json_path.display()))?;
        let (key, entry) = grads
            .iter()
            .next()
            .with_context(|| format!("{} lists no gradient file", json_path.display()))?;
        let grad_file =
            set.dir.join(entry["file"].as_str().with_context(|| {
                format!("{}: gradients.{key} has no `file`", json_path.display())
            })?);
        let grad_of = match key.as_str() {
            "grad" => {
                if json["scalars"].get("loss").is_some() {
                    "loss".to_string()
                } else {
                    "loss_total".to_string()
                }
            }
            k => format!("loss.{k}"),
        };
        Ok(Fixture {
            name: name.to_string(),
            json,
            tensors,
            grad_file,
            grad_of,
        })
    }

    fn t(&self, key: &str) -> Result<&Tensor> {
        self.tensors
            .get(key)
            .with_context(|| format!("{}.safetensors has no tensor `{key}`", self.name))
    }

    fn ids(&self, key: &str) -> Result<Tensor> {
        Ok(self.t(key)?.to_dtype(DType::U32)?)
    }

    fn f32(&self, key: &str) -> Result<Tensor> {
        Ok(self.t(key)?.to_dtype(DType::F32)?)
    }

    fn scalar(&self, key: &str) -> Result<f64> {
        self.json["scalars"][key]
            .as_f64()
            .with_context(|| format!("{}.json has no scalar `{key}`", self.name))
    }

    fn sem(&self, key: &str) -> Result<f64> {
        self.json["semantics"][key]
            .as_f64()
            .with_context(|| format!("{}.json has no semantics.{key}", self.name))
    }

    fn sem_usize(&self, key: &str) -> Result<usize> {
        Ok(self.sem(key)? as usize)
    }
}

struct Recorder {
    report: CaseReport,
    tol: Tolerances,
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

impl Recorder {
    fn check(&mut self, kind: &str, what: &str, error: f64, tolerance: f64) {
        self.report.checks.push(Check {
            kind: kind.to_string(),
            what: what.to_string(),
            error: if error.is_nan() { f64::INFINITY } else { error },
            tolerance,
        });
    }

    /// Log-probs: max |Δ| / (1 + |ref|) where `covered` (all positions when `None`).
    fn logp(
        &mut self,
        kind: &str,
        what: &str,
        ours: &Tensor,
        theirs: &Tensor,
        covered: Option<&Tensor>,
        tol: f64,
    ) -> Result<()> {
        if ours.dims() != theirs.dims() {
            bail!(
                "{what}: ours is {:?}, the fixture's {:?}",
                ours.dims(),
                theirs.dims()
            );
        }
        let (a, b) = (host(ours)?, host(theirs)?);
        let m = covered.map(host).transpose()?;
        let mut err = 0f64;
        for i in 0..a.len() {
            if m.as_ref().is_some_and(|m| m[i] == 0.0) {
                continue;
            }
            let e = (a[i] - b[i]).abs() / (1.0 + b[i].abs());
            err = if e.is_nan() {
                f64::INFINITY
            } else {
                err.max(e)
            };
        }
        self.check(kind, what, err, tol);
        Ok(())
    }

    fn abs(
        &mut self,
        kind: &str,
        what: &str,
        ours: &Tensor,
        theirs: &Tensor,
        tol: f64,
    ) -> Result<()> {
        if ours.elem_count() != theirs.elem_count() {
            bail!(
                "{what}: ours is {:?}, the fixture's {:?}",
                ours.dims(),
                theirs.dims()
            );
        }
        let (a, b) = (host(ours)?, host(theirs)?);
        let err = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(
                0f64,
                |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
            );
        self.check(kind, what, err, tol);
        Ok(())
    }

    fn advantages(&mut self, fx: &Fixture, ours: &Tensor) -> Result<()> {
        let tol = self.tol.advantage;
        let theirs = fx.t("intermediate.advantages")?;
        self.abs("advantages", "intermediate.advantages", ours, theirs, tol)
    }

    fn loss(&mut self, what: &str, ours: &Tensor, theirs: f64) -> Result<()> {
        let v = ours.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0];
        let err = (v - theirs).abs() / theirs.abs().max(1.0);
        let tol = self.tol.loss;
        self.check("loss", what, err, tol);
        Ok(())
    }

    fn exact(&mut self, what: &str, equal: bool, detail: String) {
        self.report.exact.push(Exact {
            what: what.to_string(),
            equal,
            detail: if equal { String::new() } else { detail },
        });
    }

    fn exact_tensor(&mut self, what: &str, ours: &Tensor, theirs: &Tensor) -> Result<()> {
        let (a, b) = (host(ours)?, host(theirs)?);
        let diff: Vec<usize> = (0..a.len().max(b.len()))
            .filter(|&i| a.get(i) != b.get(i))
            .collect();
        self.exact(
            what,
            a.len() == b.len() && diff.is_empty(),
            format!(
                "{} of {} entries differ, first at flat index {}",
                diff.len(),
                b.len(),
                diff.first().copied().unwrap_or(0)
            ),
        );
        Ok(())
    }
}

/// The GRPO-family hyperparameters every RL fixture records.
struct Grpo {
    beta: f64,
    eps_low: f64,
    eps_high: f64,
    group: usize,
}

impl Grpo {
    fn read(fx: &Fixture) -> Result<Grpo> {
        Ok(Grpo {
            beta: fx.sem("beta")?,
            eps_low: fx.sem("epsilon_low")?,
            eps_high: fx.sem("epsilon_high")?,
            group: fx.sem_usize("num_generations")?,
        })
    }

    /// The clipped surrogate plus β·k3 per token, as every GRPO-family trainer builds it.
    fn per_token(
        &self,
        logp: &Tensor,
        old: &Tensor,
        adv: &Tensor,
        mask: &Tensor,
        reference: &Tensor,
        level: RatioLevel,
    ) -> Result<Tensor> {
        let clip =
            losses::clipped_surrogate(logp, old, adv, mask, self.eps_low, self.eps_high, level)?;
        Ok((clip.loss + (losses::kl(logp, reference, KlKind::K3)? * self.beta)?)?)
    }
}

/// `t[i]` along dim 0.
fn at(t: &Tensor, i: usize) -> Result<Tensor> {
    Ok(t.get(i)?)
}

/// Prompt ⊕ completion along dim 1 (ids as u32).
/// The kinds of continuous check a case reports, in report order.
pub const CHECK_KINDS: [&str; 6] = [
    "logp",
    "ref_logp",
    "entropy",
    "advantages",
    "loss",
    "gradients",
];

fn cat_ids(prompt: &Tensor, rest: &Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(
        &[&prompt.to_dtype(DType::U32)?, &rest.to_dtype(DType::U32)?],
        1,
    )?)
}

/// d1 diffu-GRPO: r = rewards_per_func · weights, A = r − group mean; per inner iteration the
/// one-step estimator on the recorded noisy input, the token-ratio clipped surrogate + β·k3 and
/// the token mean over the micro-batch (the whole recorded batch).
fn d1(c: &Ctx, rep: &mut Recorder) -> Result<GradStore> {
    let fx = c.fx;
    let h = Grpo::read(fx)?;
    let completion = fx.ids("inputs.completion_ids")?;
    let mask = fx.f32("inputs.completion_mask")?;
    let rows = completion.dim(0)?;
    let adv = weighted_group_advantages(fx, h.group)?;
    rep.advantages(fx, &adv)?;
    let old = fx.f32("inputs.old_per_token_logps")?;
    let refs = fx.f32("inputs.ref_per_token_logps")?;
    let mut grad = None;
    for k in 0..fx.sem_usize("num_iterations")? {
        let noisy = fx.ids(&format!("inputs.noisy_input_ids.mu{k}"))?;
        let est = estimators::logp_on_input(c.model, &noisy, &completion, None)?;
        let key = format!("outputs.per_token_logps.mu{k}");
        rep.logp("logp", &key, &est.logp, fx.t(&key)?, None, rep.tol.logp)?;
        let ref_k = at(&refs, k)?;
        let ref_est = estimators::logp_on_input(c.reference, &noisy, &completion, None)?;
        let what = format!("inputs.ref_per_token_logps[{k}]");
        rep.logp("ref_logp", &what, &ref_est.logp, &ref_k, None, rep.tol.logp)?;
        let per_token = h.per_token(
            &est.logp,
            &at(&old, k)?,
            &adv,
            &mask,
            &ref_k,
            RatioLevel::Token,
        )?;
        let loss = losses::reduce(&per_token, &mask, Reduction::MicroBatchTokenMean { rows })?;
        let name = format!("loss.mu{k}");
        rep.loss(&name, &loss, fx.scalar(&name)?)?;
        if name == fx.grad_of {
            grad = Some(remat::backward(&loss)?);
        }
    }
    grad.with_context(|| format!("no inner iteration computes `{}`", fx.grad_of))
}

/// r = rewards_per_func · reward_weights, then r − group mean.
fn weighted_group_advantages(fx: &Fixture, group: usize) -> Result<Tensor> {
    let rpf = fx.f32("inputs.rewards_per_func")?;
    let w = fx.f32("inputs.reward_weights")?;
    let r = rpf.broadcast_mul(&w.unsqueeze(0)?)?.sum(1)?;
    losses::group_advantages(&r, group, Normalise::None)
}

/// CJ-GRPO: per trajectory step s the step estimator on state s (targets: state s + 1), the
/// clipped surrogate + β·k3 on the tokens committed at s, normalised by the step's committed
/// count over the batch; the loss is the mean over the S steps, one backward through all.
fn cj(c: &Ctx, rep: &mut Recorder) -> Result<GradStore> {
    let fx = c.fx;
    let h = Grpo::read(fx)?;
    let states = fx.ids("trajectory.states")?;
    let committed = fx.f32("trajectory.committed")?;
    let (steps, b, l) = committed.dims3()?;
    let t = states.dim(2)?;
    let p = t - l;
    let adv = losses::group_advantages(&fx.f32("inputs.rewards")?, h.group, Normalise::None)?;
    rep.advantages(fx, &adv)?;
    let old = fx.f32("inputs.old_per_token_logps")?;
    let refs = fx.f32("inputs.ref_per_token_logps")?;
    let theirs = fx.f32("outputs.per_token_logps")?;
    // Score every completion position (the reference computes them all; only the committed
    // ones enter the loss), so the comparison covers the whole record.
    let scored = Tensor::cat(
        &[
            Tensor::zeros((b, p), DType::F32, &Device::Cpu)?,
            Tensor::ones((b, l), DType::F32, &Device::Cpu)?,
        ],
        1,
    )?;
    let mut total: Option<Tensor> = None;
    for s in 0..steps {
        let (state, next) = (at(&states, s)?, at(&states, s + 1)?);
        let est = estimators::logp_step(c.model, &state, &next, &scored, None)?;
        let logp = est.logp.narrow(1, p, l)?;
        let what = format!("outputs.per_token_logps[{s}]");
        rep.logp("logp", &what, &logp, &at(&theirs, s)?, None, rep.tol.logp)?;
        let ref_s = at(&refs, s)?;
        let ref_est = estimators::logp_step(c.reference, &state, &next, &scored, None)?;
        let what = format!("inputs.ref_per_token_logps[{s}]");
        let ref_logp = ref_est.logp.narrow(1, p, l)?;
        rep.logp("ref_logp", &what, &ref_logp, &ref_s, None, rep.tol.logp)?;
        let mask = at(&committed, s)?;
        let per_token =
            h.per_token(&logp, &at(&old, s)?, &adv, &mask, &ref_s, RatioLevel::Token)?;
        let step = losses::reduce(&per_token, &mask, Reduction::TokenMean)?;
        total = Some(match total {
            None => step,
            Some(x) => (x + step)?,
        });
    }
    let loss = (total.context("the trajectory has no steps")? / steps as f64)?;
    rep.loss("loss", &loss, fx.scalar("loss")?)?;
    remat::backward(&loss)
}

/// MDPO: per-step advantages of the step rewards, the top-k steps by |Â|, then for every
/// recorded (rollout, step) micro-batch the tempered step estimator and the release's
/// confidence-weighted loss ([`losses::mdpo_loss`]); loss_total = Σ micro-batch losses / G.
fn mdpo(c: &Ctx, rep: &mut Recorder) -> Result<GradStore> {
    let fx = c.fx;
    let cfg = MdpoLossConfig {
        gen_length: fx.sem_usize("L")?,
        beta: fx.sem("beta")?,
        eps_low: fx.sem("epsilon_low")?,
        eps_high: fx.sem("epsilon_high")?,
        kl_by_confidence: true,
    };
    let temperature = fx.sem("temperature")?;
    let eps = fx.sem("temperature_eps")?;
    let k = fx.sem_usize("sample_train_steps")?;
    let rewards = fx.f32("inputs.step_rewards")?;
    let (g, _) = rewards.dims2()?;
    let raw = losses::mdpo_raw_advantages(
        &rewards.to_dtype(DType::F64)?.to_vec2::<f64>()?,
        losses::MdpoLastStep::Reference,
    );
    // The release's raw advantages carry a constant +1 that the normalisation cancels.
    let raw: Vec<f64> = raw.into_iter().flatten().map(|a| a + 1.0).collect();
    let raw = Tensor::new(raw.as_slice(), &Device::Cpu)?;
    rep.abs(
        "advantages",
        "intermediate.advantages_raw",
        &raw,
        fx.t("intermediate.advantages_raw")?,
        rep.tol.advantage,
    )?;
    let adv = losses::mdpo_step_advantages(&rewards, 1e-4)?;
    rep.advantages(fx, &adv)?;
    let sel = losses::top_k_steps(&adv, k)?.to_vec2::<f32>()?;
    let theirs: Vec<Vec<i64>> = fx.t("intermediate.selected_steps")?.to_vec2::<i64>()?;
    let mut equal = true;
    let mut detail = String::new();
    for (row, (ours, want)) in sel.iter().zip(&theirs).enumerate() {
        let a: BTreeSet<usize> = (0..ours.len()).filter(|&s| ours[s] > 0.0).collect();
        let b: BTreeSet<usize> = want.iter().map(|&s| s as usize).collect();
        if a != b {
            equal = false;
            detail = format!("rollout {row}: ours {a:?}, reference {b:?}");
        }
    }
    rep.exact("intermediate.selected_steps", equal, detail);

    let prompt = fx.ids("inputs.prompt_ids")?;
    let pmask = fx.f32("inputs.prompt_mask")?;
    let p = prompt.dim(1)?;
    let states = fx.ids("trajectory.input_states")?;
    let x0 = fx.ids("trajectory.x0")?;
    let conf = fx.f32("trajectory.confidence")?;
    let l = states.dim(2)?;
    let attention = Tensor::cat(
        &[&pmask, &Tensor::ones((1, l), DType::F32, &Device::Cpu)?],
        1,
    )?;
    let n_micro = (0..)
        .take_while(|j| {
            fx.json["scalars"]
                .get(format!("microbatch.{j}.loss"))
                .is_some()
        })
        .count();
    let mut scheduled = BTreeSet::new();
    let mut total: Option<Tensor> = None;
    for j in 0..n_micro {
        let rank = fx.scalar(&format!("microbatch.{j}.rank"))? as usize;
        let step = fx.scalar(&format!("microbatch.{j}.step"))? as usize;
        scheduled.insert((rank, step));
        let state = cat_ids(&prompt, &states.get(rank)?.get(step)?.unsqueeze(0)?)?;
        let target = cat_ids(&prompt, &x0.get(rank)?.get(step)?.unsqueeze(0)?)?;
        let est = estimators::logp_mdpo(
            c.model,
            &state,
            &target,
            p,
            temperature,
            eps,
            Some(&attention),
        )?;
        let logp = est.logp.narrow(1, p, l)?;
        let mask = est.mask.narrow(1, p, l)?;
        let key = format!("microbatch.{j}.per_token_logps");
        let tol = rep.tol.logp_tempered;
        rep.logp("logp", &key, &logp, fx.t(&key)?, Some(&mask), tol)?;
        let ref_key = format!("microbatch.{j}.ref_per_token_logps");
        let ref_logp = fx.f32(&ref_key)?;
        let ref_est = estimators::logp_mdpo(
            c.reference,
            &state,
            &target,
            p,
            temperature,
            eps,
            Some(&attention),
        )?;
        let ours_ref = ref_est.logp.narrow(1, p, l)?;
        rep.logp("ref_logp", &ref_key, &ours_ref, &ref_logp, Some(&mask), tol)?;
        let a = adv.get(rank)?.narrow(0, step, 1)?;
        let w = conf.get(rank)?.get(step)?.unsqueeze(0)?;
        let out = losses::mdpo_loss(&logp, None, Some(&ref_logp), &a, &mask, &w, &cfg)?;
        let loss = out.loss.sum_all()?;
        rep.loss(
            &format!("microbatch.{j}.loss"),
            &loss,
            fx.scalar(&format!("microbatch.{j}.loss"))?,
        )?;
        // The clip branch the release would take with μ > 1 (old = current + perturbation).
        let old = (logp.detach() + fx.f32(&format!("microbatch.{j}.old_perturbation"))?)?;
        let clip = losses::mdpo_loss(&logp, Some(&old), Some(&ref_logp), &a, &mask, &w, &cfg)?;
        let key = format!("microbatch.{j}.loss_clip_branch");
        rep.loss(&key, &clip.loss.sum_all()?, fx.scalar(&key)?)?;
        total = Some(match total {
            None => loss,
            Some(x) => (x + loss)?,
        });
    }
    let chosen: BTreeSet<(usize, usize)> = sel
        .iter()
        .enumerate()
        .flat_map(|(r, row)| {
            (0..row.len())
                .filter(move |&s| row[s] > 0.0)
                .map(move |s| (r, s))
        })
        .collect();
    rep.exact(
        "microbatch (rank, step) schedule",
        chosen == scheduled,
        format!("ours {chosen:?}, reference {scheduled:?}"),
    );
    let loss = (total.context("the fixture records no micro-batch")? / g as f64)?;
    rep.loss("loss_total", &loss, fx.scalar("loss_total")?)?;
    remat::backward(&loss)
}

/// IGPO: r = Σ reward functions, A = r − group mean; per inner iteration the fully masked
/// estimator, the old policy's entropy on the same input, the per-row entropy top-k over hint
/// positions, the GSPO sequence ratio over all L positions + β·k3, token mean.
fn igpo(c: &Ctx, rep: &mut Recorder) -> Result<GradStore> {
    let fx = c.fx;
    let h = Grpo::read(fx)?;
    let tau = fx.sem("entropy_clipping_ratio_inpaint")?;
    let prompt = fx.ids("inputs.prompt_ids")?;
    let completion = fx.ids("inputs.completion_ids")?;
    let (_, l) = completion.dims2()?;
    let p = prompt.dim(1)?;
    let hints = fx.f32("inputs.inpaint_masks")?.narrow(1, p, l)?;
    let adv = weighted_group_advantages(fx, h.group)?;
    rep.advantages(fx, &adv)?;
    let old = fx.f32("inputs.old_per_token_logps")?;
    let refs = fx.f32("inputs.ref_per_token_logps")?;
    let entropy_ref = fx.f32("intermediate.old_entropy")?;
    let keep_ref = fx.f32("intermediate.loss_token_mask")?;
    let mut grad = None;
    for k in 0..fx.sem_usize("num_iterations")? {
        let est = estimators::logp_masked(c.model, &prompt, &completion, None)?;
        let key = format!("outputs.per_token_logps.mu{k}");
        rep.logp("logp", &key, &est.logp, fx.t(&key)?, None, rep.tol.logp)?;
        let ref_k = at(&refs, k)?;
        let ref_est = estimators::logp_masked(c.reference, &prompt, &completion, None)?;
        let what = format!("inputs.ref_per_token_logps[{k}]");
        rep.logp("ref_logp", &what, &ref_est.logp, &ref_k, None, rep.tol.logp)?;
        // The old policy is the current one before the update (same weights here).
        let entropy = estimators::masked_entropy(c.model, &prompt, l, None)?;
        let what = format!("intermediate.old_entropy[{k}]");
        rep.abs(
            "entropy",
            &what,
            &entropy,
            &at(&entropy_ref, k)?,
            rep.tol.entropy,
        )?;
        let mask = losses::entropy_filter(&entropy, &hints, tau)?;
        let what = format!("intermediate.loss_token_mask[{k}]");
        rep.exact_tensor(&what, &mask, &at(&keep_ref, k)?)?;
        let per_token = h.per_token(
            &est.logp,
            &at(&old, k)?,
            &adv,
            &mask,
            &ref_k,
            RatioLevel::Sequence,
        )?;
        let loss = losses::reduce(&per_token, &mask, Reduction::TokenMean)?;
        let name = format!("loss.mu{k}");
        rep.loss(&name, &loss, fx.scalar(&name)?)?;
        if name == fx.grad_of {
            grad = Some(remat::backward(&loss)?);
        }
    }
    grad.with_context(|| format!("no inner iteration computes `{}`", fx.grad_of))
}

/// d1's SFT: the recorded t and mask, CE / t at the masked answer positions, divided by
/// B·N − prompt tokens ([`SftNormaliser::BatchTokens`]).
fn sft_case(c: &Ctx, rep: &mut Recorder) -> Result<GradStore> {
    let fx = c.fx;
    let mask_id = estimators::mask_id(c.model)?;
    let clean = fx.ids("inputs.clean_input_ids")?;
    let noisy = HostIds::from_tensor(&fx.ids("inputs.noisy_input_ids")?, "noisy_input_ids")?;
    let n = clean.dim(1)?;
    let lens: Vec<i64> = fx.t("inputs.prompt_lengths")?.to_vec1::<i64>()?;
    let lens: Vec<usize> = lens.into_iter().map(|x| x as usize).collect();
    let answer = sft::answer_mask_from_prompt_lengths(&lens, n)?;
    let t = fx.f32("inputs.t")?.to_vec2::<f32>()?;
    let p_mask: Vec<f64> = t.iter().map(|row| f64::from(row[0])).collect();
    let masked: Vec<bool> = noisy.ids.iter().map(|&id| id == mask_id).collect();
    let out = sft::sft_loss_on_noise(
        c.model,
        &clean,
        &answer,
        &masked,
        &p_mask,
        SftNormaliser::BatchTokens,
    )?;
    // The labels say which positions the reference scored: exactly our masked answer positions.
    let labels: Vec<i64> = fx.t("inputs.labels")?.flatten_all()?.to_vec1::<i64>()?;
    let answer_h = host(&answer)?;
    let ours: Vec<bool> = masked
        .iter()
        .zip(&answer_h)
        .map(|(&m, &a)| m && a != 0.0)
        .collect();
    let bad = labels
        .iter()
        .zip(&ours)
        .filter(|(&lab, &o)| (lab != -100) != o)
        .count();
    rep.exact(
        "inputs.labels (scored positions)",
        bad == 0,
        format!("{bad} positions differ"),
    );
    rep.loss("loss", &out.loss, fx.scalar("loss")?)?;
    remat::backward(&out.loss)
}

const WTE: &str = "model.transformer.wte.weight";

/// Compares our gradient of every weight with the fixture's gradient file.
fn compare_gradients(
    fx: &Fixture,
    model: &Llada,
    grads: &GradStore,
    stride: usize,
    rep: &mut Recorder,
) -> Result<()> {
    let file = candle_core::safetensors::load(&fx.grad_file, &Device::Cpu)
        .with_context(|| format!("cannot read {}", fx.grad_file.display()))?;
    let stride = header_stride(&fx.grad_file)?.unwrap_or(stride);
    let mut worst = (0f64, String::new());
    let mut count = 0;
    for (name, var) in model.vars() {
        let ours = match grads.get(var.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32)?,
            None => var.as_tensor().zeros_like()?.to_dtype(DType::F32)?,
        };
        let Some(theirs) = file.get(name.as_str()) else {
            bail!("{} has no gradient of `{name}`", fx.grad_file.display());
        };
        let ours = if name == WTE {
            let rows_key = format!("{WTE}.rows");
            let rows: Vec<i64> = file
                .get(&rows_key)
                .with_context(|| format!("{} has no `{rows_key}`", fx.grad_file.display()))?
                .to_vec1::<i64>()?;
            let nonzero: Vec<i64> = ours
                .abs()?
                .max(1)?
                .to_vec1::<f32>()?
                .iter()
                .enumerate()
                .filter(|(_, &m)| m != 0.0)
                .map(|(i, _)| i as i64)
                .collect();
            let want: BTreeSet<i64> = rows.iter().copied().collect();
            let have: BTreeSet<i64> = nonzero.iter().copied().collect();
            rep.exact(
                "embedding-gradient rows",
                want == have,
                format!(
                    "ours {} rows, reference {}; only ours {:?}, only theirs {:?}",
                    have.len(),
                    want.len(),
                    have.difference(&want).take(5).collect::<Vec<_>>(),
                    want.difference(&have).take(5).collect::<Vec<_>>()
                ),
            );
            let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
            let n = idx.len();
            ours.index_select(&Tensor::from_vec(idx, n, &Device::Cpu)?, 0)?
        } else {
            ours
        };
        let ours = host(&ours)?;
        let ours: Vec<f64> = if stride > 1 {
            ours.into_iter().step_by(stride).collect()
        } else {
            ours
        };
        let theirs = host(theirs)?;
        if ours.len() != theirs.len() {
            bail!(
                "gradient of `{name}`: {} values ours, {} in {}",
                ours.len(),
                theirs.len(),
                fx.grad_file.display()
            );
        }
        let max = theirs.iter().fold(0f64, |m, x| m.max(x.abs()));
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(
                0f64,
                |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
            );
        let err = if max > 0.0 {
            diff / max
        } else if diff == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        count += 1;
        if err >= worst.0 {
            worst = (err, name.clone());
        }
    }
    for key in file.keys() {
        if key != &format!("{WTE}.rows") && !model.vars().iter().any(|(n, _)| n == key) {
            bail!(
                "{} holds a gradient of `{key}`, which the policy does not have",
                fx.grad_file.display()
            );
        }
    }
    let tol = rep.tol.gradient;
    rep.check(
        "gradients",
        &format!("∂{}/∂θ ({count} tensors)", fx.grad_of),
        worst.0,
        tol,
    );
    rep.report.worst_gradient = worst.1;
    rep.report.gradient_tensors = count;
    Ok(())
}

/// `grad_stride` from a safetensors header's metadata, when present.
fn header_stride(path: &Path) -> Result<Option<usize>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    Ok(meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("grad_stride"))
        .and_then(|s| s.parse::<usize>().ok())
        .map(|s| s.max(1)))
}
