"""LoRA through peft on a tiny Llama: it learns, its files are peft's (transformers + peft load them and
give our logits), and merged weights give the logits of base + adapter."""

import pytest
import torch

from lightcoder.finetune.config import LoraSettings
from lightcoder.finetune.lora import (
    AdapterMismatchError, add_lora, load_adapter, merged_model, quantize_4bit, save_adapter, to_hf_key,
    trainable_parameters,
)
from lightcoder.finetune.lora_loop import lora_step
from lightcoder.model.hf import load_checkpoint, save_checkpoint


peft = pytest.importorskip("peft")


def tiny_model(vocab_size: int, seed: int = 0, **overrides):
    from lightcoder.model.config import get_preset
    from lightcoder.model.llama import Transformer

    model = Transformer(get_preset("lc-tiny", vocab_size=vocab_size, **overrides))
    model.init_weights(seed)
    return model

TOKENS = torch.randint(3, 500, (4, 33), generator=torch.Generator().manual_seed(0))


def trained_adapter(model, steps: int = 25, settings: LoraSettings = LoraSettings(r=4, dropout=0.0),
                    optimizer_name: str = "adamw"):
    """A LoRA-wrapped model after `steps` optimizer steps on one batch; returns (peft model, losses)."""
    from lightcoder.train.config import TrainConfig
    from lightcoder.train.optim import build_optimizer

    peft_model = add_lora(model, settings)
    optimizer = build_optimizer(peft_model, TrainConfig(lr=1e-2, min_lr=1e-3, weight_decay=0.0,
                                                        optimizer=optimizer_name))
    inputs, targets = TOKENS[:, :-1], TOKENS[:, 1:]
    nullctx = torch.autocast("cpu", enabled=False)
    losses = [float(lora_step(peft_model, optimizer, inputs, targets, autocast=nullctx, grad_clip=1.0,
                              grad_accum=1, doc_start=1)[0]) for _ in range(steps)]
    return peft_model.eval(), losses


@pytest.mark.parametrize("optimizer_name", ["adamw", "muon"])  # Muon orthogonalizes each adapter matrix
def test_lora_trains_only_the_adapter_and_the_loss_goes_down(optimizer_name):
    model = tiny_model(512)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model, losses = trained_adapter(model, optimizer_name=optimizer_name)
    # one fixed batch of random tokens: 25 steps take it from ln(512) = 6.24 to ~5.4 nats
    assert losses[-1] < losses[0] - 0.5, losses
    trainable, total = trainable_parameters(peft_model)
    cfg = model.cfg
    per_layer = 4 * (2 * (cfg.dim + cfg.dim) + 2 * (cfg.dim + cfg.n_kv_heads * cfg.head_dim)
                     + 3 * (cfg.dim + cfg.ffn_dim))  # r (in + out) per adapted projection
    assert trainable == cfg.n_layers * per_layer
    base_now = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                for k, v in peft_model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(base_now[k], v) for k, v in before.items())  # the base stayed frozen


def test_adapter_round_trips_through_peft_and_transformers(tmp_path):
    """Our adapter files load with transformers' LlamaForCausalLM + peft's PeftModel.from_pretrained and
    give our base + adapter logits: the format is peft's, the names are HF's."""
    transformers = pytest.importorskip("transformers")
    model = tiny_model(512)
    base_dir = save_checkpoint(model, model.cfg, tmp_path / "base")
    peft_model, _ = trained_adapter(model)
    ours = peft_model(TOKENS).detach()
    adapter = save_adapter(peft_model, LoraSettings(r=4, dropout=0.0), tmp_path / "adapter",
                           meta={"base": str(base_dir)})
    import json

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and sorted(config["target_modules"]) == sorted(LoraSettings().targets)
    hf = transformers.AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    hf_peft = peft.PeftModel.from_pretrained(hf, adapter).eval()
    with torch.no_grad():
        theirs = hf_peft(input_ids=TOKENS).logits
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    # and back: our loader gives the same model
    again = load_adapter(load_checkpoint(base_dir)[0], adapter)
    assert torch.allclose(again(TOKENS), ours, atol=1e-6)


def test_merged_weights_equal_base_plus_adapter(tmp_path):
    model = tiny_model(512)
    peft_model, _ = trained_adapter(model)
    unmerged = peft_model(TOKENS).detach()
    adapter = save_adapter(peft_model, LoraSettings(r=4, dropout=0.0), tmp_path / "a", meta={})
    merged = merged_model(tiny_model(512), adapter)
    assert not any("lora" in name for name, _ in merged.named_parameters())  # an ordinary Transformer again
    delta = (merged.layers[0].attention.wq.weight - tiny_model(512).layers[0].attention.wq.weight).abs().max()
    assert delta > 1e-4  # the adapter did change the weights
    assert torch.allclose(merged(TOKENS), unmerged, atol=1e-5, rtol=1e-5)


def test_adapter_names_are_hf_llama_names():
    assert to_hf_key("base_model.model.layers.3.feed_forward.w1.lora_A.weight") == \
        "base_model.model.model.layers.3.mlp.gate_proj.lora_A.weight"


def test_an_adapter_of_another_base_is_refused(tmp_path):
    peft_model, _ = trained_adapter(tiny_model(512), steps=1)
    adapter = save_adapter(peft_model, LoraSettings(r=4, dropout=0.0), tmp_path / "a", meta={})
    with pytest.raises(AdapterMismatchError, match="another base model"):
        load_adapter(tiny_model(512, dim=96, n_heads=4, n_kv_heads=2), adapter)
    with pytest.raises(AdapterMismatchError, match="has no place"):
        load_adapter(tiny_model(512, n_layers=1), adapter)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_on_cpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        quantize_4bit(tiny_model(512), torch.device("cpu"))
