"""The benchmark harness: generate -> samples.jsonl -> execute -> results.jsonl -> score -> scores.json.

Three separate steps with files between them, each resumable and parallel:

    generate(task, predictor, out, gen)   model calls; appends one flushed line per sample, skips
                                          (task_id, sample_index) pairs already written; shard=(i, n)
                                          lets n processes split the problems (samples.shard-i-of-n.jsonl)
    execute(out, workers=2)               runs every sample's program in the sandbox (execution
                                          tasks) or computes the match metrics; parallel over sandbox
                                          slots; skips samples already in results.jsonl
    score(out)                            pass@k (unbiased, Chen et al. 2021) and metric means per
                                          task type and in total -> scores.json

`config.json` holds the full eval config: the task (registry name, options, its settings: data
file, subset size, stop sequences, ...), generation (model id, prompt template, mode, truncation
budget, max new tokens, temperature, top_p, n, seed), the sandbox limits and what isolation the
machine allowed, metric implementations and versions. Every JSONL file starts with a header line
{"eval_config": ..., "config_hash": ...} and every row carries config_hash; scores.json embeds
the config. A resume under a different config is refused (force=True starts over), so two
outputs with the same hash were made the same way.

Example:
    task = get_task("humaneval", limit=20)
    run_task(task, Completer.load("run/quickstart"), "run/eval/humaneval", GenerationSettings(model_id="..."))
"""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import rapidfuzz
from tqdm import tqdm

from lightcoder import __version__
from lightcoder.artifacts import append_jsonl, read_jsonl, trim_torn_tail, write_json_atomic
from lightcoder.eval.metrics import pass_at_k
from lightcoder.eval.runtimes import runtime_for
from lightcoder.eval.sandbox import mounts_available, netns_available, run_in_sandbox
from lightcoder.eval.tasks import Task, get_task
from lightcoder.infer.penalties import check_cache_weight, check_penalties

RUNNER_VERSION = 1  # bump when a field of these files changes meaning
CONFIG_FILE, RESULTS_FILE, SCORES_FILE = "config.json", "results.jsonl", "scores.json"
PASS_KS = (1, 10, 100)


@dataclass(kw_only=True)
class GenerationSettings:
    model_id: str = ""  # identifies the weights (checkpoint path + build); part of the config hash
    template: str = ""  # FIM template name (Completer.template.name); "" for model-free predictors
    n: int = 1  # samples per problem (pass@k needs n >= k)
    temperature: float = 0.0  # 0 = greedy (aiXcoder's protocol)
    top_p: float = 1.0
    seed: int = 0
    max_new_tokens: int = 0  # 0 = the task's own (FIM-Eval: 512)
    mode: str = ""  # "" = the task's own (psm)
    max_prompt_tokens: int = 0  # 0 = the model's context minus max_new_tokens
    frequency_penalty: float = 0.0  # OpenAI's, over the ids generated so far (infer/penalties.py)
    presence_penalty: float = 0.0
    cache_weight: float = 0.0  # the n-gram cache over the text around the cursor (infer/ngram_cache.py; 0 = off)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"generation.n must be >= 1, got {self.n}")
        if self.n > 1 and self.temperature == 0:
            raise ValueError("generation.n > 1 needs temperature > 0 (greedy samples are identical)")
        check_penalties(self.frequency_penalty, self.presence_penalty, prefix="generation.")
        check_cache_weight(self.cache_weight, prefix="generation.")


