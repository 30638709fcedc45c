"""Running the corpus pipeline on datatrove's executors (`data.engine = "datatrove"`).

Why datatrove (over Ray or Spark): its model is ours - a pipeline of steps run as `tasks` ranks,
each rank taking its share of shards, with completion markers so a rerun skips finished
tasks - and it is pure Python (pip install datatrove, no JVM, no cluster daemon). The same
three phases run unchanged under `LocalPipelineExecutor` (one machine, shown in
tests/data/test_data_engine.py) or `SlurmPipelineExecutor` (a cluster: swap the executor class
and give the work directory on a shared file system). Spark would need the JVM plus a rewrite
into DataFrame operations; Ray would add a cluster runtime for what is embarrassingly parallel
per shard plus one global dedup step.

Phases map to executors chained with `depends`: map (tasks = shards), dedup (1 task), finish
(tasks = shards). Each datatrove task calls the same functions as the local pool
(steps.map_shard / steps.run_dedup / steps.finish_shard), which keep their own per-shard
DONE markers, so the output is byte-identical to the local engine's.
"""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep


class ShardPhase(PipelineStep):
    """One phase of the pipeline as a datatrove step: rank r runs shards r, r + W, r + 2W, ..."""

    name = "lightcoder shard phase"
    type = "lightcoder"

    def __init__(self, phase: str, cfg, work: str, count: int) -> None:
        super().__init__()
        self.phase, self.cfg, self.work, self.count = phase, cfg, work, count

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from lightcoder.data import steps

        work = Path(self.work)
        if self.phase == "dedup":
            steps.run_dedup(self.cfg, work, self.count)
        else:
            plan = json.loads((work / "plan.json").read_text()) if self.phase == "map" else None
            for i in range(rank, self.count, world_size):
                if self.phase == "map":
                    steps.map_shard(i, plan=plan, cfg=self.cfg, work=work)
                else:
                    steps.finish_shard(i, cfg=self.cfg, work=work)
                self.stat_update("shards")
        if data is not None:
            yield from data


def run_with_datatrove(cfg, plan: dict, work: Path) -> None:
    """Run map -> dedup -> finish with datatrove's LocalPipelineExecutor (logs in work/datatrove)."""
    count = len(plan["shards"])
    workers = cfg.num_workers()
    logs = work / "datatrove"
    mapper = LocalPipelineExecutor([ShardPhase("map", cfg, str(work), count)], tasks=count,
                                   workers=workers, logging_dir=str(logs / "map"),
                                   start_method="fork")
    dedup = LocalPipelineExecutor([ShardPhase("dedup", cfg, str(work), count)], tasks=1,
                                  workers=1, logging_dir=str(logs / "dedup"), depends=mapper,
                                  start_method="fork")
    finish = LocalPipelineExecutor([ShardPhase("finish", cfg, str(work), count)], tasks=count,
                                   workers=workers, logging_dir=str(logs / "finish"),
                                   depends=dedup, start_method="fork")
    finish.run()
