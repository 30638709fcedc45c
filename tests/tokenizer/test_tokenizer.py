"""Byte-level BPE: special-token ids, lossless round trips, pieces, files, AutoTokenizer parity."""

import json
import random
import shutil
import sysconfig
from pathlib import Path

import pytest

from lightcoder.tokenizer import special_tokens as st
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.tokenizer import Tokenizer, split_special
from lightcoder.tokenizer.train import build_backend, run_tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
VOCAB = 700


def stdlib_texts(num: int, *, skip: int = 0) -> list[str]:
    """`num` UTF-8 stdlib .py files, spread over the whole tree (deterministic)."""
    paths = sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts)
    texts = []
    for p in paths[skip :: max(1, len(paths) // (num * 2))]:
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        if len(texts) == num:
            break
    return texts


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(stdlib_texts(40), TokenizerConfig(vocab_size=VOCAB))


def random_text(rng: random.Random) -> str:
    pool = ["\r\n", "\n", "\r", "\t", "\x00", " ", "    ", "😀", "👩‍💻", "🇫🇷", "é", "e\u0301", "中文", "Ж",
            "\u200b", "\ufeff", "\U0010ffff", "<s>", "</s>", st.FIM_PREFIX, "<AIX-", "12345", "x_1", "#"]
    parts = []
    for _ in range(rng.randint(0, 30)):
        if rng.random() < 0.5:
            parts.append(rng.choice(pool))
        else:  # any code point except surrogates (not encodable as UTF-8)
            cp = rng.randint(0, 0x10FFFF)
            parts.append(chr(cp) if not 0xD800 <= cp <= 0xDFFF else "?")
    return "".join(parts)


def test_special_token_ids(tok):
    assert [tok.token_to_id(t) for t in st.SPECIAL_TOKENS] == list(range(len(st.SPECIAL_TOKENS)))
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 10)
    assert tok.stop_ids == frozenset(tok.token_to_id(t) for t in st.STOP_TOKENS)
    assert tok.vocab_size == VOCAB


def test_round_trip_stdlib(tok):
    texts = stdlib_texts(150, skip=1)
    assert len(texts) >= 100
    for text, ids in zip(texts, tok.encode_batch(texts)):
        assert tok.decode(ids) == text
        assert min(ids) >= len(st.SPECIAL_TOKENS)


def test_round_trip_random_unicode(tok):
    rng = random.Random(0)
    texts = [random_text(rng) for _ in range(300)] + ["", "\r\n\r\n", "\x00" * 5, "\t\t x\t"]
    for text in texts:
        assert tok.decode(tok.encode(text)) == text, repr(text)


def test_special_strings_in_text_stay_text(tok):
    text = 'END = "</s>"  # <s><AIX-SPAN-PRE>x<AIX-SPAN-MIDDLE><pad><unk>\n'
    ids = tok.encode(text)
    assert min(ids) >= len(st.SPECIAL_TOKENS)
    assert tok.decode(ids) == text
    assert tok.encode_batch([text]) == [ids]


def test_pre_tokenization_splits_digits_and_indentation(tok):
    ids = tok.encode("x = 1234")
    assert [tok.decode([i]) for i in ids[-4:]] == ["1", "2", "3", "4"]
    # Indentation is its own piece: a prompt ending at the indentation tokenizes as in training.
    body = tok.encode("    return x")
    assert tok.encode("    ") == body[: len(tok.encode("    "))]


def test_encode_pieces_layout(tok):
    # A piece equal to a special-token string is that token; a piece merely containing one is text.
    pieces = [st.BOS, st.FIM_PREFIX, "x = 1", st.FIM_SUFFIX, "'<s>'", st.FIM_MIDDLE, "y", st.EOS]
    expected = [1, 3, *tok.encode("x = 1"), 5, *tok.encode("'<s>'"), 4, *tok.encode("y"), 2]
    assert tok.encode_pieces(pieces) == expected
    assert tok.encode_pieces([st.BOS, st.FIM_PREFIX, "x = 1"])[:2] == [1, 3]
    assert tok.encode_pieces([]) == []
    docs = [pieces, [st.BOS, "a"], [], ["b", st.EOS]]
    assert tok.encode_pieces_batch(docs) == [tok.encode_pieces(d) for d in docs]


def test_split_special():
    assert split_special("a<s>b</s><AIX-SPAN-PRE>") == ["a", "<s>", "b", "</s>", "<AIX-SPAN-PRE>"]
    assert split_special("<s") == ["<s"]


def test_save_load(tok, tmp_path):
    tok.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    loaded = Tokenizer.load(tmp_path)
    text = "def f(x):\n\treturn '<s>' + x  # 😀\r\n"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.vocab_size == tok.vocab_size
    assert Tokenizer.load(tmp_path / "tokenizer.json").encode(text) == tok.encode(text)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="lightcoder tokenizer"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        Tokenizer.load(tmp_path)
    backend = build_backend()
    backend.add_special_tokens(["<s>", "<unk>"])  # wrong order
    with pytest.raises(ValueError, match="expected 0"):
        Tokenizer(backend)


def test_config_validation():
    with pytest.raises(ValueError, match="vocab_size"):
        TokenizerConfig(vocab_size=100)
    with pytest.raises(ValueError, match="min_frequency"):
        TokenizerConfig(min_frequency=0)


def test_autotokenizer_parity(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert (hf.unk_token_id, hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (0, 1, 2, 10)
    assert set(st.SPECIAL_TOKENS) <= set(hf.all_special_tokens)
    texts = stdlib_texts(10, skip=3) + ["", "x = 1\r\n\tNUL\x00 😀 e\u0301\n"]
    for text in texts:
        # HF adds no BOS/EOS by itself: its ids are ours.
        assert hf(text)["input_ids"] == tok.encode(text)
        assert hf.decode(tok.encode(text)) == text
    # HF parses special-token strings inside text (aiXcoder's wrappers rely on it); ours never does.
    # The exact relation: HF(text) == encode_pieces(split_special(text)).
    text = "<s><AIX-SPAN-PRE>x = '</s>'<AIX-SPAN-POST>\n<AIX-SPAN-MIDDLE>"
    assert hf(text)["input_ids"] == tok.encode_pieces(split_special(text))
    assert hf(text)["input_ids"][:2] == [1, 3]
    assert min(tok.encode(text)) >= len(st.SPECIAL_TOKENS)
    assert hf.decode(tok.encode_pieces(split_special(text))) == text


def test_run_tokenizer(tmp_path):
    from lightcoder.data.config import DataConfig
    from lightcoder.data.pipeline import run_data

    src = tmp_path / "src"
    shutil.copytree(STDLIB / "json", src / "json", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("textwrap.py", "colorsys.py", "bisect.py", "shlex.py"):
        shutil.copy(STDLIB / name, src / name)
    run_data(DataConfig(sources=[str(src)], valid_fraction=0.0, test_fraction=0.0), tmp_path / "data")

    cfg = TokenizerConfig(vocab_size=400)
    summary = run_tokenizer(cfg, tmp_path / "data", tmp_path / "tok")
    assert summary["vocab_size"] == 400 and summary["num_files"] >= 5
    assert summary["chars_per_token"] > 1.5
    assert json.loads((tmp_path / "tok" / "DONE").read_text()) == summary
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.decode(loaded.encode("import json\n")) == "import json\n"

    mtime = (tmp_path / "tok" / "tokenizer.json").stat().st_mtime_ns
    assert run_tokenizer(TokenizerConfig(vocab_size=300), tmp_path / "data", tmp_path / "tok") == summary
    assert (tmp_path / "tok" / "tokenizer.json").stat().st_mtime_ns == mtime  # DONE: skipped
    assert run_tokenizer(TokenizerConfig(vocab_size=300), tmp_path / "data", tmp_path / "tok",
                         force=True)["vocab_size"] == 300


def test_separate_newlines_make_every_line_end_a_token_boundary():
    texts = stdlib_texts(20)
    glued = train_tokenizer(texts, TokenizerConfig(vocab_size=VOCAB))
    separate = train_tokenizer(texts, TokenizerConfig(vocab_size=VOCAB, glue_newlines=False))

    def mixed(tok):  # tokens holding a newline and something other than whitespace
        pieces = (tok.decode([i]) for i in range(len(st.SPECIAL_TOKENS), tok.vocab_size))
        return [p for p in pieces if "\n" in p and p.strip()]

    assert mixed(glued) and not mixed(separate)  # the default glues "):\n"; the option never does
    # lines that end in code (trailing spaces join the newline's piece, by rule 4 of the split)
    lines = [line for text in texts[:5] for line in text.splitlines() if line.strip() and line == line.rstrip()]
    for line in lines:  # the tokens of a line are a prefix of the line's tokens when a newline follows
        assert separate.encode(line + "\n    x")[: len(separate.encode(line))] == separate.encode(line)
    assert sum(glued.encode(line + "\n")[: len(glued.encode(line))] != glued.encode(line) for line in lines) > 0
    for text in texts[:5]:
        assert separate.decode(separate.encode(text)) == text
