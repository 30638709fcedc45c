"""`Tokenizer`: our byte-level BPE (HF `tokenizers`) with aiXcoder's special tokens at ids 0..10.

Files (`save`/`load`), loadable by `transformers.AutoTokenizer.from_pretrained(dir)`:

    tokenizer.json            the HF `tokenizers` model (pre-tokenizer, merges, added tokens)
    tokenizer_config.json     PreTrainedTokenizerFast; bos/eos/unk/pad; AIX tokens as additional specials
    special_tokens_map.json   the same special tokens, for older transformers

Two views of special tokens, on purpose:
- ours: `encode(text)` never parses special-token strings inside text ("<s>" in source code is
  three text tokens); special tokens enter only as whole pieces in `encode_pieces`;
- HF's: `AutoTokenizer(text)` parses them (aiXcoder's own wrappers write "<s>" into the prompt
  string), and adds nothing itself (no BOS). So HF(text) == encode_pieces(split_specials(text)),
  and HF(text) == encode(text) for text without special-token strings.

Example: tok.encode_pieces(["<s>", "<AIX-SPAN-PRE>", "x = 1"]) -> [1, 3, *tok.encode("x = 1")]
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from lightcoder.artifacts import write_text_atomic
from lightcoder.tokenizer.special_tokens import BOS, EOS, PAD, SPECIAL_TOKENS, STOP_TOKENS, UNK

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_MAP_FILE = "special_tokens_map.json"

_NAMED = {UNK, BOS, EOS, PAD}
ADDITIONAL_SPECIAL_TOKENS: tuple[str, ...] = tuple(t for t in SPECIAL_TOKENS if t not in _NAMED)
_SPECIAL_ID = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
_SPECIAL_SPLIT_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


class Tokenizer:
    """Byte-level BPE over HF `tokenizers`; lossless: decode(encode(x)) == x for every str x."""

    def __init__(self, backend: HFTokenizer) -> None:
        for i, tok in enumerate(SPECIAL_TOKENS):
            if backend.token_to_id(tok) != i:
                raise ValueError(
                    f"tokenizer has {tok!r} at id {backend.token_to_id(tok)}, expected {i}: special "
                    f"tokens must take ids 0..{len(SPECIAL_TOKENS) - 1} in special_tokens.SPECIAL_TOKENS "
                    "order; retrain it with `lightcoder tokenizer`"
                )
        # Text is text: special-token strings inside it are byte-level encoded like any other text.
        # Set on our instance only; the saved tokenizer.json keeps HF's default (parse them).
        backend.encode_special_tokens = True
        self.backend = backend
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        self.bos_id: int = _SPECIAL_ID[BOS]
        self.eos_id: int = _SPECIAL_ID[EOS]
        self.pad_id: int = _SPECIAL_ID[PAD]
        self.unk_id: int = _SPECIAL_ID[UNK]
        self.stop_ids: frozenset[int] = frozenset(_SPECIAL_ID[t] for t in STOP_TOKENS)

    # ---------------------------------------------------------------- files

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load from a tokenizer dir (or its tokenizer.json), e.g. RUN/tokenizer or a checkpoint dir."""
        p = Path(path)
        file = p if p.is_file() else p / TOKENIZER_FILE
        if not file.exists():
            raise ValueError(f"no {TOKENIZER_FILE} at {p}: run `lightcoder tokenizer` to train one")
        try:
            backend = HFTokenizer.from_file(str(file))
        except Exception as e:  # the Rust side raises a bare Exception on malformed JSON
            raise ValueError(f"cannot read {file}: {e}; retrain with `lightcoder tokenizer --force`") from e
        return cls(backend)

    def save(self, out_dir: str | Path) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (each atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # Serialize without our encode_special_tokens switch so HF loaders get their usual behaviour.
        self.backend.encode_special_tokens = False
        try:
            write_text_atomic(out / TOKENIZER_FILE, self.backend.to_str(pretty=True))
        finally:
            self.backend.encode_special_tokens = True
        special_map = {
            "bos_token": BOS,
            "eos_token": EOS,
            "unk_token": UNK,
            "pad_token": PAD,
            "additional_special_tokens": list(ADDITIONAL_SPECIAL_TOKENS),
        }
        config = {
            # PreTrainedTokenizerFast + additional_special_tokens load in transformers 4.x and 5.x
            # (5.x maps them to TokenizersBackend / extra_special_tokens).
            "tokenizer_class": "PreTrainedTokenizerFast",
            **special_map,
            "add_bos_token": False,  # documents/prompts carry <s> as an explicit piece
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,  # keep decode exact
            "model_input_names": ["input_ids", "attention_mask"],
        }
        write_text_atomic(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        write_text_atomic(out / SPECIAL_MAP_FILE, json.dumps(special_map, indent=2) + "\n")

    # ---------------------------------------------------------------- encode / decode

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; adds no special tokens and parses none inside the text."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text, in parallel threads (HF tokenizers)."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode_pieces(self, pieces: Sequence[str]) -> list[int]:
        """Pieces -> ids: a special-token string is its id, any other piece is encoded as text.

        Example: encode_pieces(["<s>", "x = 1", "</s>"]) -> [1, *encode("x = 1"), 2]
        """
        return self.encode_pieces_batch([pieces])[0]

    def encode_pieces_batch(self, docs: Sequence[Sequence[str]]) -> list[list[int]]:
        """`encode_pieces` of many documents with one batched encode of all their text pieces."""
        texts = [p for doc in docs for p in doc if p not in _SPECIAL_ID]
        encoded = iter(self.encode_batch(texts)) if texts else iter(())
        out = []
        for doc in docs:
            ids: list[int] = []
            for p in doc:
                special = _SPECIAL_ID.get(p)
                if special is None:
                    ids.extend(next(encoded))
                else:
                    ids.append(special)
            out.append(ids)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids; special tokens are written as their strings ("<s>")."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int:
        i = self.backend.token_to_id(token)
        if i is None:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return i

    def id_to_token(self, i: int) -> str:
        tok = self.backend.id_to_token(i)
        if tok is None:
            raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
        return tok


def split_special(text: str) -> list[str]:
    """Split text at special-token strings, as HF tokenizers do when they parse them.

    Example: split_special("a<s>b") -> ["a", "<s>", "b"]
    """
    return [p for p in _SPECIAL_SPLIT_RE.split(text) if p]
