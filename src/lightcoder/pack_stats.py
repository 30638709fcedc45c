"""What a pack holds, for people: `lightcoder pack --stats` and the pack stage's one-line summary.

Reads the summary dict run_pack returns (also shards/index.json): document-level splits count
documents per objective; context-level splits (pack_context.py) count NTP documents and FIM
examples per span kind, their middle sizes, the tokens' loss roles and the repository balance.
"""

from __future__ import annotations


def context_stats(split: str, info: dict, seq_len: int) -> list[str]:
    """Lines of a context-level split.

    Example (abridged):
        split train: 1101 NTP documents + 22666 FIM examples, 118 repositories in 118 streams, 29080 windows of 512
          tokens      loss targets 37%, FIM prompts 63%, no loss 0%
          FIM spans   line 35%  sfim 25%  partial_line 15%  multi_line 15%  random 10%   (psm 50% / spm 50%)
          middles     line 36 chars (p50 9 / p90 19 tokens); sfim 94 chars (p50 9 / p90 74 tokens); ...
          repositories  largest share 62.8% (test) -> 6.6% (test) at temperature 0.3; 112 repeated, 6 subsampled
    """
    examples, obj = info["num_examples"], info["objectives"]
    lines = [f"split {split}: {info['num_documents']} NTP documents + {examples} FIM examples, "
             f"{info.get('num_repos', '?')} repositories in {info.get('num_streams', '?')} streams, "
             f"{info['num_windows']} windows of {seq_len} tokens ({info.get('chars_per_token', 0)} chars/token)"]
    roles = info.get("token_roles", {})
    if roles:
        lines.append(f"  tokens      loss targets {100 * roles['target']:.0f}%, FIM prompts {100 * roles['prompt']:.0f}%, "
                     f"no loss {100 * roles['no_loss']:.1f}%")
    kinds = info.get("span_kinds", {})
    fim = obj.get("psm", 0) + obj.get("spm", 0)
    lines.append("  FIM spans   " + "  ".join(f"{k} {_pct(v, examples)}" for k, v in kinds.items())
                 + f"   (psm {_pct(obj.get('psm', 0), fim)} / spm {_pct(obj.get('spm', 0), fim)})"
                 + (f"; at the end of the file {_pct(info['end_of_file_examples'], examples)}"
                    if info.get("end_of_file_examples") else ""))
    middles = info.get("middles", {})
    if middles:
        lines.append("  middles     " + "; ".join(
            f"{k} {m['mean_chars']:.0f} chars (p50 {m['p50_tokens']} / p90 {m['p90_tokens']} tokens)"
            for k, m in middles.items()))
    bad = {**{f"fell back ({k})": v for k, v in info.get("fallbacks", {}).items()},
           **{f"dropped ({k})": v for k, v in info.get("dropped_examples", {}).items()}}
    if bad or info.get("short_files"):
        lines.append("  bad input   " + ", ".join(f"{k} {v}" for k, v in bad.items())
                     + f"{', ' if bad else ''}{info.get('short_files', 0)} files shorter than a window")
    lines += _balance_lines(info)
    return lines


def _balance_lines(info: dict) -> list[str]:
    lines = []
    balance = info.get("repo_balance")
    if balance and balance["before"]["top"]:
        before, after = balance["before"]["top"][0], balance["after"]["top"][0]
        lines.append(f"  repositories  largest share {100 * before[1]:.1f}% ({before[0]}) -> {100 * after[1]:.1f}% "
                     f"({after[0]}) at temperature {balance['temperature']:g}; {balance['repeated_repos']} repeated, "
                     f"{balance['subsampled_repos']} subsampled")
    if info.get("strategies"):
        repos = sum(info["strategies"].values())
        lines.append("  file order  " + "  ".join(f"{k} {_pct(v, repos)}" for k, v in info["strategies"].items())
                     + " of repositories")
    return lines


