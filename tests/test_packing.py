"""Document-level packing (pack.mix.level "document", aiXcoder's whole-file FIM) on a tiny corpus:
exact windows, documents that decode back to the files, determinism, streams, repository balance.
Context-level packing has its own tests in tests/pack/test_context_pack.py."""

import json
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from lightcoder.data.config import DataConfig
from lightcoder.data.pipeline import run_data
from lightcoder.data.records import read_corpus
from lightcoder.fim.mix import FALLBACK_REASONS
from lightcoder.pack_config import MixConfig, PackConfig
from lightcoder.pack_stats import format_stats
from lightcoder.packing import _pack_split, file_document, order_split, run_pack
from lightcoder.shards import open_shard
from lightcoder.tokenizer import special_tokens as st
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.header import file_header
from lightcoder.tokenizer.tokenizer import Tokenizer
from lightcoder.tokenizer.train import run_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ("textwrap.py", "colorsys.py", "bisect.py", "shlex.py", "fnmatch.py", "glob.py", "keyword.py")
SEQ_LEN = 64
SPECIALS = ('"""Strings that look like special tokens."""\n\nBOS = "<s>"\nEOS = "</s>"\n'
            'SENTINELS = ["<AIX-SPAN-PRE>", "<AIX-SPAN-MIDDLE>", "<AIX-SPAN-POST>", "<pad>"]\n\n\n'
            'def wrap(text):\n    """Wrap text as a document."""\n    return BOS + text + EOS\n')


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pack")
    src = root / "src"
    shutil.copytree(STDLIB / "json", src / "json", ignore=shutil.ignore_patterns("__pycache__"))
    for name in MODULES:
        shutil.copy(STDLIB / name, src / name)
    # source text that spells special tokens must stay text: one <s> per document, nowhere else
    (src / "json" / "specials.py").write_text(SPECIALS)
    run_data(DataConfig(sources=[str(src)], valid_fraction=0.2, test_fraction=0.05), root / "data")
    run_tokenizer(TokenizerConfig(vocab_size=400), root / "data", root / "tok")
    return {"root": root, "data": root / "data", "tok": root / "tok"}


def doc_pack(**overrides) -> PackConfig:
    """A document-level PackConfig, every repository once (repo_temperature 1)."""
    overrides.setdefault("mix", MixConfig(level="document"))
    overrides.setdefault("repo_temperature", 1.0)
    return PackConfig(**overrides)


def ordered_files(stages, split: str, cfg: PackConfig) -> list:
    pairs = order_split(read_corpus(stages["data"], split), cfg, split)
    assert all(repeat == 0 for _, repeat in pairs)  # temperature 1: every file once
    return [f for f, _ in pairs]


def pack(stages, name: str, **overrides) -> tuple[Path, dict]:
    out = stages["root"] / name
    cfg = doc_pack(seq_len=SEQ_LEN, **overrides)
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
        files = ordered_files(stages, split, doc_pack(seq_len=SEQ_LEN))
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
    assert index["splits"]["train"]["chars_per_token"] > 1.5
    # the total is the splits' sum, and every file is stdlib Python that parses and has spans, so
    # SFIM never needs to fall back to random FIM here
    assert index["sfim_fallbacks"] == sum(info["sfim_fallbacks"] for info in index["splits"].values())
    assert index["sfim_fallbacks"] == 0, index["sfim_fallback_reasons"]
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
    cfg = doc_pack(seq_len=SEQ_LEN, mix=MixConfig(level="document", ntp_rate=0.0))
    f = files[0]
    assert file_document(f, cfg) == file_document(f, cfg)
    docs = {tuple(file_document(f, doc_pack(seq_len=SEQ_LEN, seed=s, mix=cfg.mix)).pieces)
            for s in range(8)}
    assert len(docs) > 1  # FIM spans vary with the seed


