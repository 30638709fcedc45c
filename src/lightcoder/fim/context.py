"""Context-level (S)FIM: training examples that are, token for token, the prompt the server builds.

Document-level FIM (aiXcoder, fim/mix.py) transforms a whole file and then cuts the stream into
windows, so with files longer than the window a window rarely holds the prompt, the middle and its
`</s>` together. Context-level FIM (Bavarian et al. 2022, §4) cuts first: here a span is drawn in the
file, and the prefix tail and suffix head around it are cut by `infer.prompts.build_prompt`, the very
function `lightcoder serve` and the eval harness use, with the token budget the window leaves:

    example = build_prompt(prefix=text[:start], suffix=text[end:], path, budget) + middle + </s>
    budget  = seq_len - len(middle tokens) - 1            (so len(example) <= seq_len)
    loss    = on the middle and </s> only (windows.py marks each token's role; train.fim_prompt_loss)

Span kinds (pack_config.SPAN_KINDS; their shares are pack.mix.span_weights), shaped like what editors
ask for (a single line is most requests):

    line          one non-blank line: its code without indentation or newline (the cursor after the
                  indentation, FIM-Eval single_line), or the whole line with both (HumanEval-infilling)
    partial_line  the cursor mid-line: to the line's end, or to a point before it (auto-closed brackets)
    multi_line    2..8 consecutive lines, in either of the two line styles
    sfim          a syntax node or a run of its children (fim/spans.py, aiXcoder's SFIM)
    random        a random character span (aiXcoder's random FIM, at context level)

Example: build_example(tok, "a = 1\\nb = 2\\n", "m.py", Span(6, 11, "line"), seq_len=64)
    -> ids of `<s> PRE POST "\\n" MIDDLE H "a = 1\\n"` + ids of "b = 2" + [</s>] (SPM), loss on the last part

Other base models (`lightcoder finetune`): an `ExampleFormat` gives the family's FIM template
(infer/templates.py), the token that ends a middle, and ids put before each prompt (a document
start for families whose prompts have no BOS), so the example is still that model's server prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lightcoder.fim.spans import ParsedSource, Span, sample_parsed_span
from lightcoder.infer.prompts import PromptConfig, build_prompt
from lightcoder.infer.templates import FimTemplate
from lightcoder.pack_config import SPAN_KINDS

MAX_MULTI_LINES = 8
WHOLE_LINE_RATE = 0.4  # line / multi_line: the whole line(s) with indentation and newline
LINE_END_RATE = 0.7  # partial_line: the middle runs to the end of the line


@dataclass(frozen=True)
class ExampleFormat:
    """A base model's example layout; the defaults are aiXcoder's (our own tokenizers).

    Example: ExampleFormat(get_template("starcoder"), end_id=eot, lead_ids=(eot,)) ->
        [<|endoftext|>] + <fim_prefix> P <fim_suffix> S <fim_middle> + M + [<|endoftext|>]
    """

    template: FimTemplate | None = None  # None: aiXcoder's layouts
    end_id: int | None = None  # the token after the middle; None: the tokenizer's eos
    lead_ids: tuple[int, ...] = ()  # ids before the prompt (part of it: no loss)


@dataclass
class Example:
    """One context-level FIM example: `ids` = prompt ids + middle ids + [eos]."""

    ids: list[int]
    prompt_len: int  # ids[:prompt_len] is the server's prompt
    kind: str  # a SPAN_KINDS entry
    mode: str  # "spm" | "psm"
    node_type: str = ""  # sfim: the tree-sitter type of the masked node
    start: int = 0  # the middle is text[start:end] of the file
    end: int = 0
    budget: int = 0  # the prompt's token budget (PromptConfig.max_prompt_tokens) it was cut with

    @property
    def middle_chars(self) -> int:
        return self.end - self.start


class LineIndex:
    """Bounds of every line of a text: (line start, code start, code end, line end incl. newline)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.bounds: list[tuple[int, int, int, int]] = []
        pos = 0
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            code = body.lstrip()
            indent = len(body) - len(code)
            self.bounds.append((pos, pos + indent, pos + len(body), pos + len(line)))
            pos += len(line)
        self.code_lines = [i for i, (_, a, b, _) in enumerate(self.bounds) if b > a]
        self._openers: set[int] | None = None

    def opens_block(self, i: int) -> bool:
        """Is the next line with code indented deeper than line i (a block header, or a statement that
        goes on below)? A middle that ends after such a line leaves its body to the suffix.

        Example: lines of "if a:\n    b = 1\nc = 2\n": opens_block(0) -> True, opens_block(1) -> False
        """
        if self._openers is None:
            indent = [a - s for s, a, _, _ in self.bounds]
            pairs = zip(self.code_lines, self.code_lines[1:])
            self._openers = {i for i, nxt in pairs if indent[nxt] > indent[i]}
        return i in self._openers

    def span(self, first: int, last: int, whole: bool, kind: str) -> Span:
        """Lines first..last: from the first line's start (whole) or code start, to the last line's end."""
        start = self.bounds[first][0] if whole else self.bounds[first][1]
        end = self.bounds[last][3] if whole else self.bounds[last][2]
        return Span(start, end, kind)


