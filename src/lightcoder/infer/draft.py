"""Prompt-lookup drafts for exact speculative greedy decoding.

Decoding a small model on a CPU is bound by reading the weights once per token; one pass over T
tokens costs little more than a pass over one. Code repeats itself (names, calls, the suffix the
completion runs into), so the ids that followed the latest earlier occurrence of the last few ids
are a cheap guess at what comes next. The engine feeds the guess in one pass (FusedDecoder.verify)
and keeps the longest part that greedy decoding would have chosen anyway: the output is the same
token for token, only the number of weight passes drops.

Example:
    prompt_lookup_draft([4, 5, 6, 7, 8, 9, 4, 5, 6], max_tokens=3)  # -> [7, 8, 9]: "4 5 6" was followed by "7 8 9"
"""

from __future__ import annotations


def prompt_lookup_draft(context: list[int], max_tokens: int, *, min_ngram: int = 3, max_ngram: int = 6,
                        window: int = 2048) -> list[int]:
    """Up to max_tokens ids that followed the latest earlier occurrence of context's last n ids, for the
    longest n in [min_ngram, max_ngram] that occurs; [] when none does. Only the last `window` ids
    are searched (a Python scan, ~50 us per call for a 1k-id context).

    min_ngram 3: shorter matches guess wrong too often. On the typing-replay benchmark 91% of the
    drafted ids were accepted with n >= 3 against 40% with n >= 2, and a rejected id costs a row of
    every matmul."""
    end = len(context)
    if max_tokens <= 0 or end <= min_ngram:
        return []
    tail_start = end - min_ngram
    tail = context[tail_start:]
    best, best_n = -1, 0
    i = max(0, end - window) - 1
    while True:  # every earlier occurrence of the last min_ngram ids; list.index scans in C
        try:
            i = context.index(tail[0], i + 1, tail_start)
        except ValueError:
            break
        if context[i:i + min_ngram] != tail:
            continue
        n = min_ngram  # extend the match to the left, up to max_ngram ids
        while n < max_ngram and i - (n - min_ngram) > 0 and \
                context[i - (n - min_ngram) - 1] == context[tail_start - (n - min_ngram) - 1]:
            n += 1
        if n >= best_n:  # longest match, the latest among equals
            best, best_n = i, n
    if best < 0:
        return []
    return context[best + min_ngram:min(best + min_ngram + max_tokens, end)]


def accept_draft(entry, fed: list[int], draft: list[int], chosen: list[int]) -> int:
    """Keep the longest head of `draft` that greedy decoding picks anyway; returns its length.

    chosen[i] is the greedy id after fed + draft[:i] (len(draft) + 1 ids). entry (a prefix-cache
    CacheEntry) grows by fed and the accepted ids, and its `pending` id becomes the greedy id after them.
    Example: draft [7, 8, 9], chosen [7, 8, 5, 1] -> 2; entry.tokens += fed + [7, 8], entry.pending = 5
    """
    accepted = 0
    while accepted < len(draft) and draft[accepted] == chosen[accepted]:
        accepted += 1
    entry.tokens.extend(fed)
    entry.tokens.extend(draft[:accepted])
    entry.pending = chosen[accepted]
    return accepted
