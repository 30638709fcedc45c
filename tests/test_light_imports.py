"""Stage boundaries stay light: importing a reader or an area config loads no writer and no heavy library.

Each check imports one module in a fresh interpreter and lists what else got loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pyarrow", "tokenizers", "rapidfuzz", "torch")
# The light tables the configs validate against: the language table and the special-token list.
LIGHT_TABLES = {"lightcoder.languages", "lightcoder.tokenizer.special_tokens"}
# The decoding penalties' validator (infer/penalties.py, no torch at import), shared by the eval configs.
PENALTIES = {"lightcoder.infer", "lightcoder.infer.penalties"}
# The device-name validator (devices.py loads torch only when a device is resolved), for eval.device.
DEVICES = {"lightcoder.devices"}
DATA_CONFIG = {"lightcoder", "lightcoder.data", "lightcoder.data.config", "lightcoder.languages"}
# Every module `import lightcoder.config` may load: the area configs, the override and file helpers.
RUN_CONFIG = DATA_CONFIG | LIGHT_TABLES | {
    "lightcoder.config", "lightcoder.overrides", "lightcoder.artifacts", "lightcoder.pack_config",
    "lightcoder.tokenizer", "lightcoder.tokenizer.config", "lightcoder.model", "lightcoder.model.config",
    "lightcoder.train", "lightcoder.train.config", "lightcoder.eval", "lightcoder.eval.config",
} | PENALTIES | DEVICES
# Modules of any kind (standard library included) `import lightcoder.config` adds: about 85 today;
# the curation pipeline, the packer or numpy would add hundreds.
RUN_CONFIG_MAX_MODULES = 120


def loaded_after(module: str) -> dict:
    """{"project": [...lightcoder modules], "heavy": [...HEAVY modules], "count": modules added}
    after `import module`."""
    code = (f"import json, sys; before = set(sys.modules); import {module}; "
            f"print(json.dumps({{'project': sorted(m for m in sys.modules if m.split('.')[0] == 'lightcoder'), "
            f"'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules), "
            f"'count': len(set(sys.modules) - before)}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module, allowed", [
    ("lightcoder.shards", {"lightcoder", "lightcoder.artifacts", "lightcoder.shards"}),
    ("lightcoder.eval.config", {"lightcoder", "lightcoder.eval", "lightcoder.eval.config"} | PENALTIES | DEVICES),
    ("lightcoder.train.config", {"lightcoder", "lightcoder.train", "lightcoder.train.config"}),
    ("lightcoder.model.config", {"lightcoder", "lightcoder.model", "lightcoder.model.config"}),
    ("lightcoder.data.config", DATA_CONFIG),
    ("lightcoder.pack_config", DATA_CONFIG | {"lightcoder.pack_config"}),
    ("lightcoder.tokenizer.config", {"lightcoder", "lightcoder.tokenizer", "lightcoder.tokenizer.config",
                                     "lightcoder.tokenizer.special_tokens"}),
    ("lightcoder.finetune.config", DATA_CONFIG | {"lightcoder.pack_config", "lightcoder.finetune",
                                                  "lightcoder.finetune.config", "lightcoder.train",
                                                  "lightcoder.train.config"} | PENALTIES),
])
def test_a_boundary_module_loads_only_itself(module, allowed):
    loaded = loaded_after(module)
    assert set(loaded["project"]) <= allowed, f"{module} pulls in {set(loaded['project']) - allowed}"
    assert loaded["heavy"] == []


def test_the_run_config_loads_only_config_modules():
    loaded = loaded_after("lightcoder.config")
    assert loaded["heavy"] == []
    assert set(loaded["project"]) <= RUN_CONFIG, f"lightcoder.config pulls in {set(loaded['project']) - RUN_CONFIG}"
    assert loaded["count"] <= RUN_CONFIG_MAX_MODULES, f"import lightcoder.config loads {loaded['count']} modules"


def test_the_corpus_reader_does_not_load_the_curation_pipeline():
    loaded = loaded_after("lightcoder.data.records")
    assert "lightcoder.data.pipeline" not in loaded["project"]
    assert set(loaded["heavy"]) <= {"pyarrow"}  # Parquet is the corpus format
