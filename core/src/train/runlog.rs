//! JSONL run logs: one line of metrics per step.
