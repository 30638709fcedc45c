"""Test-wide settings: tiny models run fastest (and least noisily) on one torch thread; a tiny trained-run maker."""

import inspect
import json
import textwrap
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def make_tiny_run():
    """make_tiny_run(run_dir, dtype=torch.float32) -> run_dir: a run dir as training leaves it (tokenizer/ from two
    stdlib modules, ckpt/step_000000 of seeded lc-tiny weights saved in `dtype`)."""
    from lightcoder.model.config import get_preset
    from lightcoder.model.hf import save_checkpoint
    from lightcoder.model.llama import Transformer
    from lightcoder.tokenizer.config import TokenizerConfig
    from lightcoder.tokenizer.train import train_tokenizer

    def make(run: Path, dtype: torch.dtype = torch.float32) -> Path:
        texts = [inspect.getsource(textwrap), inspect.getsource(json)]
        train_tokenizer(texts, TokenizerConfig(vocab_size=512)).save(run / "tokenizer")
        model = Transformer(get_preset("lc-tiny", init_std=0.2))
        model.init_weights(0)
        save_checkpoint(model.to(dtype), model.cfg, run / "ckpt" / "step_000000", tokenizer_dir=run / "tokenizer")
        return run
    return make
