import random

import pytest

from lightcoder.languages import LANGUAGES, comment, get_language, has_grammar, language_for_path
from lightcoder.tokenizer.header import file_header


def test_every_extension_maps_back_to_its_language():
    for lang in LANGUAGES:
        for ext in lang.extensions:
            assert language_for_path(f"some/dir/file{ext}") == lang.name


@pytest.mark.parametrize("path", ["README", "Makefile.in.unknownext", "a/b/", "dir.py/file", ""])
def test_unknown_extensions_have_no_language(path):
    assert language_for_path(path) is None


def test_extension_match_is_anchored_at_the_end():
    assert language_for_path("archive.py.bak") is None
    assert language_for_path("x.tar.py") == "Python"


def test_header_matches_aixcoder_readme_example():
    # research/aixcoder-7b.md §1.4: the README training example starts with these two lines
    assert file_header("test.py") == "# the file path is: test.py\n# the code file is written by Python\n"


def test_header_uses_each_languages_comment_syntax():
    assert file_header("a/B.java").splitlines() == [
        "// the file path is: a/B.java", "// the code file is written by Java"]
    assert file_header("x.ml").endswith("(* the code file is written by OCaml *)\n")
    assert file_header("notes.unknownext") == ""
    assert file_header("m.py", include_path=False) == "# the code file is written by Python\n"


def test_comment_is_one_line_for_random_texts():
    rng = random.Random(0)
    for lang in LANGUAGES:
        text = "".join(rng.choice("abc xyz/._-") for _ in range(rng.randint(0, 30)))
        line = comment(lang.name, text)
        assert text in line and "\n" not in line


def test_unknown_language_error_names_it():
    with pytest.raises(ValueError, match="Klingon"):
        get_language("Klingon")


def test_python_grammar_is_installed():
    assert has_grammar("Python")
    assert not has_grammar("Kotlin")  # no grammar configured


@pytest.mark.parametrize("language", ["Python", "Java", "JavaScript", "TypeScript", "TSX", "C", "C++", "Go", "Rust"])
def test_sfim_languages_have_grammars(language):
    from lightcoder.languages import tree_sitter_parser

    assert has_grammar(language)
    assert tree_sitter_parser(language).parse(b"x").root_node is not None


def test_tsx_is_its_own_language():
    # linguist calls .tsx "TSX"; the TypeScript grammar cannot parse JSX, so .tsx gets the tsx grammar
    assert language_for_path("web/App.tsx") == "TSX" and language_for_path("web/app.ts") == "TypeScript"
    assert file_header("App.tsx").endswith("// the code file is written by TSX\n")
