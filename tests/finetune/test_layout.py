"""Training examples in the base model's own format, token for token.

aiXcoder: our examples against the strings aiXcoder's finetune.py builds, tokenized by transformers'
own conversion of the same SentencePiece tokenizer.model (the reference, not our code). Other
families: the documented template sequences (infer/templates.py) with their tokenizer.json."""

import inspect
import json
import textwrap

import pytest

from lightcoder.finetune.base import BaseModelError, open_base
from lightcoder.fim.context import build_example
from lightcoder.fim.spans import Span
from lightcoder.infer.prompts import PromptConfig, build_prompt



def tiny_model(vocab_size: int, seed: int = 0, **overrides):
    from lightcoder.model.config import get_preset
    from lightcoder.model.llama import Transformer

    model = Transformer(get_preset("lc-tiny", vocab_size=vocab_size, **overrides))
    model.init_weights(seed)
    return model

CODE = "def area(w, h):\n    if w < 0:\n        raise ValueError('w')\n    return w * h\n\nprint(area(2, 3))\n"
SPANS = [Span(20, 29, "line"), Span(4, 8, "random"), Span(0, 16, "multi_line"), Span(65, 70, "random")]


@pytest.fixture(scope="module")
def hf_reference(aix_tokenizer_dir):
    """transformers' fast tokenizer converted from the tokenizer.model: special pieces parsed, no dummy
    prefix after them (legacy=False), no BOS added (finetune.py writes <s> into the text)."""
    transformers = pytest.importorskip("transformers")
    tok = transformers.LlamaTokenizer.from_pretrained(str(aix_tokenizer_dir), legacy=False, add_bos_token=False,
                                                      add_eos_token=False)
    assert len(tok) == 600  # converted from the tokenizer.model (not an empty vocabulary)
    return lambda text: tok(text, add_special_tokens=False)["input_ids"]


def test_the_layout_puts_the_sentinels_at_aixcoders_ids(aix_base):
    base = open_base(aix_base)
    tok = base.tokenizer
    assert base.template.name == "aixcoder" and (tok.bos_id, tok.eos_id) == (1, 2)
    ids = [tok.token_to_id(t) for t in ("<AIX-SPAN-PRE>", "<AIX-SPAN-MIDDLE>", "<AIX-SPAN-POST>")]
    assert ids == [260, 261, 262] and tok.id_to_token(260) == "\u2581<AIX-SPAN-PRE>"


@pytest.mark.parametrize("span", SPANS, ids=lambda s: f"{s.kind}-{s.start}")
def test_psm_example_equals_finetune_py_token_for_token(aix_base, hf_reference, span):
    base = open_base(aix_base)
    p, m, s = CODE[:span.start], CODE[span.start:span.end], CODE[span.end:]
    example = build_example(base.tokenizer, CODE, "", span, seq_len=256, mode="psm", max_middle_tokens=64)
    # finetune.py, RandomFIMDataset: the PSM string (file content only: no header lines, as path "" here)
    reference = hf_reference(f"<s>▁<AIX-SPAN-PRE>{p}▁<AIX-SPAN-POST>{s}▁<AIX-SPAN-MIDDLE>{m}</s>")
    assert example.ids == reference
    assert example.ids[:example.prompt_len] == build_prompt(
        base.tokenizer, prefix=p, suffix=s, cfg=PromptConfig(mode="psm", max_prompt_tokens=200))


@pytest.mark.parametrize("span", SPANS, ids=lambda s: f"{s.kind}-{s.start}")
def test_spm_example_is_finetune_py_layout_with_prefix_and_middle_cut_apart(aix_base, hf_reference, span):
    """finetune.py encodes "{prefix}{middle}" in one call, so a token can straddle the cursor; ours
    encodes them apart (the prompt then ends exactly as the server's does). With P+M as one piece
    our encoder gives finetune.py's ids; the text of both is the same."""
    base = open_base(aix_base)
    tok = base.tokenizer
    p, m, s = CODE[:span.start], CODE[span.start:span.end], CODE[span.end:]
    reference = hf_reference(f"<s>▁<AIX-SPAN-PRE>▁<AIX-SPAN-POST>{s}▁<AIX-SPAN-MIDDLE>{p}{m}</s>")
    joined = ["<s>", "<AIX-SPAN-PRE>", "<AIX-SPAN-POST>", s, "<AIX-SPAN-MIDDLE>", p + m, "</s>"]
    assert tok.encode_pieces([x for x in joined if x]) == reference
    example = build_example(tok, CODE, "", span, seq_len=256, mode="spm", max_middle_tokens=64)
    k = example.ids.index(tok.token_to_id("<AIX-SPAN-MIDDLE>")) + 1
    assert example.ids[:k] == reference[:k]  # <s> PRE POST suffix MIDDLE: the same ids
    assert tok.decode(example.ids[k:-1]) == tok.decode(reference[k:-1]) == p + m  # the same text after it
    assert example.ids[-1] == reference[-1] == tok.eos_id
    assert example.ids[:example.prompt_len] == build_prompt(tok, prefix=p, suffix=s,
                                                            cfg=PromptConfig(mode="spm", max_prompt_tokens=200))
    assert example.ids[example.prompt_len:] == tok.encode(m) + [2]


