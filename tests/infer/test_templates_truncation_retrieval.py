"""FIM templates of other families, syntax-aware truncation, BM25 context, keystroke-stable cuts."""

import pytest

from lightcoder.fim.transforms import psm_prompt, spm_prompt
from lightcoder.infer.prompts import PromptConfig, _sticky_head, _sticky_tail, build_prompt
from lightcoder.infer.retrieval import ChunkIndex, code_tokens, query_text
from lightcoder.infer.templates import TEMPLATES, detect_template, get_template
from lightcoder.infer.truncation import StructureStop, trim_to_parse
from lightcoder.tokenizer.special_tokens import Special


def test_aixcoder_template_is_the_training_layout():
    t = get_template("aixcoder")
    assert t.fim_pieces("P", "S", header="H") == spm_prompt("H", "P", "S")
    assert t.fim_pieces("P", "S", mode="psm", header="H") == psm_prompt("H", "P", "S")
    assert all(isinstance(p, Special) for p in t.fim_pieces("P", "S") if p.startswith("<"))


@pytest.mark.parametrize("name,expected", [
    ("starcoder", ["<fim_prefix>", "P", "<fim_suffix>", "S", "<fim_middle>"]),
    ("deepseek", ["<｜begin▁of▁sentence｜>", "<｜fim▁begin｜>", "P", "<｜fim▁hole｜>", "S", "<｜fim▁end｜>"]),
    ("qwen2.5-coder", ["<|fim_prefix|>", "P", "<|fim_suffix|>", "S", "<|fim_middle|>"]),
    ("codellama", ["<s>", "▁<PRE>", " P", "▁<SUF>", "S", "▁<MID>"]),
])
def test_other_families(name, expected):
    t = get_template(name)
    assert t.fim_pieces("P", "S") == expected
    assert detect_template(lambda tok: tok == t.identified_by).name == name
    with pytest.raises(ValueError, match="FIM modes"):
        get_template("starcoder").fim_pieces("a", "b", mode="spm")
    assert detect_template(lambda tok: False).name == "aixcoder"
    assert set(TEMPLATES) >= {"aixcoder", "starcoder", "starcoder2", "deepseek", "qwen2.5-coder", "codellama"}


def test_trim_never_breaks_the_parse_when_a_shorter_cut_does_not():
    prefix, suffix = "def f(x):\n    if x:\n        return ", "\n\nprint(f(1))\n"
    assert trim_to_parse(prefix, "x + 1\n    else:\n  )) (\n", suffix, "Python") == "x + 1\n    else:\n"
    assert trim_to_parse(prefix, "x + 1", suffix, "Python") == "x + 1"
    assert trim_to_parse(prefix, "a)(", suffix, None) == "a)("  # no language: unchanged


def test_structure_stop_ends_at_a_complete_block():
    stop = StructureStop("for i in range(3):\n", "\nprint(1)\n", "Python")
    assert not stop.done("    x = (1,\n")
    assert stop.done("    x = (1,\n         2)\n")
    assert not StructureStop("x = ", "", "Markdown").enabled


def test_bm25_finds_the_related_chunk_and_the_query_ignores_the_cursor_line():
    files = [("db.py", "def connect_database(url):\n    return Engine(url)\n"),
             ("ui.py", "def render_button(label):\n    return Button(label)\n")]
    index = ChunkIndex.from_files(files)
    assert index.search("engine = connect_database(settings.url)\n", k=1)[0][0] == "db.py"
    assert query_text("a = 1\nb = conn") == "a = 1\n"
    assert code_tokens("getUser_name") == ["getuser_name", "get", "user", "name"]


def test_sticky_cuts_move_only_at_line_anchors():
    text = "".join(f"line{i}\n" for i in range(100))
    assert _sticky_tail(text, 1, 16).startswith("line16\n")
    assert _sticky_tail(text, 0, 16) == text
    assert _sticky_head(text, len("line0\nline1\nli"), 2) == "line0\nline1\n"


def test_keystrokes_keep_the_cached_prompt_prefix():
    from lightcoder.infer.prefix_cache import common_prefix_len
    from lightcoder.tokenizer.config import TokenizerConfig
    from lightcoder.tokenizer.train import train_tokenizer

    code = "".join(f"value_{i} = compute(value_{i - 1}, {i})\n" for i in range(1, 400))
    tok = train_tokenizer([code], TokenizerConfig(vocab_size=300))
    cfg = PromptConfig(max_prompt_tokens=300, sticky_lines=16)
    prompts = [build_prompt(tok, prefix=code[:n], suffix="\nend\n", path="m.py", cfg=cfg)
               for n in range(5000, 5200, 3)]
    shared = [common_prefix_len(a, b) / len(b) for a, b in zip(prompts, prompts[1:])]
    assert sorted(shared)[len(shared) // 2] > 0.9  # median keystroke keeps >90% of the prompt
    assert all(len(p) <= 300 for p in prompts)
