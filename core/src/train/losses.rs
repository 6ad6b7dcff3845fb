//! RL losses and advantages over tensors (pure math, no model).
