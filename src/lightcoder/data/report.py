"""The corpus funnel as markdown, for report.md and the terminal.

Input is the stats dict of `lightcoder.data.pipeline.run_data` (also saved as stats.json):
one table from files seen, through each stage's drops per reason, to files kept, then one table
of the train/valid/test split.

Example output (abridged):

    | stage | reason | files | MB | % of seen bytes |
    |---|---|---:|---:|---:|
    | seen | | 2,601 | 40.12 | 100.0% |
    | clean | language | 806 | 8.50 | 21.2% |
    | kept | | 1,781 | 31.48 | 78.5% |
"""

from __future__ import annotations


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def format_funnel(stats: dict) -> str:
    """Markdown tables: the funnel (seen -> drops per stage and reason -> kept), then the split."""
    seen = stats["seen"]
    total = seen["bytes"]
    lines = [
        "| stage | reason | files | MB | % of seen bytes |",
        "|---|---|---:|---:|---:|",
        f"| seen | {seen.get('repos', 0):,} repos | {seen['files']:,} | {_mb(total)} | "
        f"{_share(total, total)} |",
    ]
    for stage in stats["stages"]:
        for reason, c in sorted(stage["dropped"].items(), key=lambda kv: -kv[1]["files"]):
            lines.append(f"| {stage['stage']} | {reason} | {c['files']:,} | {_mb(c['bytes'])} | "
                         f"{_share(c['bytes'], total)} |")
    kept = stats["kept"]
    lines.append(f"| **kept** | {kept.get('repos', 0):,} repos | **{kept['files']:,}** | "
                 f"**{_mb(kept['bytes'])}** | {_share(kept['bytes'], total)} |")

    lines += ["", "| split | repos | files | MB |", "|---|---:|---:|---:|"]
    for name, c in stats["splits"].items():
        lines.append(f"| {name} | {c['repos']:,} | {c['files']:,} | {_mb(c['bytes'])} |")

    notes = []
    capped = stats.get("rejected", {}).get("capped", {})
    if capped:
        cap = stats["rejected"]["max_per_reason"]
        notes.append(f"rejected/ keeps at most {cap:,} lines per reason; capped: "
                     + ", ".join(f"{r} ({n:,})" for r, n in sorted(capped.items())))
    unchecked = stats.get("syntax_unchecked_languages", [])
    if unchecked:
        notes.append(f"no tree-sitter grammar, syntax not checked: {', '.join(unchecked)}")
    seconds = stats.get("seconds", {}).get("total")
    if seconds is not None:
        rate = stats.get("throughput", {})
        extra = (f": {rate['mb_read']:,.1f} MB read, {rate['mb_per_wall_s']:.1f} MB/s with "
                 f"{rate['workers']} workers, {rate['mb_per_step_cpu_s']:.1f} MB per CPU-second "
                 "of the steps") if "mb_read" in rate else ""
        notes.append(f"corpus stage took {seconds:.1f} s{extra}")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
