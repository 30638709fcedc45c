"""Repository balance (pack.repo_temperature): shares of bytes follow size ** t, the total is kept,
subsets keep stream order, and a pack's largest repository shrinks to the share the temperature gives."""

from __future__ import annotations

import random

import pytest

from lightcoder.data.records import SourceFile
from lightcoder.pack_config import PackConfig
from lightcoder.packing import order_split
from lightcoder.repo_balance import balance_repo, file_bytes, repo_multipliers, share_summary


def repo_files(repo: str, sizes: list[int]) -> list[SourceFile]:
    return [SourceFile(repo=repo, path=f"{repo}/m{i}.py", language="Python", content=f"x{i} = 1\n" + "#" * n)
            for i, n in enumerate(sizes)]


def test_multipliers_give_shares_proportional_to_size_to_the_temperature():
    sizes = {"big": 9000, "mid": 900, "small": 100}
    assert repo_multipliers(sizes, 1.0, 4.0) == pytest.approx({"big": 1.0, "mid": 1.0, "small": 1.0})
    m = repo_multipliers(sizes, 0.5, 100.0)
    balanced = {r: sizes[r] * m[r] for r in sizes}
    assert sum(balanced.values()) == pytest.approx(sum(sizes.values()))  # the total is kept
    shares = {r: balanced[r] / sum(balanced.values()) for r in sizes}
    assert shares["big"] / shares["small"] == pytest.approx((9000 / 100) ** 0.5)
    capped = repo_multipliers(sizes, 0.0, 4.0)
    assert capped["small"] == 4.0 and capped["big"] < 1.0  # equal shares, but at most 4 repeats
    with pytest.raises(ValueError, match="repo_temperature"):
        repo_multipliers(sizes, 1.5, 4.0)


@pytest.mark.parametrize("multiplier", [0.3, 1.0, 2.0, 2.6])
def test_balance_repo_repeats_whole_passes_then_an_ordered_subset(multiplier):
    files = repo_files("r", [random.Random(i).randint(50, 500) for i in range(40)])
    pairs = balance_repo(files, multiplier, random.Random(0))
    whole = int(multiplier)
    assert [f for f, r in pairs if r < whole] == files * whole  # full passes in stream order
    rest = [f for f, r in pairs if r == whole]
    assert rest == [f for f in files if f in rest]  # the partial pass keeps the order
    target = (multiplier - whole) * sum(file_bytes(f) for f in files)
    got = sum(file_bytes(f) for f in rest)
    assert target <= got < target + max(file_bytes(f) for f in files) or (target == 0 and got == 0)


def test_order_split_shrinks_the_largest_repository():
    files = repo_files("test", [4000] * 60) + [f for i in range(12) for f in repo_files(f"lib{i}", [300] * 5)]
    before = order_split(files, PackConfig(repo_temperature=1.0), "train")
    after = order_split(files, PackConfig(repo_temperature=0.3), "train")
    assert sorted((f.path, r) for f, r in before) == sorted((f.path, 0) for f in files)

    def largest_share(pairs):
        sizes: dict[str, int] = {}
        for f, _ in pairs:
            sizes[f.repo] = sizes.get(f.repo, 0) + file_bytes(f)
        return share_summary(sizes)["top"][0]

    assert largest_share(before)[0] == "test" and largest_share(before)[1] > 0.9
    assert largest_share(after)[1] < 0.5
    assert any(r > 0 for _, r in after)  # small repositories repeat
    assert order_split(files, PackConfig(repo_temperature=0.3), "train") == after  # deterministic