def format_stats(summary: dict) -> str:
    """`lightcoder pack --stats`: the distribution of a pack, per split (context or document level).

    Example (document level, abridged):
        split train: 1519 documents, 115 repositories in 98 streams, 14682 windows of 512 tokens
          objectives  ntp 32.4%  fim 12.4%  sfim 55.2%   (psm 48.8% / spm 51.2% of FIM)
          language     docs   ntp   fim  sfim   top SFIM node types
          Python       1519  32%   12%   55%   block 14%, call 9%, ...
    """
    lines = []
    for split, info in summary["splits"].items():
        if info.get("level") == "context":
            lines += context_stats(split, info, summary["seq_len"])
            continue
        docs = info["num_documents"]
        lines.append(f"split {split}: {docs} documents, {info.get('num_repos', '?')} repositories in "
                     f"{info.get('num_streams', '?')} streams, {info['num_windows']} windows of "
                     f"{summary['seq_len']} tokens ({info.get('chars_per_token', 0)} chars/token)")
        obj = info["objectives"]
        fim = obj.get("psm", 0) + obj.get("spm", 0)
        shares = "  ".join(f"{k} {_pct(obj.get(k, 0), docs)}" for k in ("ntp", "fim", "sfim"))
        lines.append(f"  objectives  {shares}   (psm {_pct(obj.get('psm', 0), fim)} / spm "
                     f"{_pct(obj.get('spm', 0), fim)} of FIM)")
        if info.get("sfim_fallbacks"):
            reasons = ", ".join(f"{k} {v}" for k, v in info["sfim_fallback_reasons"].items())
            lines.append(f"  SFIM fell back to random FIM for {info['sfim_fallbacks']} documents ({reasons})")
        lines += _balance_lines(info)
        if info.get("languages"):
            lines.append(f"  {'language':<12} {'docs':>6} {'ntp':>5} {'fim':>5} {'sfim':>5}   top SFIM node types")
            for lang, counts in sorted(info["languages"].items(), key=lambda kv: -sum(
                    kv[1].get(k, 0) for k in ("ntp", "fim", "sfim"))):
                n = sum(counts.get(k, 0) for k in ("ntp", "fim", "sfim"))
                types = info.get("node_types", {}).get(lang, {})
                total = sum(types.values())
                top = ", ".join(f"{t} {_pct(c, total)}" for t, c in list(types.items())[:5])
                lines.append(f"  {lang:<12} {n:>6} " + " ".join(
                    f"{_pct(counts.get(k, 0), n):>5}" for k in ("ntp", "fim", "sfim")) + f"   {top}")
        if info.get("text_pieces_with_special_strings"):
            lines.append(f"  {info['text_pieces_with_special_strings']} text pieces contain special-token "
                         "strings (kept as text; see docs/training-data.md before exporting)")
    return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def summary_line(summary: dict) -> str:
    """One line for the pack stage's log: documents, objectives, languages, windows.

    Example: "pack: 1637 documents (ntp 33%, fim 13%, sfim 54%; Python 100%), 15510 windows in 140 streams"
    Context level: "pack: 1151 NTP documents + 24544 FIM examples (line 35%, sfim 25%, ...), 31522 windows in 126 streams"
    """
    obj = summary.get("objectives", {})
    splits = summary.get("splits", {}).values()
    windows = sum(s.get("num_windows", 0) for s in splits)
    streams = sum(s.get("num_streams", 0) for s in splits)
    tail = f"{windows} windows in {streams} streams"
    if "fim_examples" in obj:
        kinds: dict[str, int] = {}
        for s in splits:
            for k, v in s.get("span_kinds", {}).items():
                kinds[k] = kinds.get(k, 0) + v
        shares = ", ".join(f"{k} {_pct(v, obj['fim_examples'])}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        return f"pack: {obj['ntp']} NTP documents + {obj['fim_examples']} FIM examples ({shares}), {tail}"
    docs = sum(obj.get(k, 0) for k in ("ntp", "fim", "sfim"))
    langs = {k: sum(v.get(o, 0) for o in ("ntp", "fim", "sfim")) for k, v in summary.get("languages", {}).items()}
    top = ", ".join(f"{k} {_pct(v, docs)}" for k, v in sorted(langs.items(), key=lambda kv: -kv[1])[:4])
    mix = ", ".join(f"{k} {_pct(obj.get(k, 0), docs)}" for k in ("ntp", "fim", "sfim"))
    return f"pack: {docs} documents ({mix}{'; ' + top if top else ''}), {tail}"
