"""Prompts: aiXcoder's NTP / SPM / PSM layouts, and truncation to a token budget."""

import inspect
import textwrap

import pytest

from lightcoder.fim.transforms import ntp_prompt, psm_prompt, spm_prompt
from lightcoder.infer.prompts import PromptConfig, build_prompt, split_budget
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.header import file_header
from lightcoder.tokenizer.special_tokens import BOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from lightcoder.tokenizer.train import train_tokenizer

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\n\nprint(add(1, 2))\n"
HEADER = "# the file path is: pkg/m.py\n# the code file is written by Python\n"


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([inspect.getsource(textwrap)], TokenizerConfig(vocab_size=400))


@pytest.fixture(scope="module")
def code():
    return inspect.getsource(textwrap)


def test_layouts_follow_aixcoder(tok):
    assert file_header("pkg/m.py") == HEADER
    cfg = PromptConfig()
    ids = build_prompt(tok, prefix=PREFIX, path="pkg/m.py", cfg=cfg)
    assert ids == tok.encode_pieces(ntp_prompt(HEADER, PREFIX))  # no suffix: plain NTP
    ids = build_prompt(tok, prefix=PREFIX, suffix=SUFFIX, path="pkg/m.py", cfg=cfg)
    assert ids == tok.encode_pieces(spm_prompt(HEADER, PREFIX, SUFFIX))
    assert tok.decode(ids) == f"{BOS}{FIM_PREFIX}{FIM_SUFFIX}{SUFFIX}{FIM_MIDDLE}{HEADER}{PREFIX}"
    ids = build_prompt(tok, prefix=PREFIX, suffix=SUFFIX, path="pkg/m.py", cfg=PromptConfig(mode="psm"))
    assert tok.decode(ids) == f"{BOS}{FIM_PREFIX}{HEADER}{PREFIX}{FIM_SUFFIX}{SUFFIX}{FIM_MIDDLE}"
    # include_path=False keeps only the language line; no path, no header.
    ids = build_prompt(tok, prefix=PREFIX, suffix=SUFFIX, path="pkg/m.py",
                       cfg=PromptConfig(mode="psm", include_path=False))
    assert ids == tok.encode_pieces(psm_prompt("# the code file is written by Python\n", PREFIX, SUFFIX))
    assert build_prompt(tok, prefix=PREFIX, cfg=cfg) == tok.encode_pieces([BOS, PREFIX])


def test_an_infilling_request_at_the_end_of_a_file_keeps_the_fim_form(tok):
    """fim=True with an empty suffix (llama.cpp /infill, FIM benchmarks' last lines): FIM layout, not NTP."""
    for mode, layout in (("spm", spm_prompt), ("psm", psm_prompt)):
        ids = build_prompt(tok, prefix=PREFIX, path="pkg/m.py", cfg=PromptConfig(mode=mode), fim=True)
        assert ids == tok.encode_pieces(layout(HEADER, PREFIX, ""))
    assert build_prompt(tok, prefix=PREFIX, path="pkg/m.py", cfg=PromptConfig(), fim=False) == \
        tok.encode_pieces(ntp_prompt(HEADER, PREFIX))
    with pytest.raises(ValueError, match="fim=False needs an empty suffix"):
        build_prompt(tok, prefix=PREFIX, suffix=SUFFIX, cfg=PromptConfig(), fim=False)


def test_special_token_strings_in_code_stay_text(tok):
    ids = build_prompt(tok, prefix="s = '<s>'\n", suffix="t = '</s>'\n", cfg=PromptConfig())
    assert ids.count(tok.bos_id) == 1 and tok.eos_id not in ids


def test_split_budget_moves_unused_share():
    assert split_budget(10, 3, 4) == (3, 4)  # everything fits
    assert split_budget(10, 20, 20) == (5, 5)
    assert split_budget(11, 20, 20) == (6, 5)  # the prefix gets the odd token
    assert split_budget(10, 20, 2) == (8, 2)
    assert split_budget(10, 1, 20) == (1, 9)


@pytest.mark.parametrize("mode", ["spm", "psm"])
def test_truncation_keeps_header_prefix_end_and_suffix_start(tok, code, mode):
    prefix, suffix = code[:6000], code[6000:12000]
    cfg = PromptConfig(mode=mode, max_prompt_tokens=200)
    ids = build_prompt(tok, prefix=prefix, suffix=suffix, path="pkg/m.py", cfg=cfg)
    assert 190 <= len(ids) <= 200  # fills the budget, never exceeds it
    text = tok.decode(ids)
    assert text.startswith(BOS + FIM_PREFIX) and text.endswith(FIM_MIDDLE if mode == "psm" else "")
    kept_suffix = text.split(FIM_SUFFIX)[1].split(FIM_MIDDLE)[0]
    after_header = text.split(HEADER)[1]
    kept_prefix = after_header.split(FIM_SUFFIX)[0] if mode == "psm" else after_header
    assert prefix.endswith(kept_prefix) and suffix.startswith(kept_suffix)
    # Both sides got about half of what is left after the special tokens and the header.
    n_prefix, n_suffix = len(tok.encode(kept_prefix)), len(tok.encode(kept_suffix))
    assert abs(n_prefix - n_suffix) <= 4 and n_prefix > 50


def test_a_short_suffix_gives_its_share_to_the_prefix(tok, code):
    cfg = PromptConfig(max_prompt_tokens=200)
    ids = build_prompt(tok, prefix=code[:6000], suffix=SUFFIX, path="pkg/m.py", cfg=cfg)
    assert 195 <= len(ids) <= 200
    assert tok.decode(ids).split(FIM_SUFFIX)[1].startswith(SUFFIX)  # the whole suffix is kept
    ids = build_prompt(tok, prefix=code[:6000], path="pkg/m.py", cfg=cfg)  # NTP: all to the prefix
    assert 195 <= len(ids) <= 200 and tok.decode(ids).startswith(BOS + HEADER)


def test_non_ascii_cuts_keep_whole_characters(tok):
    prefix = "s = '" + "é漢字🙂" * 200 + "'\n"
    ids = build_prompt(tok, prefix=prefix, suffix=prefix, cfg=PromptConfig(max_prompt_tokens=61))
    assert len(ids) <= 61
    text = tok.decode(ids)
    assert "\ufffd" not in text
    assert prefix.endswith(text.split(FIM_MIDDLE)[1])


def test_too_small_budgets_and_bad_configs_are_refused(tok):
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        build_prompt(tok, prefix="x" * 500, suffix="y", path="pkg/m.py", cfg=PromptConfig(max_prompt_tokens=10))
    with pytest.raises(ValueError, match="PromptConfig.mode"):
        PromptConfig(mode="pms")
    with pytest.raises(ValueError, match="PromptConfig.max_prompt_tokens"):
        PromptConfig(max_prompt_tokens=0)
