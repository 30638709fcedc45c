"""The eval area's config: `EvalConfig` (the run's `eval` section), dataclasses only.

Kept apart from runner.py and the tasks so `lightcoder.config` can compose it without loading
the harness, metrics or the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightcoder.devices import check_device_name
from lightcoder.infer.penalties import DEFAULT_CACHE_WEIGHT, check_cache_weight, check_penalties

MODES = ("psm", "spm")  # FIM prompt orders the eval accepts
# Greedy decoding of the small models this project trains loops instead of ending the middle; this
# penalty on repeated output ids was chosen by measurement (docs/evaluation.md, "Decoding").
DEFAULT_FREQUENCY_PENALTY = 1.0


@dataclass(kw_only=True)
class EvalConfig:
    """FIM benchmark settings: task building (per_type, max_context_chars, seed) and generation."""

    per_type: int = 24  # tasks per task type built from the test split (7 types: 168 tasks)
    max_context_chars: int = 4096  # prefix/suffix kept around each task's middle (build_fim_tasks)
    max_new_tokens: int = 128  # FIM-Eval used 512; our middles are <= 400 chars (~120 tokens)
    mode: str = "spm"  # "spm" (aiXcoder's inference default) or "psm" (what FIM-Eval ran)
    max_prompt_tokens: int = 0  # Completer(max_prompt_tokens=... or None); 0 = model context - max_new_tokens
    seed: int = 0
    device: str = "auto"  # where the models are scored: "auto" = the GPU when CUDA is available, else the CPU
    # decoding (OpenAI's penalties over the ids generated so far, infer/penalties.py); `lightcoder serve RUN`
    # uses the same by default, so the eval measures what the server gives
    frequency_penalty: float = DEFAULT_FREQUENCY_PENALTY
    presence_penalty: float = 0.0
    # the n-gram cache over the text around the cursor mixed into the choice (infer/ngram_cache.py; 0 = off),
    # chosen by measurement (docs/evaluation.md, "An n-gram cache"); the server uses it too
    cache_weight: float = DEFAULT_CACHE_WEIGHT
    # benchmark subsets the run's eval stage adds for the trained model (eval/runner.py; 0 = skip;
    # skipped too when HumanEval.jsonl.gz is not on the machine)
    humaneval_limit: int = 8  # first N HumanEval problems, executed in the sandbox -> pass@1
    humaneval_max_new_tokens: int = 64
    santacoder_fim_limit: int = 8  # SantaCoder-FIM-style single lines from HumanEval -> EM (16 new tokens)
    humaneval_fim_per_type: int = 24  # HumanEval-infilling single/multi-line/random-span rows of the FIM table

    def __post_init__(self) -> None:
        for field in ("humaneval_limit", "humaneval_max_new_tokens", "santacoder_fim_limit", "humaneval_fim_per_type"):
            if getattr(self, field) < 0:
                raise ValueError(f"eval.{field} must be >= 0, got {getattr(self, field)}")
        for field in ("per_type", "max_context_chars", "max_new_tokens"):
            if getattr(self, field) < 1:
                raise ValueError(f"eval.{field} must be >= 1, got {getattr(self, field)}")
        check_device_name(self.device, "eval.device")
        if self.mode not in MODES:
            raise ValueError(f"eval.mode must be one of {MODES}, got {self.mode!r}")
        check_penalties(self.frequency_penalty, self.presence_penalty, prefix="eval.")
        check_cache_weight(self.cache_weight, prefix="eval.")
        if self.max_prompt_tokens < 0:
            raise ValueError(
                f"eval.max_prompt_tokens must be >= 0 (0 = fit the model context), got {self.max_prompt_tokens}"
            )
