//! The exact prompt strings of d1, MDPO and IGPO (data, not code).
//!
//! Reference: `shared/reference/PROMPTS.md` (copied from d1 `diffu-grpo/data_utils.py` and
//! `eval/*.py`, MDPO's prompts) and facebookresearch/igpo `utils/data_utils.py` for
//! [`IGPO_SYSTEM`]. Each constant is the Python string value, byte for byte.

/// d1 `diffu-grpo/data_utils.py` `SYSTEM_PROMPT` (training, all tasks but Sudoku).
pub const D1_TRAIN_SYSTEM: &str = "\nRespond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n";

/// d1 `diffu-grpo/data_utils.py` `SUDOKU_SYSTEM_PROMPT`.
pub const D1_TRAIN_SUDOKU_SYSTEM: &str = "\nPlease solve the following 4x4 Sudoku puzzle. The puzzle is provided as a 16-character string reading left-to-right, top-to-bottom, where '0' represents empty cells.\n\nRules:\n- Fill empty cells with digits 1-4\n- Each row must contain digits 1-4 exactly once\n- Each column must contain digits 1-4 exactly once\n- Each 2x2 box must contain digits 1-4 exactly once\n\nImportant: Your solution must be a COMPLETE 16-character string with only the digits 1-4, representing your final solved grid.\n\nRespond in this exact format:\n<reasoning>\nYour step-by-step solving process\n</reasoning>\n<answer>\n[16-character solution string with no spaces or separators]\n</answer>\n";

/// d1 `eval/gsm8k.py` `GSM_SYSTEM_PROMPT`.
pub const D1_EVAL_GSM_SYSTEM: &str = "You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final answer in a \\boxed{}. \nRespond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n</answer>";

/// d1 `eval/math500.py` `MATH_SYSTEM_PROMPT` (its stray `"` is in the original).
pub const D1_EVAL_MATH500_SYSTEM: &str = "You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final answer in a \\boxed{}.\nRespond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n</answer>\" \n";

/// d1 `eval/sudoku.py` `SUDOKU_SYSTEM_PROMPT`.
pub const D1_EVAL_SUDOKU_SYSTEM: &str = "\nPlease solve the following 4x4 Sudoku puzzle. The puzzle is provided as a 16-character string reading left-to-right, top-to-bottom, where '0' represents empty cells.\n\nRules:\n- Fill empty cells with digits 1-4\n- Each row must contain digits 1-4 exactly once\n- Each column must contain digits 1-4 exactly once\n- Each 2x2 box must contain digits 1-4 exactly once\n\nImportant: Your solution must be a COMPLETE 16-character string with only the digits 1-4, representing your final solved grid.\n\nRespond in this exact format:\n<reasoning>\nYour step-by-step solving process\n</reasoning>\n<answer>\n[16-character solution string with no spaces or separators]\n</answer>\n";

/// d1 `eval/countdown.py` `CTD_SYSTEM_PROMPT` (no space before "Respond" in the original).
pub const D1_EVAL_COUNTDOWN_SYSTEM: &str = "Using only the provided numbers, create an arithmetic expression that evaluates to exactly the provided target number. You may use the operations +, -, *, and / as needed, but each number must be used exactly once. Think step-by-step. After reasoning, provide only your final expression inside \\boxed{} tags without including an equals sign or the target number. For example: \\boxed{a + b * c}Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n</answer>";

/// The MATH training prompt's instruction between the system prompt and the problem (d1 `get_math_questions`).
pub const MATH_EXPERT_INSTRUCTION: &str = "You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final answer in a \\boxed{}. ";

/// MDPO math prompt: `problem + "\n" + MDPO_MATH_SUFFIX`.
pub const MDPO_MATH_SUFFIX: &str =
    "Let's think step by step and output the final answer within \\boxed{}.";

/// MDPO Countdown system prompt: `MDPO_COUNTDOWN_SYSTEM + "\n\n" + "Numbers: [a, b, c]\nTarget: t"`.
pub const MDPO_COUNTDOWN_SYSTEM: &str = "Using only the provided numbers, create an arithmetic expression that evaluates to exactly the provided target number. You may use the operations +, -, *, and / as needed, but each number must be used exactly once. Think step-by-step and provide your final expression inside \\boxed{} tags without including an equals sign or the target number. For example: \\boxed{a + b * c}";

/// IGPO system prompt (facebookresearch/igpo `utils/data_utils.py`, the second `SYSTEM_PROMPT`): the d1 format with a boxed answer.
pub const IGPO_SYSTEM: &str = "\nRespond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n\\boxed{<Your answer>}\n</answer>\n";

/// Text the d1 evaluation scripts append after the chat template's generation prompt.
pub const D1_EVAL_REASONING_PREFILL: &str = "<reasoning>";
