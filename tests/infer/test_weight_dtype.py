"""The weights' dtype: half-precision weights read in fp32 on CPUs slow in them, kept elsewhere (infer/weight_dtype.py)."""

import pytest
import torch

from lightcoder.infer import weight_dtype
from lightcoder.train import precision
from lightcoder.infer.completer import Completer
from lightcoder.infer.weight_dtype import available_memory_bytes, choose_weight_dtype, describe_weights
from lightcoder.model.config import get_preset
from lightcoder.model.hf import save_checkpoint
from lightcoder.model.llama import Transformer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
GIB = 2**30


@pytest.fixture
def cpu(monkeypatch):
    """cpu(native=False, speedup=0.05): this CPU's bf16 flags and probe, as choose_weight_dtype sees them."""
    def set_cpu(native: bool = False, speedup: float = 0.05):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)
    return set_cpu


def test_fp32_weights_and_gpus_keep_their_dtype(cpu):
    cpu()
    assert choose_weight_dtype(torch.float32, CPU, 10**9, available_bytes=64 * GIB) == (torch.float32, "as stored")
    assert choose_weight_dtype(torch.bfloat16, CUDA, 10**9, available_bytes=64 * GIB) == (torch.bfloat16, "as stored")


def test_bf16_kept_where_the_cpu_is_fast_in_it(cpu):
    cpu(native=True, speedup=0.05)
    dtype, why = choose_weight_dtype(torch.bfloat16, CPU, 10**9, available_bytes=64 * GIB)
    assert dtype == torch.bfloat16 and "native" in why
    cpu(native=False, speedup=1.8)
    dtype, why = choose_weight_dtype(torch.bfloat16, CPU, 10**9, available_bytes=64 * GIB)
    assert dtype == torch.bfloat16 and "1.80x" in why


def test_bf16_read_in_fp32_where_slow_if_it_fits(cpu):
    cpu(native=False, speedup=0.05)
    dtype, why = choose_weight_dtype(torch.bfloat16, CPU, 10**9, available_bytes=64 * GIB)
    assert dtype == torch.float32 and "stored in bf16" in why and "0.05x" in why
    # 7B on a 24 GiB machine: 14 GB more than the bf16 copy does not fit in half of 20 GiB
    dtype, why = choose_weight_dtype(torch.bfloat16, CPU, 7 * 10**9, available_bytes=20 * GIB)
    assert dtype == torch.bfloat16 and "13.0 GiB more" in why and "20.0 GiB are available" in why



def test_upcast_not_held_back_where_memory_is_unknown(cpu, monkeypatch):
    cpu(native=False, speedup=0.05)
    monkeypatch.setattr(weight_dtype, "available_memory_bytes", lambda: None)  # no /proc/meminfo: other systems
    assert choose_weight_dtype(torch.bfloat16, CPU, 7 * 10**9)[0] == torch.float32


def test_fp16_upcast_on_cpu_without_timing(cpu, monkeypatch):
    def no_probe():
        raise AssertionError("fp16 needs no bf16 timing")
    monkeypatch.setattr(precision, "cpu_bf16_speedup", no_probe)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    dtype, why = choose_weight_dtype(torch.float16, CPU, 10**6, available_bytes=GIB)
    assert dtype == torch.float32 and "fp16" in why


def test_available_memory_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n")
    assert available_memory_bytes(meminfo) == 20_000_000 * 1024
    assert available_memory_bytes(tmp_path / "missing") is None
    meminfo.write_text("MemTotal: 1 kB\n")
    assert available_memory_bytes(meminfo) is None


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, make_tiny_run):
    """A tiny model saved in bf16, as released weights are, with its tokenizer."""
    return make_tiny_run(tmp_path_factory.mktemp("bf16_run"), torch.bfloat16)


def _complete(completer: Completer) -> str:
    return completer.complete("def wrap(text, width):\n    lines = ", "\n    return lines\n", path="w.py",
                              max_new_tokens=12, cache_weight=0.0).text


def test_load_reads_bf16_weights_in_fp32_on_a_slow_cpu(bf16_run, cpu):
    cpu(native=False, speedup=0.05)
    auto = Completer.load(bf16_run)
    params = {p.dtype for p in auto.model.parameters()}
    assert params == {torch.float32} and auto.model.rope_cos.dtype == torch.float32
    assert "stored in bf16" in auto.dtype_note and describe_weights(auto).startswith("float32 weights (")
    exact = Completer.load(bf16_run, dtype=torch.float32)  # the same weights, upcast while loading
    assert all(torch.equal(a, b) for a, b in zip(auto.model.parameters(), exact.model.parameters(), strict=True))
    assert _complete(auto) == _complete(exact)


def test_load_keeps_bf16_where_fast_or_asked(bf16_run, cpu):
    cpu(native=True)
    fast = Completer.load(bf16_run)
    assert {p.dtype for p in fast.model.parameters()} == {torch.bfloat16}
    assert fast.model.rope_cos.dtype == torch.float32  # the RoPE tables stay fp32 in a bf16 model
    cpu(native=False, speedup=0.05)
    stored = Completer.load(bf16_run, dtype=None)
    assert {p.dtype for p in stored.model.parameters()} == {torch.bfloat16}
    assert describe_weights(stored) == "bfloat16 weights"
    asked = Completer.load(bf16_run, dtype="bfloat16")
    assert {p.dtype for p in asked.model.parameters()} == {torch.bfloat16} and asked.dtype_note == "as stored"