def test_ntp_document_equals_finetune_py(aix_base, hf_reference):
    base = open_base(aix_base)
    assert base.ntp_ids("", None, CODE) == hf_reference(f"<s>{CODE}</s>")
    with_header = base.ntp_ids("geo/area.py", "Python", CODE)
    assert base.tokenizer.decode(with_header[1:-1]).startswith("# the file path is: geo/area.py\n# the code file")


# ----------------------------------------------------------------------------- other families


FAMILIES = {
    # name: (special tokens, tokenizer_config, documented example for prefix P, middle M, suffix S)
    "starcoder": (["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"],
                  {"eos_token": "<|endoftext|>"},
                  ["<|endoftext|>", "<fim_prefix>", "P", "<fim_suffix>", "S", "<fim_middle>", "M", "<|endoftext|>"]),
    "deepseek": (["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>",
                  "<｜fim▁end｜>", "<|EOT|>"],
                 {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
                 ["<｜begin▁of▁sentence｜>", "<｜fim▁begin｜>", "P", "<｜fim▁hole｜>", "S", "<｜fim▁end｜>", "M",
                  "<｜end▁of▁sentence｜>"]),
    "qwen2.5-coder": (["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                       "<|file_sep|>", "<|repo_name|>", "<|im_end|>"],
                      {"eos_token": "<|endoftext|>"},
                      ["<|endoftext|>", "<|fim_prefix|>", "P", "<|fim_suffix|>", "S", "<|fim_middle|>", "M",
                       "<|endoftext|>"]),
    "codellama": (["<s>", "</s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"],
                  {"bos_token": "<s>", "eos_token": "</s>"},
                  ["<s>", "▁<PRE>", " P", "▁<SUF>", "S", "▁<MID>", "M", "▁<EOT>"]),
}


def family_base(root, specials, config):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator([inspect.getsource(textwrap), inspect.getsource(json)], trainers.BpeTrainer(
        vocab_size=500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from lightcoder.model.hf import save_checkpoint

    model = tiny_model(512)
    ckpt = save_checkpoint(model, model.cfg, root)
    backend.save(str(ckpt / "tokenizer.json"))
    (ckpt / "tokenizer_config.json").write_text(json.dumps(config))
    return ckpt


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_familys_template_gives_its_documented_sequence(tmp_path, family):
    specials, config, documented = FAMILIES[family]
    base = open_base(family_base(tmp_path / family, specials, config))
    assert base.template.name == family
    tok = base.tokenizer
    span = Span(20, 29, "line")
    text = {"P": CODE[:span.start], "M": CODE[span.start:span.end], "S": CODE[span.end:]}
    expected = []
    for piece in documented:
        if piece.strip() in text:
            expected += tok.encode(piece.replace(piece.strip(), text[piece.strip()]))
        else:
            expected.append(tok.token_to_id(piece))
    example = build_example(tok, CODE, "m.py", span, seq_len=256, mode="psm", max_middle_tokens=64, fmt=base.fmt)
    assert example.ids == expected
    # the prompt part is the server's prompt (after the document-start token of families without BOS)
    server = build_prompt(tok, prefix=text["P"], suffix=text["S"], path="m.py", template=base.template,
                          cfg=PromptConfig(mode="psm", max_prompt_tokens=200))
    assert example.ids[example.prompt_len - len(server):example.prompt_len] == server
    ntp = base.ntp_ids("m.py", "Python", CODE)
    assert ntp[0] == base.doc_start_id and ntp.count(base.doc_start_id) == 1  # one document start each


def llama_style_base(root, specials, config):
    """A base whose tokenizer.json puts SentencePiece's "▁" before every text, as Llama-2 / CodeLlama's do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from lightcoder.model.hf import save_checkpoint

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    texts = [inspect.getsource(textwrap), inspect.getsource(json), "☺"]
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", *specials]))
    model = tiny_model(512)
    ckpt = save_checkpoint(model, model.cfg, root)
    backend.save(str(ckpt / "tokenizer.json"))
    (ckpt / "tokenizer_config.json").write_text(json.dumps(config))
    return ckpt


def test_a_tokenizer_that_prepends_a_space_gives_codellamas_own_sequence(tmp_path):
    """CodeLlama's reference (infilling_prompt_tokens): <s> ▁<PRE> encode(P) ▁<SUF> encode_infilling(S) ▁<MID>,
    where encode adds the tokenizer's one dummy space and encode_infilling (the middle too) adds none."""
    specials, config, _ = FAMILIES["codellama"]
    base = open_base(llama_style_base(tmp_path / "cl", specials, config))
    tok, raw = base.tokenizer, base.tokenizer.backend
    assert raw.encode("x").tokens[0].startswith("▁")  # the tokenizer itself prepends

    def infilling(text):  # CodeLlama's encode_infilling: after "☺", whose ids are dropped
        return raw.encode("☺" + text).ids[len(raw.encode("☺").ids):]

    for text in ("x = 1", " x = 1", "\n    return y\n", "a☺b"):
        assert tok.decode(tok.encode(text)) == text and tok.encode(text) == infilling(text)
    P, M, S = CODE[:20], CODE[20:29], CODE[29:]
    special = tok.token_to_id
    expected = [special("<s>"), special("▁<PRE>"), *raw.encode(P).ids, special("▁<SUF>"), *infilling(S),
                special("▁<MID>"), *infilling(M), special("▁<EOT>")]
    example = build_example(tok, CODE, "m.py", Span(20, 29, "line"), seq_len=256, mode="psm", max_middle_tokens=64,
                            fmt=base.fmt)
    assert example.ids == expected
    assert tok.decode(infilling(M)) == M  # a decoded middle keeps its own first character


def test_codellama_spm_puts_the_prefix_after_the_suffix(tmp_path):
    specials, config, _ = FAMILIES["codellama"]
    base = open_base(family_base(tmp_path / "cl", specials, config))
    tok = base.tokenizer
    example = build_example(tok, CODE, "m.py", Span(20, 29, "line"), seq_len=256, mode="spm", max_middle_tokens=64,
                            fmt=base.fmt)
    pre, suf, mid = (tok.token_to_id(t) for t in ("▁<PRE>", "▁<SUF>", "▁<MID>"))
    assert example.ids[:4] == [tok.token_to_id("<s>"), pre, suf, *tok.encode(CODE[29:])[:1]]
    assert example.ids[example.prompt_len - 1 - len(tok.encode(" " + CODE[:20])):][:1] == [mid]


def test_a_tokenizer_without_fim_tokens_names_the_template_flag(tmp_path):
    base_dir = family_base(tmp_path / "plain", ["<|endoftext|>"], {"eos_token": "<|endoftext|>"})
    with pytest.raises(BaseModelError, match="--template"):
        open_base(base_dir)
    sc = family_base(tmp_path / "sc", FAMILIES["starcoder"][0], FAMILIES["starcoder"][1])
    with pytest.raises(BaseModelError, match="pass --template starcoder"):
        open_base(sc, "deepseek")


def test_a_base_that_is_not_a_causal_lm_is_refused(tmp_path, bpe_base):
    import shutil

    bert = tmp_path / "bert"
    shutil.copytree(bpe_base, bert)
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(BaseModelError, match="not a causal language model"):
        open_base(bert)
    gpt2 = tmp_path / "gpt2"
    shutil.copytree(bpe_base, gpt2)
    (gpt2 / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(BaseModelError, match="Llama-architecture"):
        open_base(gpt2)
    with pytest.raises(BaseModelError, match="no config.json"):
        open_base(tmp_path)
    for head in ("LlamaModel", "LlamaForSequenceClassification"):  # Llama weights without the LM head
        other = tmp_path / head
        shutil.copytree(bpe_base, other)
        config = json.loads((bpe_base / "config.json").read_text())
        (other / "config.json").write_text(json.dumps({**config, "architectures": [head]}))
        with pytest.raises(BaseModelError, match="not a causal language model"):
            open_base(other)
