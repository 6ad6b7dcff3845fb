//! Likelihood estimators: per-token log-probs of completions under a masked diffusion model.
