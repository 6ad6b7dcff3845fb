//! Rhai binding for `workbench_core::train::parity`: replaying the reference trainers' golden
//! loss fixtures (`scripts/check_losses.rhai`).

use std::path::Path;

use rhai::plugin::*;
use rhai::{Array, Engine, Map};
use workbench_core::train::parity::{self, CaseReport, Tolerances};

use super::convert::{script_err, RResult};

fn report_map(r: &CaseReport) -> Map {
    let mut m = Map::new();
    m.insert("name".into(), r.name.clone().into());
    m.insert("algorithm".into(), r.algorithm.clone().into());
    m.insert("passed".into(), r.passed().into());
    m.insert("line".into(), r.line().into());
    for kind in workbench_core::train::parity::CHECK_KINDS {
        if let Some((e, t)) = r.worst(kind) {
            m.insert(kind.into(), e.into());
            m.insert(format!("{kind}_tol").into(), t.into());
        }
    }
    m.insert("worst_gradient".into(), r.worst_gradient.clone().into());
    m.insert(
        "discrete_exact".into(),
        r.exact.iter().all(|e| e.equal).into(),
    );
    let mismatches: Array = r
        .exact
        .iter()
        .filter(|e| !e.equal)
        .map(|e| format!("{}: {}", e.what, e.detail).into())
        .collect();
    m.insert("mismatches".into(), mismatches.into());
    m
}

#[export_module]
mod parity_api {
    use super::*;

    /// Replays every case of a loss-fixtures folder `dir` (`index.json`, per case JSON,
    /// safetensors and gradient file; the reference policy is the checkpoint folder
    /// `index.json` names) with the policy checkpoint `model` (a folder path) through the core
    /// estimators and losses the training scripts use, on the CPU in f32. Returns one map per
    /// case: `name`, `algorithm`, `passed`, `line` (a one-line summary), the worst error of each
    /// kind (`logp`, `ref_logp`, `entropy`, `advantages`, `loss`, `gradients`, whichever the
    /// case has) with its tolerance (`<kind>_tol`), `worst_gradient`, `discrete_exact` and
    /// `mismatches` (the discrete objects that differ).
    #[rhai_fn(return_raw)]
    pub fn loss_parity(dir: &str, model: &str) -> RResult<Array> {
        let reports = parity::replay(Path::new(dir), Path::new(model), &Tolerances::default())
            .map_err(script_err)?;
        Ok(reports.iter().map(|r| report_map(r).into()).collect())
    }
}

/// Registers this area's functions.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(parity_api).into());
}