def test_an_adapter_merges_into_a_bf16_base_read_in_fp32(bf16_run, cpu, tmp_path):
    """A LoRA adapter on a bf16 base: on a slow CPU the base is upcast first, so the merge happens in fp32."""
    pytest.importorskip("peft")
    from lightcoder.finetune.config import LoraSettings
    from lightcoder.finetune.deploy import load_finetuned
    from lightcoder.finetune.lora import add_lora, merged_model, save_adapter
    from lightcoder.model.hf import load_checkpoint

    base_dir = bf16_run / "ckpt" / "step_000000"
    peft_model = add_lora(load_checkpoint(base_dir, dtype=torch.float32)[0], LoraSettings(r=4, dropout=0.0))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # B starts at zero: give the adapter something to add
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    adapter = save_adapter(peft_model, LoraSettings(r=4, dropout=0.0), tmp_path / "adapter",
                           meta={"base": str(base_dir), "template": "aixcoder"})
    cpu(native=False, speedup=0.05)
    tuned = load_finetuned(adapter, dtype="auto")
    assert {p.dtype for p in tuned.model.parameters()} == {torch.float32} and "stored in bf16" in tuned.dtype_note
    expected = merged_model(load_checkpoint(base_dir, dtype=torch.float32)[0], adapter)
    assert all(torch.equal(a, b) for a, b in zip(tuned.model.parameters(), expected.parameters(), strict=True))
    served = Completer.load(adapter)
    assert served.dtype_note == tuned.dtype_note and _complete(served) == _complete(Completer(
        expected, served.tokenizer, served.model_cfg, template=served.template))
    as_stored = load_finetuned(adapter, dtype=None)  # merged in bf16: rounded, not the fp32 merge
    assert {p.dtype for p in as_stored.model.parameters()} == {torch.bfloat16}


def test_explicit_dtypes_cast_both_ways_and_bad_names_are_refused(bf16_run, cpu, tmp_path):
    cpu(native=True)
    up = Completer.load(bf16_run, dtype="float32")  # `lightcoder serve --dtype float32`: a string
    assert {p.dtype for p in up.model.parameters()} == {torch.float32} and up.dtype_note == "stored in bf16; as asked"
    model = Transformer(get_preset("lc-tiny", init_std=0.2))
    model.init_weights(0)
    fp32_ckpt = save_checkpoint(model, model.cfg, tmp_path / "fp32", tokenizer_dir=bf16_run / "tokenizer")
    down = Completer.load(fp32_ckpt, dtype="bfloat16")
    assert {p.dtype for p in down.model.parameters()} == {torch.bfloat16}
    assert down.model.rope_cos.dtype == down.model.rope_sin.dtype == torch.float32  # rebuilt after the cast
    assert Completer.load(fp32_ckpt).dtype_note == "as stored"
    for bad in ("bf16", "int8", "nn"):
        with pytest.raises(ValueError, match="expected auto, float32, bfloat16 or float16"):
            Completer.load(fp32_ckpt, dtype=bad)


def test_eval_ids_name_a_cast(bf16_run, cpu):
    """Samples decoded from upcast weights never share a model id with samples decoded as stored."""
    from lightcoder.infer.weight_dtype import weights_id_suffix

    cpu(native=False, speedup=0.05)
    auto = Completer.load(bf16_run)
    assert weights_id_suffix(auto.model, auto.dtype_note) == "@float32"
    stored = Completer.load(bf16_run, dtype=None)
    assert weights_id_suffix(stored.model, stored.dtype_note) == ""


def test_a_resumed_lora_run_keeps_its_base_dtype(bf16_run, cpu, tmp_path):
    """Fine-tuning's frozen base follows the same rule; a resumed run reuses the dtype it recorded, whatever
    the machine's probe or free memory says now."""
    pytest.importorskip("peft")
    from types import SimpleNamespace

    from lightcoder.finetune.config import FinetuneConfig
    from lightcoder.finetune.lora_loop import STATE_FILE, _saved_base_dtype, load_trainable

    base = SimpleNamespace(path=bf16_run / "ckpt" / "step_000000")
    cpu(native=False, speedup=0.05)
    fresh, dtype = load_trainable(base, FinetuneConfig(), CPU, _saved_base_dtype(None))
    assert dtype == "float32" and fresh.get_base_model().output.weight.dtype == torch.float32
    ckpt = tmp_path / "step_000002"
    ckpt.mkdir()
    torch.save({"step": 2, "base_dtype": "bfloat16"}, ckpt / STATE_FILE)  # recorded where bf16 was chosen
    resumed, dtype = load_trainable(base, FinetuneConfig(), CPU, _saved_base_dtype(ckpt))
    assert dtype == "bfloat16" and resumed.get_base_model().output.weight.dtype == torch.bfloat16
    torch.save({"step": 2}, ckpt / STATE_FILE)  # a checkpoint from before the dtype was recorded
    assert _saved_base_dtype(ckpt) == "auto"
