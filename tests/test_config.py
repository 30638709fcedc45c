import json

import pytest

from lightcoder.config import (
    ConfigError, RunConfig, apply_overrides, config_from_dict, config_to_dict, diff_configs,
    load_run_config, parse_override_args, save_run_config,
)


def test_overrides_are_typed_by_the_field_annotation():
    cfg = RunConfig()
    apply_overrides(cfg, parse_override_args([
        "--train.lr", "3e-4", "--model.n_layers=3", "--data.syntax_check", "false",
        "--pack.mix.ntp_rate", "0.4", "--data.languages", "Python,Java", "--train.betas", "0.9,0.99"]))
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.n_layers == 3 and isinstance(cfg.model.n_layers, int)
    assert cfg.data.syntax_check is False
    assert cfg.pack.mix.ntp_rate == pytest.approx(0.4)
    assert cfg.data.languages == ["Python", "Java"]
    assert tuple(cfg.train.betas) == (0.9, 0.99)


@pytest.mark.parametrize("key", ["train.lrr", "trian.lr", "model", "pack.mix.nope", "x.y.z"])
def test_unknown_keys_are_errors_that_name_the_key(key):
    with pytest.raises(ConfigError, match=key.split(".")[-1] if key != "model" else "model"):
        apply_overrides(RunConfig(), {key: "1"})


def test_unknown_key_suggests_the_close_match():
    with pytest.raises(ConfigError, match="did you mean --train.lr"):
        apply_overrides(RunConfig(), {"train.lrr": "1"})


def test_bad_values_are_rejected_with_the_field_name():
    with pytest.raises(ConfigError, match="train.batch_size"):
        apply_overrides(RunConfig(), {"train.batch_size": "eight"})
    with pytest.raises(ConfigError, match="n_layers"):
        apply_overrides(RunConfig(), {"model.n_layers": "2.5"})
    with pytest.raises(ConfigError):  # validation in the area's __post_init__ runs again
        apply_overrides(RunConfig(), {"pack.mix.ntp_rate": "1.5"})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_numbers_are_refused_before_anything_is_written(value):
    with pytest.raises(ConfigError, match="train.lr: expected a finite number"):
        apply_overrides(RunConfig(), {"train.lr": value})


def test_a_stage_that_built_nothing_does_not_hold_its_first_config(tmp_path):
    """A first try that failed before writing output (a bad setting) must not refuse the fixed rerun;
    once the stage has output, a changed config is refused as before."""
    from lightcoder.stages import check_stage, record_stage

    first, fixed = RunConfig(), RunConfig()
    apply_overrides(fixed, {"train.lr": str(first.train.lr * 2)})
    record_stage(first, tmp_path, "ckpt", new_build=True)
    (tmp_path / "ckpt").mkdir()
    check_stage(fixed, tmp_path, "ckpt", force=False)  # empty ckpt/: nothing to keep consistent
    (tmp_path / "ckpt" / "step_000010").mkdir()
    with pytest.raises(ConfigError, match="train.lr"):
        check_stage(fixed, tmp_path, "ckpt", force=False)


def test_a_run_recorded_before_dtype_auto_still_continues(tmp_path):
    """Runs recorded train.dtype "bf16" (the old default); "auto" now, which resumes in the checkpoint's dtype."""
    import json

    from lightcoder.stages import check_stage, record_stage

    record_stage(RunConfig(), tmp_path, "ckpt", new_build=True)
    stages = json.loads((tmp_path / "stages.json").read_text())
    stages["ckpt"]["config"]["train"]["dtype"] = "bf16"  # as the stage record was written then
    (tmp_path / "stages.json").write_text(json.dumps(stages))
    (tmp_path / "ckpt" / "step_000010").mkdir(parents=True)
    check_stage(RunConfig(), tmp_path, "ckpt", force=False)  # no ConfigError
    stages["ckpt"]["config"]["train"]["lr"] = 1.0  # other settings are still compared
    (tmp_path / "stages.json").write_text(json.dumps(stages))
    with pytest.raises(ConfigError, match="train.lr"):
        check_stage(RunConfig(), tmp_path, "ckpt", force=False)


def test_override_args_need_dotted_keys_and_values():
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_override_args(["--lr", "1"])
    with pytest.raises(ConfigError, match="needs a value"):
        parse_override_args(["--train.lr"])


def test_save_load_round_trip(tmp_path):
    cfg = RunConfig()
    apply_overrides(cfg, {"train.lr": "0.01", "data.sources": "/a,/b"})
    save_run_config(cfg, tmp_path)
    back = load_run_config(tmp_path)
    assert config_to_dict(back) == config_to_dict(cfg)


def test_loading_a_config_with_an_unknown_key_fails(tmp_path):
    values = config_to_dict(RunConfig())
    values["train"]["learning_rate"] = 1.0
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(ConfigError, match="train.learning_rate"):
        load_run_config(tmp_path)


def test_missing_and_corrupt_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path)
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_run_config(tmp_path)


def test_from_dict_with_partial_sections_keeps_defaults():
    cfg = config_from_dict(RunConfig, {"train": {"lr": 0.5}})
    assert cfg.train.lr == 0.5 and cfg.model == RunConfig().model


def test_diff_configs_lists_changed_dotted_keys():
    assert diff_configs({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == ["a.c: 2 -> 3"]
