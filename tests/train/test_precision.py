"""train.dtype auto: bf16 only where this device multiplies it fast (train/precision.py)."""

import math

import pytest
import torch

from lightcoder.train import precision
from lightcoder.train.config import TrainConfig
from lightcoder.train.precision import choose_dtype, cpu_bf16_speedup, cpu_has_native_bf16, resolve_dtype

CPU = torch.device("cpu")


@pytest.mark.parametrize("setting", ["bf16", "fp32"])
def test_a_dtype_that_is_set_is_kept(setting, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: pytest.fail("an explicit dtype needs no timing"))
    assert resolve_dtype(setting, CPU) == setting


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    with_bf16, without = tmp_path / "a", tmp_path / "b"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert cpu_has_native_bf16(with_bf16) and not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(tmp_path / "missing")  # not Linux: no flags to read, so it times instead


@pytest.mark.parametrize("native,speedup,expected", [
    (True, None, "bf16"),  # native bf16 units: no timing
    (False, 0.04, "fp32"),  # the AVX2 EPYC: bf16 25x slower
    (False, 1.05, "fp32"),  # within timing noise: fp32, the exact one
    (False, 1.9, "bf16"),
])
def test_auto_on_a_cpu_takes_bf16_only_where_it_is_faster(native, speedup, expected, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "cpu_bf16_speedup",
                        (lambda: speedup) if speedup is not None else (lambda: pytest.fail("timed needlessly")))
    dtype, why = choose_dtype("auto", CPU)
    assert dtype == expected and why


def test_the_timing_is_a_real_ratio_also_inside_no_grad_and_auto_is_the_default():
    cpu_bf16_speedup.cache_clear()
    with torch.no_grad():  # Muon asks from inside its optimizer step
        speedup = cpu_bf16_speedup()
    assert math.isfinite(speedup) and speedup > 0
    assert TrainConfig().dtype == "auto"
    with pytest.raises(ValueError, match="train.dtype must be one of"):
        TrainConfig(dtype="fp16")
