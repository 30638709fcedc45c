"""Tiny released-model stand-ins, made in the tests: HF Llama dirs with our BPE tokenizer or a
SentencePiece tokenizer.model in aiXcoder's layout, and a small Python package to adapt to."""

import inspect
import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from lightcoder.model.config import get_preset
from lightcoder.model.hf import save_checkpoint
from lightcoder.model.llama import Transformer

STDLIB = Path(os.__file__).parent
# one "user repository": small stdlib modules that the tiny tokenizers below never saw
PACKAGE_FILES = ["colorsys.py", "shlex.py", "bisect.py", "fnmatch.py", "glob.py", "keyword.py", "numbers.py",
                 "stat.py", "sched.py", "queue.py", "heapq.py", "graphlib.py"]


def tiny_model(vocab_size: int, seed: int = 0, **overrides) -> Transformer:
    cfg = get_preset("lc-tiny", vocab_size=vocab_size, **overrides)
    model = Transformer(cfg)
    model.init_weights(seed)
    return model


@pytest.fixture(scope="session")
def bpe_base(tmp_path_factory) -> Path:
    """An HF Llama dir with lightcoder's byte-level BPE (aiXcoder's special tokens at ids 0..10)."""
    from lightcoder.tokenizer.config import TokenizerConfig
    from lightcoder.tokenizer.train import train_tokenizer

    d = tmp_path_factory.mktemp("bpe_base")
    tok = train_tokenizer([inspect.getsource(textwrap), inspect.getsource(json)], TokenizerConfig(vocab_size=512))
    tok.save(d / "tokenizer")
    model = tiny_model(512)
    return save_checkpoint(model, model.cfg, d / "base", tokenizer_dir=d / "tokenizer")


@pytest.fixture(scope="session")
def aix_tokenizer_dir(tmp_path_factory) -> Path:
    from lightcoder.finetune.aixcoder_layout import make_aixcoder_tokenizer

    d = tmp_path_factory.mktemp("aix_tok")
    make_aixcoder_tokenizer([inspect.getsource(textwrap), inspect.getsource(json)], d, vocab_size=600)
    return d


@pytest.fixture(scope="session")
def aix_base(tmp_path_factory, aix_tokenizer_dir) -> Path:
    """An HF Llama dir in aiXcoder-7B's release layout: weights + SentencePiece tokenizer.model only."""
    model = tiny_model(640)
    ckpt = save_checkpoint(model, model.cfg, tmp_path_factory.mktemp("aix_base") / "base")
    shutil.copyfile(aix_tokenizer_dir / "tokenizer.model", ckpt / "tokenizer.model")
    return ckpt


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> Path:
    """A user's repository: a directory of Python modules."""
    root = tmp_path_factory.mktemp("corpus") / "mypkg"
    root.mkdir()
    for name in PACKAGE_FILES:
        shutil.copyfile(STDLIB / name, root / name)
    return root