def _hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def problems_digest(task: Task) -> str:
    """SHA-256 over every problem's id, type, prompt, suffix and reference: a task file rebuilt at the same path
    (a run's eval/tasks.jsonl after a new build) is another config, not a resume that scores old samples
    against new references."""
    digest = hashlib.sha256()
    for p in task.problems():
        for part in (p.task_id, p.task_type, p.prompt, p.suffix, p.reference):
            digest.update(str(part).encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def eval_config(task: Task, gen: GenerationSettings) -> dict:
    """The full config of one task's run (what makes its numbers what they are)."""
    languages = sorted({p.language for p in task.problems()}) if task.kind == "execution" else []
    return {
        "lightcoder_version": __version__, "runner_version": RUNNER_VERSION, "python": platform.python_version(),
        "task": {"registry_name": task.registry_name or task.name, "options": task.options,
                 "settings": task.settings(), "problems_sha256": problems_digest(task)},
        "generation": {**asdict(gen), "max_new_tokens": gen.max_new_tokens or task.max_new_tokens,
                       "mode": gen.mode or task.mode,
                       "prompt": "FIM form, also where the suffix is empty" if task.infilling
                                 else "FIM form where there is a suffix, else plain continuation",
                       "truncation": "prefix keeps its end, suffix its start (infer.prompts.split_budget)",
                       "postprocess": "task.postprocess (stop sequences / first line), else raw; stop "
                                      "sequences are also passed to predictors that take stop= (early stop)"},
        "sandbox": {lang: {"command": list(runtime_for(lang).command), "limits": asdict(runtime_for(lang).limits)}
                    for lang in languages} | ({"network_namespace": netns_available()[1],
                                               "mount_namespace": mounts_available()} if languages else {}),
        "metrics": {"pass_at_k": "unbiased estimator (Chen et al. 2021), metrics.pass_at_k",
                    "edit_distance": f"rapidfuzz {rapidfuzz.__version__}", "bleu": "metrics.bleu4 (13a)",
                    "codebleu": "codebleu.CODEBLEU_VERSION (tree-sitter)"},
    }


# ---- files ----

def _header(config: dict) -> dict:
    return {"eval_config": config, "config_hash": _hash(config)}


def read_rows(path: Path) -> tuple[dict | None, list[dict]]:
    """(header, rows) of one of our JSONL files (samples, results); a torn last line is trimmed off
    first. A file without a header line gives (None, every row)."""
    if not path.exists():
        return None, []
    trim_torn_tail(path)
    rows = read_jsonl(path, hint="delete it or rerun with force")
    if rows and "eval_config" in rows[0]:
        return rows[0], rows[1:]
    return None, rows


def _open_jsonl(path: Path, config: dict, *, force: bool):
    """Open `path` for appending under `config`; refuse a file written under another config."""
    header, rows = read_rows(path)
    if header is not None and header["config_hash"] != _hash(config) and not force:
        raise ValueError(f"{path} was written under another eval config (hash {header['config_hash']} vs "
                         f"{_hash(config)}); use another output dir or force=True")
    if force or header is None or header["config_hash"] != _hash(config):
        path.unlink(missing_ok=True)
        rows = []
        append_jsonl(path, _header(config))
    return path.open("a", encoding="utf-8"), rows


def load_config(out_dir: str | Path) -> dict:
    path = Path(out_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the generate step for this output dir first")
    return json.loads(path.read_text(encoding="utf-8"))


def task_from_config(config: dict) -> Task:
    return get_task(config["task"]["registry_name"], **config["task"]["options"])


def read_samples(out_dir: str | Path) -> list[dict]:
    """Every sample of every shard file in `out_dir`, once each (the first file's row where two files hold
    the same (task_id, sample_index)), in that key's order."""
    rows: dict[tuple, dict] = {}
    for path in sorted(Path(out_dir).glob("samples*.jsonl")):
        for row in read_rows(path)[1]:
            rows.setdefault((row["task_id"], row["sample_index"]), row)
    return [rows[key] for key in sorted(rows)]


# ---- step 1: generate ----

def generate(task: Task, predictor, out_dir: str | Path, gen: GenerationSettings, *, force: bool = False,
             shard: tuple[int, int] = (0, 1), progress: bool | None = None, restart_stale: bool = False) -> Path:
    """Generate gen.n samples per problem of this shard; returns the samples file.

    restart_stale: when `out_dir` holds a run under another config (a newer checkpoint, other
    settings), start over instead of refusing; a run under the same config is resumed.
    progress: a tqdm bar (None: only on a terminal).
    """
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = eval_config(task, gen)
    previous = (out / CONFIG_FILE).exists() and json.loads((out / CONFIG_FILE).read_text())
    if previous and _hash(previous) != _hash(config):
        force = force or restart_stale
        if not force:
            raise ValueError(f"{out} holds a run with another eval config; use another dir or force=True")
        for stale in [*out.glob("samples*.jsonl"), out / RESULTS_FILE, out / SCORES_FILE]:
            stale.unlink(missing_ok=True)
    write_json_atomic(out / CONFIG_FILE, config, sort_keys=False)
    path = out / ("samples.jsonl" if count == 1 else f"samples.shard-{index}-of-{count}.jsonl")
    if force:  # new samples: the judgements and scores of the old ones must go with them
        for judged in (out / RESULTS_FILE, out / SCORES_FILE):
            judged.unlink(missing_ok=True)
    f, rows = _open_jsonl(path, config, force=force)
    # done in any shard's file (another shard count, or a whole run after shards), so no sample is made twice
    done = {(r["task_id"], r["sample_index"]) for r in rows}
    if not force:
        done |= {(r["task_id"], r["sample_index"]) for r in read_samples(out)}
    mine = [(problem, k) for problem in task.problems()[index::count] for k in range(gen.n)]
    todo = [(problem, k) for problem, k in mine if (problem.task_id, k) not in done]
    accepted = _accepted_keywords(predictor)
    mode, max_new = gen.mode or task.mode, gen.max_new_tokens or task.max_new_tokens
    h = _hash(config)
    with f, tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"{task.name} {out.name}", unit="sample",
                 disable=None if progress is None else not progress) as bar:
        for problem, k in todo:  # one flushed line per sample: a crash loses at most one
            kwargs = _complete_keywords(accepted, problem, gen, k, mode=mode, max_new_tokens=max_new,
                                        infilling=task.infilling)
            start = time.perf_counter()
            c = predictor.complete(problem.prompt, problem.suffix, **kwargs)
            seconds = time.perf_counter() - start  # the completion alone, not the extras' forward passes
            extras = task.sample_extras(problem, predictor, mode=mode, max_new_tokens=max_new)
            append_jsonl(f, {"task_id": problem.task_id, "sample_index": k, "task_type": problem.task_type,
                             "raw": c.text, "completion": task.postprocess(problem, c.text),
                             "new_tokens": c.new_tokens, "prompt_tokens": c.prompt_tokens,
                             "stop_reason": c.stop_reason, "seconds": seconds, **extras, "config_hash": h})
            bar.update()
    return path


def _accepted_keywords(predictor) -> set[str]:
    """The keyword arguments `predictor.complete` takes (Completer.complete(**kw) passes on to stream)."""
    params = inspect.signature(predictor.complete).parameters
    accepted = set(params)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and hasattr(predictor, "stream"):
        accepted |= set(inspect.signature(predictor.stream).parameters)
    return accepted


def _complete_keywords(accepted: set[str], problem, gen: GenerationSettings, k: int, *, mode: str,
                       max_new_tokens: int, infilling: bool = False) -> dict:
    """The keywords of sample k's `complete` call; the optional ones only where the predictor takes them."""
    kwargs = {"path": problem.path, "max_new_tokens": max_new_tokens, "mode": mode, "temperature": gen.temperature}
    if "seed" in accepted:
        kwargs["seed"] = gen.seed * 1_000_003 + k
    if "top_p" in accepted and gen.top_p != 1.0:
        kwargs["top_p"] = gen.top_p
    if "stop" in accepted and problem.stop:  # stop early; postprocess cuts the same way
        kwargs["stop"] = list(problem.stop)
    if "max_prompt_tokens" in accepted and gen.max_prompt_tokens:
        kwargs["max_prompt_tokens"] = gen.max_prompt_tokens
    if "fim" in accepted and infilling:  # a hole at the end of a file is still a hole: FIM prompt
        kwargs["fim"] = True
    for name in ("frequency_penalty", "presence_penalty", "cache_weight"):
        if name in accepted and getattr(gen, name):
            kwargs[name] = getattr(gen, name)
    return kwargs


def reference_samples(task: Task, out_dir: str | Path, *, empty: bool = False, force: bool = False) -> Path:
    """Write samples whose completion is each problem's reference (or "" with empty=True): the
    harness check (canonical solutions must score 100 %) and the empty-completion baseline."""

    class _Reference:
        def __init__(self):
            self.by_prompt = {(p.prompt, p.suffix): ("" if empty else p.reference) for p in task.problems()}

        def complete(self, prefix, suffix="", *, path="", max_new_tokens=0, mode="psm", temperature=0.0):
            from lightcoder.infer.completer import Completion

            return Completion(text=self.by_prompt[(prefix, suffix)], prompt_tokens=0, new_tokens=0,
                              stop_reason="stop", seconds=0.0)

    gen = GenerationSettings(model_id="empty" if empty else "reference")
    path = generate(task, _Reference(), out_dir, gen, force=force)
    if not empty:  # the reference is the final completion: no stop-sequence cutting
        header, rows = read_rows(path)
        refs = {p.task_id: p.reference for p in task.problems()}
        path.write_text("".join(json.dumps(r) + "\n" for r in
                                [header] + [{**r, "completion": refs[r["task_id"]]} for r in rows]), encoding="utf-8")
    return path


# ---- step 2: execute ----

def _judge(task: Task, problems: dict, sample: dict, slot: int) -> dict:
    problem = problems[sample["task_id"]]
    row = {"task_id": sample["task_id"], "sample_index": sample["sample_index"], "task_type": problem.task_type}
    if task.kind == "execution":
        runtime = runtime_for(problem.language)
        result = run_in_sandbox(list(runtime.command), {runtime.filename: task.program(problem, sample["completion"])},
                                runtime.limits, slot=slot)
        row.update(passed=result.passed, status=result.status, returncode=result.returncode,
                   exec_seconds=result.seconds, stderr_tail=result.stderr[-500:], isolation=result.isolation)
        try:
            row.update(task.sample_scores(problem, sample))
        except NotImplementedError:
            pass
    else:
        row.update(task.sample_scores(problem, sample))
    return row


def execute(out_dir: str | Path, *, workers: int = 2, force: bool = False, task: Task | None = None) -> Path:
    """Judge every sample not yet in results.jsonl; `workers` sandboxes run at once (slots 0..workers-1).

    Match tasks are judged in one thread: there is no sandbox to wait on, and their syntax checks
    share one tree-sitter parser per language, which is not safe to use from two threads.
    """
    out = Path(out_dir)
    config = load_config(out)
    task = task or task_from_config(config)
    workers = workers if task.kind == "execution" else 1
    problems = {p.task_id: p for p in task.problems()}
    samples = read_samples(out)
    unknown = sorted({s["task_id"] for s in samples} - set(problems))
    if unknown:
        raise ValueError(f"{out}: samples for task ids the task does not have (e.g. {unknown[:3]}); "
                         "the task data changed since generation: regenerate with force=True")
    f, rows = _open_jsonl(out / RESULTS_FILE, config, force=force)
    done = {(r["task_id"], r["sample_index"]) for r in rows}
    todo = [s for s in samples if (s["task_id"], s["sample_index"]) not in done]
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(workers):
        slots.put(slot)
    lock = threading.Lock()
    h = _hash(config)

    def work(sample: dict) -> None:
        slot = slots.get()
        try:
            row = _judge(task, problems, sample, slot)
        finally:
            slots.put(slot)
        with lock:
            append_jsonl(f, {**row, "config_hash": h})

    with f, ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(work, todo):
            pass
    return out / RESULTS_FILE


# ---- step 3: score ----

def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _aggregate(rows: list[dict], kind: str) -> dict:
    out: dict = {"n_problems": len({r["task_id"] for r in rows}), "n_samples": len(rows)}
    if kind == "execution":
        per_problem: dict[str, list[bool]] = {}
        for r in rows:
            per_problem.setdefault(r["task_id"], []).append(bool(r["passed"]))
        n_min = min((len(v) for v in per_problem.values()), default=0)
        for k in PASS_KS:
            if k <= n_min:
                out[f"pass@{k}"] = 100.0 * _mean([pass_at_k(len(v), sum(v), k) for v in per_problem.values()])
        out["statuses"] = dict(sorted({s: sum(1 for r in rows if r.get("status") == s)
                                       for s in {r.get("status") for r in rows}}.items()))
    numeric = sorted({k for r in rows for k, v in r.items()
                      if isinstance(v, (int, float)) and k not in ("sample_index", "returncode", "exec_seconds", "passed")})
    for key in numeric:  # over the rows with a number there (syntax_ok or bits may be None)
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        scale = 100.0 if all(isinstance(v, bool) for v in values) else 1.0
        out[key] = scale * _mean([float(v) for v in values])
    return out


def _summary(rows: list[dict], kind: str) -> dict:
    by_type: dict[str, list[dict]] = {}
    for r in rows:
        by_type.setdefault(r.get("task_type") or "all", []).append(r)
    summary = {t: _aggregate(rs, kind) for t, rs in by_type.items()}
    summary["total"] = _aggregate(rows, kind)
    return summary


def score(out_dir: str | Path) -> dict:
    """Aggregate results.jsonl into scores.json: {config, summary: {task_type|total: metrics}, timing}."""
    out = Path(out_dir)
    config = load_config(out)
    task = task_from_config(config)
    header, rows = read_rows(out / RESULTS_FILE)
    if header is None or header["config_hash"] != _hash(config):
        raise ValueError(f"{out / RESULTS_FILE} is missing or from another config: run the execute step")
    samples = read_samples(out)
    if len(rows) < len(samples):
        raise ValueError(f"{out}: {len(samples) - len(rows)} samples not executed yet; run the execute step")
    summary = task.summary(rows) or _summary(rows, task.kind)
    seconds = sum(s["seconds"] for s in samples)
    protocol = {**config, "generation": {k: v for k, v in config["generation"].items()
                                         if k not in ("model_id", "template")}}
    scores = {"task": task.name, "kind": task.kind, "config_hash": _hash(config),
              "protocol_hash": _hash(protocol),  # the config without the model: equal = comparable numbers
              "eval_config": config,
              "summary": summary,
              "timing": {"generation_seconds": seconds, "new_tokens": sum(s["new_tokens"] for s in samples),
                         "execution_seconds": sum(r.get("exec_seconds", 0.0) for r in rows)},
              "lengths": [[len(s["completion"].strip()), len(task_ref)] for s, task_ref in
                          zip(samples, _references(task, samples))],
              **task.extra_scores(rows)}
    write_json_atomic(out / SCORES_FILE, scores, sort_keys=False)
    return scores


def _references(task: Task, samples: list[dict]) -> list[str]:
    refs = {p.task_id: p.reference for p in task.problems()}
    return [refs[s["task_id"]] for s in samples]


def run_task(task: Task, predictor, out_dir: str | Path, gen: GenerationSettings | None = None, *,
             workers: int = 2, force: bool = False, restart_stale: bool = False) -> dict:
    """generate + execute + score in one call (each step resumes what an earlier call left)."""
    gen = gen or GenerationSettings()
    generate(task, predictor, out_dir, gen, force=force, restart_stale=restart_stale)
    execute(out_dir, workers=workers, task=task)
    return score(out_dir)


def run_stage_benchmarks(eval_cfg, checkpoint: str | Path, tasks_dir: str | Path, *, model_id: str) -> dict[str, dict]:
    """The run's eval stage: benchmark subsets for one checkpoint, sizes from EvalConfig
    (humaneval_limit problems executed -> pass@1; santacoder_fim_limit single lines -> EM).

    Outputs go to tasks_dir/<task>/trained/ (resumed, or restarted for a new checkpoint); the
    subset sizes are in each scores.json's config. Skipped, with a note, without HumanEval data.
    """
    import sys

    from lightcoder.eval.tasks import humaneval_path
    from lightcoder.devices import resolve_device
    from lightcoder.infer.completer import Completer

    try:
        humaneval_path()
    except FileNotFoundError as exc:
        print(f"benchmark subsets skipped: {exc}", file=sys.stderr)
        return {}
    plan = [(name, limit, max_new) for name, limit, max_new in (
        ("humaneval", eval_cfg.humaneval_limit, eval_cfg.humaneval_max_new_tokens),
        ("santacoder-fim-py", eval_cfg.santacoder_fim_limit, 16)) if limit > 0]
    if not plan:
        return {}
    completer = Completer.load(checkpoint, device=resolve_device(eval_cfg.device, setting="eval.device"),
                               max_prompt_tokens=eval_cfg.max_prompt_tokens or None)
    template = getattr(getattr(completer, "template", None), "name", "aixcoder")
    scores = {}
    for name, limit, max_new in plan:
        print(f"-- trained on {name} (first {limit})", file=sys.stderr, flush=True)
        gen = GenerationSettings(model_id=model_id, template=template, max_new_tokens=max_new,
                                 seed=eval_cfg.seed, max_prompt_tokens=eval_cfg.max_prompt_tokens,
                                 frequency_penalty=eval_cfg.frequency_penalty,
                                 presence_penalty=eval_cfg.presence_penalty, cache_weight=eval_cfg.cache_weight)
        scores[name] = run_task(get_task(name, limit=limit), completer, Path(tasks_dir) / name / "trained", gen,
                                restart_stale=True)
    return scores
