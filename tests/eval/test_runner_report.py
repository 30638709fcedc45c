"""The harness files (resume, shards, config stamps), the report, and a tiny-model end-to-end run."""

import inspect
import json
import textwrap

import pytest

from lightcoder.eval import report_command
from lightcoder.eval.runner import (
    GenerationSettings, _hash, execute, generate, load_config, read_samples, run_task, score,
)
from lightcoder.eval.tasks import get_task
from lightcoder.infer.completer import Completion

RECORDS = [{"task_id": f"Python/{t}/{i}", "task_type": t, "pre_mask_code": f"def f{i}(x):\n    ",
            "post_mask_code": "\n", "canonical_solution": f"return x + {i}", "language": "python"}
           for t in ("single_line", "method_body") for i in range(3)]


class Echo:
    """Answers `return x + 0` for everything; raises after `fail_after` calls (a crash mid-run)."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def complete(self, prefix, suffix="", *, path="", max_new_tokens=64, mode="psm", temperature=0.0):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        self.calls += 1
        return Completion(text="return x + 0", prompt_tokens=3, new_tokens=4, stop_reason="stop", seconds=0.0)


def fim_task():
    return get_task("fim-eval", records=RECORDS)


def test_generation_resumes_after_a_crash_without_redoing_samples(tmp_path):
    gen = GenerationSettings(model_id="echo")
    with pytest.raises(KeyboardInterrupt):
        generate(fim_task(), Echo(fail_after=4), tmp_path, gen)
    assert len(read_samples(tmp_path)) == 4
    again = Echo()
    generate(fim_task(), again, tmp_path, gen)
    assert again.calls == 2 and len(read_samples(tmp_path)) == 6
    execute(tmp_path)
    scores = score(tmp_path)
    assert scores["summary"]["total"]["em"] == pytest.approx(100 / 3)  # f0 in both types
    assert scores["summary"]["single_line"]["n_problems"] == 3


def test_every_output_carries_the_eval_config(tmp_path):
    scores = run_task(fim_task(), Echo(), tmp_path, GenerationSettings(model_id="echo"))
    config = load_config(tmp_path)
    h = _hash(config)
    for name in ("samples.jsonl", "results.jsonl"):
        lines = [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
        assert lines[0]["eval_config"] == config and lines[0]["config_hash"] == h
        assert all(row["config_hash"] == h for row in lines[1:])
    assert scores["eval_config"] == config and scores["config_hash"] == h
    assert config["task"]["settings"]["codebleu"].startswith("lightcoder-codebleu")
    assert config["generation"]["max_new_tokens"] == 512 and config["generation"]["mode"] == "psm"


def test_a_resume_under_another_config_is_refused_until_forced(tmp_path):
    run_task(fim_task(), Echo(), tmp_path, GenerationSettings(model_id="echo"))
    with pytest.raises(ValueError, match="another eval config"):
        generate(fim_task(), Echo(), tmp_path, GenerationSettings(model_id="echo", max_new_tokens=7))
    generate(fim_task(), Echo(), tmp_path, GenerationSettings(model_id="echo", max_new_tokens=7), force=True)
    assert not (tmp_path / "results.jsonl").exists()  # stale results went with the stale samples
    assert load_config(tmp_path)["generation"]["max_new_tokens"] == 7


def test_shards_split_the_problems_and_execute_merges_them(tmp_path):
    gen = GenerationSettings(model_id="echo")
    for i in range(3):
        generate(fim_task(), Echo(), tmp_path, gen, shard=(i, 3))
    assert len(list(tmp_path.glob("samples.shard-*-of-3.jsonl"))) == 3
    assert sorted(s["task_id"] for s in read_samples(tmp_path)) == sorted(r["task_id"] for r in RECORDS)
    execute(tmp_path, workers=3)
    assert score(tmp_path)["summary"]["total"]["n_samples"] == 6


class Blank(Echo):
    """Answers nothing."""

    def complete(self, *args, **kwargs):
        c = super().complete(*args, **kwargs)
        return Completion(text="", prompt_tokens=c.prompt_tokens, new_tokens=0, stop_reason="stop", seconds=0.0)


def test_force_under_the_same_config_rejudges_the_new_samples(tmp_path):
    gen = GenerationSettings(model_id="echo")
    assert run_task(fim_task(), Echo(), tmp_path, gen)["summary"]["total"]["em"] == pytest.approx(100 / 3)
    forced = run_task(fim_task(), Blank(), tmp_path, gen, force=True)  # same config, new samples
    assert forced["summary"]["total"]["em"] == 0.0 and forced["summary"]["total"]["n_samples"] == 6


def test_a_run_after_shards_makes_no_sample_twice(tmp_path):
    gen = GenerationSettings(model_id="echo")
    for i in range(2):
        generate(fim_task(), Echo(), tmp_path, gen, shard=(i, 2))
    again = Echo()
    scores = run_task(fim_task(), again, tmp_path, gen)  # unsharded, or another shard count: nothing left to do
    assert again.calls == 0 and scores["summary"]["total"]["n_samples"] == 6
    extra = tmp_path / "samples.jsonl"  # a stray second copy of every sample is counted once
    extra.write_text((tmp_path / "samples.shard-0-of-2.jsonl").read_text())
    assert len(read_samples(tmp_path)) == 6


def test_n_samples_need_sampling():
    with pytest.raises(ValueError, match="temperature"):
        GenerationSettings(n=5)


def test_report_compares_runs_in_markdown_and_html(tmp_path):
    run_task(fim_task(), Echo(), tmp_path / "a" / "fim-eval", GenerationSettings(model_id="echo"))
    from lightcoder.eval.runner import reference_samples

    reference_samples(fim_task(), tmp_path / "b" / "fim-eval")
    execute(tmp_path / "b" / "fim-eval")
    score(tmp_path / "b" / "fim-eval")
    md, page = tmp_path / "r" / "report.md", tmp_path / "r" / "report.html"
    assert report_command.main([f"echo={tmp_path / 'a'}", f"oracle={tmp_path / 'b'}", "--md", str(md),
                                "--html", str(page)]) == 0
    text = md.read_text()
    assert "| task type | n | echo | oracle |" in text
    assert "| **total** | 6 | 33.3 / " in text and "100.0 / 100.0 / 100.0" in text
    assert (md.parent / "report_plots" / "fim-eval_length.png").stat().st_size > 1000
    assert "<table>" in page.read_text() and "report_plots/fim-eval_main.png" in page.read_text()
    assert report_command.main([str(tmp_path / "missing")]) == 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from lightcoder.model.config import get_preset
    from lightcoder.model.hf import save_checkpoint
    from lightcoder.model.llama import Transformer
    from lightcoder.tokenizer.config import TokenizerConfig
    from lightcoder.tokenizer.train import train_tokenizer

    run = tmp_path_factory.mktemp("eval_run")
    tokenizer = train_tokenizer([inspect.getsource(textwrap), inspect.getsource(json)], TokenizerConfig(vocab_size=512))
    tokenizer.save(run / "tokenizer")
    model = Transformer(get_preset("lc-tiny"))
    model.init_weights(0)
    save_checkpoint(model, model.cfg, run / "ckpt" / "step_000000", tokenizer_dir=run / "tokenizer")
    return run


def test_tiny_model_end_to_end_through_the_command(tiny_run, tmp_path, capsys):
    from lightcoder.eval.command import main

    out = tmp_path / "he"
    code = main(["run", "--task", "multipl-e-js", "--limit", "2", "--model", str(tiny_run), "--out", str(out),
                 "--max-new-tokens", "8", "--device", "cpu"])  # on a GPU the model id would gain "@cuda"
    assert code == 0
    scores = json.loads((out / "scores.json").read_text())
    total = scores["summary"]["total"]
    assert total["n_samples"] == 2 and sum(total["statuses"].values()) == 2
    gen = scores["eval_config"]["generation"]
    # the id names the checkpoint the run dir resolved to: a run that trains on is another model, not a resume
    assert gen["model_id"] == str((tiny_run / "ckpt" / "step_000000").resolve())
    assert gen["template"] and gen["max_new_tokens"] == 8
    assert scores["eval_config"]["task"]["settings"]["limit"] == 2
    assert "multipl-e-js" in capsys.readouterr().out


def test_lightcoder_eval_report_goes_through_the_main_cli(tmp_path):
    from lightcoder.cli import main

    run_task(fim_task(), Echo(), tmp_path / "a" / "fim-eval", GenerationSettings(model_id="echo"))
    assert main(["eval", "report", str(tmp_path / "a"), "--md", str(tmp_path / "r.md"), "--no-plots"]) == 0
    assert "## fim-eval" in (tmp_path / "r.md").read_text()


def test_an_hf_llama_directory_is_a_model_too(tmp_path):
    """A checkpoint written by transformers itself (LlamaForCausalLM.save_pretrained) evaluates as is."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lightcoder.eval.command import main
    from lightcoder.tokenizer.config import TokenizerConfig
    from lightcoder.tokenizer.train import train_tokenizer

    hf = tmp_path / "hf"
    train_tokenizer([inspect.getsource(textwrap)], TokenizerConfig(vocab_size=512)).save(hf)
    LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=256)).save_pretrained(hf)
    out = tmp_path / "out"
    assert main(["run", "--task", "santacoder-fim-js", "--limit", "3", "--model", str(hf), "--out", str(out),
                 "--max-new-tokens", "6", "--device", "cpu"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["summary"]["total"]["n_samples"] == 3
    assert scores["eval_config"]["generation"]["model_id"] == str(hf.resolve())


def test_task_options_are_checked_against_the_task_before_it_is_built():
    with pytest.raises(ValueError, match=r"run-fim' needs --option data=VALUE"):
        get_task("run-fim")
    with pytest.raises(ValueError, match=r"has no option\(s\) \['nosuchopt'\]; its options: \[.*'limit'"):
        get_task("humaneval", nosuchopt=1)
    for per_language in ("multipl-e-js", "humaneval-infill-single-line", "santacoder-fim-py"):  # registered per language
        with pytest.raises(ValueError, match=r"has no option\(s\) \['nosuchopt'\]"):
            get_task(per_language, nosuchopt=1)
    with pytest.raises(ValueError, match="--limit must be a positive number"):
        get_task("humaneval", limit=-1)  # a slice [:-1] would silently drop the last problem
