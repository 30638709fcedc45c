import glob
import os
import random
import textwrap
from functools import cache

import pytest

from lightcoder.fim.spans import (
    EVAL_KINDS,
    RULES,
    Span,
    find_spans,
    has_syntax_error,
    parse_source,
    parse_tree,
    sample_structured_span,
    structured_spans,
)
from lightcoder.fim.transforms import split
from lightcoder.languages import tree_sitter_language

README = 'for i in range(20):\n    if i % 5 == 0:\n        print("Hello World")\n'
UNICODE = (
    "# Kommentar: größer, 日本語, emoji 😀\n"
    "def café(naïve, *args):\n"
    '    """Dokumentation: ünïcödé 😀 text."""\n'
    "    résumé = {'ключ': naïve, '😀': [1, 2, 3]}\n"
    "    if résumé['ключ'] > 0 and len('日本語') == 3:\n"
    "        return f'{naïve} → ok'  # 注释\n"
    "    for ß in args:\n"
    "        print(ß, '€')\n"
    "    return None\n"
)


@cache
def stdlib_texts() -> list[tuple[str, str]]:
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    out = []
    for path in files:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if not has_syntax_error(text, "Python"):
            out.append((os.path.basename(path), text))
    return out


def is_complete_syntax(text: str, span: Span, tree=None) -> bool:
    """The span is a whole node, or starts at a child and ends at the same or a later sibling.

    Independent of lightcoder's offset map: bytes are recomputed here. The nodes containing a range
    form a chain from the smallest one up to the root, so checking that chain is exhaustive.
    """
    start = len(text[: span.start].encode("utf-8"))
    end = len(text[: span.end].encode("utf-8"))
    tree = tree or parse_tree(text, "Python")
    node = tree.root_node.descendant_for_byte_range(start, end)
    while node is not None:
        if (node.start_byte, node.end_byte) == (start, end):
            return True
        kids = node.children
        firsts = [i for i, c in enumerate(kids) if c.start_byte == start]
        lasts = [j for j, c in enumerate(kids) if c.end_byte == end]
        if any(j >= i for i in firsts for j in lasts):
            return True
        node = node.parent
    return False


def test_node_types_exist_in_grammar():
    lang = tree_sitter_language("Python")
    rules = RULES["Python"]
    names = rules.structural + rules.simple_statements + sum(rules.statements.values(), ())
    for name in names:
        assert lang.id_for_node_kind(name, True), name
    assert set(rules.statements) | {"single_line", "method_body"} == set(EVAL_KINDS)


def test_readme_example_is_a_candidate():
    spans = structured_spans(README, "Python")
    middle_span = Span(27, 38, "if_statement")
    assert middle_span in spans
    prefix, middle, suffix = split(README, middle_span)
    assert (prefix, middle) == ("for i in range(20):\n    if ", "i % 5 == 0:")
    assert suffix == '\n        print("Hello World")\n'
    assert all(is_complete_syntax(README, s) for s in spans)
    # the checker is not vacuous: a cut inside a token or across siblings' boundaries fails
    assert not is_complete_syntax(README, Span(29, 35, "x"))  # "% 5 =="
    assert not is_complete_syntax(README, Span(28, 38, "x"))  # " % 5 == 0:"
    assert not is_complete_syntax(README, Span(4, 12, "x"))  # "i in ran"
    assert all(README[s.start:s.end].strip() == README[s.start:s.end] for s in spans)


def test_unicode_offsets_are_characters():
    parsed = parse_source(UNICODE, "Python")
    data = UNICODE.encode("utf-8")
    for b in range(len(data) + 1):
        try:
            expected = len(data[:b].decode("utf-8"))
        except UnicodeDecodeError:
            continue  # not a char boundary; tree-sitter never reports one
        assert parsed.char(b) == expected
    spans = structured_spans(UNICODE, "Python")
    assert spans and all(is_complete_syntax(UNICODE, s) for s in spans)
    middles = {UNICODE[s.start:s.end] for s in spans}
    assert "{'ключ': naïve, '😀': [1, 2, 3]}" in middles
    assert "résumé['ключ'] > 0 and len('日本語') == 3:" in middles
    assert find_spans(UNICODE, "Python", "single_line")[0] == Span(
        UNICODE.index("résumé = {"), UNICODE.index("]}\n") + 2, "single_line")
    rng = random.Random(0)
    for _ in range(200):
        span = sample_structured_span(UNICODE, "Python", rng)
        assert is_complete_syntax(UNICODE, span)
        assert "".join(split(UNICODE, span)) == UNICODE


