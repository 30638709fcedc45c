"""Context-level FIM over real stdlib files: every example is the server's prompt + middle + </s>.

Properties checked on many real files: an example fits its window; its prompt holds the tail of the
text before the span and the head of the text after it; and it is token for token the prompt the
server's Completer builds for the same cursor and budget. Then the packed windows: examples at the
end of windows, whole and back to back, target roles that give a loss to the middle and </s> only, and bad
input (short files, syntax errors, windows too small for a middle) counted instead of crashing.
"""

from __future__ import annotations

import random
import shutil
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lightcoder.data.config import DataConfig
from lightcoder.data.pipeline import run_data
from lightcoder.data.records import SourceFile, read_corpus
from lightcoder.fim.context import LineIndex, build_example, end_of_file_span, examples_for_file
from lightcoder.fim.spans import Span
from lightcoder.infer.completer import Completer
from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer
from lightcoder.pack_config import SPAN_KINDS, MixConfig, PackConfig
from lightcoder.pack_context import SERVER_STICKY_LINES, file_examples
from lightcoder.pack_stats import format_stats, summary_line
from lightcoder.packing import file_rng, run_pack
from lightcoder.shards import open_mask, open_shard
from lightcoder.tokenizer import special_tokens as st
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.tokenizer import Tokenizer
from lightcoder.tokenizer.train import run_tokenizer
from lightcoder.windows import NO_LOSS, PROMPT, TARGET

