"""Concurrent typing replay for bench_serve.py: servers in their own processes, clients in this one.

Each client types its own regions of the file (typing_requests with its own seed) and sends a
llama.cpp /infill request per pause, closed loop (the next one as soon as the reply is in), to our
server (`lightcoder serve --parallel N`) and to llama.cpp's own server (`llama-server -np N`, built
by build_llama_server.sh) on the GGUF export of the same weights. Both get the same cut text
(`fit_chars`), greedy, n_predict 16, cache_prompt on, and the same CPU threads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

DEFAULT_LLAMA_SERVER = Path.home() / ".cache/lightcoder/llama-server/bin/llama-server"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(proc: subprocess.Popen, url: str, seconds: float = 600) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{url} not ready after {seconds:.0f} s")


def start_ours(ckpt: str, parallel: int, threads: int, max_prompt_tokens: int, draft_tokens: int = 4,
               baseline_src: str | None = None) -> tuple[subprocess.Popen, str]:
    """`lightcoder serve` in its own process; baseline_src: the `src` dir of another checkout
    (an earlier commit, whose serve has no --parallel), for before/after in one run."""
    port = free_port()
    cmd = [sys.executable, "-m", "lightcoder.cli", "serve", ckpt, "--port", str(port), "--threads", str(threads),
           "--max-prompt-tokens", str(max_prompt_tokens), "--sticky-lines", "16", "--max-queue", "512"]
    env = dict(os.environ)
    if baseline_src:
        env["PYTHONPATH"] = baseline_src
    else:
        cmd += ["--parallel", str(parallel), "--cache-entries", str(parallel + 8), "--draft-tokens", str(draft_tokens)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url)
    return proc, url


def start_llama_server(binary: Path, gguf: Path, parallel: int, threads: int, ctx: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [str(binary), "-m", str(gguf), "--port", str(port), "-np", str(parallel), "-c", str(parallel * ctx),
           "-t", str(threads), "-tb", str(threads), "--no-webui"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url)
    return proc, url


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def infill_body(prefix: str, suffix: str, n_predict: int) -> dict:
    return {"input_prefix": prefix, "input_suffix": suffix, "n_predict": n_predict, "temperature": 0,
            "samplers": [], "cache_prompt": True, "truncate": "none", "stream": False}


async def replay_clients(url: str, per_client: list[list[tuple[str, str]]], positions: list[int], seconds: float,
                         n_predict: int = 16) -> dict:
    """Every client sends its next request as soon as the last reply is in, for `seconds`.
    positions: where each client is in its request list (advanced in place, so a later window
    continues the typing where this one stopped)."""
    lat: list[float] = []
    errors = tokens = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int):
        nonlocal errors, tokens
        reqs = per_client[k]
        async with httpx.AsyncClient(timeout=120) as c:
            while time.perf_counter() < deadline:
                prefix, suffix = reqs[positions[k] % len(reqs)]
                positions[k] += 1
                t0 = time.perf_counter()
                try:
                    r = await c.post(url + "/infill", json=infill_body(prefix, suffix, n_predict))
                    if r.status_code == 200:
                        tokens += r.json().get("tokens_predicted", 0)
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(len(per_client))))
    wall = time.perf_counter() - t0
    return {"lat": lat, "errors": errors, "tokens": tokens, "wall": wall}


def summarize(parts: list[dict]) -> dict:
    lat = sorted(x for p in parts for x in p["lat"])
    wall = sum(p["wall"] for p in parts)
    if not lat:
        return {"done": 0, "cps": 0.0, "tps": 0.0, "p50": float("nan"), "p95": float("nan"),
                "errors": sum(p["errors"] for p in parts)}
    return {"done": len(lat), "cps": len(lat) / wall, "tps": sum(p["tokens"] for p in parts) / wall,
            "p50": statistics.median(lat) * 1e3, "p95": lat[int(0.95 * (len(lat) - 1))] * 1e3,
            "errors": sum(p["errors"] for p in parts)}
