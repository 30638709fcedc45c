"""Serving benchmark: single-client typing replay, concurrent typing replay against llama.cpp's
server with the same number of slots, and a soak test.

Typing replay: a held-out source file is typed character by character; inter-key gaps are drawn
from 40-300 ms and a completion request fires whenever the pause exceeds the debounce (150 ms), as
an editor plugin does. Each request sends prefix (prompt) + suffix (rest of the file) to
POST /v1/completions, greedy, max_tokens 16. Engines, side by side in this one run:

  lightcoder        our server (prefix-KV reuse, greedy replay, batch scheduler)
  hf-generate       transformers' LlamaForCausalLM.generate behind the same HTTP layer (same prompts)
  llama.cpp         llama-cpp-python's server on the GGUF export of the same weights (when installed)

Concurrent replay (--concurrency 8,32): that many clients, each typing its own regions, closed loop
(next request as soon as the reply is in), /infill, against `lightcoder serve --parallel N` and
`llama-server -np N` (benchmarks/build_llama_server.sh builds it), N = clients, both in their own
processes with the same threads, in alternating windows; completions/s and p95 ratios.

Soak (--load-seconds S): 32 clients for S seconds against `lightcoder serve --parallel 32`; errors,
p50/p95 and the server process's RSS before/after.

    .venv/bin/python benchmarks/bench_serve.py --ckpt RUN_OR_CKPT [--requests 120] [--concurrency 8,32]
        [--conc-seconds 40] [--load-seconds 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch
import uvicorn
from serve_load import (
    DEFAULT_LLAMA_SERVER,
    free_port,
    replay_clients,
    rss_mb,
    start_llama_server,
    start_ours,
    summarize,
)

from lightcoder.infer.completer import Completer, Completion
from lightcoder.serve.app import ServerConfig, create_app

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT / "src/lightcoder/infer/retrieval.py"  # not in the stdlib training corpus


class HFCompleter(Completer):
    """transformers generate() on the same prompts, no prefix cache: the peer behind our HTTP layer."""

    def __init__(self, base: Completer, hf_model):
        super().__init__(base.model, base.tokenizer, base.model_cfg, max_prompt_tokens=base.max_prompt_tokens,
                         sticky_lines=base.sticky_lines)
        self.hf = hf_model

    def stream(self, prefix, suffix="", *, max_new_tokens=64, stop_ids=None, syntax_stop=False, cancelled=None,
               **kwargs):
        start = time.perf_counter()
        keep = {k: v for k, v in kwargs.items() if k in ("path", "mode", "max_prompt_tokens", "context")}
        prompt = self.build(prefix, suffix, max_new_tokens=max_new_tokens, **keep)
        stops = sorted(self.tokenizer.stop_ids if stop_ids is None else stop_ids)
        with torch.inference_mode():
            out = self.hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                   max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=0)
        new = [t for t in out[0, len(prompt):].tolist()]
        reason = "length"
        if new and new[-1] in stops:
            new, reason = new[:-1], "stop"
        text = self.tokenizer.decode(new)
        if text:
            yield text
        return Completion(text=text, prompt_tokens=len(prompt), new_tokens=len(new), stop_reason=reason,
                          seconds=time.perf_counter() - start)


class ThreadServer:
    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


def typing_requests(text: str, n: int, seed: int = 0, debounce: float = 0.15,
                    region_chars: int = 400) -> list[tuple[str, str]]:
    """(prefix, suffix) at each keystroke after which the typist pauses longer than the debounce.

    The typist re-types regions of the file (a few lines at a random line start, ~region_chars):
    the prefix is the file before the region plus what was typed, the suffix the file after the
    region, unchanged while typing, as when writing new code inside an existing file.
    """
    rng = random.Random(seed)
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"][:-1]
    out: list[tuple[str, str]] = []
    while len(out) < n:
        start = rng.choice(line_starts[len(line_starts) // 10:])
        end = text.find("\n", min(len(text) - 1, start + region_chars)) + 1 or len(text)
        before, region, after = text[:start], text[start:end], text[end:]
        for i in range(1, len(region) + 1):
            if rng.uniform(0.04, 0.30) > debounce:
                out.append((before + region[:i], after))
                if len(out) == n:
                    break
    return out


def fit_chars(prefix: str, suffix: str, ctx: int = 1024) -> tuple[str, str]:
    """llama-cpp-python's server rejects prompts over its context instead of cutting them: cut the
    text to about our token budget, at the same keystroke-stable line anchors our prompts use."""
    from lightcoder.infer.prompts import _sticky_head, _sticky_tail

    prefix_chars, suffix_chars = int(1.6 * ctx), int(0.35 * ctx)  # ~60% of ctx (llama.cpp tokenizes longer)

    if len(prefix) > prefix_chars:
        prefix = _sticky_tail(prefix, len(prefix) - prefix_chars, 16)
    if len(suffix) > suffix_chars:
        suffix = _sticky_head(suffix, suffix_chars, 16)
    return prefix, suffix


def replay(targets: dict[str, tuple[str, bool]], requests: list[tuple[str, str]], path: str,
           max_tokens: int, ctx: int) -> dict[str, dict]:
    """Send each request to every engine in turn (rotating who goes first), so load drifts on a
    shared machine hit all engines alike. targets: name -> (base url, cut text for llama.cpp)."""
    stats = {name: {"lat": [], "tokens": 0, "reused": 0, "prompt": 0} for name in targets}
    names = list(targets)
    with httpx.Client(timeout=120) as client:
        for k, (prefix, suffix) in enumerate(requests):
            for name in names[k % len(names):] + names[:k % len(names)]:
                url, cut = targets[name]
                p, s = fit_chars(prefix, suffix, ctx) if cut else (prefix, suffix)
                t0 = time.perf_counter()
                r = client.post(url + "/v1/completions", json={"prompt": p, "suffix": s, "max_tokens": max_tokens,
                                                               "temperature": 0, "path": path, "truncate": "none"})
                st = stats[name]
                st["lat"].append(time.perf_counter() - t0)
                r.raise_for_status()
                body = r.json()
                st["tokens"] += body["usage"]["completion_tokens"]
                st["prompt"] += body["usage"]["prompt_tokens"]
                st["reused"] += body.get("lightcoder", {}).get("reused_prompt_tokens", 0)
    out = {}
    for name, st in stats.items():
        lat = sorted(st["lat"])
        out[name] = {"p50": statistics.median(lat) * 1e3, "p95": lat[int(0.95 * (len(lat) - 1))] * 1e3,
                     "tok_s": st["tokens"] / sum(lat), "reuse": st["reused"] / max(st["prompt"], 1),
                     "n": len(lat), "has_cache_stats": name != "llama.cpp"}
    return out


def start_llama_cpp(gguf: Path, threads: int, ctx: int) -> tuple[subprocess.Popen, str] | None:
    try:
        import llama_cpp.server  # noqa: F401  (its server extras must be installed too)
    except ImportError:
        return None
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
                             "--n_ctx", str(ctx), "--n_threads", str(threads),
                             "--n_threads_batch", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    return None


def single_client(args, reqs, path, ctx, gguf: Path | None) -> Completer:
    """Typing replay, one request at a time, every engine in turn; prints the table."""
    ours = Completer.load(args.ckpt, max_prompt_tokens=768, sticky_lines=16)
    app = create_app(ours, ServerConfig())
    server = ThreadServer(app)
    targets = {"lightcoder": (server.url, False)}
    stoppers = [server.stop]
    if args.baseline_src:  # before/after in one run: both as `lightcoder serve` processes, same rotation
        procs = [start_ours(args.ckpt, 1, args.threads, 768), start_ours(args.ckpt, 1, args.threads, 768,
                                                                         baseline_src=args.baseline_src)]
        targets["lightcoder serve"], targets["baseline serve"] = (procs[0][1], False), (procs[1][1], False)
        stoppers += [p.terminate for p, _ in procs]
    if not args.skip_hf:
        from transformers import AutoModelForCausalLM

        from lightcoder.model.hf import resolve_checkpoint

        hf = AutoModelForCausalLM.from_pretrained(resolve_checkpoint(args.ckpt), dtype=torch.float32).eval()
        hf_server = ThreadServer(create_app(HFCompleter(ours, hf), ServerConfig()))
        targets["hf-generate"] = (hf_server.url, False)
        stoppers.append(hf_server.stop)
    llama = start_llama_cpp(gguf, args.threads, ctx) if gguf is not None else None
    if llama is None:
        print("llama.cpp (llama-cpp-python): skipped (not installed with its server extras, or it did not start)")
    else:
        targets["llama.cpp"] = (llama[1], True)
    try:
        replay(targets, reqs[:4], path, args.max_tokens, ctx)  # warm-up
        sched = app.state.ctx.scheduler
        sched.cache.clear()  # idle between requests: nothing runs while the cache is emptied
        results = replay(targets, reqs, path, args.max_tokens, ctx)
    finally:
        if llama is not None:
            llama[0].terminate()
            llama[0].wait(10)
        for stop in stoppers:
            stop()
    print(f"\ntyping replay: {path}, {len(reqs)} requests (150 ms debounce), max_tokens {args.max_tokens}, "
          f"greedy, {torch.get_num_threads()} torch threads")
    print("| engine | p50 ms | p95 ms | tokens/s | prompt tokens from cache | p50 ratio vs lightcoder |")
    print("|---|---:|---:|---:|---:|---:|")
    base = results["lightcoder"]["p50"]
    for name, r in results.items():
        reuse = f"{r['reuse']:.0%}" if r["has_cache_stats"] else "n/a"
        print(f"| {name} | {r['p50']:.1f} | {r['p95']:.1f} | {r['tok_s']:.0f} | {reuse} | {r['p50'] / base:.2f}x |")
    print(f"\nlightcoder speculative decoding (prompt-lookup drafts, warm-up included): {sched.accepted_tokens} of "
          f"{sched.drafted_tokens} drafted ids accepted")
    return ours


def concurrent(args, text: str, ctx: int, gguf: Path) -> None:
    """Concurrent typing replay: ours and llama-server with the same -np, alternating windows."""
    binary = Path(args.llama_server)
    if not binary.exists():
        print(f"\nconcurrent replay: skipped ({binary} missing; run benchmarks/build_llama_server.sh)")
        return
    rows = []
    for clients in args.concurrency:
        per_client = [[fit_chars(p, s, ctx) for p, s in typing_requests(text, 400, seed=100 + k)]
                      for k in range(clients)]
        servers = {"lightcoder": start_ours(args.ckpt, clients, args.threads, ctx - 32),
                   "llama.cpp": start_llama_server(binary, gguf, clients, args.threads, ctx)}
        if args.no_draft_row:  # how much of the difference is speculative decoding
            servers["lightcoder, no drafts"] = start_ours(args.ckpt, clients, args.threads, ctx - 32, draft_tokens=0)
        try:
            positions = {name: [0] * clients for name in servers}
            parts: dict[str, list] = {name: [] for name in servers}
            for name, (_, url) in servers.items():  # warm-up: every client's first (cold) prompt
                asyncio.run(replay_clients(url, per_client, positions[name], 3.0))
            order = list(servers)
            for window in range(args.windows):
                for name in (order if window % 2 == 0 else order[::-1]):
                    parts[name].append(asyncio.run(replay_clients(servers[name][1], per_client, positions[name],
                                                                  args.conc_seconds / args.windows)))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
        stats = {name: summarize(p) for name, p in parts.items()}
        rows.append((clients, stats))
    print(f"\nconcurrent typing replay: /infill, closed loop, n_predict 16, greedy, {args.threads} thread(s) per "
          f"engine, -np N = clients, {args.conc_seconds:.0f} s per engine in {args.windows} alternating windows")
    print("| clients | engine | completions/s | tokens/s | p50 ms | p95 ms | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for clients, stats in rows:
        for name, r in stats.items():
            print(f"| {clients} | {name} | {r['cps']:.1f} | {r['tps']:.0f} | {r['p50']:.0f} | {r['p95']:.0f} | "
                  f"{r['errors']} |")
    print("\n| clients | completions/s ours / llama.cpp (target >= 1.0) | p95 ours / llama.cpp (target <= 1.0) |")
    print("|---:|---:|---:|")
    for clients, stats in rows:
        ours, peer = stats["lightcoder"], stats["llama.cpp"]
        print(f"| {clients} | {ours['cps'] / max(peer['cps'], 1e-9):.2f} | {ours['p95'] / peer['p95']:.2f} |")


def soak(args, text: str, ctx: int) -> None:
    """32 clients (--clients) for --load-seconds against our server in its own process; errors and RSS."""
    per_client = [[fit_chars(p, s, ctx) for p, s in typing_requests(text, 400, seed=200 + k)]
                  for k in range(args.clients)]
    proc, url = start_ours(args.ckpt, args.clients, args.threads, ctx - 32)
    try:
        positions = [0] * args.clients
        asyncio.run(replay_clients(url, per_client, positions, 3.0))  # warm-up
        before = rss_mb(proc.pid)
        out = summarize([asyncio.run(replay_clients(url, per_client, positions, args.load_seconds))])
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\nsoak: {args.clients} clients for {args.load_seconds:.0f} s against lightcoder serve --parallel "
          f"{args.clients}: {out['done']} completions, {out['errors']} errors, {out['cps']:.1f}/s, p50 "
          f"{out['p50']:.0f} ms, p95 {out['p95']:.0f} ms, server RSS {before:.0f} -> {after:.0f} MB "
          f"(delta {after - before:+.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="run dir or checkpoint (e.g. a quickstart run)")
    ap.add_argument("--file", default=str(DEFAULT_FILE), help="held-out source file to type")
    ap.add_argument("--requests", type=int, default=120, help="single-client replay requests (0 = skip)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",") if x], default=[8, 32],
                    help="client counts of the concurrent replay, comma-separated ('' = skip)")
    ap.add_argument("--conc-seconds", type=float, default=40, help="seconds per engine and client count")
    ap.add_argument("--windows", type=int, default=4, help="alternating windows those seconds are split into")
    ap.add_argument("--llama-server", default=str(DEFAULT_LLAMA_SERVER))
    ap.add_argument("--no-draft-row", action="store_true", help="also run our server with --draft-tokens 0")
    ap.add_argument("--baseline-src", help="src dir of an earlier checkout (git archive COMMIT src | tar -x): "
                    "its `lightcoder serve` joins the single-client replay, next to ours in a process too")
    ap.add_argument("--load-seconds", type=float, default=0, help="soak test duration (0 = skip)")
    ap.add_argument("--clients", type=int, default=32, help="soak test clients")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads for every engine (torch and llama.cpp alike; default 1: on a shared "
                         "2-core machine a second thread mostly waits for the other jobs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = Path(args.file).read_text(encoding="utf-8")
    path = Path(args.file).name
    from lightcoder.model.hf import load_checkpoint, resolve_checkpoint
    from lightcoder.serve.export_command import export_gguf

    ctx = load_checkpoint(resolve_checkpoint(args.ckpt))[1].max_seq_len
    tmp = tempfile.TemporaryDirectory()
    gguf = export_gguf(resolve_checkpoint(args.ckpt), Path(tmp.name) / "m.gguf")
    if args.requests:
        single_client(args, typing_requests(text, args.requests), path, ctx, gguf)
    if args.concurrency:
        concurrent(args, text, ctx, gguf)
    if args.load_seconds:
        soak(args, text, ctx)
    os._exit(0)  # uvicorn threads and torch pools: leave at once


if __name__ == "__main__":
    main()
