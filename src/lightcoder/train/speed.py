"""The measured training speed of a run's model on its packed windows (tokens per second).

`lightcoder ablate --minutes M` turns minutes into one token budget that every variant then trains,
so all runs get equal compute whatever else the machine is doing later. The measurement is a few real
optimizer steps (model, AdamW, the run's autocast dtype, block-causal masks, as train/loop.py runs them).

Example: measure_tokens_per_s(cfg, Path("run/ablate/packs/full")) -> 5100.0
"""

from __future__ import annotations

import time
from pathlib import Path

WARMUP_STEPS, TIMED_STEPS = 3, 12


def measure_tokens_per_s(cfg, run_dir: Path) -> float:
    """Tokens per second of cfg's model training on run_dir's train windows (one process, this machine)."""
    import torch

    from lightcoder.model.llama import Transformer
    from lightcoder.shards import open_shard
    from lightcoder.train.inputs import model_config_for_run
    from lightcoder.train.loader import WindowLoader
    from lightcoder.train.loop import optimizer_step, setup_runtime
    from lightcoder.train.optim import build_optimizer
    from lightcoder.train.precision import resolve_dtype

    env = setup_runtime(cfg.train)
    model = Transformer(model_config_for_run(cfg, run_dir)).to(env.device)
    model.init_weights(cfg.train.seed)
    optimizer = build_optimizer(model, cfg.train)
    loader = WindowLoader(open_shard(run_dir / "shards", "train"), cfg.train.batch_size, seed=0, device=env.device)
    autocast = torch.autocast(env.device.type, dtype=torch.bfloat16,
                              enabled=resolve_dtype(cfg.train.dtype, env.device) == "bf16")
    for i in range(WARMUP_STEPS + TIMED_STEPS):
        if i == WARMUP_STEPS:
            start = time.perf_counter()
        inputs, targets = loader.next_batch()
        loss, _ = optimizer_step(model, optimizer, inputs, targets, autocast=autocast, grad_clip=cfg.train.grad_clip,
                                 document_mask=cfg.train.document_mask)
    float(loss)  # wait for the device
    return TIMED_STEPS * cfg.train.batch_size * (loader.seq_len - 1) / (time.perf_counter() - start)