def line_span(lines: LineIndex, rng: random.Random, *, headers: bool = True) -> Span | None:
    """One line with code; headers False: never a line that opens a block (LineIndex.opens_block)."""
    candidates = lines.code_lines if headers else [i for i in lines.code_lines if not lines.opens_block(i)]
    if not candidates:
        return None
    i = rng.choice(candidates)
    return lines.span(i, i, rng.random() < WHOLE_LINE_RATE, "line")


def partial_line_span(lines: LineIndex, rng: random.Random) -> Span | None:
    """From a point strictly inside a line's code to its end, or to a later point on the same line."""
    candidates = [i for i in lines.code_lines if lines.bounds[i][2] - lines.bounds[i][1] >= 2]
    if not candidates:
        return None
    _, code_start, code_end, _ = lines.bounds[rng.choice(candidates)]
    start = rng.randint(code_start + 1, code_end - 1)
    end = code_end if rng.random() < LINE_END_RATE else rng.randint(start + 1, code_end)
    return Span(start, end, "partial_line")


def multi_line_span(lines: LineIndex, rng: random.Random, *, headers: bool = True) -> Span | None:
    """2..MAX_MULTI_LINES consecutive lines, starting and ending on a line with code; headers False:
    never ending on a line that opens a block."""
    if len(lines.code_lines) < 2:
        return None
    k = rng.randrange(len(lines.code_lines) - 1)
    first = lines.code_lines[k]
    later = [i for i in lines.code_lines[k + 1 : k + MAX_MULTI_LINES]
             if i - first < MAX_MULTI_LINES and (headers or not lines.opens_block(i))]
    if not later:  # the next lines with code are too far below (or, headers False, all open blocks)
        return None
    return lines.span(first, rng.choice(later), rng.random() < WHOLE_LINE_RATE, "multi_line")


def random_span(text: str, rng: random.Random, max_chars: int) -> Span | None:
    """A character span of uniform length 1..max_chars at a uniform start (empty text: None)."""
    if not text:
        return None
    start = rng.randrange(len(text))
    return Span(start, min(len(text), start + rng.randint(1, max_chars)), "random")


def draw_span(kind: str, text: str, lines: LineIndex, parsed: ParsedSource | None, rng: random.Random, *,
              max_chars: int, whole_node_rate: float, buckets: dict | None = None,
              line_headers: bool = True) -> tuple[Span | None, str]:
    """(span of `kind`, SFIM node type or ""); span None when the text has none (no code lines, no
    parse, no structure that fits max_chars). buckets: fim/spans.node_buckets(parsed), computed once.
    line_headers False: line and multi-line middles never end on a line that opens a block."""
    if kind == "line":
        return line_span(lines, rng, headers=line_headers), ""
    if kind == "partial_line":
        return partial_line_span(lines, rng), ""
    if kind == "multi_line":
        return multi_line_span(lines, rng, headers=line_headers), ""
    if kind == "random":
        return random_span(text, rng, max_chars), ""
    if kind == "sfim":
        span = sample_parsed_span(parsed, rng, max_chars=max_chars, whole_node_rate=whole_node_rate,
                                  buckets=buckets) if parsed is not None else None
        return (None, "") if span is None else (Span(span.start, span.end, "sfim"), span.kind)
    raise ValueError(f"unknown span kind {kind!r}; choose from {SPAN_KINDS}")


