"""Prometheus metrics in the text exposition format, kept by hand (no client library needed).

    lightcoder_requests_total{endpoint, status}         counter
    lightcoder_request_seconds{endpoint}                histogram of request latency
    lightcoder_first_token_seconds                      histogram
    lightcoder_generated_tokens_total, lightcoder_prompt_tokens_total, lightcoder_reused_prompt_tokens_total
    lightcoder_prefix_cache_hit_rate, lightcoder_prefix_cache_entries, lightcoder_queue_depth   gauges
    lightcoder_slots_total, lightcoder_slots_busy, lightcoder_busy_slots_per_step               gauges (batching)
    lightcoder_batch_steps_total, lightcoder_batch_rows_total                                   counters
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, cum = [], 0
        sep = "," if labels else ""
        for bound, count in zip(BUCKETS, self.counts):
            cum += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cum}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        lab = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{lab} {self.total:.6f}", f"{name}_count{lab} {self.n}"]
        return out


def _label(value: str) -> str:
    """A Prometheus label value, escaped as its text format requires (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = defaultdict(Histogram)
        self.first_token = Histogram()
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.reused_tokens = 0

    def request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        with self.lock:
            self.requests[(endpoint, status)] += 1
            if seconds is not None:
                self.latency[endpoint].observe(seconds)

    def completion(self, result) -> None:
        with self.lock:
            self.generated_tokens += result.new_tokens
            self.prompt_tokens += result.prompt_tokens
            self.reused_tokens += result.reused_tokens
            if result.first_token_seconds:
                self.first_token.observe(result.first_token_seconds)

    def render(self, cache_stats: dict, queue_depth: int, batching: dict | None = None) -> str:
        with self.lock:
            lines = ["# TYPE lightcoder_requests_total counter"]
            lines += [f'lightcoder_requests_total{{endpoint="{_label(e)}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines.append("# TYPE lightcoder_request_seconds histogram")
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("lightcoder_request_seconds", f'endpoint="{_label(endpoint)}"')
            lines.append("# TYPE lightcoder_first_token_seconds histogram")
            lines += self.first_token.lines("lightcoder_first_token_seconds")
            for name, value in (("generated_tokens", self.generated_tokens), ("prompt_tokens", self.prompt_tokens),
                                ("reused_prompt_tokens", self.reused_tokens)):
                lines += [f"# TYPE lightcoder_{name}_total counter", f"lightcoder_{name}_total {value}"]
        gauges = {"prefix_cache_hit_rate": cache_stats.get("hit_rate", 0.0),
                  "prefix_cache_entries": cache_stats.get("entries", 0),
                  "prefix_cache_bytes": cache_stats.get("bytes", 0),
                  "queue_depth": queue_depth}
        gauges.update(batching or {})
        for name, value in gauges.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE lightcoder_{name} {kind}", f"lightcoder_{name} {value}"]
        return "\n".join(lines) + "\n"
