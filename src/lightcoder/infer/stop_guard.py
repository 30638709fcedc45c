"""Stop guards: rules that keep a completion from ending where no editor user wants it to end.

A guard is a function of the ids generated so far that returns True while the output must go on; the
decoders apply it by taking the stop ids out of the choice (infer/penalties.Penalty). One rule so far:

**A completion is never only a triple quote.** The commonest middle in packed Python data is a line that
is only `\"\"\"` (every multi-line docstring closes with one; 1.0 % of the FIM middles), so a small model
learns that three quotes alone are a whole middle. Where they *open* a docstring, stopping there leaves
the rest of the file inside a string. Fine-tuned on docstring-heavy packages, models did this on 3-7 of
16 held-out method bodies; with this guard their edit similarity rose 0.7-1.5 points, the bases' and
the stdlib quickstarts' did not move, and stop rates were unchanged (docs/finetune.md, "Other packages").

Example: guard = lone_opener_guard(tok.decode, prefix="def f():\\n    ", language="Python")
    guard(tok.encode('\"\"\"')) -> True; guard(tok.encode('\"\"\"Doc.')) -> False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lightcoder.infer.penalties import StopGuard

TRIPLE_QUOTES = ('"""', "'''")
STRING_PREFIXES = "rbuRBUfF"  # r""" b''' f""" ...
MAX_GUARDED_IDS = 4  # a lone opener is a few ids at most; past that the guard never holds (and costs nothing)


def lone_opener_guard(decode: Callable[[Sequence[int]], str], *, prefix: str, language: str | None,
                      middle: str = "") -> StopGuard | None:
    """The guard for one Python request, or None: another language; the cursor inside a triple-quoted
    string already (three quotes would close it, and may well end the middle); or the cursor after code
    on its line, where no docstring opens. middle: text the client already placed after the cursor
    (llama.cpp's /infill `prompt`), read as part of the completion. A guarded request is decoded as a
    penalized one: it never replays a cached greedy continuation, so guarding only line starts keeps
    that reuse for the keystrokes typed mid-line."""
    if language != "Python" or sum(prefix.count(q) for q in TRIPLE_QUOTES) % 2:
        return None
    typed = (prefix[prefix.rfind("\n") + 1:] + middle).strip().lstrip(STRING_PREFIXES)
    if typed not in ("", '"', '""', "'", "''"):
        return None

    def must_go_on(ids: Sequence[int]) -> bool:
        if len(ids) > MAX_GUARDED_IDS:
            return False
        return (middle + decode(list(ids))).strip().lstrip(STRING_PREFIXES) in TRIPLE_QUOTES

    return must_go_on
