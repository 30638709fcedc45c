"""Writers of packed token windows: `<split>.bin` (and `<split>.mask.bin` for context-level FIM).

StreamWindowWriter: documents concatenated into one stream and cut into windows of exactly seq_len
tokens (document-level packing; windows start mid-document, as in aiXcoder).

ExampleWindowWriter: context-level FIM packing. NTP documents form a stream as above, and FIM examples
end windows: as many whole examples as fit, in order, after as many stream tokens as fill the rest:

    window = [ NTP stream tokens ][ <s> example 1 ... middle </s> ][ <s> example 2 ... </s> ]

Each example starts with `<s>`, so block-causal attention keeps it apart from what comes before it
(a window with no example is all stream). When the stream runs dry at the end of a split, EOS tokens
without a loss pad the window instead. The parallel uint8 mask gives each token's role as a
target (fim/context.py): NO_LOSS (padding, an example's `<s>`), PROMPT (the example's prompt), TARGET
(stream tokens, the middle and its `</s>`).

Both writers commit their files atomically (artifacts.AtomicFile) on close() and delete them on
abort(), and record the window where each repository starts (`streams()`, Transformer-XL ordering).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from lightcoder.artifacts import AtomicFile
from lightcoder.fim.context import Example

_FLUSH_TOKENS = 1 << 20  # write to disk every ~1M tokens
# A token's role as a target, the values of <split>.mask.bin: never a loss (padding, an example's <s>
# after unrelated stream tokens), the prompt of a FIM example, a loss target (stream, middle, </s>).
NO_LOSS, PROMPT, TARGET = 0, 1, 2


def loss_mask(example: Example) -> list[int]:
    """Per-token roles of an example: NO_LOSS on its <s>, PROMPT on the rest of the prompt, TARGET after.

    Example: an example of 10 ids with prompt_len 7 -> [0, 1, 1, 1, 1, 1, 1, 2, 2, 2]
    """
    return [NO_LOSS] + [PROMPT] * (example.prompt_len - 1) + [TARGET] * (len(example.ids) - example.prompt_len)


def check_document(ids: list[int], bos_id: int, path: str) -> None:
    """Every packed document holds exactly one <s>, at its start (the loader's block boundaries)."""
    if not ids or ids[0] != bos_id or ids.count(bos_id) != 1:
        raise ValueError(
            f"pack: the document of {path} does not hold exactly one <s> at its start: the "
            "tokenizer turned special-token text inside the code into special ids; use a "
            "lightcoder Tokenizer (it encodes text with special-token parsing disabled)")


def streams_from_starts(starts: list[int], num_windows: int) -> list[list[int]]:
    """[first_window, num_windows] per stream from the windows where repositories start.

    Example: streams_from_starts([0, 3, 3, 5], 7) -> [[0, 3], [3, 2], [5, 2]]
    """
    firsts = sorted({w for w in starts if w < num_windows} | {0}) if num_windows else []
    ends = firsts[1:] + [num_windows]
    return [[a, b - a] for a, b in zip(firsts, ends)]


class StreamWindowWriter:
    """Appends token lists to a temp file next to path in whole windows; close() drops the tail."""

    def __init__(self, path: Path, seq_len: int, dtype: np.dtype, bos_id: int) -> None:
        self.path, self.seq_len, self.dtype, self.bos_id = path, seq_len, dtype, bos_id
        self.file = AtomicFile(path, "wb")
        self.pending: list[np.ndarray] = []
        self.num_pending = 0
        self.num_windows = 0
        self.num_stream_tokens = 0
        self.repo_offsets: list[int] = []  # stream offset of each repository's first token

    def add_document(self, ids: list[int], starts_repo: bool, path: str) -> None:
        check_document(ids, self.bos_id, path)
        if starts_repo:
            self.repo_offsets.append(self.num_stream_tokens)
        self.pending.append(np.asarray(ids, dtype=self.dtype))
        self.num_pending += len(ids)
        self.num_stream_tokens += len(ids)
        if self.num_pending >= _FLUSH_TOKENS:
            self._flush()

    def streams(self) -> list[list[int]]:
        """Window w belongs to the repository owning token w * seq_len."""
        return streams_from_starts([-(-off // self.seq_len) for off in self.repo_offsets], self.num_windows)

    def _flush(self) -> None:
        if not self.pending:
            return
        stream = np.concatenate(self.pending)
        n = len(stream) // self.seq_len
        self.file.write(stream[: n * self.seq_len].tobytes())
        self.num_windows += n
        tail = stream[n * self.seq_len:]
        self.pending, self.num_pending = [tail], len(tail)

    def close(self) -> None:
        self._flush()  # the remaining tail (< seq_len tokens) is dropped
        self.file.commit()

    def abort(self) -> None:
        self.file.abort()


class ExampleWindowWriter:
    """Stream documents plus FIM examples, each example at the end of its own window (module docstring)."""

    def __init__(self, path: Path, mask_path: Path, seq_len: int, dtype: np.dtype, bos_id: int, pad_id: int) -> None:
        self.seq_len, self.dtype, self.bos_id, self.pad_id = seq_len, dtype, bos_id, pad_id
        self.file, self.mask_file = AtomicFile(path, "wb"), AtomicFile(mask_path, "wb")
        self.stream: deque[np.ndarray] = deque()  # NTP tokens not yet in a window
        self.num_stream = 0
        self.examples: deque[Example] = deque()
        self.windows: list[np.ndarray] = []  # (tokens, mask) rows not yet written
        self.masks: list[np.ndarray] = []
        self.num_windows = 0
        self.num_stream_tokens = 0  # NTP tokens added
        self.num_padding = 0  # EOS tokens that filled windows when the stream ran dry
        self.repo_windows: list[int] = []  # the next window's index when a repository started

    def add_document(self, ids: list[int], starts_repo: bool, path: str) -> None:
        check_document(ids, self.bos_id, path)
        if starts_repo:
            self.repo_windows.append(self.num_windows + len(self.windows))
        self.stream.append(np.asarray(ids, dtype=self.dtype))
        self.num_stream += len(ids)
        self.num_stream_tokens += len(ids)

    def add_example(self, example: Example) -> None:
        if len(example.ids) > self.seq_len:
            raise ValueError(f"pack: a FIM example of {len(example.ids)} tokens is longer than the "
                             f"window ({self.seq_len}); fim/context.build_example caps it")
        self.examples.append(example)

    def pump(self, *, final: bool = False) -> None:
        """Emit every window that can be filled: examples first (they wait for stream tokens), then
        all-stream windows while no example waits. final: pad the last examples' windows with EOS."""
        while self.examples:
            count, used = 0, 0  # the examples that fit in one window, in order (at least one)
            while count < len(self.examples) and used + len(self.examples[count].ids) <= self.seq_len:
                used += len(self.examples[count].ids)
                count += 1
            need = self.seq_len - used
            if self.num_stream < need and not final:
                break
            examples = [self.examples.popleft() for _ in range(count)]
            head = self._take_stream(min(need, self.num_stream))
            pad = need - len(head)
            self.num_padding += pad
            self._emit(np.concatenate([np.full(pad, self.pad_id, self.dtype), head,
                                       *(np.asarray(e.ids, self.dtype) for e in examples)]),
                       np.concatenate([np.full(pad, NO_LOSS, np.uint8), np.full(len(head), TARGET, np.uint8),
                                       *(np.asarray(loss_mask(e), np.uint8) for e in examples)]))
        while not self.examples and self.num_stream >= self.seq_len:
            self._emit(self._take_stream(self.seq_len), np.full(self.seq_len, TARGET, np.uint8))
        if len(self.windows) * self.seq_len >= _FLUSH_TOKENS or final:
            self._flush()

    def _take_stream(self, n: int) -> np.ndarray:
        parts, left = [], n
        while left:
            head = self.stream[0]
            if len(head) <= left:
                parts.append(self.stream.popleft())
                left -= len(head)
            else:
                parts.append(head[:left])
                self.stream[0] = head[left:]
                left = 0
        self.num_stream -= n
        return np.concatenate(parts) if parts else np.zeros(0, self.dtype)

    def _emit(self, tokens: np.ndarray, mask: np.ndarray) -> None:
        assert len(tokens) == len(mask) == self.seq_len
        self.windows.append(tokens)
        self.masks.append(mask)

    def _flush(self) -> None:
        if self.windows:
            self.file.write(np.concatenate(self.windows).tobytes())
            self.mask_file.write(np.concatenate(self.masks).tobytes())
            self.num_windows += len(self.windows)
            self.windows, self.masks = [], []

    def streams(self) -> list[list[int]]:
        return streams_from_starts(self.repo_windows, self.num_windows)

    def close(self) -> None:
        self.pump(final=True)  # the stream's tail (< seq_len tokens, no example after it) is dropped
        self.file.commit()
        self.mask_file.commit()

    def abort(self) -> None:
        self.file.abort()
        self.mask_file.abort()
