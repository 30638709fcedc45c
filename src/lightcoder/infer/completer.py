"""Text in, completion out: prompt building, generation and decoding around one loaded model.

`Completer.stream(...)` is the whole inference path as a generator of text deltas (what the server
streams); `complete(...)` drains it and, with truncate="syntax" or "trim", trims the result so it never
breaks the parse of prefix + completion + suffix when a shorter completion does not (infer/truncation.py).
Generation runs on an `Engine` (infer/engine.py), so consecutive requests reuse the KV cache of
their common prompt prefix.

Example:
    completer = Completer.load("runs/quick")        # run dir, ckpt dir, one checkpoint, or an HF Llama dir
    completer.complete("def add(a, b):\\n    return ", "\\n", path="m.py").text  # -> "a + b"
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lightcoder.infer.engine import Engine, SamplingParams
from lightcoder.infer.ngram_cache import CacheMix, NgramCache
from lightcoder.infer.prompts import PromptConfig, build_prompt
from lightcoder.infer.stop_guard import lone_opener_guard
from lightcoder.infer.templates import FimTemplate, detect_template, get_template
from lightcoder.infer.truncation import StructureStop, trim_to_parse
from lightcoder.infer.weight_dtype import cast_weights, load_dtype
from lightcoder.languages import language_for_path
from lightcoder.model.config import ModelConfig
from lightcoder.model.hf import CheckpointError, load_checkpoint, resolve_checkpoint
from lightcoder.model.llama import Transformer
from lightcoder.tokenizer.backends import ForeignTokenizer, load_tokenizer

# none: the raw completion. syntax: generation ends at the first line where the document parses (one
# statement: what single-line requests want), then the text is trimmed to the longest line cut that parses
# best. trim: generation ends where the model ends it, then the same trim (what block requests want).
# docs/evaluation.md, "What the server's truncation does".
TRUNCATE_MODES = ("none", "syntax", "trim")
# The n-gram cache reads at most this much text on each side of the cursor: it tokenizes its source on
# every request, and the text nearest the cursor is what a completion repeats (serve accepts 400k characters)
CACHE_SOURCE_CHARS = 100_000


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    new_tokens: int  # generated tokens, the stop token not counted
    # "stop" (a stop token or stop string), "length" (max_new_tokens), "max_seq_len" (context full),
    # "structure" (the syntactic structure at the cursor is complete), "indent" (a line dedented past
    # min_indent, llama.cpp's n_indent), "time", "cancelled"
    stop_reason: str
    seconds: float  # wall time of the whole call: prompt, generation, decoding
    reused_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    replayed_tokens: int = 0  # new tokens taken from a cached greedy continuation
    first_token_seconds: float = 0.0
    prompt_seconds: float = 0.0  # prompt processing (prefill) of the generation
    predicted_seconds: float = 0.0  # first new token -> end of generation
    slot: int = -1  # the batch scheduler's slot that ran it (-1: the single-request engine)
    stop_word: str = ""  # the stop string that ended it, if one did


class Completer:
    """A model, its tokenizer and the prompt rules; `complete` is the whole inference path."""

    dtype_note = "as stored"  # why the weights are in their dtype (set by `load`)

    def __init__(self, model: Transformer, tokenizer, model_cfg: ModelConfig, *,
                 max_prompt_tokens: int | None = None, include_path: bool = True,
                 template: FimTemplate | str | None = None, cache_entries: int = 8, sticky_lines: int = 0):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self.max_prompt_tokens = max_prompt_tokens  # None: whatever max_seq_len leaves after the new tokens
        self.include_path = include_path
        self.sticky_lines = sticky_lines
        if isinstance(template, str):
            template = get_template(template)
        if template is None:
            has = getattr(tokenizer, "has_token", None)
            template = detect_template(has) if isinstance(tokenizer, ForeignTokenizer) and has else get_template("aixcoder")
        self.template = template
        if isinstance(tokenizer, ForeignTokenizer):
            tokenizer.set_stop_tokens(template.stop_tokens)
        self.engine = Engine(model, vocab_size=min(tokenizer.vocab_size, model_cfg.vocab_size),
                             cache_entries=cache_entries)

    @classmethod
    def load(cls, run_or_ckpt: str | Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | str | None = "auto", **kwargs) -> Completer:
        """From a checkpoint dir, a ckpt dir or a run dir (its newest complete checkpoint), or a
        `lightcoder finetune` run / LoRA adapter dir (base + adapter merged in memory).

        The tokenizer (tokenizer.json, ours or another family's, or aiXcoder's SentencePiece
        tokenizer.model) comes from the checkpoint dir, else from RUN/tokenizer. dtype None keeps the
        stored dtype (fp32 for our checkpoints); "auto" too, except that half-precision weights are read in
        fp32 on a CPU slow in them (infer/weight_dtype.py; why in `.dtype_note`). device: "cpu", "auto"
        (the GPU when CUDA is available), "cuda" or "cuda:N" (lightcoder.devices).
        """
        from lightcoder.devices import resolve_device
        from lightcoder.finetune.deploy import load_finetuned

        device = resolve_device(device)
        tuned = load_finetuned(run_or_ckpt, device=device, dtype=dtype)  # `lightcoder finetune` run or adapter
        if tuned is not None:
            kwargs["template"] = kwargs.get("template") or tuned.template
            completer = cls(tuned.model, tuned.tokenizer, tuned.cfg, **kwargs)
            completer.dtype_note = tuned.dtype_note
            return completer
        ckpt = resolve_checkpoint(run_or_ckpt)
        model, cfg = load_checkpoint(ckpt, device=device, dtype=load_dtype(dtype))
        candidates = [ckpt, Path(run_or_ckpt) / "tokenizer", ckpt.parent.parent / "tokenizer"]
        tok_dir = next((d for d in candidates
                        if (d / "tokenizer.json").is_file() or (d / "tokenizer.model").is_file()), None)
        if tok_dir is None:
            raise CheckpointError(f"no tokenizer.json or tokenizer.model in {ckpt} or its run's tokenizer/ dir; "
                                  "save checkpoints with tokenizer_dir=... or pass a run dir")
        tokenizer = load_tokenizer(tok_dir)
        if tokenizer.vocab_size > cfg.vocab_size:
            raise CheckpointError(f"tokenizer in {tok_dir} has {tokenizer.vocab_size} tokens but the model in "
                                  f"{ckpt} only {cfg.vocab_size}; they do not belong together")
        why = cast_weights(model, device, dtype, copies=2)  # the engine's decoder keeps a transposed copy
        completer = cls(model, tokenizer, cfg, **kwargs)
        completer.dtype_note = why
        return completer

    def prompt_config(self, mode: str, max_new_tokens: int, max_prompt_tokens: int | None = None,
                      max_context_tokens: int = 0) -> PromptConfig:
        room = self.model_cfg.max_seq_len - max(max_new_tokens, 1)  # a warm-up (0 new tokens) still leaves one
        if room <= 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in "
                             f"max_seq_len={self.model_cfg.max_seq_len}; lower it")
        budget = min(max_prompt_tokens or self.max_prompt_tokens or room, room)
        return PromptConfig(mode=mode, max_prompt_tokens=budget, include_path=self.include_path,
                            max_context_tokens=max_context_tokens, sticky_lines=self.sticky_lines)

    def build(self, prefix: str, suffix: str = "", *, path: str = "", mode: str = "spm", max_new_tokens: int = 64,
              max_prompt_tokens: int | None = None, context: Sequence[tuple[str, str]] = (),
              max_context_tokens: int | None = None, middle: str = "", fim: bool | None = None) -> list[int]:
        """The prompt ids `complete` would use. middle: text placed after the middle token (llama.cpp's
        /infill `prompt`): joined to the prefix where the layout ends with it (aiXcoder's SPM, NTP),
        else tokenized after the whole prompt. fim: infer/prompts.build_prompt's (None: FIM form when
        the suffix is not empty; True: an infilling request, FIM form even at the end of a file)."""
        fim = suffix != "" if fim is None else fim
        if max_context_tokens is None:
            max_context_tokens = (max_prompt_tokens or self.max_prompt_tokens or self.model_cfg.max_seq_len) // 4
        cfg = self.prompt_config(mode, max_new_tokens, max_prompt_tokens, max_context_tokens if context else 0)
        tail: list[int] = []
        if middle and self._prefix_is_last(mode, fim=fim):
            prefix += middle
        elif middle:
            tail = self.tokenizer.encode(middle)
            if len(tail) >= cfg.max_prompt_tokens:
                raise ValueError(f"prompt (the text after the middle token) is {len(tail)} tokens, over the prompt "
                                 f"budget {cfg.max_prompt_tokens}; send less")
            cfg.max_prompt_tokens -= len(tail)
        return build_prompt(self.tokenizer, prefix=prefix, suffix=suffix, path=path, cfg=cfg,
                            template=self.template, context=context, fim=fim) + tail

    def _prefix_is_last(self, mode: str, *, fim: bool) -> bool:
        """Whether the prompt layout ends with the prefix (so text after the middle token continues it)."""
        if not fim:
            return True
        if self.template.name == "aixcoder":
            return mode == "spm"
        pieces = self.template.fim_pieces("\x00", "\x01", mode=mode if mode in self.template.modes else None)
        return pieces[-1].endswith("\x00")

    @torch.no_grad()
    def middle_bits(self, prefix: str, middle: str, suffix: str = "", *, path: str = "", mode: str = "spm",
                    max_new_tokens: int = 64, fim: bool | None = None) -> float | None:
        """Bits the model spends on the reference `middle` and the stop token after it, teacher-forced,
        given the prompt `complete` would build (its budget shrinks only when the middle needs more
        than max_new_tokens). Divided by the middle's UTF-8 bytes, this is bits per byte. None when
        the middle alone leaves less than a quarter of the context, or no room for the header.

        Example: completer.middle_bits("def f():\n    return ", "1", "\n", path="m.py") -> e.g. 9.3
        """
        middle_ids = self.tokenizer.encode(middle)
        if len(middle_ids) + 1 > self.model_cfg.max_seq_len * 3 // 4:
            return None
        try:
            prompt = self.build(prefix, suffix, path=path, mode=mode,
                                max_new_tokens=max(max_new_tokens, len(middle_ids) + 1), fim=fim)
        except ValueError:  # no room left for the special tokens and header
            return None
        ids = torch.tensor([prompt + middle_ids + [self.tokenizer.eos_id]], dtype=torch.long)
        logits = self.model(ids.to(next(self.model.parameters()).device))[0, len(prompt) - 1 : -1].float()
        targets = ids[0, len(prompt):].to(logits.device)  # the middle's tokens, then </s>
        nats = -torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum()
        return float(nats) / math.log(2)

    def complete(self, prefix: str, suffix: str = "", *, truncate: str = "none", **kwargs) -> Completion:
        """Complete the code between prefix and suffix (NTP when suffix is "" unless fim=True); greedy by default.

        Keywords as `stream`; truncate="syntax" ends generation at the first line where the document
        parses (StructureStop) and trims the result to the longest line cut that parses best with prefix
        and suffix; "trim" only trims, after the model's own end.
        """
        if truncate not in TRUNCATE_MODES:
            raise ValueError(f"truncate must be one of {TRUNCATE_MODES}, got {truncate!r}")
        gen = self.stream(prefix, suffix, syntax_stop=truncate == "syntax", **kwargs)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                result: Completion = done.value
                break
        if truncate != "none":
            language = language_for_path(kwargs.get("path", ""))
            result.text = trim_to_parse(prefix, result.text, suffix, language)
        return result

    def stream(self, prefix: str, suffix: str = "", *, path: str = "", max_new_tokens: int = 64,
               mode: str = "spm", temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
               seed: int = 0, stop_ids: Collection[int] | None = None, stop: Sequence[str] = (),
               max_seconds: float | None = None, max_prompt_tokens: int | None = None,
               context: Sequence[tuple[str, str]] = (), max_context_tokens: int | None = None,
               syntax_stop: bool = False, cancelled: Callable[[], bool] | None = None,
               prompt_ids: list[int] | None = None, middle: str = "", generate: Callable | None = None,
               min_indent: int = 0, predict_seconds_after_newline: float | None = None,
               frequency_penalty: float = 0.0, presence_penalty: float = 0.0, cache_weight: float = 0.0,
               fim: bool | None = None, ids_from_text: bool = False) -> Iterator[str]:
        """Yield the completion as text deltas; the generator returns the `Completion`.

        stop_ids None = the tokenizer's stop set; pass () to always generate max_new_tokens. `stop`
        strings end the completion before their first occurrence. syntax_stop ends it at the first
        line where the structure at the cursor is complete (StructureStop). generate(prompt_ids,
        params, cancelled) -> ids (default: this completer's Engine; the server passes its batch
        scheduler). min_indent (llama.cpp's n_indent): a later line indented less ends the completion
        before it. predict_seconds_after_newline (t_max_predict_ms): once a newline was generated,
        stop when generation has taken this long since its first token. frequency_penalty /
        presence_penalty: OpenAI's, over the ids generated so far (infer/penalties.py). cache_weight: the
        n-gram cache's weight over the text around the cursor (infer/ngram_cache.py; 0 = off).
        fim: see `build`. ids_from_text: prompt_ids are `build`'s ids for this prefix, suffix and middle
        (the server tokenizes a streamed request before replying), so the text still judges the cursor and
        feeds the cache; without it, prompt_ids with no prefix or middle are a request sent as ids.
        """
        start = time.perf_counter()
        prompt = prompt_ids if prompt_ids is not None else self.build(
            prefix, suffix, path=path, mode=mode, max_new_tokens=max_new_tokens,
            max_prompt_tokens=max_prompt_tokens, context=context, max_context_tokens=max_context_tokens,
            middle=middle, fim=fim)
        language = language_for_path(path)
        sent_as_ids = prompt_ids is not None and not ids_from_text and not (prefix or middle)  # no text to judge by
        guard = None if sent_as_ids else lone_opener_guard(self.tokenizer.decode, prefix=prefix, middle=middle,
                                                           language=language)
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                seed=seed, stop_ids=self.tokenizer.stop_ids if stop_ids is None else stop_ids,
                                max_seconds=max_seconds, frequency_penalty=frequency_penalty,
                                presence_penalty=presence_penalty, stop_guard=guard,
                                cache=self._cache_mix(prompt, cache_weight, prefix + middle, suffix,
                                                      None if sent_as_ids else self._prefix_is_last(
                                                          mode, fim=suffix != "" if fim is None else fim)))
        ends = _EarlyStop(structure=StructureStop(prefix, suffix, language) if syntax_stop else None,
                          stops=[s for s in stop if s], min_indent=min_indent,
                          after_newline_s=predict_seconds_after_newline)
        tokens = generate(prompt, params, cancelled) if generate else self.engine.generate(prompt, params, cancelled=cancelled)
        out = _Decoded(start)
        stop_reason = yield from self._decode(tokens, out, ends)
        num_generated = len(out.new_ids)
        if stop_reason not in ("stop", "structure", "indent"):
            self._drop_unfinished_char(out)
        if len(out.text) > out.sent:
            yield out.text[out.sent:]
        stats = getattr(tokens, "stats", None) or self.engine.last_stats  # the scheduler's stream, or the Engine's
        return _completion(out, stats, prompt_tokens=len(prompt), new_tokens=num_generated, stop_reason=stop_reason)

    def _cache_mix(self, prompt: list[int], weight: float, before: str, after: str,
                   prefix_is_last: bool | None) -> CacheMix | None:
        """The request's n-gram cache over the text around the cursor (up to CACHE_SOURCE_CHARS each side;
        the prompt may hold only its ends); for a request sent as ids (prefix_is_last None), over the
        prompt's ids. The completion continues the prompt's last ids, or, where the layout ends with the
        middle token (PSM), the text before the cursor. None at weight 0."""
        if not weight:
            return None
        if prefix_is_last is None:
            return CacheMix.for_prompt(prompt, weight)
        before_ids = self.tokenizer.encode(before[-CACHE_SOURCE_CHARS:])
        source = NgramCache.joined([before_ids, self.tokenizer.encode(after[:CACHE_SOURCE_CHARS])])
        return CacheMix.for_prompt(prompt, weight, source, tail=None if prefix_is_last else before_ids)

    def _decode(self, tokens: Iterator[int], out: _Decoded, ends: _EarlyStop) -> Generator[str, None, str]:
        """Decode the new ids into out.text as they come, yielding the part that is safe to show (no
        unfinished character, no possible start of a stop string); returns the stop reason."""
        while True:
            try:
                out.new_ids.append(next(tokens))
            except StopIteration as done:  # the generator returns its stop reason
                return done.value
            if not out.first_token:
                out.first_token = time.perf_counter() - out.start
            out.text = self.tokenizer.decode(out.new_ids)
            stop_reason = ends.check(out)
            if stop_reason is not None:
                tokens.close()
                return stop_reason
            safe = len(out.text) - _held_back(out.text, ends.stops, ends.min_indent)
            if safe > out.sent:
                yield out.text[out.sent:safe]
                out.sent = safe

    def _drop_unfinished_char(self, out: _Decoded) -> None:
        """Cut mid-character: drop the ids of the unfinished UTF-8 sequence (up to 3) from out."""
        for _ in range(3):
            if not out.text.endswith("\ufffd") or not out.new_ids:
                break
            out.new_ids.pop()
            out.text = self.tokenizer.decode(out.new_ids)


@dataclass
class _Decoded:
    """One `stream` call's completion so far."""

    start: float  # perf_counter() when the call began
    new_ids: list[int] = field(default_factory=list)  # generated ids, the stop token not included
    text: str = ""  # their text, cut at a stop when one ended the completion
    sent: int = 0  # characters of text already yielded
    first_token: float = 0.0  # seconds from start to the first new token (0.0: none yet)
    stop_word: str = ""  # the stop string that ended it, if one did


