"""The user's code through the curation steps, then split by file into train / valid / held-out.

Pretraining splits by repository (a model must be judged on code it never saw). Fine-tuning is the
opposite case: the model should learn *this* codebase, so it is judged on held-out files of the
same repositories. `run_split` reads the curated corpus (every file in its train split: the data
stage runs with valid/test fractions 0) and sends each file by a hash of (seed, repository, path):

    u = hash(seed, repo, path) in [0, 1)    u < heldout -> "test"; u < heldout + valid -> "valid"; else "train"

so a file's split never depends on the other files. A repository with fewer than 3 files keeps all
of them for training. Output: RUN/split/{train,valid,test}-00000.parquet + DONE (read_corpus reads it).

Replay (split.replay, split.replay_fraction): files of the base's own training corpus, in hash order,
until their bytes reach replay_fraction x the user's train bytes, are added to the train split as one
repository named "replay" (one stream, so repository balancing weighs it as one codebase). They never
reach valid or held-out, so the before/after numbers still measure the user's code.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from lightcoder.artifacts import clear_done, is_done, mark_done, read_done
from lightcoder.data.assemble import seen_phrase
from lightcoder.data.config import SPLITS
from lightcoder.data.pipeline import run_data
from lightcoder.data.records import SourceFile, read_corpus, write_parquet
from lightcoder.finetune.config import FinetuneConfig, SplitSettings
from lightcoder.overrides import ConfigError

MIN_REPO_FILES = 3  # smaller repositories train on every file


class NoUsableFilesError(ValueError):
    """The corpus left no file to train on after curation."""


def run_curation(cfg: FinetuneConfig, out: Path, *, force: bool = False) -> dict:
    """The data stage over the --corpus paths (the same steps as pretraining); NoUsableFilesError
    naming the corpus and the main drop reasons when nothing is left."""
    data_cfg = replace(cfg.data, sources=[str(Path(p).expanduser()) for p in cfg.corpus])
    for p in data_cfg.sources:
        if not Path(p).exists():
            raise NoUsableFilesError(f"--corpus {p}: no such file or directory")
    summary = run_data(data_cfg, out, force=force)
    kept = summary.get("splits", {}).get("train", {}).get("files", 0)
    if not kept:
        raise NoUsableFilesError(_no_files_message(cfg, out))
    return summary


def _no_files_message(cfg: FinetuneConfig, out: Path) -> str:
    import json

    reasons = ""
    stats_path = out / "stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        drops = Counter()
        for stage in stats.get("stages", []):
            for reason, counts in stage.get("dropped", {}).items():
                drops[f"{stage['stage']}:{reason}"] += counts.get("files", 0)
        problems = sum(n for key, n in drops.items() if key.startswith("scan:"))
        top = ", ".join(f"{k} {v}" for k, v in drops.most_common(4))
        seen = seen_phrase(stats.get("seen", {}).get("files", 0), problems)
        reasons = f" ({seen}{'; dropped: ' + top if top else ''})"
    return (f"the corpus {' '.join(cfg.corpus)} has no usable {'/'.join(cfg.data.languages)} files{reasons}; "
            f"point --corpus at source code, or widen the filters (e.g. --data.languages Python,Java, "
            f"--data.license.unknown keep); details in {out}/stats.json and {out}/rejected/")


def file_unit(seed: int, repo: str, path: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, repository, path)."""
    digest = hashlib.sha256(f"{seed}:{repo}:{path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(f: SourceFile, settings: SplitSettings, repo_files: int) -> str:
    if repo_files < MIN_REPO_FILES:
        return "train"
    u = file_unit(settings.seed, f.repo, f.path)
    if u < settings.heldout_fraction:
        return "test"
    return "valid" if u < settings.heldout_fraction + settings.valid_fraction else "train"


def run_split(settings: SplitSettings, data_dir: Path, out: Path, *, force: bool = False) -> dict:
    """Write the file-level split of a curated corpus (module docstring); returns the counts."""
    previous = read_done(out)
    if previous is not None and not force:
        return previous
    out.mkdir(parents=True, exist_ok=True)
    clear_done(out)
    # every split of the curated corpus: with >= 3 repositories the data stage gives test and valid one
    # repository each even at fraction 0 (assign_splits); here whole repositories never leave training
    files = [f for split in SPLITS for f in read_corpus(data_dir, split)]
    per_repo = Counter(f.repo for f in files)
    by_split: dict[str, list[SourceFile]] = {"train": [], "valid": [], "test": []}
    for f in files:
        split = split_of(f, settings, per_repo[f.repo])
        by_split[split].append(replace(f, split=split))
    user_train_bytes = _bytes(by_split["train"])
    replay = replay_files(settings, settings.replay_fraction * user_train_bytes)
    by_split["train"] += replay
    for split, rows in by_split.items():
        write_parquet(sorted(rows, key=lambda f: f.path), out / f"{split}-00000.parquet")
    summary = {split: {"files": len(rows), "bytes": _bytes(rows)} for split, rows in by_split.items()}
    summary["repos"] = len(per_repo)
    summary["replay"] = {"files": len(replay), "bytes": _bytes(replay)}
    mark_done(out, summary)
    if not by_split["test"]:
        print("finetune: no held-out files (a repository needs >= 3 files, or raise --split.heldout_fraction): "
              "the report will have no before/after table", file=sys.stderr)
    return summary


def _bytes(files: list[SourceFile]) -> int:
    return sum(len(f.content.encode("utf-8", "surrogatepass")) for f in files)


def replay_files(settings: SplitSettings, budget_bytes: float) -> list[SourceFile]:
    """Train-split files of settings.replay in hash order until their bytes reach budget_bytes, as
    repository "replay" in the train split ([] for a budget of 0)."""
    if budget_bytes <= 0:
        return []
    try:
        files = list(read_corpus(Path(settings.replay).expanduser(), "train"))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"split.replay {settings.replay}: {e}; pass a curated corpus dir with a train split "
                         "(a lightcoder run's data/), or --split.replay_fraction 0") from None
    files.sort(key=lambda f: file_unit(settings.seed, f.repo, f.path))
    picked, total = [], 0
    for f in files:
        if total >= budget_bytes:
            break
        picked.append(replace(f, repo="replay", path=f"replay/{f.repo}/{f.path}", split="train"))
        total += _bytes([f])
    return picked


def split_done(out: Path) -> bool:
    return is_done(out)
