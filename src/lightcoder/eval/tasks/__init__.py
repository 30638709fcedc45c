"""The benchmark registry: one module per benchmark, each registering tasks by name.

A task turns its data (local files only; never downloaded) into `Problem`s and judges one
completion of one problem, either by running it (`kind = "execution"`: the harness builds the
program with `task.program(...)` and runs it in the sandbox) or by comparing it with the
reference (`kind = "match"`: `task.match_scores(...)`).

    get_task("humaneval")                        HumanEval, 164 problems, pass@k
    get_task("humaneval", limit=20)              the first 20 (subset sizes are stamped in outputs)
    get_task("fim-eval", data="python_test.jsonl")  a FIM-Eval file in aiXcoder's format
    list_tasks()                                 every registered name with a one-line description

Tasks are registered by name with `register(name, description)(factory)`; a factory takes the
task's options (limit, data path, seed, ...) as keyword arguments.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from lightcoder.benchmark_files import DATA_DIR, humaneval_path  # noqa: F401 (re-exported)

_MODULES = ("humaneval", "mbpp", "multipl_e", "infilling", "fim_eval", "crosscodeeval", "run_fim")


@dataclass
class Problem:
    """One benchmark case. For execution: program = prompt + completion + suffix + test (per task)."""

    task_id: str
    language: str  # python | javascript | java | cpp (runtimes.LANGUAGES) or a FIM-Eval language
    prompt: str  # the code before the cursor (NL2Code: the whole prompt)
    reference: str  # the canonical completion / middle
    suffix: str = ""  # the code after the cursor ("" = left-to-right generation)
    test: str = ""  # execution tasks: the test code appended to the program
    entry_point: str = ""
    task_type: str = ""  # a row of the per-type table (e.g. "single_line"); "" = one row
    path: str = ""  # the file path given to the model's header (FIM-Eval: test.py ...)
    stop: tuple[str, ...] = ()  # the completion is cut at the first of these
    extra: dict = field(default_factory=dict)


class Task:
    """Base class: subclasses set name/kind/language and implement problems() and one judge."""

    name: str = ""
    registry_name: str = ""  # set by get_task, with the options it was built with
    options: dict = {}
    kind: str = "execution"  # "execution" | "match"
    description: str = ""
    mode: str = "psm"  # FIM prompt order used for this task's prompts
    infilling: bool = False  # holes to fill: FIM prompts even where the suffix is empty (the end of a file)
    max_new_tokens: int = 512

    def problems(self) -> list[Problem]:
        raise NotImplementedError

    def postprocess(self, problem: Problem, raw: str) -> str:
        """The raw model output cut at the first stop sequence (none: unchanged)."""
        cut = len(raw)
        for stop in problem.stop:
            at = raw.find(stop)
            if at >= 0:
                cut = min(cut, at)
        return raw[:cut]

    def program(self, problem: Problem, completion: str) -> str:
        """Execution tasks: the full source file that passes iff the completion is right."""
        raise NotImplementedError(f"{self.name} is not an execution task")

    def match_scores(self, problem: Problem, completion: str) -> dict:
        """Match tasks: per-problem metric values (em, bleu, ...)."""
        raise NotImplementedError(f"{self.name} is not a match task")

    def sample_scores(self, problem: Problem, sample: dict) -> dict:
        """Match tasks: metric values of one samples.jsonl row (default: match_scores of its completion)."""
        return self.match_scores(problem, sample["completion"])

    def sample_extras(self, problem: Problem, predictor, *, mode: str, max_new_tokens: int) -> dict:
        """Fields generation adds to a sample besides the completion (e.g. the reference's bits)."""
        return {}

    def summary(self, rows: list[dict]) -> dict | None:
        """The per-type table of scores.json from all result rows; None (default): the runner's
        (pass@k, statuses and the mean of every numeric field, per task type and in total)."""
        return None

    def extra_scores(self, rows: list[dict]) -> dict:
        """Task-specific entries of scores.json computed from all result rows (default: none)."""
        return {}

    def settings(self) -> dict:
        """Everything that defines this task's numbers, stamped into every output file."""
        return {"name": self.name, "kind": self.kind, "mode": self.mode, "max_new_tokens": self.max_new_tokens}


_REGISTRY: dict[str, tuple[str, Callable[..., Task]]] = {}


def register(name: str, description: str) -> Callable:
    def wrap(factory: Callable[..., Task]) -> Callable[..., Task]:
        _REGISTRY[name] = (description, factory)
        return factory

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"lightcoder.eval.tasks.{module}")


def list_tasks() -> dict[str, str]:
    _load_all()
    return {name: desc for name, (desc, _) in sorted(_REGISTRY.items())}


def get_task(name: str, **options) -> Task:
    """The task registered as `name`, built with `options`; ValueError listing the names otherwise."""
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown eval task {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    factory = _REGISTRY[name][1]
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    known = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if unknown := sorted(set(options) - set(known)) if not takes_any else []:
        raise ValueError(f"eval task {name!r} has no option(s) {unknown}; its options: {known}")
    if missing := [n for n in known if params[n].default is params[n].empty and n not in options]:
        raise ValueError(f"eval task {name!r} needs --option {missing[0]}=VALUE (its options: {known})")
    if isinstance(options.get("limit"), int) and options["limit"] < 1:
        raise ValueError(f"--limit must be a positive number of problems, got {options['limit']}")
    task = factory(**options)
    task.registry_name, task.options = name, dict(options)  # what `execute` needs to rebuild it from files
    return task
