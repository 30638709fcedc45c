"""Stage boundaries stay light: importing a reader or an area config loads no writer and no heavy library.

Each check imports one module in a fresh interpreter and lists what else got loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pyarrow", "tokenizers", "rapidfuzz", "torch")


def loaded_after(module: str) -> dict:
    """{"project": [...lightcoder modules], "heavy": [...HEAVY modules]} loaded by `import module`."""
    code = (f"import json, sys; import {module}; "
            f"print(json.dumps({{'project': sorted(m for m in sys.modules if m.split('.')[0] == 'lightcoder'), "
            f"'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module, allowed", [
    ("lightcoder.shards", {"lightcoder", "lightcoder.artifacts", "lightcoder.shards"}),
    ("lightcoder.eval.config", {"lightcoder", "lightcoder.eval", "lightcoder.eval.config"}),
    ("lightcoder.train.config", {"lightcoder", "lightcoder.train", "lightcoder.train.config"}),
])
def test_a_boundary_module_loads_only_itself(module, allowed):
    loaded = loaded_after(module)
    assert set(loaded["project"]) <= allowed, f"{module} pulls in {set(loaded['project']) - allowed}"
    assert loaded["heavy"] == []


def test_the_corpus_reader_does_not_load_the_curation_pipeline():
    loaded = loaded_after("lightcoder.data.records")
    assert "lightcoder.data.pipeline" not in loaded["project"]
    assert set(loaded["heavy"]) <= {"pyarrow"}  # Parquet is the corpus format

