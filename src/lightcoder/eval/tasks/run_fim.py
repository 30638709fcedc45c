"""The run's FIM tasks (RUN/eval/tasks.jsonl, eval/builders.py) as a registered runner task.

    get_task("run-fim", data="run/quickstart/eval/tasks.jsonl", mode="spm", max_new_tokens=128)

The run's eval stage (stages.stage_eval) and `lightcoder finetune`'s before/after evaluation score
every model through this task and the runner (generate -> execute -> score). Each FimTask is one
match problem: prompt = prefix, suffix, reference = the masked middle, and its type is a row of the
table. Per sample: em, es, bleu, pred_len/ref_len of the stripped completion, `stopped` (the stop
token came before max_new_tokens), `syntax_ok` (prefix + completion + suffix parses as well as with
the reference: metrics.syntax_valid), and `bits` /
`middle_bytes` (the model's teacher-forced cost of the reference with its stop token, recorded at
generation; None for baselines). scores.json's `summary` is metrics.summarize's per-type table.

Decoding follows FIM-Eval (research/aixcoder-7b.md §6.3): greedy, the raw completion scored after
strip(), no post-processing (no syntax truncation). FIM-Eval fed aiXcoder PSM prompts; the default
here is SPM, aiXcoder's own inference format (mode="psm" copies the benchmark exactly).
"""

from __future__ import annotations

from lightcoder.eval.config import MODES
from lightcoder.eval.metrics import score_one, summarize, syntax_valid
from lightcoder.eval.tasks import Problem, Task, register


class RunFim(Task):
    kind = "match"
    infilling = True

    def __init__(self, *, data: str, mode: str = "spm", max_new_tokens: int = 128, limit: int | None = None):
        if mode not in MODES:
            raise ValueError(f"run-fim: mode must be one of {MODES}, got {mode!r}")
        if max_new_tokens < 1:
            raise ValueError(f"run-fim: max_new_tokens must be >= 1, got {max_new_tokens}")
        self.name, self.data, self.limit = "run-fim", data, limit
        self.mode, self.max_new_tokens = mode, max_new_tokens
        self.description = "the run's FIM tasks: EM / ES / stop rate / pred:ref / syntax / bits per byte"
        self._problems: list[Problem] | None = None

    def problems(self) -> list[Problem]:
        """The tasks file's tasks (read once); ValueError when two share an id."""
        if self._problems is None:
            from lightcoder.eval.builders import read_tasks

            tasks = read_tasks(self.data)[: self.limit]
            if len({t.task_id for t in tasks}) != len(tasks):
                raise ValueError(f"{self.data}: task ids must be unique; rebuild the tasks file")
            self._problems = [Problem(task_id=t.task_id, language=t.language, prompt=t.prefix, reference=t.middle,
                                      suffix=t.suffix, task_type=t.task_type, path=t.path) for t in tasks]
        return self._problems

    def sample_extras(self, problem: Problem, predictor, *, mode: str, max_new_tokens: int) -> dict:
        """The reference middle's teacher-forced bits, for predictors that can tell (models)."""
        if not hasattr(predictor, "middle_bits"):
            return {"bits": None}
        return {"bits": predictor.middle_bits(problem.prompt, problem.reference, problem.suffix, path=problem.path,
                                              max_new_tokens=max_new_tokens, mode=mode, fim=True)}

    def sample_scores(self, problem: Problem, sample: dict) -> dict:
        completion = sample["completion"]
        row = score_one(completion, problem.reference)
        row["stopped"] = sample.get("stop_reason") == "stop"
        row["syntax_ok"] = syntax_valid(problem.prompt, completion, problem.suffix, problem.language,
                                        reference=problem.reference)
        row["bits"] = sample.get("bits")
        row["middle_bytes"] = len(problem.reference.encode("utf-8", "surrogatepass"))
        return row

    def summary(self, rows: list[dict]) -> dict:
        """metrics.summarize over the rows in tasks.jsonl order, so the types come in that order:
        {task_type: {n, em, es, bleu, pred_len, ref_len, len_ratio, stop_rate, syntax, bpb}, ..., total}."""
        order = {p.task_id: i for i, p in enumerate(self.problems())}
        return summarize(sorted(rows, key=lambda r: (order[r["task_id"]], r["sample_index"])))

    def settings(self) -> dict:
        return {**super().settings(), "data": str(self.data), "limit": self.limit,
                "postprocess": "none (the raw completion; metrics strip where FIM-Eval does)"}


register("run-fim", "the run's FIM tasks (data=RUN/eval/tasks.jsonl): EM/ES/stop/length/syntax/bits")(RunFim)
