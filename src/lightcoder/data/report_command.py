"""`lightcoder data report --out RUN`: a Markdown + HTML report of a finished corpus stage.

Reads only RUN/data (stats.json, repos.jsonl, clusters.jsonl, rejected/, the Parquet shards'
metadata) and writes, next to them:

    report.md, report.html   the funnel per stage and reason, languages, sizes, top rejected
                             reasons with an example each, near-duplicate clusters, repositories
    plots/*.png              funnel.png, reasons.png, languages.png, sizes.png (matplotlib, Agg)

Usage: lightcoder data report --out run/quickstart [--data DIR] [--format md|html|both]
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

from lightcoder.data.report import format_funnel
from lightcoder.data.report_html import html_page, markdown_to_html

TOP_REASONS = 12
TOP_CLUSTERS = 10


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightcoder data report",
                                     description="Markdown/HTML report of a corpus stage.")
    parser.add_argument("--out", default="run/quickstart", help="run directory (its data/)")
    parser.add_argument("--data", help="the corpus directory (default: OUT/data, or OUT itself "
                        "when it holds stats.json)")
    parser.add_argument("--format", choices=("md", "html", "both"), default="both")
    args = parser.parse_args(argv)
    data = Path(args.data) if args.data else Path(args.out) / "data"
    if not args.data and not (data / "stats.json").exists() and (Path(args.out) /
                                                                 "stats.json").exists():
        data = Path(args.out)
    if not (data / "stats.json").exists():
        print(f"lightcoder: error: no corpus stage in {data} (stats.json missing): run "
              f"`lightcoder data --out {args.out}` first", file=sys.stderr)
        return 1
    paths = write_report(data, formats=("md", "html") if args.format == "both" else (args.format,))
    for p in paths:
        print(p)
    return 0


def write_report(data: Path, *, formats: tuple[str, ...] = ("md", "html")) -> list[Path]:
    """Write the report files into data/ and return their paths."""
    stats = json.loads((data / "stats.json").read_text())
    plots = _plots(stats, data)
    sections = _sections(stats, data)
    out = []
    if "md" in formats:
        md = ["# Corpus report", "", f"Sources: {', '.join(stats['roots'])}", ""]
        md += [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
        for title, body in sections:
            md += [f"## {title}", "", body, ""]
        (data / "report.md").write_text("\n".join(md))
        out.append(data / "report.md")
    if "html" in formats:
        parts = ["<h1>Corpus report</h1>", f"<p>Sources: {html.escape(', '.join(stats['roots']))}</p>"]
        parts += [f"<img src='plots/{p.name}' style='max-width:48%'>" for p in plots]
        for title, body in sections:
            parts += [f"<h2>{html.escape(title)}</h2>", markdown_to_html(body)]
        (data / "report.html").write_text(html_page("Corpus report", "\n".join(parts)))
        out.append(data / "report.html")
    return out


def _sections(stats: dict, data: Path) -> list[tuple[str, str]]:
    sections = [("Funnel", format_funnel(stats))]
    langs = sorted(stats["languages"].items(), key=lambda kv: -kv[1]["bytes"])
    rows = ["| language | files | MB |", "|---|---:|---:|"] + [
        f"| {k} | {v['files']:,} | {v['bytes'] / 1e6:.2f} |" for k, v in langs]
    sections.append(("Languages", "\n".join(rows)))
    counters = stats.get("counters", {})
    if counters:
        lines = [f"- **{group}**: " + ", ".join(f"{k} {v:,}" for k, v in sorted(values.items()))
                 for group, values in sorted(counters.items())]
        sections.append(("Counters (PII replaced, comment blocks, analysis rule hits)",
                         "\n".join(lines)))
    sections.append(("Top rejected reasons, with an example", _examples(stats, data)))
    clusters = _read_jsonl(data / "clusters.jsonl")[:TOP_CLUSTERS]
    if clusters:
        lines = ["| kept copy | cluster size | some dropped copies |", "|---|---:|---|"]
        for c in clusters:
            dropped = ", ".join(f"{d['path']} ({d['similarity']:.2f})" for d in c["dropped"][:3])
            lines.append(f"| {c['kept']} | {c['size']} | {dropped} |")
        sections.append(("Largest near-duplicate clusters", "\n".join(lines)))
    repos = _read_jsonl(data / "repos.jsonl")
    if repos:
        dropped = [r for r in repos if r["status"] != "kept"]
        lines = [f"{len(repos):,} repositories seen, {len(repos) - len(dropped):,} kept.", "",
                 "| repository | licence | score | files seen / kept | status |",
                 "|---|---|---:|---:|---|"]
        show = sorted(repos, key=lambda r: -r.get("bytes_seen", 0))[:15] + dropped[:15]
        for r in show:
            lines.append(f"| {r['repo']} | {r['license'] or '-'} ({r['license_from'] or 'none'})"
                         f" | {r.get('score', '-')} | {r['files_seen']:,} / "
                         f"{r.get('files_kept', 0):,} | {r['status']} |")
        sections.append(("Repositories (largest, then dropped)", "\n".join(lines)))
    return sections


def _examples(stats: dict, data: Path) -> str:
    counts = {}
    for stage in stats["stages"]:
        for reason, c in stage["dropped"].items():
            counts[(stage["stage"], reason)] = c
    lines = []
    for (stage, reason), c in sorted(counts.items(), key=lambda kv: -kv[1]["files"])[:TOP_REASONS]:
        rows = _read_jsonl(data / "rejected" / f"{reason}.jsonl")
        example = rows[0] if rows else {}
        lines.append(f"- **{reason}** ({stage}): {c['files']:,} files, {c['bytes'] / 1e6:.2f} MB"
                     + (f" - e.g. `{example['path']}`: {example['detail']}" if example else ""))
        excerpt = (example.get("excerpt") or "").strip("\n")
        if excerpt:
            lines.append("\n  ```\n  " + "\n  ".join(excerpt.splitlines()[:6]) + "\n  ```")
    return "\n".join(lines) or "Nothing was rejected."


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _plots(stats: dict, data: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = data / "plots"
    out_dir.mkdir(exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = ["seen"] + [s["stage"] for s in stats["stages"]]
    values = [stats["seen"]["bytes"] / 1e6] + [s["kept"]["bytes"] / 1e6 for s in stats["stages"]]
    ax.bar(names, values, color="#4c72b0")
    ax.set_ylabel("MB remaining")
    ax.set_title("Funnel: bytes left after each stage")
    ax.tick_params(axis="x", rotation=45)
    paths.append(_save(fig, out_dir / "funnel.png"))

    reasons = {}
    for s in stats["stages"]:
        for r, c in s["dropped"].items():
            reasons[f"{s['stage']}/{r}"] = c["files"]
    top = sorted(reasons.items(), key=lambda kv: kv[1])[-TOP_REASONS:]
    if top:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.barh([k for k, _ in top], [v for _, v in top], color="#dd8452")
        ax.set_xscale("log")
        ax.set_xlabel("files dropped (log)")
        ax.set_title("Drops by stage/reason")
        paths.append(_save(fig, out_dir / "reasons.png"))

    langs = sorted(stats["languages"].items(), key=lambda kv: -kv[1]["bytes"])
    if langs:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar([k for k, _ in langs], [v["bytes"] / 1e6 for _, v in langs], color="#55a868")
        ax.set_ylabel("MB kept")
        ax.set_title("Languages")
        paths.append(_save(fig, out_dir / "languages.png"))

    sizes = _kept_sizes(data)
    if sizes:
        import numpy as np

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(np.log10(np.maximum(sizes, 1)), bins=40, color="#8172b3")
        ax.set_xlabel("file size, log10 bytes")
        ax.set_ylabel("files")
        ax.set_title("Sizes of kept files")
        paths.append(_save(fig, out_dir / "sizes.png"))
    return paths


def _kept_sizes(data: Path) -> list[int]:
    import pyarrow.parquet as pq

    sizes = []
    for shard in sorted(data.glob("*.parquet")):
        for meta in pq.read_table(shard, columns=["meta"]).column(0).to_pylist():
            sizes.append(int(json.loads(meta).get("size", 0)))
    return sizes


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
