"""A small soak: many concurrent clients over every API, some hanging up mid-stream; no errors, the
same greedy text as one request at a time, and the server ends idle with bounded caches."""

import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lightcoder.infer.completer import Completer
from lightcoder.serve.app import ServerConfig, create_app
from lightcoder.serve.schemas import Limits

CODE = ("import os\n\n\ndef walk(root):\n    for name in sorted(os.listdir(root)):\n        path = os.path.join("
        "root, name)\n        if os.path.isdir(path):\n            yield from walk(path)\n        else:\n"
        "            yield path\n")


def request_for(i: int) -> tuple[str, dict]:
    cut = 20 + (i * 7) % (len(CODE) - 30)
    prefix, suffix = CODE[:cut], CODE[cut:]
    kind = i % 3
    if kind == 0:
        return "/v1/completions", {"prompt": prefix, "suffix": suffix, "max_tokens": 8, "truncate": "none"}
    if kind == 1:
        return "/infill", {"input_prefix": prefix, "input_suffix": suffix, "n_predict": 8, "truncate": "none"}
    return "/api/generate", {"model": "soak", "prompt": prefix, "suffix": suffix, "stream": False,
                             "options": {"num_predict": 8}}


def text_of(path: str, body: dict) -> str:
    return body["choices"][0]["text"] if path == "/v1/completions" else body.get("content", body.get("response"))


@pytest.mark.slow
def test_concurrent_clients_get_no_errors_and_batch_invariant_text(tiny_run, make_server):
    completer = Completer.load(tiny_run)
    config = ServerConfig(model_name="soak", parallel=3, limits=Limits(max_tokens_limit=32, max_queue=64))
    with make_server(create_app(completer, config)) as s:
        with httpx.Client(timeout=120) as c:
            alone = {i: text_of(request_for(i)[0], c.post(s.url + request_for(i)[0], json=request_for(i)[1]).json())
                     for i in range(12)}
        rng = random.Random(0)
        jobs = [rng.randrange(12) for _ in range(72)]

        def client(k: int) -> list[tuple[int, int, str]]:
            out = []
            with httpx.Client(timeout=120) as c:
                for i in jobs[k::12]:
                    path, body = request_for(i)
                    if (k + i) % 5 == 0:  # hang up mid-stream: the server cancels that request
                        with c.stream("POST", s.url + "/infill", json={**request_for(1)[1], "stream": True,
                                                                        "n_predict": 30}) as r:
                            next(r.iter_lines())
                    r = c.post(s.url + path, json=body)
                    out.append((i, r.status_code, text_of(path, r.json()) if r.status_code == 200 else r.text))
            return out

        with ThreadPoolExecutor(12) as pool:
            results = [x for part in pool.map(client, range(12)) for x in part]
        assert [status for _, status, _ in results] == [200] * len(jobs)
        assert all(text == alone[i] for i, _, text in results)  # batched or alone: the same greedy text
        health = httpx.get(s.url + "/health").json()
        assert health["queue_depth"] == 0 and health["slots_processing"] == 0
        sched = s.app.state.ctx.scheduler
        assert len(sched.cache.entries) <= sched.cache.max_entries and sched.busy_slot_steps > sched.steps
        metrics = httpx.get(s.url + "/metrics").text
        assert "lightcoder_slots_total 3" in metrics and "lightcoder_batch_steps_total" in metrics
