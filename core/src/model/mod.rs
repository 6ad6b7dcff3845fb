//! The LLaDA model: configuration, checkpoint weights, hub resolution, the network, LoRA
//! adapters and activation checkpointing.

mod adapters;
pub mod block_grad;
pub mod config;
pub mod hub;
pub mod ids;
mod init;
pub mod llada;
pub mod lora;
pub mod names;
pub mod remat;
pub mod weights;

pub use config::Config;
pub use hub::{resolve_model_dir, resolve_model_dir_in};
pub use llada::{tensor_names, Linear, Llada, LoadOptions};
pub use lora::LoraConfig;
pub use weights::WeightSource;
