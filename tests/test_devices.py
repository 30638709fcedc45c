"""Device selection (lightcoder.devices): one rule for train, serve, complete and eval, clear errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from lightcoder.devices import add_device_flag, check_device_name, model_id_suffix, resolve_device
from lightcoder.eval.config import EvalConfig


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has n CUDA devices (torch.device('cuda', i) needs none to be built)."""
    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return set_count


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu(gpus):
    gpus(0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 1)  # ranks wrap over the GPUs present
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")  # a torch.device passes through


def test_cuda_without_a_gpu_names_the_setting_and_the_fix(gpus):
    gpus(0)
    with pytest.raises(ValueError, match=r"eval\.device cuda: no CUDA device .* use --eval\.device cpu or auto"):
        resolve_device("cuda", setting="eval.device")
    gpus(1)
    with pytest.raises(ValueError, match=r"--device cuda:1: only 1 CUDA device"):
        resolve_device("cuda:1", setting="--device")


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_unknown_device_names_are_rejected_without_touching_torch(name):
    with pytest.raises(ValueError, match="must be one of"):
        check_device_name(name, "eval.device")
    with pytest.raises(ValueError, match=r"eval\.device must be one of"):
        EvalConfig(device=name)


def test_eval_config_takes_every_valid_name():
    for name in ("auto", "cpu", "cuda", "cuda:0", "cuda:3"):
        assert EvalConfig(device=name).device == name  # validated by name; resolved when the eval loads a model


def test_the_device_flag_resolves_as_it_parses(gpus):
    parser = argparse.ArgumentParser()
    add_device_flag(parser)
    gpus(0)
    assert parser.parse_args([]).device == torch.device("cpu")  # default auto
    assert parser.parse_args(["--device", "cpu"]).device == torch.device("cpu")
    gpus(1)
    assert parser.parse_args([]).device == torch.device("cuda", 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_complete_on_cuda_without_a_gpu_is_a_usage_error_naming_the_fix(tmp_path):
    prefix = tmp_path / "a.py"
    prefix.write_text("x = ")
    out = subprocess.run([sys.executable, "-m", "lightcoder", "complete", str(tmp_path / "no-run"),
                          "--prefix-file", str(prefix), "--device", "cuda"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--device cuda: no CUDA device" in out.stderr and "use --device cpu or auto" in out.stderr


def test_model_ids_tell_gpu_samples_from_cpu_ones():
    assert model_id_suffix(torch.device("cpu")) == ""  # the ids of existing CPU runs are unchanged
    assert model_id_suffix(torch.device("cuda", 0)) == model_id_suffix(torch.device("cuda", 1)) == "@cuda"
