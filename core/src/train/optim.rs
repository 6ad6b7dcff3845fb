//! AdamW, gradient clipping and accumulation, learning-rate schedules.
