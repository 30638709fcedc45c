"""Tokenizers of checkpoints we did not train: aiXcoder's SentencePiece `tokenizer.model`, and the
`tokenizer.json` of other Llama-architecture families. Same interface as `Tokenizer` (encode,
decode, encode_pieces, vocab_size, bos_id, eos_id, stop_ids, token_to_id).

SentencePiece (aiXcoder-7B release layout, research/aixcoder-7b.md §1.2):
- special pieces are spelled with a leading U+2581: our "<AIX-SPAN-PRE>" is the piece "▁<AIX-SPAN-PRE>";
- SentencePiece adds a dummy-prefix "▁" at the start of every encode call, so a text segment is
  encoded as "☺" + segment and the ids of "☺" are dropped (the ☺ rule); decode is the reverse:
  decode([id("☺")...] + ids) minus the leading "☺".

Example:
    tok = load_tokenizer("aixcoder-7b-base/")      # picks the backend from the files present
    tok.encode_pieces(["<s>", "<AIX-SPAN-PRE>", "x = 1"])  # [1, id("▁<AIX-SPAN-PRE>"), *ids("x = 1")]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lightcoder.tokenizer.special_tokens import BOS, EOS, SENTENCEPIECE_SPELLING, STOP_TOKENS, UNK, Special

JOIN_MARK = "☺"  # aiXcoder's pad_token argument of input_wrapper


class SentencePieceTokenizer:
    """aiXcoder-7B's tokenizer.model with the ☺ segment-join rule."""

    def __init__(self, model_file: str | Path):
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self.vocab_size: int = self.sp.get_piece_size()
        self._mark_ids = self.sp.encode(JOIN_MARK)
        self.bos_id, self.eos_id, self.unk_id = self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id()
        self.pad_id = self.eos_id  # aiXcoder has no pad token; its generator falls back to eos
        self.stop_ids = frozenset(i for i in (self._special_id(t) for t in STOP_TOKENS) if i is not None)

    def _special_id(self, name: str) -> int | None:
        """Id of a special token given by our name ("<AIX-SPAN-PRE>") or its SentencePiece spelling."""
        if name == BOS:
            return self.bos_id
        if name == EOS:
            return self.eos_id
        if name == UNK:
            return self.unk_id
        for piece in (SENTENCEPIECE_SPELLING.get(name, name), name):
            i = self.sp.piece_to_id(piece)
            if i != self.unk_id:
                return i
        return None

    def has_token(self, token: str) -> bool:
        return self._special_id(token) is not None

    def encode(self, text: str) -> list[int]:
        """Ids of a segment with no dummy prefix (the ☺ rule), so segments join exactly."""
        if not text:
            return []
        ids = self.sp.encode(JOIN_MARK + text)
        n = len(self._mark_ids)
        if ids[:n] == self._mark_ids:
            return ids[n:]
        # "☺" merged with the text's first characters: drop the mark's pieces by decoded length.
        for k in range(1, len(ids) + 1):
            if self.sp.decode(ids[:k]).startswith(JOIN_MARK):
                rest = self.sp.decode(ids[:k])[len(JOIN_MARK):]
                return (self.sp.encode(JOIN_MARK + rest)[n:] if rest else []) + ids[k:]
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_pieces(self, pieces: Sequence[str]) -> list[int]:
        """Special-token pieces (our names, or "▁"-spelled) become their ids; text uses the ☺ rule."""
        ids: list[int] = []
        for p in pieces:
            special = self._special_id(p) if (p.startswith("<") or p.startswith("\u2581<")) else None
            if special is not None and (p in SENTENCEPIECE_SPELLING or p in SENTENCEPIECE_SPELLING.values()
                                        or p in (BOS, EOS, UNK)):
                ids.append(special)
            else:
                ids.extend(self.encode(p))
        return ids

    def encode_pieces_batch(self, docs: Sequence[Sequence[str]]) -> list[list[int]]:
        return [self.encode_pieces(d) for d in docs]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids as a continuation (no dummy-prefix space removed from its start)."""
        if not ids:
            return ""
        text = self.sp.decode(self._mark_ids + list(ids))
        return text[len(JOIN_MARK):] if text.startswith(JOIN_MARK) else text

    def token_to_id(self, token: str) -> int:
        i = self._special_id(token)
        if i is None:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return i

    def id_to_token(self, i: int) -> str:
        return self.sp.id_to_piece(i)


class ForeignTokenizer:
    """A `tokenizer.json` of another family (StarCoder, DeepSeek-Coder, Qwen2.5-Coder, CodeLlama...).

    Special tokens come from the template (lightcoder.infer.templates, as `Special` pieces); text pieces
    are encoded without parsing special-token strings inside them.
    """

    def __init__(self, path: str | Path, stop_tokens: Sequence[str] = ()):
        from tokenizers import Tokenizer as HFTokenizer

        file = Path(path)
        file = file if file.is_file() else file / "tokenizer.json"
        try:
            self.backend = HFTokenizer.from_file(str(file))
        except Exception as e:  # the Rust side raises a bare Exception on malformed JSON
            raise ValueError(f"cannot read {file}: {e}; copy an intact tokenizer.json next to the weights "
                             "(the base model's, or the run's tokenizer/)") from e
        self.backend.encode_special_tokens = True
        self.vocab_size = self.backend.get_vocab_size(with_added_tokens=True)
        config = _read_config(file.parent)
        self.bos_id = self._id(_token_str(config.get("bos_token")))
        self.eos_id = self._id(_token_str(config.get("eos_token")))
        self.pad_id = self._id(_token_str(config.get("pad_token")))
        self.unk_id = self._id(_token_str(config.get("unk_token")))
        self.set_stop_tokens(stop_tokens)
        self._mark_ids = self._dummy_prefix_mark()

    def _dummy_prefix_mark(self) -> list[int] | None:
        """The ids of JOIN_MARK where this tokenizer puts SentencePiece's "▁" before every text it encodes
        (Llama-2 / CodeLlama tokenizer.json: a Prepend normalizer or a prepending Metaspace), else None.

        Such a tokenizer would put a space before every piece of a FIM prompt and every middle; CodeLlama's
        own code encodes infilling text after a mark and drops the mark's ids, and so do `encode`/`decode`."""
        probe = self.backend.encode("a", add_special_tokens=False).tokens
        if not probe or not probe[0].startswith("▁"):
            return None
        return self.backend.encode(JOIN_MARK, add_special_tokens=False).ids

    def set_stop_tokens(self, tokens: Sequence[str]) -> None:
        ids = {self._id(t) for t in tokens} | {self.eos_id}
        self.stop_ids = frozenset(i for i in ids if i is not None)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    def has_token(self, token: str) -> bool:
        return self._id(token) is not None

    def encode(self, text: str) -> list[int]:
        """Ids of a text piece, with no dummy-prefix "▁" before it (see `_dummy_prefix_mark`)."""
        if self._mark_ids is None:
            return self.backend.encode(text, add_special_tokens=False).ids
        if not text:
            return []
        ids, n = self.backend.encode(JOIN_MARK + text, add_special_tokens=False).ids, len(self._mark_ids)
        if ids[:n] != self._mark_ids:  # the mark merged with the text: keep the tokenizer's own ids
            return self.backend.encode(text, add_special_tokens=False).ids
        return ids[n:]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self._mark_ids is not None:
            return [self.encode(t) for t in texts]
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode_pieces(self, pieces: Sequence[str]) -> list[int]:
        ids: list[int] = []
        for p in pieces:
            special = self._id(p) if isinstance(p, Special) else None
            if isinstance(p, Special) and special is None:
                raise ValueError(f"special token {p!r} is not in this tokenizer's vocabulary; wrong --template?")
            ids.extend([special] if special is not None else self.encode(p))
        return ids

    def encode_pieces_batch(self, docs: Sequence[Sequence[str]]) -> list[list[int]]:
        return [self.encode_pieces(d) for d in docs]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; where the tokenizer adds a dummy prefix its decoder drops a leading space, so the ids
        are decoded after the mark, whose text is then cut off (a middle keeps its leading space)."""
        if self._mark_ids is None:
            return self.backend.decode(list(ids), skip_special_tokens=False)
        text = self.backend.decode(self._mark_ids + list(ids), skip_special_tokens=False)
        at = text.find(JOIN_MARK)
        return text[at + len(JOIN_MARK):] if at >= 0 else self.backend.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int:
        i = self._id(token)
        if i is None:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return i

    def id_to_token(self, i: int) -> str:
        return self.backend.id_to_token(i)


def _read_config(directory: Path) -> dict:
    try:
        return json.loads((directory / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return {}


def _token_str(value) -> str | None:
    if isinstance(value, dict):  # {"content": "<s>", ...} in older tokenizer configs
        return value.get("content")
    return value


def load_tokenizer(directory: str | Path):
    """Our `Tokenizer` when tokenizer.json has our special tokens, else aiXcoder's SentencePiece
    tokenizer.model, else another family's tokenizer.json. ValueError naming the dir otherwise."""
    from lightcoder.tokenizer.tokenizer import Tokenizer

    d = Path(directory)
    if (d / "tokenizer.json").is_file():
        try:
            return Tokenizer.load(d)
        except ValueError:
            if not (d / "tokenizer.model").is_file():
                return ForeignTokenizer(d / "tokenizer.json")
    if (d / "tokenizer.model").is_file():
        return SentencePieceTokenizer(d / "tokenizer.model")
    raise ValueError(f"no tokenizer.json or tokenizer.model in {d}; copy the tokenizer files next to the weights")
