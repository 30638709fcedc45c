"""Determinism across worker counts and shard sizes, the datatrove engine, and the report."""

import json
import random
from pathlib import Path

import pytest

from lightcoder.data.config import DataConfig
from lightcoder.data.pipeline import run_data
from lightcoder.data.records import read_corpus
from lightcoder.data.report_command import main as report_main

JSON_DIR = Path(json.__file__).parent


def _make_corpus(root: Path) -> Path:
    """Four copies of the json package with small seeded edits (near duplicates), plus unique
    modules; the manifest gives "zz_star" the most stars, so its copies must win."""
    rng = random.Random(0)
    for repo in ("aa_first", "mm_mid", "zz_star", "qq_the_other"):
        for src in sorted(JSON_DIR.glob("*.py")):
            lines = src.read_text().splitlines(keepends=True)
            for _ in range(2):  # two edited lines per copy: Jaccard stays well above 0.7
                i = rng.randrange(len(lines))
                lines[i] = lines[i].rstrip("\n") + f"  # edit {rng.random():.6f}\n"
            (root / repo).mkdir(parents=True, exist_ok=True)
            (root / repo / src.name).write_text("".join(lines))
        (root / repo / "own.py").write_text(f"def own_{repo}(x):\n    return '{repo}' * x\n")
    return root


def _kept(out: Path) -> list[tuple[str, str]]:
    return sorted((f.path, f.content) for s in ("train", "valid", "test")
                  for f in read_corpus(out, s))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("det")
    root = _make_corpus(base / "corpus")
    manifest = base / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps({"repo": r, "stars": s}) for r, s in
                                  [("aa_first", 1), ("mm_mid", 5), ("zz_star", 900),
                                   ("qq_the_other", 3)]))
    return root, manifest


def _cfg(corpus, **kw):
    root, manifest = corpus
    return DataConfig(sources=[str(root)], manifest=str(manifest), valid_fraction=0.0,
                      test_fraction=0.0, **kw)


def test_near_dedup_is_deterministic_and_keeps_the_best_ranked_copy(corpus, tmp_path):
    one = run_data(_cfg(corpus, workers=1, shard_bytes=10_000_000), tmp_path / "w1")
    two = run_data(_cfg(corpus, workers=2, shard_bytes=30_000), tmp_path / "w2")
    assert _kept(tmp_path / "w1") == _kept(tmp_path / "w2")
    kept_paths = [p for p, _ in _kept(tmp_path / "w1")]
    json_copies = [p for p in kept_paths if not p.endswith("own.py")]
    assert json_copies and all(p.startswith("zz_star/") for p in json_copies)
    assert sum(p.endswith("own.py") for p in kept_paths) == 4
    assert one["stages"] == two["stages"]
    clusters = [json.loads(l) for l in (tmp_path / "w2" / "clusters.jsonl").read_text().splitlines()]
    assert clusters and all(c["kept"].startswith("zz_star/") and c["size"] == 4 for c in clusters)


def test_datatrove_engine_gives_the_same_corpus(corpus, tmp_path):
    pytest.importorskip("datatrove")
    run_data(_cfg(corpus, workers=1, shard_bytes=30_000), tmp_path / "local")
    stats = run_data(_cfg(corpus, workers=2, shard_bytes=30_000, engine="datatrove"),
                     tmp_path / "dt")
    assert _kept(tmp_path / "dt") == _kept(tmp_path / "local")
    assert stats["kept"]["files"] == len(_kept(tmp_path / "local"))


def test_data_report_writes_markdown_html_and_plots(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_data(_cfg(corpus, workers=1), run_dir / "data")
    assert report_main(["--out", str(run_dir)]) == 0
    md = (run_dir / "data" / "report.md").read_text()
    for section in ("## Funnel", "## Languages", "near_duplicate", "Largest near-duplicate",
                    "zz_star/", "plots/funnel.png"):
        assert section in md
    html = (run_dir / "data" / "report.html").read_text()
    assert "<table>" in html and "<img src='plots/funnel.png'" in html
    for name in ("funnel", "reasons", "languages", "sizes"):
        assert (run_dir / "data" / "plots" / f"{name}.png").stat().st_size > 1000
    assert report_main(["--out", str(tmp_path / "nowhere")]) == 1
    assert "lightcoder data" in capsys.readouterr().err
    # the report files do not stop a rebuild of the stage
    run_data(_cfg(corpus, workers=1), run_dir / "data", force=True)
