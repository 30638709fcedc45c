"""The lone-opener stop guard (infer/stop_guard.py): which outputs it holds open, for which requests."""

from lightcoder.infer.stop_guard import MAX_GUARDED_IDS, lone_opener_guard


def decode(ids):  # one character per id: the rule reads text, whatever the tokenizer
    return "".join(map(chr, ids))


def ids(text):
    return [ord(c) for c in text]


def test_only_a_bare_triple_quote_is_held_open():
    guard = lone_opener_guard(decode, prefix="def f():\n    ", language="Python")
    for text in ('"""', "'''", 'r"""', '"""\n'):
        assert guard(ids(text)), text
    for text in ('"""Doc.', '""', "x = 1", "", '"""\n    Doc'):
        assert not guard(ids(text)), text
    assert not guard(ids(" " * MAX_GUARDED_IDS + '"""'))  # past a few ids the guard never holds


def test_no_guard_where_three_quotes_may_close_a_string_or_the_language_has_none():
    assert lone_opener_guard(decode, prefix='def f():\n    """Doc\n    ', language="Python") is None
    assert lone_opener_guard(decode, prefix="int f() {\n  ", language="C") is None
    assert lone_opener_guard(decode, prefix="", language=None) is None
    typed = lone_opener_guard(decode, prefix="def f():\n    ", language="Python", middle='""')
    assert typed(ids('"')) and not typed(ids("x"))  # text the client typed counts with the output
    assert lone_opener_guard(decode, prefix="def f():\n    x = ", language="Python") is None  # mid-line
    assert lone_opener_guard(decode, prefix="def f():\n    r", language="Python")(ids('"""'))
