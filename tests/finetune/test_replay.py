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


def test_the_stdlib_forgetting_set_leaves_out_files_the_fine_tune_trains_on(tmp_path):
    """A quickstart base's replayed stdlib files are in the train split: the general (forgetting) tasks are
    cut from other stdlib files, and changed eval settings build the task sets again."""
    from lightcoder.finetune.config import FinetuneEvalSettings
    from lightcoder.finetune.evaluate import stdlib_files, task_sets, trained_keys

    sample = stdlib_files(0)
    replayed = sample[:5]  # the first files of the fixed sample, replayed into the train split
    split = tmp_path / "split"
    split.mkdir()
    curated = [f.content + ("# <EMAIL>\n" if i == 0 else "") for i, f in enumerate(replayed)]  # PII redacted
    write_parquet([SourceFile(repo="replay", path=f"replay/{f.path}", language="Python", split="train",
                              content=text) for f, text in zip(replayed, curated)], split / "train-00000.parquet")
    write_parquet(corpus(tmp_path / "user", "mine", 12, split="test"), split / "test-00000.parquet")
    mark_done(split, {})
    settings = FinetuneEvalSettings(per_type=2, general_per_type=2)
    kept = stdlib_files(0, trained_keys(replayed))
    assert len(kept) == len(sample) and not {f.path for f in replayed} & {f.path for f in kept}
    sets = task_sets(settings, split, tmp_path / "eval")
    assert sets["general"] and not {t.path for t in sets["general"]} & {f.path for f in replayed}
    again = task_sets(FinetuneEvalSettings(per_type=1, general_per_type=2), split, tmp_path / "eval")
    assert len(again["heldout"]) < len(sets["heldout"])  # per_type changed: rebuilt, not the cached file
