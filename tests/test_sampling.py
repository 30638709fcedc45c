"""Repository-level file ordering: path groups, shuffles, strategy draws; all pure and seeded."""

import random
from collections import Counter

import pytest

from lightcoder.data.records import SourceFile
from lightcoder.repo_order.strategies import STRATEGIES, choose_strategy, order_files

PATHS = ["pkg/__init__.py", "pkg/a.py", "pkg/sub/x.py", "pkg/b.py", "pkg/sub/y.py", "pkg/other/z.py",
         "pkg/sub/deep/w.py", "pkg/c.py"]


def files(paths=PATHS) -> list[SourceFile]:
    return [SourceFile(repo="pkg", path=p, language="Python", content=f"# {p}\n") for p in paths]


def directory(path: str) -> str:
    return path.rsplit("/", 1)[0]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_permutation_and_pure(strategy):
    fs = files()
    before = list(fs)
    out = order_files(fs, strategy, random.Random(0))
    assert sorted(f.path for f in out) == sorted(PATHS)
    assert fs == before  # input untouched
    assert out == order_files(fs, strategy, random.Random(0))  # same rng -> same order
    assert out == order_files(fs[::-1], strategy, random.Random(0))  # independent of input order


def test_path_groups_directories():
    for seed in range(20):
        out = [f.path for f in order_files(files(), "path", random.Random(seed))]
        dirs = [directory(p) for p in out]
        runs = [d for i, d in enumerate(dirs) if i == 0 or d != dirs[i - 1]]
        assert len(runs) == len(set(dirs))  # each directory is one contiguous run
        for d in set(dirs):
            group = [p for p in out if directory(p) == d]
            assert group == sorted(group)  # path order within a group


def test_path_directory_order_is_random():
    first_dirs = {directory(order_files(files(), "path", random.Random(s))[0].path) for s in range(30)}
    assert len(first_dirs) > 1


def test_random_shuffles():
    orders = {tuple(f.path for f in order_files(files(), "random", random.Random(s))) for s in range(10)}
    assert len(orders) > 5


def test_empty_and_unknown():
    assert order_files([], "path", random.Random(0)) == []
    with pytest.raises(ValueError, match="unknown sampling strategy 'tfidf'.*path"):
        order_files(files(), "tfidf", random.Random(0))


def test_choose_strategy():
    rng = random.Random(0)
    draws = Counter(choose_strategy({"path": 0.75, "random": 0.25}, rng) for _ in range(4000))
    assert 0.70 < draws["path"] / 4000 < 0.80
    assert choose_strategy({"path": 0.0, "random": 2.0}, random.Random(1)) == "random"
    a = [choose_strategy({"path": 1, "random": 1}, random.Random(7)) for _ in range(3)]
    assert len(set(a)) == 1  # same rng state -> same draw


@pytest.mark.parametrize("weights", [{}, {"path": 0.0}, {"path": -1.0, "random": 2.0}, {"bogus": 1.0}])
def test_choose_strategy_rejects(weights):
    with pytest.raises(ValueError):
        choose_strategy(weights, random.Random(0))
