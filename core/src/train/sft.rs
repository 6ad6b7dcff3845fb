//! LLaDA's pretraining and SFT losses (random mask ratio, CE / p_mask).