STDLIB = Path(sysconfig.get_paths()["stdlib"])
PACKAGES = ("json", "email")
MODULES = ("textwrap.py", "colorsys.py", "bisect.py", "shlex.py", "fnmatch.py", "glob.py", "heapq.py")
SEQ_LEN = 256
EVERY_KIND = {k: 1.0 for k in SPAN_KINDS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ctx")
    src = root / "src"
    for name in PACKAGES:
        shutil.copytree(STDLIB / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in MODULES:
        shutil.copy(STDLIB / name, src / name)
    (src / "tiny.py").write_text("x = 1\n")  # shorter than any window
    (src / "broken.py").write_text("def f(:\n    return [1, 2\n" * 3)  # does not parse
    run_data(DataConfig(sources=[str(src)], valid_fraction=0.2, test_fraction=0.0, syntax_check=False), root / "data")
    run_tokenizer(TokenizerConfig(vocab_size=600), root / "data", root / "tok")
    files = [f for split in ("train", "valid") for f in read_corpus(root / "data", split)]
    return {"root": root, "tok": Tokenizer.load(root / "tok"), "files": files}


def cfg(**mix) -> PackConfig:
    return PackConfig(seq_len=SEQ_LEN, repo_temperature=1.0, mix=MixConfig(**{"span_weights": EVERY_KIND, **mix}))


def examples_of(corpus, pack_cfg: PackConfig) -> list[tuple[SourceFile, object]]:
    out = []
    for f in corpus["files"]:
        ntp = len(corpus["tok"].encode(f.content))
        out += [(f, e) for e in file_examples(f, ntp, corpus["tok"], pack_cfg, file_rng(0, f), Counter())]
    return out


def split_prompt(tok: Tokenizer, ids: list[int], mode: str) -> tuple[str, str]:
    """(header + prefix, suffix) texts of a prompt's ids in aiXcoder's SPM / PSM layout (an infilling
    prompt: FIM form even when a span ends its file and the suffix is empty)."""
    pre, mid, post = (tok.token_to_id(t) for t in (st.FIM_PREFIX, st.FIM_MIDDLE, st.FIM_SUFFIX))
    assert ids[0] == tok.bos_id and ids[1] == pre
    if mode == "spm":
        assert ids[2] == post
        m = ids.index(mid)
        return tok.decode(ids[m + 1:]), tok.decode(ids[3:m])
    p, m = ids.index(post), ids.index(mid)
    assert m == len(ids) - 1
    return tok.decode(ids[2:p]), tok.decode(ids[p + 1:m])


def test_examples_are_the_servers_prompt_plus_middle_and_eos(corpus):
    tok = corpus["tok"]
    examples = examples_of(corpus, cfg(ntp_rate=0.5, sticky_rate=0.5, end_of_file_rate=0.0))
    kinds = Counter(e.kind for _, e in examples)
    assert set(kinds) == set(SPAN_KINDS) and len(examples) >= 200, kinds
    model_cfg = get_preset("lc-tiny", vocab_size=tok.vocab_size, max_seq_len=SEQ_LEN)
    model = Transformer(model_cfg)
    servers = {sticky: Completer(model, tok, model_cfg, sticky_lines=sticky) for sticky in (0, SERVER_STICKY_LINES)}
    sticky_seen = Counter()
    for f, e in examples:
        assert len(e.ids) <= SEQ_LEN and e.ids[-1] == tok.eos_id and e.ids.count(tok.bos_id) == 1
        middle_ids = e.ids[e.prompt_len:-1]
        assert tok.decode(middle_ids) == f.content[e.start:e.end]
        prefix, suffix = f.content[:e.start], f.content[e.end:]
        head_prefix, kept_suffix = split_prompt(tok, e.ids[:e.prompt_len], e.mode)
        assert prefix.endswith(head_prefix.split("\n", 2)[2]) and suffix.startswith(kept_suffix)
        budget = e.budget
        assert 32 <= budget <= SEQ_LEN - 1
        matches = [sticky for sticky, server in servers.items()
                   if server.build(prefix, suffix, path=f.path, mode=e.mode, max_new_tokens=len(middle_ids) + 1,
                                   max_prompt_tokens=budget, fim=True) == e.ids[:e.prompt_len]]
        assert matches, (f.path, e.kind, e.mode)
        sticky_seen[matches[0]] += 1
    assert sticky_seen[0] > 0  # both cut styles occur (a short file's prompt matches both)


def test_end_of_file_examples_end_a_top_level_definition_with_the_servers_empty_suffix_prompt(corpus):
    """pack.mix.end_of_file_rate 1: every example is cut as if its file ended with the definition the span is
    in; the prompt is what the server builds for an infilling request at the end of a file."""
    tok = corpus["tok"]
    examples = examples_of(corpus, cfg(ntp_rate=0.5, end_of_file_rate=1.0, sticky_rate=0.0))
    assert len(examples) >= 100 and len({e.kind for _, e in examples}) >= 4
    model_cfg = get_preset("lc-tiny", vocab_size=tok.vocab_size, max_seq_len=SEQ_LEN)
    server = Completer(Transformer(model_cfg), tok, model_cfg, sticky_lines=0)
    for f, e in examples:
        middle_ids = e.ids[e.prompt_len:-1]
        assert tok.decode(middle_ids) == f.content[e.start:e.end] and e.ids[-1] == tok.eos_id
        assert split_prompt(tok, e.ids[:e.prompt_len], e.mode)[1] == ""  # the suffix is empty
        assert server.build(f.content[:e.start], "", path=f.path, mode=e.mode, max_new_tokens=len(middle_ids) + 1,
                            max_prompt_tokens=e.budget, fim=True) == e.ids[:e.prompt_len]
        after = f.content[e.end:].lstrip("\n")  # what the cut dropped: the next top-level statement on
        assert after == "" or (after[0] not in " \t)]}" and f.content[e.end - 1] == "\n"), (f.path, e.kind)
    text = "def f():\n    a = 1\n    return a\n\nx = 2\n"
    assert end_of_file_span(LineIndex(text), Span(13, 18, "line")) == Span(13, 32, "line")  # "a = 1" -> the body
    assert end_of_file_span(LineIndex(text), Span(35, 38, "line")) == Span(35, 39, "line")  # top level: its line
    braces = "int f() {\n  return 1;\n}\nint g;\n"
    assert braces[end_of_file_span(LineIndex(braces), Span(12, 21, "line")).end - 2] == "}"  # the brace belongs


def test_line_kinds_cut_whole_lines_or_code_and_partial_lines_stay_on_one_line(corpus):
    rng = random.Random(0)
    for f in corpus["files"][:40]:
        lines = LineIndex(f.content)
        if not lines.code_lines:
            continue
        for e in (e for _, e in examples_of({**corpus, "files": [f]}, cfg(ntp_rate=0.2, end_of_file_rate=0.0))):
            middle = f.content[e.start:e.end]
            if e.kind == "line":
                assert middle.strip() and middle.count("\n") <= 1 and middle.rstrip("\n").strip() == middle.strip()
            elif e.kind == "partial_line":
                assert "\n" not in middle and middle
            elif e.kind == "multi_line":
                assert middle.strip().count("\n") >= 1
    assert LineIndex("a\n  b = 1\n\n").span(1, 1, False, "line") == Span(4, 9, "line")
    assert LineIndex("a\n  b = 1\n\n").span(1, 1, True, "line") == Span(2, 10, "line")
    assert rng  # rng only seeds the draws above through file_rng


def test_without_line_span_headers_no_line_middle_ends_on_a_line_that_opens_a_block(corpus):
    """line_span_headers false: line and multi-line middles never end where the suffix holds the body."""
    lines_only = {"line": 1.0, "multi_line": 1.0}
    for headers in (True, False):
        ends_on_opener = 0
        drawn = examples_of(corpus, cfg(span_weights=lines_only, line_span_headers=headers, ntp_rate=0.2,
                                        end_of_file_rate=0.0))
        line_kinds = [(f, e) for f, e in drawn if e.kind in ("line", "multi_line")]
        assert len(line_kinds) > 200
        for f, e in line_kinds:
            lines = LineIndex(f.content)
            last = next(i for i, b in enumerate(lines.bounds) if b[0] <= e.end - 1 < b[3])  # its last line
            ends_on_opener += lines.opens_block(last)
        assert (ends_on_opener > 20) if headers else (ends_on_opener == 0)
    index = LineIndex("if a:\n    b = 1\n\nc = (\n  2)\nd = 3\n")
    assert [index.opens_block(i) for i in range(6)] == [True, False, False, True, False, False]
    with pytest.raises(ValueError, match="line_span_headers"):
        MixConfig(line_span_headers="no")


def test_examples_per_file_follow_the_ntp_share():
    rng = random.Random(0)
    counts = [examples_for_file(5000, 512, 0.3, rng) for _ in range(2000)]
    assert np.mean(counts) == pytest.approx(5000 * 0.7 / 0.3 / 512, rel=0.02)
    assert set(counts) == {22, 23}
    assert examples_for_file(5000, 512, 1.0, rng) == 0
    short = np.mean([examples_for_file(92, 512, 0.5, rng) for _ in range(2000)])
    assert short == pytest.approx(92 / 100, rel=0.1)  # a short file's examples are as long as it is


def test_bad_input_is_counted_not_raised(corpus):
    tok = corpus["tok"]
    counts: Counter = Counter()
    broken = SourceFile(repo="r", path="r/broken.py", language="Python", content="def f(:\n    return [1, 2\n" * 40)
    sfim_only = cfg(ntp_rate=0.2, span_weights={"sfim": 1.0})
    out = file_examples(broken, 600, tok, sfim_only, random.Random(0), counts)
    assert out and all(e.kind == "random" for e in out) and counts["fallback:sfim:syntax_error"] >= len(out)
    tiny = SourceFile(repo="r", path="r/tiny.py", language="Python", content="x = 1\n")
    counts.clear()
    assert file_examples(tiny, 20, tok, cfg(ntp_rate=0.01), random.Random(0), counts) and counts["short_files"] == 1
    counts.clear()
    long_line = SourceFile(repo="r", path="r/long.py", language="Python", content="x = [" + "1, " * 400 + "]\n")
    assert file_examples(long_line, 800, tok, cfg(ntp_rate=0.5, span_weights={"line": 1.0}), random.Random(0),
                         counts) == []
    assert counts["dropped:middle_too_long"] > 0 and counts["redraw:middle_too_long"] > 0
    counts.clear()
    small = PackConfig(seq_len=24, repo_temperature=1.0, mix=MixConfig(max_middle_tokens=4))
    assert file_examples(corpus["files"][0], 500, tok, small, random.Random(0), counts) == []
    assert counts["dropped:no_room"] == 1  # 24 tokens cannot hold the special tokens and the header
    assert build_example(tok, "a = 1\n", "m.py", Span(0, 5, "line"), seq_len=SEQ_LEN, max_middle_tokens=1) is None


def test_packed_windows_end_with_whole_examples_and_mark_the_loss(corpus):
    root, tok = corpus["root"], corpus["tok"]
    summary = run_pack(cfg(ntp_rate=0.4), root / "data", root / "tok", root / "shards")
    info = summary["splits"]["train"]
    windows, masks = open_shard(root / "shards", "train"), open_mask(root / "shards", "train")
    assert masks.shape == windows.shape and info["level"] == "context" and info["num_examples"] > 0
    examples = 0
    for row, mask in zip(np.asarray(windows), np.asarray(masks)):
        starts = [int(i) for i in np.flatnonzero((row == tok.bos_id) & (mask == NO_LOSS))]  # examples' <s>
        if not starts:
            assert (mask == TARGET).all()  # an all-stream window
            continue
        assert (mask[:starts[0]][row[:starts[0]] != tok.eos_id] == TARGET).all()  # stream tokens (or padding) first
        for a, b in zip(starts, starts[1:] + [len(row)]):  # then whole examples, back to back
            roles = mask[a + 1:b]
            first_target = int(np.argmax(roles == TARGET))
            assert first_target > 0 and (roles[:first_target] == PROMPT).all() and (roles[first_target:] == TARGET).all()
            assert row[b - 1] == tok.eos_id
            examples += 1
    assert examples == info["num_examples"]
    roles = info["token_roles"]
    assert roles["prompt"] > roles["no_loss"] > 0 and roles["target"] + roles["prompt"] + roles["no_loss"] == \
        pytest.approx(1.0, abs=1e-3)
    assert set(info["span_kinds"]) == set(SPAN_KINDS)
    text = format_stats(summary)
    assert "FIM examples" in text and "loss targets" in text and "middles" in text and "repositories" in text
    assert summary_line(summary).startswith(f"pack: {summary['objectives']['ntp']} NTP documents + ")
