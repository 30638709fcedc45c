"""The run config: per-area config dataclasses composed into one `RunConfig`, dotted overrides, JSON dump.

Each area owns its dataclass in a light config module (DataConfig in data/config.py, PackConfig in
pack_config.py, TokenizerConfig in tokenizer/config.py, ModelConfig, TrainConfig and EvalConfig in
model/, train/ and eval/config.py): pure dataclasses and validation, so importing this module loads
no stage code and no heavy library (tests/test_light_imports.py). This module only composes them;
the generic parts live in overrides.py:

    cfg = RunConfig()                                        # every area's defaults
    apply_overrides(cfg, {"train.lr": "3e-4", "model.dim": "128"})   # typed, unknown keys rejected
    save_run_config(cfg, run_dir)                            # RUN/config.json
    cfg = load_run_config(run_dir)                           # strict: unknown keys are errors

The CLI turns `--train.lr 3e-4` into the override dict above. Model presets replace the whole
`model` section (`--model-preset lc-quickstart`); overrides then apply on top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lightcoder.artifacts import write_json_atomic  # also re-exported: stages.py imports it from here
from lightcoder.data.config import DataConfig
from lightcoder.eval.config import EvalConfig
from lightcoder.model.config import ModelConfig, get_preset
from lightcoder.overrides import (  # noqa: F401  re-exported: the CLI, stages and tests import them from here
    ConfigError, apply_overrides, config_from_dict, config_to_dict, parse_override_args,
)
from lightcoder.pack_config import PackConfig
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.train.config import TrainConfig

DEFAULT_MODEL_PRESET = "lc-quickstart"


@dataclass(kw_only=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    model_preset: str = DEFAULT_MODEL_PRESET  # the preset `model` was built from (for the record)
    model: ModelConfig = field(default_factory=lambda: get_preset(DEFAULT_MODEL_PRESET))
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ----------------------------------------------------------------------------- files


def save_run_config(cfg: RunConfig, run_dir: str | Path) -> Path:
    """Write RUN/config.json atomically."""
    path = Path(run_dir) / "config.json"
    write_json_atomic(path, config_to_dict(cfg))
    return path


def load_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: is {run_dir} a lightcoder run directory?") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
    return config_from_dict(RunConfig, values)


def run_eval_section(checkpoint: str | Path) -> dict:
    """The `eval` section of the lightcoder run that holds `checkpoint` (RUN or RUN/ckpt/step_N), read
    as JSON without validation; {} for anything else (an HF directory, a missing or unreadable file).
    The server and the fine-tune demo decode as the run's eval did (eval.frequency_penalty)."""
    for run_dir in (Path(checkpoint), Path(checkpoint).parent.parent):
        path = run_dir / "config.json"  # in a checkpoint dir, config.json is the HF model config: no "eval"
        try:
            section = json.loads(path.read_text()).get("eval") if path.is_file() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            section = None
        if isinstance(section, dict):
            return section
    return {}


def diff_configs(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (for 'this stage was built differently')."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += diff_configs(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return keys
