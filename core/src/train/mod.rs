//! The training core: likelihood estimators for masked diffusion models, RL losses and
//! advantages, diffusion pretraining/SFT losses, the optimizer, run logs and checkpoints.
//! Every piece works on whole batches of tensors; scripts only orchestrate.

pub mod checkpoint;
pub mod estimators;
pub mod hints;
pub mod losses;
pub mod on_rollout;
pub mod optim;
pub mod options;
pub mod parity;
pub mod runlog;
pub mod sft;
