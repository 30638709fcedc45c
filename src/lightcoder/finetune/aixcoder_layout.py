"""A SentencePiece `tokenizer.model` in aiXcoder-7B's layout, trained on any text (research/aixcoder-7b.md §1.2).

aiXcoder's own model cannot be downloaded here; tests and benchmarks/bench_finetune_7b.py train a small
one with the same shape of vocabulary: BPE with byte fallback, `<unk>`=0 `<s>`=1 `</s>`=2, the 256 byte
pieces, then the "▁"-spelled sentinels from id 260 (`▁<AIX-SPAN-PRE>`=260, MIDDLE 261, POST 262,
END-TURN 263, SYSTEM 264, USER 265, ASSISTANT 266), no pad piece, no normalisation (code keeps its
whitespace). "☺" (the join mark of the ☺ rule) takes id 259.

Example: make_aixcoder_tokenizer(["def f(x):\\n    return x\\n"] * 50, out_dir, vocab_size=600)
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from lightcoder.tokenizer.backends import JOIN_MARK
from lightcoder.tokenizer.special_tokens import SENTENCEPIECE_SPELLING

FIRST_SENTINEL_ID = 260  # ▁<AIX-SPAN-PRE> in the release


def make_aixcoder_tokenizer(texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = 600) -> Path:
    """Train the model on `texts` (lines) and write out_dir/tokenizer.model; returns its path."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, character_coverage=1.0,
        user_defined_symbols=[JOIN_MARK, *SENTENCEPIECE_SPELLING.values()],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, split_digits=True)
    path = out / "tokenizer.model"
    path.write_bytes(release_order(buf.getvalue()))
    return path


def release_order(model_bytes: bytes) -> bytes:
    """The trainer puts user-defined pieces right after </s> (ids 3..) and the byte pieces after them;
    the release has the 256 byte pieces at 3..258, then ☺ and the sentinels: move them there."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    model.ParseFromString(model_bytes)
    pieces = list(model.pieces)
    kind = pb.ModelProto.SentencePiece
    control = pieces[:3]
    user = [p for p in pieces if p.type == kind.USER_DEFINED]
    byte = [p for p in pieces if p.type == kind.BYTE]
    rest = [p for p in pieces[3:] if p.type not in (kind.USER_DEFINED, kind.BYTE)]
    reordered = [*control, *byte, *user, *rest]
    if len(byte) != 256 or reordered[FIRST_SENTINEL_ID].piece != SENTENCEPIECE_SPELLING["<AIX-SPAN-PRE>"]:
        raise RuntimeError("the trained SentencePiece model does not have aiXcoder's layout (256 byte pieces, "
                           "then ☺ and the sentinels); check sentencepiece's trainer options")
    del model.pieces[:]
    model.pieces.extend(reordered)
    return model.SerializeToString()
