"""SFIM properties over real files of every shipped grammar, many seeds each.

For hundreds of real files per language (lightcoder.fim.sample_corpora; a language whose sources
are not on this machine is skipped with the reason):
- prefix + middle + suffix is the file, for SFIM and random FIM documents;
- an SFIM middle is exactly the extent of a run of complete sibling nodes, checked on an
  independent re-parse with byte offsets recomputed here, and contains no ERROR/MISSING node;
- the tokenised PSM/SPM documents decode back to the exact pieces (the decode -> re-tokenise step
  where Megatron/NeMo had FIM bugs), and "<s>"-like strings inside code stay text;
- everything is deterministic given the seed.
"""

import random
from collections import Counter
from functools import cache

import pytest

from lightcoder.fim.mix import make_document
from lightcoder.fim.rules import RULES
from lightcoder.fim.sample_corpora import missing_reason, sample_files
from lightcoder.fim.spans import parse_tree
from lightcoder.languages import tree_sitter_language
from lightcoder.pack_config import MixConfig
from lightcoder.tokenizer import special_tokens as st
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.header import file_header
from lightcoder.tokenizer.train import train_tokenizer

LANGUAGES = ("Python", "Java", "JavaScript", "TypeScript", "C", "C++", "Go", "Rust")
FILES_PER_LANGUAGE = 150
SEEDS = 2
TOKENISED_FILES = 30  # files per language whose documents are also tokenised and decoded
MAX_MIDDLE = 1500
SFIM_ONLY = MixConfig(ntp_rate=0.0, sfim_rate=1.0, spm_rate=0.5, max_middle_chars=MAX_MIDDLE,
                      sfim_partial_parse=True)