def test_sampled_spans_on_stdlib_are_complete_syntax():
    texts = stdlib_texts()
    assert len(texts) >= 100
    lengths = []
    for n, (name, text) in enumerate(texts):
        tree = parse_tree(text, "Python")
        for seed in range(2):
            rng = random.Random(f"{n}:{seed}")
            span = sample_structured_span(text, "Python", rng, max_chars=1500)
            assert span is not None, name
            prefix, middle, suffix = split(text, span)
            assert prefix + middle + suffix == text
            assert 0 < len(middle) <= 1500 and middle.strip(), (name, span)
            assert (prefix, suffix) != ("", ""), name
            assert is_complete_syntax(text, span, tree), (name, span, middle[:80])
            lengths.append(len(middle))
    # log-length bucketing: tiny and large middles both appear
    assert sum(x <= 16 for x in lengths) > 0.05 * len(lengths)
    assert sum(x >= 256 for x in lengths) > 0.15 * len(lengths)


def test_structured_spans_exhaustive_on_small_files():
    texts = sorted(stdlib_texts(), key=lambda t: len(t[1]))[:5]
    for name, text in texts:
        tree = parse_tree(text, "Python")
        spans = structured_spans(text, "Python", max_chars=400)
        assert spans == sorted(set(spans), key=lambda s: (s.start, s.end)), name
        assert len(spans) >= 10, name  # even the smallest module has names, calls and statements
        for span in spans:
            assert 0 < span.end - span.start <= 400
            assert is_complete_syntax(text, span, tree), (name, span)


def test_sampling_is_deterministic_and_respects_max_chars():
    text = stdlib_texts()[0][1]
    a = [sample_structured_span(text, "Python", random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(1)
    for _ in range(100):
        span = sample_structured_span(README, "Python", rng, max_chars=12)
        assert span is not None and span.end - span.start <= 12


def test_unparsable_inputs():
    assert has_syntax_error("def f(:\n    pass\n", "Python")
    assert not has_syntax_error(README, "Python")
    assert not has_syntax_error("fun main() {}", "Kotlin")  # no grammar: nothing to check
    assert parse_tree("fun main() {}", "Kotlin") is None
    assert parse_tree("x", None) is None
    assert parse_tree("x", "NoSuchLanguage") is None
    rng = random.Random(0)
    broken = "def f(:\n    pass\n"  # only the body is a clean subtree; the header holds the ERROR
    middles = {broken[s.start:s.end] for s in (sample_structured_span(broken, "Python", random.Random(k))
                                               for k in range(40)) if s is not None}
    assert middles == {"pass"}
    assert sample_structured_span("def f(:\n", "Python", rng) is None
    assert sample_structured_span("fun main() {}", "Kotlin", rng) is None
    assert sample_structured_span("", "Python", rng) is None
    assert structured_spans("def f(:\n", "Python") == []
    assert find_spans("if x:\n  pass\nelse\n", "Python", "if_statement") == []
    with pytest.raises(ValueError, match="unknown span kind"):
        find_spans(README, "Python", "switch_case")


def test_find_spans_small_example():
    text = (
        "import os\n"
        "def f(x):\n"
        '    """Doc."""\n'
        "    y = x + 1  # note\n"
        "    while y:\n"
        "        y -= 1\n"
        "    try:\n"
        "        return os.sep; pass\n"
        "    finally:\n"
        "        pass\n"
    )
    def middles(kind):
        return [text[s.start:s.end] for s in find_spans(text, "Python", kind)]
    assert middles("single_line") == ["import os", "y -= 1"]
    assert middles("method_body")[0].startswith('"""Doc."""\n    y = x + 1')
    assert middles("method_body")[0].endswith("        pass")
    assert middles("while_statement") == ["while y:\n        y -= 1"]
    assert middles("try_statement") == ["try:\n        return os.sep; pass\n    finally:\n        pass"]
    assert middles("if_statement") == middles("for_statement") == []


def test_find_spans_on_stdlib():
    keyword = {"if_statement": "if", "for_statement": "for", "while_statement": "while",
               "try_statement": "try"}
    found = dict.fromkeys(EVAL_KINDS, 0)
    for name, text in stdlib_texts()[::4]:
        for kind in EVAL_KINDS:
            for span in find_spans(text, "Python", kind)[:20]:
                prefix, middle, suffix = split(text, span)
                found[kind] += 1
                line_start = prefix.rfind("\n") + 1
                indent = prefix[line_start:]
                if kind == "single_line":
                    line_end = text.find("\n", span.end)
                    line = text[line_start: None if line_end < 0 else line_end]
                    assert "\n" not in middle and line.strip() == middle, (name, middle)
                    continue
                # statement-level middles start a line and re-parse alone once dedented
                assert not indent.strip(), (name, kind, indent)
                alone = textwrap.dedent(indent + middle) + "\n"
                assert not has_syntax_error(alone, "Python"), (name, kind, middle[:200])
                if kind in keyword:
                    first = parse_tree(alone, "Python").root_node.children[0]
                    assert first.type == kind and middle.lstrip("async ").startswith(keyword[kind])
    assert all(count > 10 for count in found.values()), found
