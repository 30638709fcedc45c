"""The run's FIM tasks (RUN/eval/tasks.jsonl, eval/builders.py) as a registered runner task.

    get_task("run-fim", data="run/quickstart/eval/tasks.jsonl")

Each FimTask is one match problem: prompt = prefix, suffix, reference = the masked middle, and its
type is a row of the table. The judge is the run's eval stage's (eval/harness.py): em, es, bleu,
pred_len/ref_len of the stripped completion, `stopped` (the stop token came before
max_new_tokens), `syntax_ok` (prefix + completion + suffix parses), and `bits` / `middle_bytes`
(the model's teacher-forced cost of the reference, recorded at generation; None for baselines).
scores.json gets the harness's per-type table too (`fim_summary`, metrics.summarize), so the
numbers are the same either way. Decoding: greedy, SPM by default, the raw completion.
"""

from __future__ import annotations

from lightcoder.eval.metrics import score_one, summarize, syntax_valid
from lightcoder.eval.tasks import Problem, Task, register


class RunFim(Task):
    kind = "match"

    def __init__(self, *, data: str, mode: str = "spm", max_new_tokens: int = 128, limit: int | None = None):
        self.name, self.data, self.limit = "run-fim", data, limit
        self.mode, self.max_new_tokens = mode, max_new_tokens
        self.description = "the run's FIM tasks: EM / ES / stop rate / pred:ref / syntax / bits per byte"

    def problems(self) -> list[Problem]:
        from lightcoder.eval.builders import read_tasks

        return [Problem(task_id=t.task_id, language=t.language, prompt=t.prefix, reference=t.middle,
                        suffix=t.suffix, task_type=t.task_type, path=t.path)
                for t in read_tasks(self.data)[: self.limit]]

    def sample_extras(self, problem: Problem, predictor, *, mode: str, max_new_tokens: int) -> dict:
        """The reference middle's teacher-forced bits, for predictors that can tell (models)."""
        if not hasattr(predictor, "middle_bits"):
            return {"bits": None}
        return {"bits": predictor.middle_bits(problem.prompt, problem.reference, problem.suffix, path=problem.path,
                                              max_new_tokens=max_new_tokens, mode=mode)}

    def sample_scores(self, problem: Problem, sample: dict) -> dict:
        completion = sample["completion"]
        row = score_one(completion, problem.reference)
        row["stopped"] = sample.get("stop_reason") == "stop"
        row["syntax_ok"] = syntax_valid(problem.prompt, completion, problem.suffix, problem.language)
        row["bits"] = sample.get("bits")
        row["middle_bytes"] = len(problem.reference.encode("utf-8", "surrogatepass"))
        return row

    def extra_scores(self, rows: list[dict]) -> dict:
        """The harness's per-type table, rows in tasks.jsonl order (its types then come in that order)."""
        order = {p.task_id: i for i, p in enumerate(self.problems())}
        return {"fim_summary": summarize(sorted(rows, key=lambda r: (order[r["task_id"]], r["sample_index"])))}

    def settings(self) -> dict:
        return {**super().settings(), "data": str(self.data), "limit": self.limit,
                "postprocess": "none (the raw completion; metrics strip where FIM-Eval does)"}


register("run-fim", "the run's FIM tasks (data=RUN/eval/tasks.jsonl): EM/ES/stop/length/syntax/bits")(RunFim)