def test_done_skips_and_force_repacks(stages):
    out, summary = pack(stages, "skip")
    mtime = (out / "train.bin").stat().st_mtime_ns
    again = run_pack(doc_pack(seq_len=32), stages["data"], stages["tok"], out)
    assert again == summary and (out / "train.bin").stat().st_mtime_ns == mtime
    forced = run_pack(doc_pack(seq_len=32, splits=("train",)), stages["data"], stages["tok"], out,
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


def test_streams_partition_windows_at_repository_starts(stages):
    out, summary = pack(stages, "streams")
    tok = Tokenizer.load(stages["tok"])
    cfg = doc_pack(seq_len=SEQ_LEN)
    for split in ("train", "valid"):
        info = summary["splits"][split]
        files = ordered_files(stages, split, cfg)
        offsets, total, previous = [], 0, None
        for f in files:  # the stream offset of each repository's first token, recomputed here
            if f.repo != previous:
                offsets.append(total)
                previous = f.repo
            total += len(tok.encode_pieces(file_document(f, cfg).pieces))
        assert total == info["num_stream_tokens"]
        firsts = sorted({-(-o // SEQ_LEN) for o in offsets if -(-o // SEQ_LEN) < info["num_windows"]} | {0})
        assert [s[0] for s in info["streams"]] == firsts
        assert sum(n for _, n in info["streams"]) == info["num_windows"] == len(open_shard(out, split))
        assert all(a + n == b for (a, n), (b, _) in zip(info["streams"], info["streams"][1:]))
        assert info["num_streams"] == len(info["streams"]) <= info["num_repos"]
        assert sum(info["strategies"].values()) == info["num_repos"]
    assert set(summary["strategies"]) <= {"content", "path", "dependency", "random"}


def test_special_token_text_is_never_a_special_id(stages):
    files = list(read_corpus(stages["data"], "train")) + list(read_corpus(stages["data"], "valid"))
    special = [f for f in files if f.path.endswith("specials.py")]
    assert special, "the corpus stage dropped specials.py"
    tok = Tokenizer.load(stages["tok"])
    cfg = doc_pack(seq_len=SEQ_LEN, mix=MixConfig(level="document", ntp_rate=0.5))
    for seed in range(10):
        doc = file_document(special[0], doc_pack(seq_len=SEQ_LEN, seed=seed, mix=cfg.mix))
        ids = tok.encode_pieces(doc.pieces)
        assert [i for i in ids if i < len(st.SPECIAL_TOKENS)] == [
            st.SPECIAL_TOKENS.index(p) for p in doc.pieces if st.is_special(p)]
    # a tokenizer that parses special-token strings inside text is refused, naming the file
    tok.backend.encode_special_tokens = False
    with pytest.raises(ValueError, match="specials.py.*exactly one <s>"):
        _pack_split([(special[0], 0)], tok, cfg, stages["root"] / "bad.bin", np.dtype(np.uint16), "train", None)
    assert not (stages["root"] / "bad.bin").exists()


def test_jsonl_export_and_stats(stages):
    out, summary = pack(stages, "export", export_jsonl=True)
    cfg = doc_pack(seq_len=SEQ_LEN, export_jsonl=True)
    for split in ("train", "valid"):
        rows = [json.loads(line) for line in (out / f"{split}.documents.jsonl").read_text().splitlines()]
        files = ordered_files(stages, split, cfg)
        assert len(rows) == len(files) == summary["splits"][split]["num_documents"]
        for row, f in zip(rows, files):
            doc = file_document(f, cfg)
            assert row["text"] == "".join(doc.pieces) and row["path"] == f.path and row["repo"] == f.repo
            assert (row["objective"], row["order"], row["node_type"]) == (doc.objective, doc.order, doc.node_type)
            assert row["text"].startswith(st.BOS) and row["text"].endswith(st.EOS)
    langs = summary["languages"]
    assert set(langs) == {"Python"} and langs["Python"]["sfim"] > 0
    assert sum(summary["node_types"]["Python"].values()) == langs["Python"]["sfim"]
    text = format_stats(summary)
    assert "split train" in text and "objectives" in text and "Python" in text and "sfim" in text
    assert summary["splits"]["train"]["text_pieces_with_special_strings"] + \
        summary["splits"]["valid"]["text_pieces_with_special_strings"] > 0  # specials.py


@pytest.mark.parametrize("kwargs, field", [
    ({"seq_len": 1}, "seq_len"), ({"sampling": "nope"}, "sampling"), ({"splits": ("train", "eval")}, "splits"),
    ({"sampling_weights": {"path": -1}}, "sampling_weights"), ({"sampling_weights": {"bfs": 1}}, "sampling_weights"),
    ({"splits": ()}, "splits"), ({"batch_files": 0}, "batch_files"), ({"repo_temperature": 1.5}, "repo_temperature"),
    ({"max_repo_repeats": 0.5}, "max_repo_repeats"), ({"workers": -1}, "workers"),
    ({"seq_len": 64, "mix": MixConfig(max_middle_tokens=63)}, "max_middle_tokens"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        doc_pack(**kwargs)


def test_pack_stats_command(stages, tmp_path, capsys):
    from lightcoder.cli import main

    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(stages["data"], run / "data")
    shutil.copytree(stages["tok"], run / "tokenizer")
    assert main(["pack", "--out", str(run), "--pack.seq_len", "64", "--pack.mix.level", "document", "--stats"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "pack: " in captured.err and "documents (ntp" in captured.err  # the stage's one-line summary
    assert "split train:" in out and "objectives" in out and "file order" in out and "Python" in out
    index = json.loads((run / "shards" / "index.json").read_text())
    assert index["splits"]["train"]["streams"][0][0] == 0
