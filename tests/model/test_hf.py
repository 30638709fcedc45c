"""HF checkpoints: parity with transformers' LlamaForCausalLM, round trips, resolution, corrupt dirs."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lightcoder.model.config import get_preset
from lightcoder.model.hf import (
    CheckpointError, from_hf_name, load_checkpoint, resolve_checkpoint, save_checkpoint, to_hf_name,
)
from lightcoder.model.llama import Transformer


def make_model(**overrides) -> Transformer:
    # lc-tiny has GQA (4 query heads, 2 kv heads) and theta 256000; perturbed norms so they matter.
    model = Transformer(get_preset("lc-tiny", **overrides))
    model.init_weights(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = make_model(rope_theta=50000.0, norm_eps=1e-5)
    tok_dir = tmp_path_factory.mktemp("tok")
    (tok_dir / "tokenizer.json").write_text('{"fake": true}')
    (tok_dir / "tokenizer_config.json").write_text("{}")
    (tok_dir / "DONE").write_text("{}")
    path = save_checkpoint(model, model.cfg, tmp_path_factory.mktemp("ckpt") / "step_000010",
                           tokenizer_dir=tok_dir, extra={"run": {"lr": 3e-4}})
    return model, path


def test_transformers_loads_it_and_logits_match(saved):
    transformers = pytest.importorskip("transformers")
    model, path = saved
    hf = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert hf.config.num_key_value_heads == 2 and hf.config.rms_norm_eps == 1e-5
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_round_trip(saved):
    model, path = saved
    loaded, cfg = load_checkpoint(path)
    assert cfg == model.cfg and not loaded.training
    for name, p in model.state_dict().items():
        assert torch.equal(p, loaded.state_dict()[name])
    torch.testing.assert_close(loaded.rope_cos, model.rope_cos)
    assert json.loads((path / "lightcoder.json").read_text()) == {"run": {"lr": 3e-4}}
    assert (path / "tokenizer.json").read_text() == '{"fake": true}' and not (path / "DONE").exists()
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["rope_theta"] == 50000.0
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no tmp dirs left


def test_names_rename_both_ways():
    assert to_hf_name("layers.3.feed_forward.w1.weight") == "model.layers.3.mlp.gate_proj.weight"
    assert to_hf_name("output.weight") == "lm_head.weight"
    for name in make_model().state_dict():
        assert from_hf_name(to_hf_name(name)) == name
    assert from_hf_name("model.layers.0.self_attn.rotary_emb.inv_freq") is None


def test_save_replaces_an_existing_checkpoint_and_keeps_bf16(tmp_path):
    model = make_model()
    save_checkpoint(model, model.cfg, tmp_path / "ck")
    model = model.to(torch.bfloat16)
    save_checkpoint(model, model.cfg, tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded, _ = load_checkpoint(tmp_path / "ck")
    assert loaded.output.weight.dtype == torch.bfloat16 and loaded.rope_cos.dtype == torch.float32
    assert load_checkpoint(tmp_path / "ck", dtype=torch.float32)[0].output.weight.dtype == torch.float32
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_loads_sharded_and_tied_llama_dirs(tmp_path):
    model = make_model()
    ref = save_checkpoint(model, model.cfg, tmp_path / "ref")
    state = load_file(ref / "model.safetensors")
    names = sorted(state)
    (tmp_path / "sharded").mkdir()
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        file = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, tmp_path / "sharded" / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "sharded" / "config.json").write_text((ref / "config.json").read_text())
    loaded, _ = load_checkpoint(resolve_checkpoint(tmp_path / "sharded"))
    assert torch.equal(loaded.output.weight, model.output.weight)

    # Tied embeddings (lm_head absent) load as an untied copy.
    config = json.loads((ref / "config.json").read_text()) | {"tie_word_embeddings": True}
    (ref / "config.json").write_text(json.dumps(config))
    save_file({n: t for n, t in state.items() if n != "lm_head.weight"}, ref / "model.safetensors")
    loaded, _ = load_checkpoint(ref)
    assert torch.equal(loaded.output.weight, model.tok_embeddings.weight)


def test_resolve_checkpoint_picks_the_newest_complete_step(tmp_path):
    model = make_model()
    for step in (0, 20, 100):
        save_checkpoint(model, model.cfg, tmp_path / "run" / "ckpt" / f"step_{step:06d}")
    (tmp_path / "run" / "ckpt" / "step_000100" / "model.safetensors").unlink()  # an interrupted save
    newest = tmp_path / "run" / "ckpt" / "step_000020"
    assert resolve_checkpoint(tmp_path / "run") == newest
    assert resolve_checkpoint(tmp_path / "run" / "ckpt") == newest
    assert resolve_checkpoint(newest) == newest
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve_checkpoint(tmp_path / "nowhere")


def _corrupt_copy(tmp_path, damage):
    model = make_model()
    path = save_checkpoint(model, model.cfg, tmp_path / "ck")
    damage(path)
    return path


@pytest.mark.parametrize("damage, detail", [
    (lambda p: (p / "config.json").unlink(), "config.json is missing"),
    (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda p: (p / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:1000]), "cannot read"),
    (lambda p: (p / "config.json").write_text(
        (p / "config.json").read_text().replace('"intermediate_size": 192', '"intermediate_size": 128')), "has shape"),
    (lambda p: (p / "config.json").write_text(
        (p / "config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3')),
     "missing tensors"),
])
def test_corrupt_checkpoints_raise_a_clear_error(tmp_path, damage, detail):
    path = _corrupt_copy(tmp_path, damage)
    with pytest.raises(CheckpointError, match="incomplete or corrupt") as err:
        load_checkpoint(path)
    assert detail in str(err.value) and "resume from an earlier one" in str(err.value)


def test_missing_dir_and_unsupported_configs(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    path = _corrupt_copy(tmp_path, lambda p: None)
    config = json.loads((path / "config.json").read_text())
    for change, match in (({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "not a Llama"),
                          ({"attention_bias": True}, "attention_bias"),
                          ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "RoPE scaling")):
        (path / "config.json").write_text(json.dumps(config | change))
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(path)
    assert issubclass(CheckpointError, ValueError)
