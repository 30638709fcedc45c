import glob
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from lightcoder.fim import mix
from lightcoder.fim.mix import Document, make_document
from lightcoder.pack_config import MixConfig
from lightcoder.tokenizer.header import file_header
from lightcoder.tokenizer.special_tokens import BOS, EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

CODE = (
    "import os\n\n\n"
    "def walk(root, depth=0):\n"
    "    for name in sorted(os.listdir(root)):\n"
    "        if name.startswith('.'):\n"
    "            continue\n"
    "        print('  ' * depth + name)\n"
    "    return depth + 1\n"
)
BROKEN = "def walk(root:\n    return 1\n"


def reassemble(doc: Document) -> str:
    """header + code back from a document's pieces (the inverse of the layouts)."""
    p = doc.pieces
    assert p[0] == BOS and p[-1] == EOS
    body = p[1:-1]
    if doc.objective == "ntp":
        assert FIM_PREFIX not in body and doc.order == ""
        return "".join(body)
    assert body[0] == FIM_PREFIX and body.count(FIM_SUFFIX) == body.count(FIM_MIDDLE) == 1
    i_suf, i_mid = body.index(FIM_SUFFIX), body.index(FIM_MIDDLE)
    if doc.order == "psm":
        prefix = "".join(body[1:i_suf])
        suffix = "".join(body[i_suf + 1:i_mid])
        middle = "".join(body[i_mid + 1:])
        return prefix + middle + suffix
    assert doc.order == "spm" and i_suf == 1
    suffix = "".join(body[2:i_mid])
    return "".join(body[i_mid + 1:]) + suffix


def stdlib_files(n: int) -> list[tuple[str, str]]:
    root = os.path.dirname(os.__file__)
    files = sorted(glob.glob(os.path.join(root, "*.py")))[:n]
    return [(os.path.relpath(f, root), Path(f).read_text(encoding="utf-8")) for f in files]


@pytest.mark.parametrize("field, value", [
    ("ntp_rate", 1.5), ("sfim_rate", -0.1), ("spm_rate", "half"), ("whole_node_rate", True),
    ("max_middle_chars", 0), ("max_middle_chars", 10.5),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"MixConfig.{field}"):
        MixConfig(**{field: value})


def test_frequencies_match_config():
    cfg = MixConfig(ntp_rate=0.3, sfim_rate=0.8, spm_rate=0.5)
    rng = random.Random(0)
    docs = [make_document(CODE, "pkg/walk.py", "Python", cfg, rng) for _ in range(3000)]
    objectives = Counter(d.objective for d in docs)
    fim = [d for d in docs if d.objective != "ntp"]
    assert abs(objectives["ntp"] / len(docs) - 0.3) < 0.035
    assert abs(objectives["sfim"] / len(fim) - 0.8) < 0.035
    assert abs(sum(d.order == "spm" for d in fim) / len(fim) - 0.5) < 0.04
    assert not any(d.fell_back for d in docs)
    assert {d.order for d in docs if d.objective == "ntp"} == {""}
    header = file_header("pkg/walk.py", language="Python")
    for d in docs:
        assert d.pieces[0] == BOS and d.pieces[-1] == EOS and all(d.pieces)
        assert reassemble(d) == header + CODE


@pytest.mark.parametrize("text, path, language", [
    (BROKEN, "pkg/broken.py", "Python"),  # syntax error
    ("fun main() { println(1) }\n", "pkg/Main.kt", "Kotlin"),  # no grammar installed
    ("x = 1\n", "README", None),  # unknown language: no header either
])
def test_unparsable_files_fall_back_to_random_fim(text, path, language):
    cfg = MixConfig(ntp_rate=0.2, sfim_rate=0.5)
    rng = random.Random(1)
    docs = [make_document(text, path, language, cfg, rng) for _ in range(1000)]
    assert not any(d.objective == "sfim" for d in docs)
    fell_back = sum(d.fell_back for d in docs) / len(docs)
    assert abs(fell_back - 0.8 * 0.5) < 0.05
    assert all(d.objective == "fim" for d in docs if d.fell_back)
    header = file_header(path, language=language)
    assert all(reassemble(d) == header + text for d in docs)


@pytest.mark.parametrize("text, path, language, reason", [
    (BROKEN, "pkg/broken.py", "Python", "syntax_error"),
    ("fun main() { println(1) }\n", "pkg/Main.kt", "Kotlin", "no_rules"),
    ("x = 1\n", "README", None, "no_rules"),
])
def test_fallbacks_say_why(text, path, language, reason):
    cfg = MixConfig(ntp_rate=0.0, sfim_rate=1.0)
    docs = [make_document(text, path, language, cfg, random.Random(s)) for s in range(20)]
    assert all(d.fell_back and d.fallback_reason == reason and d.objective == "fim" for d in docs)
    ok = make_document(CODE, "a.py", "Python", cfg, random.Random(0))
    assert ok.objective == "sfim" and not ok.fell_back and ok.fallback_reason == ""
    no_sfim = make_document(text, path, language, MixConfig(ntp_rate=0.0, sfim_rate=0.0), random.Random(0))
    assert not no_sfim.fell_back and no_sfim.fallback_reason == ""


def test_files_without_sfim_rules_are_not_parsed(monkeypatch):
    def refuse(*args):
        raise AssertionError("parse_source called for a language without SFIM rules")

    monkeypatch.setattr(mix, "parse_source", refuse)
    cfg = MixConfig(ntp_rate=0.0, sfim_rate=1.0)
    doc = make_document("fun main() { println(1) }\n", "pkg/Main.kt", "Kotlin", cfg, random.Random(0))
    assert doc.fell_back and doc.fallback_reason == "no_rules"


def test_extreme_rates():
    rng = random.Random(2)
    assert make_document(CODE, "a.py", "Python", MixConfig(ntp_rate=1.0), rng).objective == "ntp"
    only_sfim_psm = MixConfig(ntp_rate=0.0, sfim_rate=1.0, spm_rate=0.0)
    docs = [make_document(CODE, "a.py", "Python", only_sfim_psm, rng) for _ in range(50)]
    assert {(d.objective, d.order) for d in docs} == {("sfim", "psm")}
    guessed = make_document(CODE, "a.py", None, only_sfim_psm, rng)  # language from the extension
    assert guessed.objective == "sfim" and guessed.pieces[2].startswith("# the file path is: a.py\n")


def test_real_files_round_trip_and_respect_max_middle():
    psm_only = MixConfig(ntp_rate=0.0, sfim_rate=1.0, spm_rate=0.0, max_middle_chars=300)
    default = MixConfig()
    for seed, (path, text) in enumerate(stdlib_files(12)):
        rng = random.Random(seed)
        for _ in range(3):
            doc = make_document(text, path, "Python", psm_only, rng)
            assert doc.objective == "sfim" and not doc.fell_back
            assert reassemble(doc) == file_header(path, language="Python") + text
            assert 0 < len(doc.pieces[-2]) <= 300  # the middle
            doc = make_document(text, path, "Python", default, rng)
            assert reassemble(doc) == file_header(path, language="Python") + text


def test_deterministic_given_rng_seed():
    cfg = MixConfig()
    a = [make_document(CODE, "a.py", "Python", cfg, random.Random(s)) for s in range(20)]
    b = [make_document(CODE, "a.py", "Python", cfg, random.Random(s)) for s in range(20)]
    assert a == b
