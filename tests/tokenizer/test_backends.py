"""Tokenizers of checkpoints we did not train: aiXcoder's release layout (an HF Llama dir with a
SentencePiece tokenizer.model, "▁"-spelled special pieces, the ☺ segment-join rule; research/
aixcoder-7b.md §1.2) and another family's tokenizer.json with its own FIM template."""

import inspect
import io
import textwrap

import pytest

spm = pytest.importorskip("sentencepiece")

from lightcoder.tokenizer.backends import JOIN_MARK, SentencePieceTokenizer, load_tokenizer  # noqa: E402
from lightcoder.tokenizer.special_tokens import SENTENCEPIECE_SPELLING  # noqa: E402


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("aix_layout")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(inspect.getsource(textwrap).splitlines()), model_writer=model,
        model_type="bpe", vocab_size=600, byte_fallback=True, character_coverage=1.0,
        user_defined_symbols=list(SENTENCEPIECE_SPELLING.values()) + [JOIN_MARK],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True)
    (d / "tokenizer.model").write_bytes(model.getvalue())
    return d


def test_special_pieces_and_the_join_rule(sp_dir):
    tok = load_tokenizer(sp_dir)
    assert isinstance(tok, SentencePieceTokenizer)
    assert (tok.bos_id, tok.eos_id) == (1, 2)
    pre = tok.token_to_id("<AIX-SPAN-PRE>")
    assert tok.id_to_token(pre) == "\u2581<AIX-SPAN-PRE>" == tok.id_to_token(tok.token_to_id("\u2581<AIX-SPAN-PRE>"))
    # The ☺ rule: a segment carries no dummy-prefix "▁"; joining segments equals encoding them joined
    # whenever the seam is a whitespace boundary.
    ids = tok.encode("return x")
    assert tok.sp.id_to_piece(ids[0]) != "\u2581" and tok.decode(ids) == "return x"
    assert tok.sp.id_to_piece(tok.sp.encode("return x")[0]).startswith("\u2581")  # plain encode adds it
    for text in ["def f(x):\n    return x\n", "  indented", "naïve = 'é'", "a\n\nb"]:
        assert tok.decode(tok.encode(text)) == text
    pieces = ["<s>", "<AIX-SPAN-PRE>", "<AIX-SPAN-POST>", "    pass\n", "<AIX-SPAN-MIDDLE>", "def f():\n"]
    ids = tok.encode_pieces(pieces)
    assert ids[:3] == [1, pre, tok.token_to_id("<AIX-SPAN-POST>")]
    assert tok.decode(ids[3:]).startswith("    pass\n")
    assert tok.token_to_id("<AIX-SPAN-MIDDLE>") in tok.stop_ids and 2 in tok.stop_ids


def test_completer_loads_an_hf_llama_dir_with_tokenizer_model(sp_dir, tmp_path):
    import shutil

    from lightcoder.infer.completer import Completer
    from lightcoder.model.config import get_preset
    from lightcoder.model.hf import save_checkpoint
    from lightcoder.model.llama import Transformer

    tok = SentencePieceTokenizer(sp_dir / "tokenizer.model")
    model = Transformer(get_preset("lc-tiny", vocab_size=640, init_std=0.2))
    model.init_weights(0)
    ckpt = save_checkpoint(model, model.cfg, tmp_path / "aix")
    shutil.copyfile(sp_dir / "tokenizer.model", ckpt / "tokenizer.model")
    completer = Completer.load(ckpt)
    assert completer.template.name == "aixcoder" and isinstance(completer.tokenizer, SentencePieceTokenizer)
    prompt = completer.build("def f(x):\n    return ", "\n", path="m.py", max_new_tokens=8)
    assert prompt[:3] == [1, tok.token_to_id("<AIX-SPAN-PRE>"), tok.token_to_id("<AIX-SPAN-POST>")]
    result = completer.complete("def f(x):\n    return ", "\n", path="m.py", max_new_tokens=8, stop_ids=())
    assert result.new_tokens == 8 and "\ufffd" not in result.text


def test_another_familys_tokenizer_json_gets_its_template(tmp_path):
    """A StarCoder-style tokenizer.json (its own FIM tokens, no aiXcoder tokens) in an HF Llama dir."""
    import json as json_module

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from lightcoder.infer.completer import Completer
    from lightcoder.model.config import get_preset
    from lightcoder.model.hf import save_checkpoint
    from lightcoder.model.llama import Transformer
    from lightcoder.tokenizer.backends import ForeignTokenizer

    specials = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator([inspect.getsource(textwrap)], trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = Transformer(get_preset("lc-tiny", init_std=0.2))
    model.init_weights(0)
    ckpt = save_checkpoint(model, model.cfg, tmp_path / "sc")
    backend.save(str(ckpt / "tokenizer.json"))
    (ckpt / "tokenizer_config.json").write_text(json_module.dumps({"eos_token": "<|endoftext|>"}))

    completer = Completer.load(ckpt)
    tok = completer.tokenizer
    assert isinstance(tok, ForeignTokenizer) and completer.template.name == "starcoder"
    ids = completer.build("def f(x):\n    return ", "\n", path="m.py", max_new_tokens=4)
    fim_prefix, fim_suffix, fim_middle = (tok.token_to_id(t) for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))
    assert ids[0] == fim_prefix and ids[-1] == fim_middle and fim_suffix in ids
    assert tok.decode(ids[1:ids.index(fim_suffix)]) == "def f(x):\n    return "  # no aiXcoder header lines
    assert {tok.token_to_id("<|endoftext|>"), tok.token_to_id("<file_sep>")} <= tok.stop_ids
    assert tok.encode("<fim_prefix>") != [fim_prefix]  # special-token text inside code stays text
    result = completer.complete("def f(x):\n    return ", "\n", path="m.py", max_new_tokens=4, stop_ids=())
    assert result.new_tokens == 4


def test_a_truncated_tokenizer_json_names_the_file_and_the_fix(tmp_path):
    from lightcoder.tokenizer.config import TokenizerConfig
    from lightcoder.tokenizer.train import train_tokenizer

    train_tokenizer([inspect.getsource(textwrap)], TokenizerConfig(vocab_size=300)).save(tmp_path)
    text = (tmp_path / "tokenizer.json").read_text()
    (tmp_path / "tokenizer.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*tokenizer\.json.*intact tokenizer\.json"):
        load_tokenizer(tmp_path)