def build_example(tokenizer, text: str, path: str, span: Span, *, seq_len: int, mode: str = "spm",
                  sticky_lines: int = 0, max_middle_tokens: int | None = None, node_type: str = "",
                  prompt_tokens: int | None = None, fmt: ExampleFormat | None = None) -> Example | None:
    """The example for one span, or None when its middle needs more than max_middle_tokens tokens.

    prompt_tokens: the prompt's budget (None or more than fits: all the window leaves after the middle).
    fmt: another base model's layout (default: aiXcoder's).
    """
    fmt = fmt or ExampleFormat()
    middle = text[span.start : span.end]
    middle_ids = tokenizer.encode(middle)
    limit = max_middle_tokens if max_middle_tokens is not None else seq_len // 4
    if len(middle_ids) > limit:
        return None
    budget = seq_len - len(middle_ids) - 1 - len(fmt.lead_ids)  # lead + prompt + middle + end fit one window
    budget = min(budget, prompt_tokens) if prompt_tokens else budget
    cfg = PromptConfig(mode=mode, max_prompt_tokens=budget, sticky_lines=sticky_lines)
    prompt = list(fmt.lead_ids) + build_prompt(tokenizer, prefix=text[: span.start], suffix=text[span.end :],
                                               path=path, cfg=cfg, template=fmt.template, fim=True)
    end_id = tokenizer.eos_id if fmt.end_id is None else fmt.end_id
    return Example(prompt + middle_ids + [end_id], len(prompt), span.kind, mode, node_type,
                   span.start, span.end, budget)


def end_of_file_span(lines: LineIndex, span: Span) -> Span:
    """The span as if the file ended with the top-level definition it is in: its end moves to the end of
    the last line before the next line that starts at column 0 with code other than a closing bracket
    (the next top-level statement), blank lines left out. What an editor asks at the bottom of a file:
    finish what is being written there, then stop.

    Example: lines of "def f():\n    a = 1\n    return a\n\nx = 2\n", Span(13, 18) ("a = 1")
        -> Span(13, 32): "a = 1\n    return a\n"
    """
    bounds = lines.bounds
    last = next((i for i, b in enumerate(bounds) if b[3] >= span.end), len(bounds) - 1)  # the span's last line
    end = bounds[last][3] if bounds else span.end
    for i in range(last + 1, len(bounds)):
        line_start, code_start, code_end, line_end = bounds[i]
        if code_end == code_start:  # blank: belongs to whatever comes next
            continue
        top_level = code_start == line_start and lines.text[code_start] not in ")]}"
        if top_level:
            break
        end = line_end
    return Span(span.start, max(end, span.end), span.kind)


def examples_for_file(ntp_tokens: int, seq_len: int, ntp_rate: float, rng: random.Random,
                      mean_example_tokens: float | None = None) -> int:
    """How many FIM examples a file of `ntp_tokens` tokens yields, so that NTP keeps `ntp_rate` of the tokens.

    Its examples hold about ntp_tokens * (1 - ntp_rate) / ntp_rate tokens; each is mean_example_tokens
    long (default: one window), or the whole file plus a few special tokens when the file is shorter.
    Stochastic rounding keeps the expectation exact. Example: 5,000 tokens, seq_len 512, ntp_rate 0.3
    -> 22 or 23 examples.
    """
    if ntp_rate >= 1.0 or ntp_tokens <= 0:
        return 0
    example_len = min(mean_example_tokens or seq_len, ntp_tokens + 8)
    expected = ntp_tokens * (1.0 - ntp_rate) / ntp_rate / example_len
    whole = int(expected)
    return whole + (rng.random() < expected - whole)


def choose_kind(weights: dict[str, float], rng: random.Random) -> str:
    """A span kind drawn in proportion to `weights` (the keys in SPAN_KINDS order, for reproducibility)."""
    kinds = [k for k in SPAN_KINDS if weights.get(k, 0) > 0]
    return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
