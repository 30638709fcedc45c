"""Inference on a GPU: the engine, the batching scheduler and the completer on CUDA give what they give on
the CPU. Every test skips without CUDA (benchmarks/gpu/checks.sh runs them first on the lent machine)."""

from __future__ import annotations

import pytest
import torch

from lightcoder.infer.engine import Engine, SamplingParams
from lightcoder.infer.scheduler import BatchScheduler
from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
pytestmark = [cuda, pytest.mark.gpu]


@pytest.fixture(scope="module")
def models():
    """The same tiny fp32 model on the CPU and on the GPU; spread-out weights keep greedy ids far from ties."""
    cpu = Transformer(get_preset("lc-tiny", init_std=0.2))
    cpu.init_weights(0)
    gpu = Transformer(get_preset("lc-tiny", init_std=0.2))
    gpu.init_weights(0)
    return cpu.eval(), gpu.to("cuda").eval()


def prompts(n_tokens, seed=0, vocab=60):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in n_tokens]


def test_greedy_ids_on_the_gpu_equal_the_cpu(models):
    cpu, gpu = models
    params = SamplingParams(max_new_tokens=16)
    for prompt in prompts((3, 40, 200)):  # short and long prompts, up to near the 256-id context
        assert list(Engine(gpu).generate(prompt, params)) == list(Engine(cpu).generate(prompt, params))


def test_the_scheduler_batches_on_the_gpu(models):
    _, gpu = models
    params = SamplingParams(max_new_tokens=12)
    ps = prompts((5, 33, 90, 7))
    engine = Engine(gpu)
    expected = [list(engine.generate(p, params)) for p in ps]
    sched = BatchScheduler(gpu, n_slots=3, chunk_tokens=32, step_tokens=64).start()
    try:
        streams = [sched.submit(p, params) for p in ps]
        got = []
        for stream in streams:
            ids = []
            try:
                while True:
                    ids.append(next(stream))
            except StopIteration:
                got.append(ids)
        assert got == expected
    finally:
        sched.shutdown()


def test_sampling_on_the_gpu_follows_the_seed(models):
    _, gpu = models
    params = SamplingParams(max_new_tokens=12, temperature=0.8, seed=7)
    engine = Engine(gpu)
    first = list(engine.generate(prompts((20,))[0], params))
    assert first == list(engine.generate(prompts((20,))[0], params)) and len(first) == 12
