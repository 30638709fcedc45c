"""aiXcoder's special tokens: the one list every other module imports.

Our byte-level BPE gives them ids 0..10 in this order, so <unk>=0, <s>=1, </s>=2 as in aiXcoder-7B.
aiXcoder's own SentencePiece model spells the sentinels with a leading U+2581 ("▁<AIX-SPAN-PRE>",
ids 260..266; research/aixcoder-7b.md §1.2); `SENTENCEPIECE_SPELLING` maps ours to theirs.

Documents and prompts are built as lists of *pieces* (see lightcoder.fim.transforms): a piece equal
to one of these strings is that special token; any other piece is literal text and is never scanned
for special tokens, so source code that happens to contain "<s>" stays text.
"""

class Special(str):
    """A piece that is one special token (a str, so Tokenizer.encode_pieces accepts it as is); FIM
    templates of other families (infer/templates.py) build their prompts from these."""


UNK = "<unk>"
BOS = "<s>"  # starts every document / prompt
EOS = "</s>"  # ends every document; the model emits it when a completion is done
FIM_PREFIX = "<AIX-SPAN-PRE>"  # opens a FIM document (PSM: the prefix follows; SPM: POST follows)
FIM_MIDDLE = "<AIX-SPAN-MIDDLE>"  # the middle follows (PSM), or header+prefix then middle (SPM)
FIM_SUFFIX = "<AIX-SPAN-POST>"  # the suffix follows
END_TURN = "<AIX-END-TURN>"  # chat turn end (instruct models); a stop token
SYSTEM = "<AIX-SYSTEM>"
USER = "<AIX-USER>"
ASSISTANT = "<AIX-ASSISTANT>"
PAD = "<pad>"  # aiXcoder has none (falls back to eos); ours exists so batched eval can pad

SPECIAL_TOKENS: tuple[str, ...] = (
    UNK, BOS, EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, END_TURN, SYSTEM, USER, ASSISTANT, PAD,
)

# The reference generator stops on {bos, eos, pad, END-TURN, PRE, MIDDLE, POST} (sess_megatron).
STOP_TOKENS: tuple[str, ...] = (BOS, EOS, PAD, END_TURN, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX)

SENTENCEPIECE_SPELLING: dict[str, str] = {
    tok: "\u2581" + tok for tok in (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, END_TURN, SYSTEM, USER, ASSISTANT)
}


def is_special(piece: str) -> bool:
    return piece in _SPECIAL_SET


_SPECIAL_SET = frozenset(SPECIAL_TOKENS)
