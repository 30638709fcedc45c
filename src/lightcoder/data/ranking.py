"""Repository-level steps (aiXcoder steps 1-2): licence policy, repository dedup, project ranking.

    license   drop repositories whose licence is copyleft (or unknown, when the policy says so)
    dedup     a project listed twice (same name from two datasets, or the same file listing
              (relative paths + sizes) under two names) is kept once: its best-ranked copy
    ranking   score = mean of the z-scores of log1p(stars), log1p(commits), log1p(test files);
              a signal without spread (e.g. no stars known for any repo) is left out. Repos
              scoring strictly below the `drop_fraction` quantile are dropped, so ties at the
              cut are kept together (the stdlib, where nothing is known, loses nothing).

The surviving repos are returned best first: that order is the "rank" that near-dedup uses to
keep the copy from the best-ranked repository (ties broken by name, so it never depends on how
the work is split).

Example: score_repos with stars [0, 10, 1000] and nothing else -> [-1.2, -0.04, 1.24] (about)
"""

from __future__ import annotations

import math

from lightcoder.data.config import LicenseConfig, RankingConfig
from lightcoder.data.license import license_check
from lightcoder.data.listing import Repo

# Listing fingerprints (paths + sizes) identify copies of a project only when there is enough of
# it: tiny repositories collide by chance, and file-level dedup catches their copies anyway.
MIN_FINGERPRINT_FILES = 5


def score_repos(repos: list[Repo]) -> list[float]:
    """Mean z-score of log1p(stars), log1p(commits), log1p(test files); 0 when nothing varies."""
    signals = [[math.log1p(getattr(r, name)) for r in repos]
               for name in ("stars", "commits", "test_files")]
    total = [0.0] * len(repos)
    used = 0
    for values in signals:
        mean = sum(values) / max(1, len(values))
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values)))
        if std == 0.0:
            continue  # no information in this signal
        used += 1
        for i, v in enumerate(values):
            total[i] += (v - mean) / std
    return [t / used if used else 0.0 for t in total]


def select_repos(repos: list[Repo], *, license_cfg: LicenseConfig, ranking: RankingConfig
                 ) -> tuple[list[tuple[Repo, float]], list[tuple[Repo, str, str, str]]]:
    """(kept [(repo, score)] best first, dropped [(repo, stage, reason, detail)])."""
    dropped: list[tuple[Repo, str, str, str]] = []
    candidates: list[Repo] = []
    for r in repos:
        if not r.files:
            continue  # problems only: accounted for by the scan
        check = license_check(r.license, copyleft=license_cfg.copyleft,
                              unknown=license_cfg.unknown, allow=license_cfg.allow)
        if check is not None:
            dropped.append((r, "license", check[0], check[1]))
        else:
            candidates.append(r)
    scores = score_repos(candidates)
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i].name))
    kept = [(candidates[i], scores[i]) for i in order]  # best first
    if ranking.dedup_repos:  # in rank order, so a duplicated project keeps its best copy
        seen_names: dict[str, str] = {}
        seen_prints: dict[str, str] = {}
        unique = []
        for r, score in kept:
            key = r.name.lower()
            fp = r.fingerprint() if len(r.files) >= MIN_FINGERPRINT_FILES else None
            if key in seen_names:
                dropped.append((r, "license", "duplicate_repo",
                                f"also listed from {seen_names[key]}"))
            elif fp is not None and fp in seen_prints:
                dropped.append((r, "license", "duplicate_repo", f"same files as {seen_prints[fp]}"))
            else:
                seen_names[key] = f"{r.name} in {r.source}"
                if fp is not None:
                    seen_prints[fp] = r.name
                unique.append((r, score))
        kept = unique
    if ranking.drop_fraction > 0 and kept:
        num_drop = int(len(kept) * ranking.drop_fraction)
        cut = kept[len(kept) - num_drop - 1][1]  # the lowest score that survives
        low = [(r, s) for r, s in kept if s < cut]
        kept = [(r, s) for r, s in kept if s >= cut]
        for r, s in low:
            dropped.append((r, "ranking", "low_rank", f"score {s:.3f} < cut {cut:.3f}"))
    return kept, dropped