@cache
def files(language: str) -> list[tuple[str, str]]:
    return sample_files(language, FILES_PER_LANGUAGE, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [t for lang in LANGUAGES for _, t in files(lang)[:5]]
    texts.append("if (a <s> b) return '<AIX-SPAN-MIDDLE>' + '</s>';\n")
    return train_tokenizer(texts, TokenizerConfig(vocab_size=600))


def span_is_sibling_run(tree, text: str, start: int, end: int) -> bool:
    """[start, end) chars is a whole node or a run children[i..j] of one node, on this tree."""
    b0, b1 = len(text[:start].encode("utf-8")), len(text[:end].encode("utf-8"))
    node = tree.root_node.descendant_for_byte_range(b0, b1)
    while node is not None:
        if (node.start_byte, node.end_byte) == (b0, b1):
            return not node.has_error
        kids = node.children
        firsts = [i for i, c in enumerate(kids) if c.start_byte == b0]
        lasts = [j for j, c in enumerate(kids) if c.end_byte == b1]
        runs = [(i, j) for i in firsts for j in lasts if j >= i]
        if runs:
            i, j = runs[0]
            return not any(c.has_error for c in kids[i:j + 1])
        node = node.parent
    return False


def fim_parts(pieces: list[str], header: str) -> tuple[str, str, str, str]:
    """(order, prefix-with-header, middle, suffix) from a FIM document's pieces."""
    body = pieces[1:-1]
    i_suf, i_mid = body.index(st.FIM_SUFFIX), body.index(st.FIM_MIDDLE)
    if i_suf == 1:  # SPM: PRE POST S MID H+P M
        rest = body[i_mid + 1:]
        suffix = "".join(body[2:i_mid])
        if len(rest) == 1:  # an empty middle or an empty header+prefix: tell them apart by the header
            rest = rest + [""] if rest[0].startswith(header) else [""] + rest
        return "spm", rest[0] if rest else "", rest[1] if rest else "", suffix
    return "psm", "".join(body[1:i_suf]), "".join(body[i_mid + 1:]), "".join(body[i_suf + 1:i_mid])


def test_rules_name_real_node_types():
    for language, rules in RULES.items():
        lang = tree_sitter_language(language)
        names = rules.structural + rules.simple_statements + sum(rules.statements.values(), ())
        missing = [n for n in names if not lang.id_for_node_kind(n, True)]
        assert not missing, (language, missing)
        for token in rules.trailing_tokens:
            assert lang.id_for_node_kind(token, False), (language, token)
    assert set(RULES) == set(LANGUAGES) | {"TSX"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_sfim_on_real_files(language, tokenizer):
    sample = files(language)
    if len(sample) < 20:
        pytest.skip(missing_reason(language))
    node_types: Counter = Counter()
    lengths: list[int] = []
    reasons: Counter = Counter()
    for n, (path, text) in enumerate(sample):
        header = file_header(path, language=language)
        tree = parse_tree(text, language)
        docs = [make_document(text, path, language, SFIM_ONLY, random.Random(f"{n}:{s}")) for s in range(SEEDS)]
        # deterministic given the seed
        assert docs[0] == make_document(text, path, language, SFIM_ONLY, random.Random(f"{n}:0"))
        for doc in docs:
            assert doc.pieces[0] == st.BOS and doc.pieces[-1] == st.EOS and doc.language == language
            order, head_prefix, middle, suffix = fim_parts(doc.pieces, header)
            assert order == doc.order and head_prefix.startswith(header)
            prefix = head_prefix[len(header):]
            assert prefix + middle + suffix == text, (path, doc.objective)
            if doc.objective == "sfim":
                assert 0 < len(middle) <= MAX_MIDDLE and doc.node_type in RULES[language].structural
                assert span_is_sibling_run(tree, text, len(prefix), len(prefix) + len(middle)), \
                    (path, doc.node_type, middle[:120])
                node_types[doc.node_type] += 1
                lengths.append(len(middle))
            else:
                reasons[doc.fallback_reason] += 1
        if n >= TOKENISED_FILES:
            continue
        # tokenised documents decode back to the exact pieces: special ids only at the sentinels
        for doc, ids in zip(docs, tokenizer.encode_pieces_batch([d.pieces for d in docs])):
            assert ids.count(tokenizer.bos_id) == 1 and ids[0] == tokenizer.bos_id
            decoded, run = [], []
            for i in ids:
                if i < len(st.SPECIAL_TOKENS):
                    if run:
                        decoded.append(tokenizer.decode(run))
                    decoded.append(st.SPECIAL_TOKENS[i])
                    run = []
                else:
                    run.append(i)
            joined: list[str] = []  # adjacent text pieces (SPM H+P, M) decode as one run
            for p in doc.pieces:
                if joined and not st.is_special(p) and not st.is_special(joined[-1]):
                    joined[-1] += p
                else:
                    joined.append(p)
            assert decoded == joined, path
    total = len(sample) * SEEDS
    sfim = sum(node_types.values())
    assert sfim >= 0.6 * total, (language, reasons)  # C/C++ headers: macros leave ERROR nodes
    assert len(node_types) >= 8, node_types  # many structures, not one favourite
    assert sum(x <= 24 for x in lengths) > 0.03 * sfim and sum(x >= 200 for x in lengths) > 0.1 * sfim


def test_tsx_parses_jsx():
    code = ("import { h } from './h';\n"
            "export function App({ items }: { items: string[] }) {\n"
            "  if (items.length === 0) {\n    return <p>empty</p>;\n  }\n"
            "  return <ul>{items.map((x) => <li key={x}>{x}</li>)}</ul>;\n}\n")
    assert not parse_tree(code, "TSX").root_node.has_error
    assert parse_tree(code, "TypeScript").root_node.has_error  # why .tsx needs its own grammar
    docs = [make_document(code, "src/App.tsx", None, SFIM_ONLY, random.Random(s)) for s in range(30)]
    assert all(d.language == "TSX" and d.objective == "sfim" for d in docs)
    tree = parse_tree(code, "TSX")
    for d in docs:
        order, head_prefix, middle, suffix = fim_parts(d.pieces, file_header("src/App.tsx"))
        prefix = head_prefix[len(file_header("src/App.tsx")):]
        assert prefix + middle + suffix == code
        assert span_is_sibling_run(tree, code, len(prefix), len(prefix) + len(middle))


def test_special_token_strings_in_code_stay_text(tokenizer):
    code = 'x = "<s>"  # </s> <AIX-SPAN-PRE> <AIX-SPAN-MIDDLE> <AIX-SPAN-POST> <pad>\n'
    for seed in range(20):
        doc = make_document(code, "a.py", "Python", MixConfig(ntp_rate=0.2), random.Random(seed))
        ids = tokenizer.encode_pieces(doc.pieces)
        specials = [i for i in ids if i < len(st.SPECIAL_TOKENS)]
        expected = [st.SPECIAL_TOKENS.index(p) for p in doc.pieces if st.is_special(p)]
        assert specials == expected  # only the layout's own sentinels are special ids
        assert specials.count(tokenizer.bos_id) == 1
