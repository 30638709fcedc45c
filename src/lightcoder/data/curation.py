"""Curation as a list of steps, and the runner that chains them (datatrove's pattern).

A step turns a stream of files into a stream of files:

    Step.run(files: Iterator[SourceFile]) -> Iterator[SourceFile]

It drops a file by not yielding it (after `self.drop(...)` records why), and rewrites one by
yielding an edited copy. Each step has a `name` (the funnel stage its drops count under, and its
key in counters.cpu_ms), its `config` (the DataConfig section it reads) and counters (`count`).
`run_steps` chains the enabled steps of a list lazily, so one file goes through every step
before the next is read (a batch step, like the linters, may gather the whole shard first). It
charges each step its own CPU time and checks that every file a step did not pass on was
recorded as a drop, so no step can lose a file silently.

`Tally` is the bookkeeping shared by one shard (`ShardLog`) and the whole run (the funnel in
assemble.py): drops per stage and reason, counters per group, and capped rejected samples.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from lightcoder.artifacts import write_json_atomic
from lightcoder.data.filters import Check  # (reason, detail) to drop a file, None to keep it
from lightcoder.data.records import SourceFile


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (ruff, cppcheck run as children)."""
    me, children = (resource.getrusage(resource.RUSAGE_SELF),
                    resource.getrusage(resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class Tally:
    """Drops {stage: {reason: {files, bytes}}}, counters {group: {key: n}} and rejected samples
    (at most `max_per_reason` rows per reason, the first ones seen)."""

    def __init__(self, max_per_reason: int) -> None:
        self.dropped: dict[str, dict[str, dict[str, int]]] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.samples: dict[str, list[dict]] = {}
        self.max_per_reason = max_per_reason

    def add_drop(self, stage: str, reason: str, files: int, nbytes: int) -> None:
        c = self.dropped.setdefault(stage, {}).setdefault(reason, {"files": 0, "bytes": 0})
        c["files"] += files
        c["bytes"] += nbytes

    def add_sample(self, row: dict) -> None:
        rows = self.samples.setdefault(row["reason"], [])
        if len(rows) < self.max_per_reason:
            rows.append(row)

    def count(self, group: str, key: str, n: int = 1) -> None:
        g = self.counters.setdefault(group, {})
        g[key] = g.get(key, 0) + n

    def merge(self, stats: dict) -> None:
        """Add the drops and counters of a shard's stats.json."""
        for stage, reasons in stats["dropped"].items():
            for reason, c in reasons.items():
                self.add_drop(stage, reason, c["files"], c["bytes"])
        for group, values in stats["counters"].items():
            for key, n in values.items():
                self.count(group, key, n)

    def sample_rows(self) -> Iterator[dict]:
        for rows in self.samples.values():
            yield from rows


class ShardLog(Tally):
    """The tally of one shard, written as stats.json + rejected.jsonl in the shard's directory."""

    def drop(self, stage: str, reason: str, detail: str, *, repo: str, path: str, size: int,
             content: str = "") -> None:
        self.add_drop(stage, reason, 1, size)
        self.add_sample({"repo": repo, "path": path, "reason": reason, "detail": detail,
                         "size": size, "stage": stage, "excerpt": content[:300]})

    def write(self, shard_dir: Path, extra: dict) -> None:
        with open(shard_dir / "rejected.jsonl", "w", encoding="utf-8") as fh:
            for row in self.sample_rows():
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json_atomic(shard_dir / "stats.json", {"dropped": self.dropped,
                                                     "counters": self.counters, **extra})


class Scratch:
    """Values one step leaves for a later one about a file (raw bytes, token hashes, a parse
    tree, linter hits), keyed by the file object itself and never written anywhere."""

    def __init__(self) -> None:
        self._values: dict[int, tuple[SourceFile, dict]] = {}  # id(f) -> (f, {key: value})

    def put(self, f: SourceFile, key: str, value) -> None:
        # Holding f keeps its id from being reused by another file while the entry lives.
        self._values.setdefault(id(f), (f, {}))[1][key] = value

    def pop(self, f: SourceFile, key: str, default=None):
        entry = self._values.get(id(f))
        if entry is None or entry[0] is not f:
            return default
        value = entry[1].pop(key, default)
        if not entry[1]:
            del self._values[id(f)]
        return value

    def forget(self, f: SourceFile) -> None:
        self._values.pop(id(f), None)


class Step:
    """One curation step (see the module docstring). Subclasses set `name` and write `run`."""

    name: ClassVar[str]
    drops: ClassVar[bool] = True  # False: never drops a file (so it is no funnel stage)
    counter_group: ClassVar[str] = ""  # group of its counters in stats.json; "" = name
    section: ClassVar[str] = ""  # the DataConfig section it reads ("pii"); "" = the top-level keys

    def __init__(self, cfg, log: ShardLog, scratch: Scratch, **shard_inputs) -> None:
        # shard_inputs: what some steps need from the shard's runner (see steps.py); a step
        # that needs one takes it as a keyword argument, the others ignore them.
        self.cfg, self.log, self.scratch = cfg, log, scratch
        self.dropped = 0

    @property
    def config(self):
        """The part of DataConfig this step reads (its section, or the top-level keys)."""
        return getattr(self.cfg, self.section) if self.section else self.cfg

    def enabled(self) -> bool:
        """A step with a section runs when the section's `enabled` says so (True without one)."""
        return bool(getattr(self.config, "enabled", True)) if self.section else True

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        raise NotImplementedError

    def drop(self, f: SourceFile, check: tuple[str, str], *, size: int | None = None,
             content: str | None = None) -> None:
        """Record that f stops here; size defaults to meta["size"], content to f.content."""
        self.dropped += 1
        self.scratch.forget(f)
        self.log.drop(self.name, check[0], check[1], repo=f.repo, path=f.path,
                      size=int(f.meta["size"]) if size is None else size,
                      content=f.content if content is None else content)

    def count(self, key: str, n: int = 1) -> None:
        self.log.count(self.counter_group or self.name, key, n)


class Filter(Step):
    """A step that keeps or drops each file on its own: write `check`."""

    def check(self, f: SourceFile) -> Check:
        raise NotImplementedError

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        for f in files:
            problem = self.check(f)
            if problem is None:
                yield f
            else:
                self.drop(f, problem)


class _Meter:
    """Counts the files that pass one point of the chain and the CPU seconds spent making them
    (including every step upstream of that point)."""

    def __init__(self, files: Iterable[SourceFile]) -> None:
        self.files, self.passed, self.seconds = iter(files), 0, 0.0

    def __iter__(self) -> _Meter:
        return self

    def __next__(self) -> SourceFile:
        start = cpu_seconds()
        try:
            f = next(self.files)
        finally:
            self.seconds += cpu_seconds() - start
        self.passed += 1
        return f


def run_steps(steps: Sequence[Step], files: Iterable[SourceFile], log: Tally, *,
              source: str = "read") -> Iterator[SourceFile]:
    """Chain the enabled steps over files and yield what survives them all.

    When the stream ends, counters.cpu_ms gets each step's own CPU time (and `source`'s, for
    producing the input); RuntimeError if a step passed on fewer files than it took without
    recording each missing one as a drop.
    """
    chain = [s for s in steps if s.enabled()]
    meters = [_Meter(files)]
    for step in chain:
        meters.append(_Meter(step.run(meters[-1])))
    yield from meters[-1]
    log.count("cpu_ms", source, round(meters[0].seconds * 1000))
    for step, before, after in zip(chain, meters, meters[1:]):
        log.count("cpu_ms", step.name, round((after.seconds - before.seconds) * 1000))
        lost = before.passed - after.passed - step.dropped
        if lost:
            raise RuntimeError(f"curation step {step.name!r} lost {lost} files without "
                               "recording them as drops")


def funnel_stages(first: Sequence[str], *step_lists: Sequence[type[Step]]) -> tuple[str, ...]:
    """The funnel's stages: `first` (the plan's), then each dropping step's name, once each."""
    names = list(first)
    for steps in step_lists:
        names += [s.name for s in steps if s.drops and s.name not in names]
    return tuple(names)