@dataclass
class _EarlyStop:
    """The rules that end a completion before the model or the engine does, checked after each token."""

    stops: list[str]  # stop strings (non-empty): the completion ends before the first one
    structure: StructureStop | None  # syntax_stop: ends at the line where the structure is complete
    min_indent: int  # llama.cpp's n_indent: a later line indented less ends it before that line (0: off)
    after_newline_s: float | None  # once a newline was generated, the seconds allowed since the first token

    def check(self, out: _Decoded) -> str | None:
        """The stop reason when out.text ends the completion now (out.text cut, out.stop_word set), else None."""
        text = out.text
        cut = _first_stop(text, self.stops)
        if cut is not None:
            out.text, out.stop_word = text[:cut], next(s for s in self.stops if text.find(s) == cut)
            return "stop"
        if self.structure is not None and self.structure.done(text):
            out.text = text[:text.rfind("\n") + 1]
            return "structure"
        cut = _dedent_cut(text, self.min_indent) if self.min_indent else None
        if cut is not None:
            out.text = text[:cut]
            return "indent"
        if self.after_newline_s is not None and "\n" in text and \
                time.perf_counter() - out.start - out.first_token > self.after_newline_s:
            return "time"
        return None


def _completion(out: _Decoded, stats, *, prompt_tokens: int, new_tokens: int, stop_reason: str) -> Completion:
    """The `Completion` of a finished stream, timed now; stats: the generation's prefix-cache and prefill figures."""
    seconds = time.perf_counter() - out.start
    first_token = out.first_token
    return Completion(text=out.text, prompt_tokens=prompt_tokens, new_tokens=new_tokens, stop_reason=stop_reason,
                      seconds=seconds, reused_tokens=stats.reused_tokens,
                      replayed_tokens=stats.replayed_tokens, first_token_seconds=first_token,
                      prompt_seconds=stats.prefill_seconds, slot=getattr(stats, "slot", -1), stop_word=out.stop_word,
                      predicted_seconds=max(0.0, seconds - first_token) if first_token else 0.0)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _dedent_cut(text: str, min_indent: int) -> int | None:
    """Where a line after the first starts with less than min_indent whitespace characters (and has
    code on it): the completion ends before that line. None: no such line yet."""
    start = text.find("\n") + 1
    while start:
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        code = line.lstrip(" \t")
        if code and len(line) - len(code) < min_indent:
            return start
        start = end + 1 if end >= 0 else 0
    return None


def _held_back(text: str, stops: Sequence[str], min_indent: int = 0) -> int:
    """Characters at the end of text not to stream yet: an unfinished UTF-8 character, the start of a stop
    string that may complete with the next token, or (with min_indent) a last line of indentation only, which
    `_dedent_cut` drops if the line goes on dedented."""
    held = len(text) - len(text.rstrip("\ufffd"))
    if min_indent and "\n" in text:
        tail = text[text.rfind("\n") + 1:]
        if not tail.strip(" \t"):
            held = max(held, len(tail))
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                held = max(held, n)
                break
    return held
