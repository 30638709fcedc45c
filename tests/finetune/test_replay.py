"""Replay against forgetting: the base's own training files mixed into the fine-tune's train split."""

import pytest

from lightcoder.artifacts import mark_done
from lightcoder.config import ConfigError
from lightcoder.data.records import SourceFile, read_corpus, write_parquet
from lightcoder.finetune.config import SplitSettings
from lightcoder.finetune.data import run_split


def corpus(path, repo: str, count: int, split: str = "train"):
    files = [SourceFile(repo=repo, path=f"{repo}/m{i}.py", language="Python", split=split,
                        content=f"def f{i}(x):\n    return x + {i}\n" * (i + 1)) for i in range(count)]
    path.mkdir(parents=True)
    write_parquet(files, path / f"{split}-00000.parquet")
    mark_done(path, {})
    return files


def test_replay_fills_its_byte_budget_in_the_train_split_only(tmp_path):
    corpus(tmp_path / "user", "mine", 40)
    base = corpus(tmp_path / "base", "stdlib", 60)
    settings = SplitSettings(replay=str(tmp_path / "base"), replay_fraction=0.5)
    summary = run_split(settings, tmp_path / "user", tmp_path / "split")
    train = list(read_corpus(tmp_path / "split", "train"))
    replayed = [f for f in train if f.repo == "replay"]
    user_bytes = sum(len(f.content) for f in train if f.repo == "mine")
    replay_bytes = sum(len(f.content) for f in replayed)
    assert summary["replay"] == {"files": len(replayed), "bytes": replay_bytes} and replayed
    assert replay_bytes >= 0.5 * user_bytes > replay_bytes - max(len(f.content) for f in replayed)  # just enough
    assert {f.path.removeprefix("replay/stdlib/") for f in replayed} <= {f.path for f in base}
    for split in ("valid", "test"):
        assert all(f.repo == "mine" for f in read_corpus(tmp_path / "split", split))  # judged on the user's code


def test_no_replay_by_default_and_a_missing_corpus_names_the_fix(tmp_path):
    corpus(tmp_path / "user", "mine", 10)
    assert run_split(SplitSettings(), tmp_path / "user", tmp_path / "a")["replay"] == {"files": 0, "bytes": 0}
    with pytest.raises(ConfigError, match="split.replay .*nowhere.*replay_fraction 0"):
        run_split(SplitSettings(replay=str(tmp_path / "nowhere"), replay_fraction=0.5), tmp_path / "user",
                  tmp_path / "b")
    with pytest.raises(ValueError, match="needs split.replay"):
        SplitSettings(replay_fraction=0.5)
