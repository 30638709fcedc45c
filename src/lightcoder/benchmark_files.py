"""Where the benchmark data files live on this machine: read by curation (decontamination) and eval.

Nothing here is downloaded. HumanEval is looked up at a given path, else the lab machines' shared data
dir, else the files shipped with the package (`eval/data/`). Kept apart from `eval/` so curation, an
earlier stage, finds the benchmarks it must remove from the corpus without importing the eval code.

Example: humaneval_path() -> Path("/work/shared/data/HumanEval.jsonl.gz") on the lab machines
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "eval" / "data"  # task files shipped with the package
SHARED_DATA = Path("/work/shared/data")  # where HumanEval.jsonl.gz lives on the lab machines


def humaneval_path(path: str | Path | None = None) -> Path:
    """HumanEval.jsonl(.gz): the given path, else /work/shared/data, else a clear error."""
    candidates = [Path(path)] if path else [SHARED_DATA / "HumanEval.jsonl.gz", DATA_DIR / "HumanEval.jsonl.gz"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"HumanEval data not found (looked at {', '.join(map(str, candidates))}); pass data=PATH to "
        "the openai/human-eval HumanEval.jsonl.gz")
