"""The CUDA code paths: bf16 training and exact resume on one GPU, fused loss and flash attention on the
GPU, FSDP2 over NCCL on two GPUs. Every test skips cleanly without CUDA (the CPU paths are tested
elsewhere)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from lightcoder.model.config import get_preset

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")


@cuda
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_bf16_training_and_exact_resume_on_one_gpu(tmp_path, optimizer):
    from test_train_loop import FAST, MODEL, N, write_shards  # this directory is on sys.path under pytest

    from lightcoder.train.config import TrainConfig
    from lightcoder.train.loop import train

    shards = write_shards(tmp_path / "shards")

    def run(out, steps):
        cfg = TrainConfig(**{**FAST, "max_steps": steps, "device": "cuda", "dtype": "bf16", "optimizer": optimizer})
        return train(cfg, MODEL, shards_dir=shards, tokenizer_dir=None, out_dir=out)

    straight = run(tmp_path / "a", N)
    assert straight["device"].startswith("cuda") and straight["val_loss"] < straight["initial_val_loss"] - 1.0
    run(tmp_path / "b", 5)
    resumed = run(tmp_path / "b", N)
    assert resumed["resumed_from"] == 5
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-3)


@cuda
def test_fused_loss_and_document_mask_on_gpu_match_the_cpu():
    from lightcoder.model.llama import Transformer, document_ids_from_tokens

    model = Transformer(get_preset("lc-tiny"))
    model.init_weights(0)
    tokens = torch.randint(2, 512, (2, 64))
    tokens[:, ::16] = 1
    doc = document_ids_from_tokens(tokens)
    with torch.no_grad():
        _, cpu_loss = model(tokens, tokens, document_ids=doc)
        gpu = model.to("cuda")
        _, gpu_loss = gpu(tokens.cuda(), tokens.cuda(), document_ids=doc.cuda(), fused_loss=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, bf16_loss = gpu(tokens.cuda(), tokens.cuda(), document_ids=doc.cuda(), fused_loss=True)
    assert gpu_loss.item() == pytest.approx(cpu_loss.item(), rel=1e-4)
    assert bf16_loss.item() == pytest.approx(cpu_loss.item(), rel=2e-2)


@cuda
def test_flex_attention_trains_like_the_dense_mask_on_gpu():
    from lightcoder.model.llama import Transformer, document_ids_from_tokens

    tokens = torch.randint(3, 512, (2, 256), device="cuda")
    tokens[:, ::37] = 1
    doc = document_ids_from_tokens(tokens)
    results = {}
    for impl in ("sdpa", "flex"):
        model = Transformer(get_preset("lc-tiny")).cuda()
        model.init_weights(0)
        model.attention_impl = impl
        _, loss = model(tokens, tokens, document_ids=doc, fused_loss=True)
        loss.backward()
        results[impl] = (loss.item(), model.layers[0].attention.wq.weight.grad)
    assert results["flex"][0] == pytest.approx(results["sdpa"][0], rel=1e-4)
    torch.testing.assert_close(results["flex"][1], results["sdpa"][1], atol=1e-5, rtol=1e-3)


@cuda
def test_matmul_peak_on_gpu_is_plausible():
    from lightcoder.train.telemetry import measure_matmul_peak

    peak = measure_matmul_peak(torch.device("cuda"), torch.bfloat16, size=4096, seconds=0.2)
    assert 1e12 < peak < 5e15


@two_gpus
@pytest.mark.slow
def test_fsdp_over_nccl_matches_one_gpu(tmp_path):
    from test_distributed import MODEL, TRAIN, VOCAB, write_documents

    from lightcoder.train.config import TrainConfig
    from lightcoder.train.loop import train

    shards = write_documents(tmp_path / "shards")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "lightcoder.train", "--shards", str(shards), "--out", str(tmp_path / "two"), "--preset", "lc-tiny",
            "--train.parallel", "fsdp", "--train.device", "cuda"]
    args += [f"--model.{k}={v}" for k, v in MODEL.items()] + [f"--train.{k}={v}" for k, v in TRAIN.items()]
    proc = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout.strip().splitlines()[-1])
    one = train(TrainConfig(**{**TRAIN, "device": "cuda", "grad_accum": 2}),
                get_preset("lc-tiny", vocab_size=VOCAB, **MODEL), shards_dir=shards, tokenizer_dir=None,
                out_dir=tmp_path / "one")
    assert two["world_size"] == 2 and two["device"].startswith("cuda")
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)  # TF32 matmuls: loose tolerance
