"""FIM-Eval (aiXcoder, research/aixcoder-7b.md §6.3): its format, protocol and metrics.

Data: aiXcoder's JSONL (task_id, task_type, pre_mask_code, post_mask_code, canonical_solution),
one file per language (python / java / cplus / javascript), or a directory of code from which
`builders.build_fim_eval` makes such records (data=DIR, per_type=N).

Protocol: greedy, 512 new tokens, PSM, path `test.{py,java,js,cpp}` (only the language line of
the header); the prompt budget keeps the END of the prefix and the START of the suffix (the
Completer's split_budget; aiXcoder: 7,936 tokens each of a 16K context). The raw completion is
scored after strip() — no other post-processing.

Metrics per case: em (strip equality), bleu (BLEU-4, 13a, reduced order for short references,
0..100), codebleu (our tree-sitter CodeBLEU x 100, codebleu.py), es (edit similarity),
pred_len / ref_len (characters; stripped prediction, raw reference, as their script).
"""

from __future__ import annotations

import json
from pathlib import Path

from lightcoder.eval.codebleu import CODEBLEU_VERSION, codebleu
from lightcoder.eval.builders import FIM_EVAL_PATHS, build_fim_eval, normalize_language
from lightcoder.eval.metrics import score_one
from lightcoder.eval.tasks import Problem, Task, register

FIELDS = ("task_id", "task_type", "pre_mask_code", "post_mask_code", "canonical_solution")
_EXTENSIONS = {".py": "Python", ".java": "Java", ".js": "JavaScript", ".cpp": "C++", ".cc": "C++", ".hpp": "C++"}


def read_fim_eval(path: str | Path) -> list[dict]:
    """Records of an aiXcoder FIM-Eval JSONL file; ValueError naming the line on a bad record."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
            if missing:
                raise ValueError(f"{path}:{lineno}: FIM-Eval record lacks string field(s) {missing}")
            rows.append(row)
    return rows


def files_under(directory: str | Path) -> list[tuple[str, str, str]]:
    """(path, language, content) of every Python/Java/JS/C++ file under `directory`, sorted."""
    root = Path(directory)
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in _EXTENSIONS:
            try:
                out.append((str(p.relative_to(root)), _EXTENSIONS[p.suffix], p.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                continue
    return out


class FimEval(Task):
    kind = "match"
    infilling = True
    mode = "psm"

    def __init__(self, *, data: str | None = None, language: str = "python", records: list[dict] | None = None,
                 per_type: int = 10, seed: int = 0, limit: int | None = None, max_new_tokens: int = 512):
        self.name = "fim-eval"
        self.data, self.records_given, self.per_type, self.seed = data, records, per_type, seed
        self.language = normalize_language(language)
        self.limit, self.max_new_tokens = limit, max_new_tokens
        self.description = "FIM-Eval format: EM / BLEU-4 / CodeBLEU / length per task type"

    def records(self) -> list[dict]:
        if self.records_given is not None:
            return self.records_given
        if self.data is None:
            raise ValueError("fim-eval needs data=FILE.jsonl (aiXcoder format) or data=DIR (code to build from)")
        if Path(self.data).is_dir():
            return build_fim_eval(files_under(self.data), per_type=self.per_type, seed=self.seed)
        return read_fim_eval(self.data)

    def problems(self) -> list[Problem]:
        problems = []
        for row in self.records()[: self.limit]:
            language = normalize_language(row.get("language", self.language))
            problems.append(Problem(task_id=row["task_id"], language=language, prompt=row["pre_mask_code"],
                                    suffix=row["post_mask_code"], reference=row["canonical_solution"],
                                    task_type=row["task_type"], path=FIM_EVAL_PATHS[language]))
        return problems

    def match_scores(self, problem: Problem, completion: str) -> dict:
        scores = score_one(completion, problem.reference)
        scores["codebleu"] = 100.0 * codebleu(completion, problem.reference, problem.language)["codebleu"]
        return scores

    def settings(self) -> dict:
        return {**super().settings(), "data": str(self.data) if self.data else "records given",
                "language": self.language, "per_type": self.per_type, "seed": self.seed, "limit": self.limit,
                "codebleu": CODEBLEU_VERSION, "bleu": "bleu4-13a-reduced-order (metrics.bleu4)",
                "postprocess": "strip() only"}


register("fim-eval", "FIM-Eval (aiXcoder format; data=FILE.jsonl or data=DIR to build one): "
         "EM/BLEU/CodeBLEU/length")(FimEval)
