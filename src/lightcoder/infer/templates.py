"""FIM prompt templates of code-model families, as lists of pieces (a `Special` piece is one token).

aiXcoder's own layouts (research/aixcoder-7b.md §1.4) come from lightcoder.fim.transforms, so
training and inference can never disagree; the other families are written from their model cards:

    aixcoder      SPM: <s> PRE POST S MIDDLE H+P          PSM: <s> PRE H+P POST S MIDDLE
    starcoder     PSM: <fim_prefix>P<fim_suffix>S<fim_middle>            (StarCoder, StarCoder2)
    deepseek      PSM: <｜begin▁of▁sentence｜><｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>
    qwen2.5-coder PSM: <|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>
    codellama     PSM: <s><PRE> P <SUF>S <MID>     SPM: <s><PRE> <SUF>S <MID> P   (" " before P, as
                  its tokenizer's dummy prefix puts it)

API (used by the server and by evaluation):
    t = get_template("qwen2.5-coder")          # or detect_template(has_token) for a tokenizer
    t.fim_pieces(prefix, suffix, mode="psm")   # -> [Special("<|fim_prefix|>"), prefix, ...]
    t.ntp_pieces(prefix)                       # plain continuation (no suffix)
    t.context_pieces([("a/util.py", code)])    # cross-file snippets, placed before the FIM prompt
    t.stop_tokens                              # token strings that end a completion
A tokenizer's `encode_pieces` turns pieces into ids: `Special` pieces by vocabulary lookup, the rest
encoded as text (lightcoder.tokenizer.backends).

Example: get_template("starcoder").fim_pieces("a", "c") -> ["<fim_prefix>", "a", "<fim_suffix>", "c", "<fim_middle>"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lightcoder.fim.transforms import ntp_prompt, psm_prompt, spm_prompt
from lightcoder.tokenizer import special_tokens as aix
from lightcoder.tokenizer.special_tokens import Special


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix_token: str
    suffix_token: str
    middle_token: str
    stop_tokens: tuple[str, ...]
    bos_token: str | None = None  # written first when set
    modes: tuple[str, ...] = ("psm",)  # FIM orders the family was trained on; modes[0] is the default
    prefix_lead: str = ""  # text put right before the prefix (CodeLlama's space)
    file_marker: str | None = None  # special token that opens a cross-file snippet (StarCoder2, Qwen)
    identified_by: str = ""  # a vocabulary entry that only this family has

    @property
    def default_mode(self) -> str:
        return self.modes[0]

    def check_mode(self, mode: str | None) -> str:
        mode = mode or self.default_mode
        if mode not in self.modes:
            raise ValueError(f"template {self.name!r} supports FIM modes {self.modes}, not {mode!r}")
        return mode

    def fim_pieces(self, prefix: str, suffix: str, *, mode: str | None = None, header: str = "") -> list[str]:
        """The prompt for filling in between prefix and suffix (the model writes the middle next)."""
        mode = self.check_mode(mode)
        bos = [Special(self.bos_token)] if self.bos_token else []
        pre, suf, mid = Special(self.prefix_token), Special(self.suffix_token), Special(self.middle_token)
        code = header + prefix
        if mode == "spm":
            return _pieces(*bos, pre, suf, suffix, mid, self.prefix_lead + code)
        return _pieces(*bos, pre, self.prefix_lead + code, suf, suffix, mid)

    def ntp_pieces(self, prefix: str, *, header: str = "") -> list[str]:
        bos = [Special(self.bos_token)] if self.bos_token else []
        return _pieces(*bos, header + prefix)

    def context_pieces(self, snippets: Sequence[tuple[str, str]]) -> list[str]:
        """Cross-file snippets (path, code) as they go before the prompt."""
        out: list[str] = []
        for path, code in snippets:
            if self.file_marker:
                out += _pieces(Special(self.file_marker), f"{path}\n{code}\n")
            else:
                out += _pieces(f"# {path}\n{code}\n")
        return out


@dataclass(frozen=True)
class AixcoderTemplate(FimTemplate):
    """aiXcoder-7B: the exact layouts of lightcoder.fim.transforms; snippets as <s>H code</s> documents."""

    header_fn: Callable[[str], str] | None = None

    def fim_pieces(self, prefix: str, suffix: str, *, mode: str | None = None, header: str = "") -> list[str]:
        mode = self.check_mode(mode)
        pieces = spm_prompt(header, prefix, suffix) if mode == "spm" else psm_prompt(header, prefix, suffix)
        return [Special(p) if aix.is_special(p) else p for p in pieces]

    def ntp_pieces(self, prefix: str, *, header: str = "") -> list[str]:
        return [Special(p) if aix.is_special(p) else p for p in ntp_prompt(header, prefix)]

    def context_pieces(self, snippets: Sequence[tuple[str, str]]) -> list[str]:
        # research/aixcoder-7b.md §1.4: each snippet is a training-style document <s> H(path) code </s>.
        from lightcoder.tokenizer.header import file_header

        out: list[str] = []
        for path, code in snippets:
            out += _pieces(Special(aix.BOS), file_header(path) + code, Special(aix.EOS))
        return out


def _pieces(*pieces: str) -> list[str]:
    return [p for p in pieces if p]


TEMPLATES: dict[str, FimTemplate] = {
    "aixcoder": AixcoderTemplate(
        name="aixcoder", prefix_token=aix.FIM_PREFIX, suffix_token=aix.FIM_SUFFIX, middle_token=aix.FIM_MIDDLE,
        stop_tokens=aix.STOP_TOKENS, bos_token=aix.BOS, modes=("spm", "psm"), identified_by=aix.FIM_PREFIX,
    ),
    "starcoder": FimTemplate(
        name="starcoder", prefix_token="<fim_prefix>", suffix_token="<fim_suffix>", middle_token="<fim_middle>",
        stop_tokens=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
        file_marker="<file_sep>", identified_by="<fim_prefix>",
    ),
    "deepseek": FimTemplate(
        name="deepseek", prefix_token="<｜fim▁begin｜>", suffix_token="<｜fim▁hole｜>", middle_token="<｜fim▁end｜>",
        stop_tokens=("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>"),
        bos_token="<｜begin▁of▁sentence｜>", identified_by="<｜fim▁begin｜>",
    ),
    "qwen2.5-coder": FimTemplate(
        name="qwen2.5-coder", prefix_token="<|fim_prefix|>", suffix_token="<|fim_suffix|>",
        middle_token="<|fim_middle|>",
        stop_tokens=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|fim_prefix|>", "<|im_end|>"),
        file_marker="<|file_sep|>", identified_by="<|fim_prefix|>",
    ),
    "codellama": FimTemplate(
        name="codellama", prefix_token="▁<PRE>", suffix_token="▁<SUF>", middle_token="▁<MID>",
        stop_tokens=("</s>", "▁<EOT>"), bos_token="<s>", modes=("psm", "spm"), prefix_lead=" ",
        identified_by="▁<PRE>",
    ),
}
TEMPLATES["starcoder2"] = TEMPLATES["starcoder"]


def get_template(name: str) -> FimTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown FIM template {name!r}; choose one of {sorted(TEMPLATES)}") from None


def detect_template(has_token: Callable[[str], bool]) -> FimTemplate:
    """The family whose identifying token the vocabulary has (aiXcoder's spelled with or without
    SentencePiece's leading "▁"); aixcoder when none matches (our own tokenizers)."""
    for template in TEMPLATES.values():
        if template.name == "aixcoder":
            continue
        if has_token(template.identified_by):
            return template
    return TEMPLATES["aixcoder"]
