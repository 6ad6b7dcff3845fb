//! Loss parity with the reference trainers: every case of `tests/fixtures/losses/` (made by
//! running d1, CJ-GRPO, MDPO, IGPO and d1-SFT's own trainer methods on the tiny checkpoint)
//! replayed through our estimators and losses must match the recorded log-probs, advantages,
//! filters, losses and gradients within the fixtures' tolerances.

use std::path::PathBuf;

use workbench_core::train::losses::{self, EntropyCut, MdpoLastStep};
use workbench_core::train::parity::{self, Tolerances};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

#[test]
fn all_six_reference_cases_are_reproduced_within_tolerance() {
    let reports = parity::replay(
        &root().join("losses"),
        &root().join("llada-tiny"),
        &Tolerances::default(),
    )
    .unwrap();
    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "d1_diffu_grpo",
            "cj_grpo_eoser_ass",
            "cj_grpo_semiar",
            "mdpo",
            "igpo",
            "sft"
        ]
    );
    for r in &reports {
        println!("{}", r.line());
        // Every case compares losses and gradients of every weight.
        assert!(r.worst("loss").is_some() && r.worst("gradients").is_some());
        assert!(
            r.gradient_tensors >= 20,
            "{}: {}",
            r.name,
            r.gradient_tensors
        );
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{r:#?}"))
        .collect();
    assert!(
        failed.is_empty(),
        "cases out of tolerance:\n{}",
        failed.join("\n")
    );
}

/// The fixes the fixtures prove are load-bearing: with our previous behaviour (MDPO's last-step
/// advantage without the difference, IGPO's batch-quantile entropy cut, the masked GSPO mean)
/// the recorded intermediates are not reproduced.
#[test]
fn the_old_behaviours_disagree_with_the_reference() {
    let dir = root().join("losses");
    let mdpo =
        candle_core::safetensors::load(dir.join("mdpo.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let r = &mdpo["inputs.step_rewards"];
    let want = mdpo["intermediate.advantages"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let diff = |a: candle_core::Tensor| {
        a.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(diff(losses::mdpo_step_advantages(r, 1e-4).unwrap()) < 1e-5);
    let old = losses::mdpo_step_advantages_with(r, 1e-4, MdpoLastStep::RewardOnly).unwrap();
    assert!(diff(old) > 0.1, "the paper's last step must differ here");

    let igpo =
        candle_core::safetensors::load(dir.join("igpo.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let p = igpo["inputs.prompt_ids"].dim(1).unwrap();
    let l = igpo["inputs.completion_ids"].dim(1).unwrap();
    let hints = igpo["inputs.inpaint_masks"]
        .narrow(1, p, l)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let ent = igpo["intermediate.old_entropy"].get(1).unwrap();
    let keep = igpo["intermediate.loss_token_mask"]
        .get(1)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let cut = |c| {
        losses::entropy_filter_with(&ent, &hints, 0.2, c)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(cut(EntropyCut::PerRowTopK), keep);
    assert_ne!(cut(EntropyCut::BatchQuantile), keep);
}
