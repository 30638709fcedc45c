"""`lightcoder export`: an HF dir transformers loads with identical logits; a GGUF with FIM metadata."""

import pytest
import torch

from lightcoder.serve.export_command import gguf_name, main, rope_interleave


def test_rope_interleave_pairs_the_halves_of_each_head():
    w = torch.arange(8.0).repeat_interleave(3).view(8, 3)  # 2 heads x head_dim 4, row r = value r
    out = rope_interleave(w, n_heads=2)[:, 0].tolist()
    assert out == [0, 2, 1, 3, 4, 6, 5, 7]
    assert gguf_name("layers.3.attention.wq.weight") == "blk.3.attn_q.weight"
    assert gguf_name("tok_embeddings.weight") == "token_embd.weight"


def test_hf_export_loads_in_transformers(tiny_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    from lightcoder.model.hf import load_checkpoint, resolve_checkpoint

    assert main([str(tiny_run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert not (tmp_path / "hf" / "train_state.pt").exists()
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours, _ = load_checkpoint(resolve_checkpoint(tiny_run))
    x = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x), atol=1e-4, rtol=1e-4)


def test_gguf_export_carries_fim_tokens(tiny_run, tmp_path):
    gguf = pytest.importorskip("gguf")
    out = tmp_path / "m.gguf"
    assert main([str(tiny_run), "--format", "gguf", "--out", str(out)]) == 0
    reader = gguf.GGUFReader(str(out))
    fields = {name: f for name, f in reader.fields.items()}

    def value(key):
        f = fields[key]
        return f.parts[f.data[0]].tolist()[0]

    assert value("tokenizer.ggml.fim_pre_token_id") == 3
    assert value("tokenizer.ggml.fim_mid_token_id") == 4
    assert value("tokenizer.ggml.fim_suf_token_id") == 5
    assert value("llama.block_count") == 2
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "blk.1.attn_q.weight", "output.weight"} <= names


def test_hf_export_refuses_a_truncated_checkpoint_and_its_own_directory(tiny_run, tmp_path, capsys):
    import shutil

    from lightcoder.cli import main as lightcoder
    from lightcoder.model.hf import resolve_checkpoint

    broken = tmp_path / "broken"
    shutil.copytree(resolve_checkpoint(tiny_run), broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert lightcoder(["export", str(broken), "--format", "hf", "--out", str(tmp_path / "hf")]) == 1
    assert "incomplete or corrupt" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    ckpt = resolve_checkpoint(tiny_run)
    assert lightcoder(["export", str(ckpt), "--format", "hf", "--out", str(ckpt)]) == 1
    assert "holds the checkpoint or a run" in capsys.readouterr().err
    assert lightcoder(["export", str(tiny_run), "--format", "hf", "--out", str(tiny_run)]) == 1  # the run's own dir
    assert "holds the checkpoint or a run" in capsys.readouterr().err
