"""Packing on a tiny corpus: exact windows, documents that decode back to the files, determinism."""

import json
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from lightcoder.data.pipeline import DataConfig, read_corpus, run_data
from lightcoder.fim.mix import FALLBACK_REASONS, MixConfig
from lightcoder.packing import PackConfig, file_document, open_shard, order_split, run_pack
from lightcoder.tokenizer import special_tokens as st
from lightcoder.tokenizer.header import file_header
from lightcoder.tokenizer.tokenizer import Tokenizer
from lightcoder.tokenizer.train import TokenizerConfig, run_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ("textwrap.py", "colorsys.py", "bisect.py", "shlex.py", "fnmatch.py", "glob.py", "keyword.py")
SEQ_LEN = 64


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pack")
    src = root / "src"
    shutil.copytree(STDLIB / "json", src / "json", ignore=shutil.ignore_patterns("__pycache__"))
    for name in MODULES:
        shutil.copy(STDLIB / name, src / name)
    run_data(DataConfig(sources=[str(src)], valid_fraction=0.2, test_fraction=0.05), root / "data")
    run_tokenizer(TokenizerConfig(vocab_size=400), root / "data", root / "tok")
    return {"root": root, "data": root / "data", "tok": root / "tok"}


def pack(stages, name: str, **overrides) -> tuple[Path, dict]:
    out = stages["root"] / name
    cfg = PackConfig(seq_len=SEQ_LEN, **overrides)
    return out, run_pack(cfg, stages["data"], stages["tok"], out)


def rebuild(doc_ids: list[int], tok: Tokenizer) -> str | None:
    """header + file content of one encoded document (None if it was cut by the window end).

    Pieces are encoded separately, so cutting the ids at special ids gives back each text piece.
    NTP: <s> T </s>; PSM: <s> PRE H+P POST S MID M </s>; SPM: <s> PRE POST S MID H+P+M </s>.
    """
    if doc_ids[-1] != tok.eos_id:
        return None
    text = {}
    marker, run = None, []
    for i in doc_ids + [tok.bos_id]:
        if i < len(st.SPECIAL_TOKENS):
            text[marker] = tok.decode(run)
            marker, run = st.SPECIAL_TOKENS[i], []
        else:
            run.append(i)
    if st.FIM_PREFIX not in text:
        return text[st.BOS]
    return text[st.FIM_PREFIX] + text[st.FIM_MIDDLE] + text[st.FIM_SUFFIX]


def test_windows_decode_back_to_files(stages):
    out, summary = pack(stages, "shards")
    tok = Tokenizer.load(stages["tok"])
    index = json.loads((out / "index.json").read_text())
    assert summary["splits"] == index["splits"] and index["dtype"] == "uint16"
    assert index["seq_len"] == SEQ_LEN and index["vocab_size"] == 400
    for split in ("train", "valid"):
        info = index["splits"][split]
        windows = open_shard(out, split)
        assert windows.shape == (info["num_windows"], SEQ_LEN) and windows.dtype == np.uint16
        assert info["num_windows"] > 0 and info["num_tokens"] == windows.size
        assert (out / f"{split}.bin").stat().st_size == windows.size * 2
        stream = windows.reshape(-1).tolist()
        assert stream[0] == tok.bos_id
        starts = [i for i, t in enumerate(stream) if t == tok.bos_id] + [len(stream)]
        docs = [rebuild(stream[a:b], tok) for a, b in zip(starts, starts[1:])]
        files = order_split(read_corpus(stages["data"], split), PackConfig(seq_len=SEQ_LEN), split)
        expected = [file_header(f.path, language=f.language) + f.content for f in files]
        assert len(docs) <= len(expected) == info["num_documents"]
        complete = [(d, e) for d, e in zip(docs, expected) if d is not None]
        assert len(complete) >= len(docs) - 1  # only the last one may be cut
        for doc, exp in complete:
            assert doc == exp
        objectives = info["objectives"]
        assert objectives.get("ntp", 0) + objectives.get("fim", 0) + objectives.get("sfim", 0) == len(files)
        assert objectives.get("psm", 0) + objectives.get("spm", 0) == len(files) - objectives.get("ntp", 0)
    train_objectives = index["splits"]["train"]["objectives"]
    assert index["objectives"]["ntp"] >= train_objectives["ntp"] > 0
    assert index["sfim_fallbacks"] >= 0 and index["splits"]["train"]["chars_per_token"] > 1.5
    assert sum(index["sfim_fallback_reasons"].values()) == index["sfim_fallbacks"]
    assert set(index["sfim_fallback_reasons"]) <= set(FALLBACK_REASONS)


def test_same_seed_same_bytes_other_seed_differs(stages):
    a, _ = pack(stages, "seed0_a")
    b, _ = pack(stages, "seed0_b")
    c, _ = pack(stages, "seed1", seed=1)
    assert (a / "train.bin").read_bytes() == (b / "train.bin").read_bytes()
    assert (a / "train.bin").read_bytes() != (c / "train.bin").read_bytes()


def test_documents_depend_only_on_file_and_seed(stages):
    files = list(read_corpus(stages["data"], "train"))
    cfg = PackConfig(seq_len=SEQ_LEN, mix=MixConfig(ntp_rate=0.0))
    f = files[0]
    assert file_document(f, cfg) == file_document(f, cfg)
    docs = {tuple(file_document(f, PackConfig(seq_len=SEQ_LEN, seed=s, mix=cfg.mix)).pieces)
            for s in range(8)}
    assert len(docs) > 1  # FIM spans vary with the seed


def test_done_skips_and_force_repacks(stages):
    out, summary = pack(stages, "skip")
    mtime = (out / "train.bin").stat().st_mtime_ns
    again = run_pack(PackConfig(seq_len=32), stages["data"], stages["tok"], out)
    assert again == summary and (out / "train.bin").stat().st_mtime_ns == mtime
    forced = run_pack(PackConfig(seq_len=32, splits=("train",)), stages["data"], stages["tok"], out,
                      force=True)
    assert forced["seq_len"] == 32 and open_shard(out, "train").shape[1] == 32


def test_open_shard_errors(stages, tmp_path):
    with pytest.raises(ValueError, match="no DONE"):
        open_shard(tmp_path, "train")
    out, _ = pack(stages, "errors", splits=("train",))
    with pytest.raises(ValueError, match="'valid' was not packed"):
        open_shard(out, "valid")
    with open(out / "train.bin", "ab") as fh:
        fh.write(b"\0\0")
    with pytest.raises(ValueError, match="lightcoder pack --force"):
        open_shard(out, "train")


@pytest.mark.parametrize("kwargs, field", [
    ({"seq_len": 1}, "seq_len"), ({"sampling": "nope"}, "sampling"), ({"splits": ("train", "eval")}, "splits"),
    ({"splits": ()}, "splits"), ({"batch_files": 0}, "batch_files"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PackConfig(**kwargs)
