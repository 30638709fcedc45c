"""Where should a completion stop? How much edit similarity the stopping point costs, and whether the
model's own signals can find a better one.

    python benchmarks/stop_selection.py --run run/quickstart

For each held-out FIM task of RUN/eval/tasks.jsonl (prompts as the eval builds them, greedy with the run's
`eval.frequency_penalty`), the model writes 128 tokens with `</s>` masked, so it goes on past the point
where it would have stopped. The candidate middles are that text cut after each line (with or without the
newline, as the hole's layout needs: FIM-Eval holes end before the newline, HumanEval's after it) plus the
model's own stopping point (where greedy decoding chose `</s>`: the eval's completion). Each candidate gets

- `fim`: log P(candidate + `</s>` | the FIM prompt), the model's belief that this is the whole middle;
- `ntp`: log P(the suffix's next two code lines | prefix + candidate), the model read left to right: does
  the suffix follow from this middle?

and the rules pick one: the model's own stop, the **oracle** (the candidate closest to the reference: what
a perfect stopping rule would reach with this model's text), likelihood rules (`fim` + λ·`ntp`, per-token
`fim`, `ntp` alone), and a conditional-logit selector over those scores plus indentation and layout cues,
trained and scored in 5 folds over the tasks. Printed: ES, pred:ref length and the task types whose length
is within 0.7-1.4x. The numbers in docs/evaluation.md ("Where to stop") come from this script.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

from lightcoder.eval.metrics import edit_similarity
from lightcoder.infer.completer import Completer
from lightcoder.infer.engine import decode_one, prefill
from lightcoder.infer.penalties import Penalty
from stop_diagnostics import log_prob  # benchmarks/ is on sys.path when this script runs

NEW_TOKENS = 128
SUFFIX_LINES = 2


def masked_greedy(completer: Completer, prompt: list[int], penalty: float) -> tuple[str, str]:
    """(the text written with </s> masked for up to NEW_TOKENS tokens, the text where the model itself
    would have stopped: greedy decoding's own text, or all of it where it never chose </s>)."""
    model, tok = completer.model, completer.tokenizer
    kv = model.init_kv_cache(1, min(len(prompt) + NEW_TOKENS, model.cfg.max_seq_len))
    logits, pen, ids, own = prefill(model, torch.tensor([prompt]), kv), Penalty.of(penalty, 0.0), [], None
    for pos in range(len(prompt), len(prompt) + NEW_TOKENS):
        scores = (pen.apply(logits) if pen else logits).float()
        if own is None and int(scores.argmax()) == tok.eos_id:
            own = tok.decode(ids)
        scores[tok.eos_id] = -math.inf
        ids.append(int(scores.argmax()))
        if pen:
            pen.add(ids[-1])
        if pos + 1 >= kv[0].max_len:
            break
        logits = decode_one(model, ids[-1], pos, kv)
    text = tok.decode(ids)
    return text, text if own is None else own


def candidates(task: dict, text: str, own: str) -> list[tuple[str, bool]]:
    """(middle, is the model's own stop) for each line cut of text, and the own stopping point."""
    whole_lines = task["prefix"].endswith("\n") or not task["prefix"]  # HumanEval: the middle holds the newline
    lines, out = text.split("\n"), []
    for k in range(1, len(lines)):
        cut = "\n".join(lines[:k]) + ("\n" if whole_lines else "")
        if cut.strip() and cut not in out:
            out.append(cut)
    return [(c, c == own) for c in out] + ([] if own in out else [(own, True)])


def suffix_head(suffix: str) -> tuple[str, str]:
    """(the suffix up to the first code character of its next line, the SUFFIX_LINES code lines from there).
    Every candidate is scored on the same head after the same joint, so tokenization at the joint is equal."""
    i = suffix.find("\n")
    if i < 0:
        return suffix, ""
    j = i + 1
    while j < len(suffix) and suffix[j] in " \t\n":
        j += 1
    end = j
    for _ in range(SUFFIX_LINES):
        k = suffix.find("\n", end)
        end = len(suffix) if k < 0 else k + 1
    return suffix[:j], suffix[j:end]


def scored_candidates(completer: Completer, task: dict, penalty: float) -> list[dict]:
    tok = completer.tokenizer
    prompt = completer.build(task["prefix"], task["suffix"], path=task["path"], mode="spm",
                             max_new_tokens=NEW_TOKENS, fim=True)
    joint, head = suffix_head(task["suffix"])
    head_ids = tok.encode(head) if head else []
    rows = []
    for text, own in candidates(task, *masked_greedy(completer, prompt, penalty)):
        ids = tok.encode(text)
        ntp = 0.0
        if head_ids:
            left = completer.build(task["prefix"] + text + joint, "", path=task["path"],
                                   max_new_tokens=len(head_ids) + 1, fim=False)
            ntp = log_prob(completer, left, head_ids)
        fim = log_prob(completer, prompt, ids + [tok.eos_id])
        rows.append({"text": text, "own": own, "tokens": len(ids), "fim": fim, "ntp": ntp})
    return rows


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def features(task: dict, rows: list[dict], i: int) -> list[float]:
    """The selector's inputs for candidate i: the two scores, its line count, and layout cues (the cursor's
    line, whether it starts an empty block, whether the next candidate line dedents past the cursor)."""
    row, lines = rows[i], rows[i]["text"].rstrip("\n").split("\n")
    cursor_line = task["prefix"].split("\n")[-1]
    above = [ln for ln in task["prefix"].split("\n")[:-1] if ln.strip()]
    block_start = float(bool(above) and above[-1].rstrip().endswith(":"))
    mid_line, whole = float(bool(cursor_line.strip())), float(task["prefix"].endswith("\n"))
    later = rows[i + 1]["text"].rstrip("\n").split("\n")[-1] if i + 1 < len(rows) and not rows[i + 1]["own"] else ""
    dedents = float(bool(later.strip()) and indent(later) < indent(cursor_line))
    k = len(lines) / 5
    return [float(row["own"]), row["fim"] / 10, row["ntp"] / 10, row["fim"] / (row["tokens"] + 1), k,
            float(lines[-1].rstrip().endswith(":")), dedents, block_start * k, mid_line * k, whole * k]


def learned_picks(tasks: list[dict], rows: list[list[dict]], folds: int = 5) -> list[int]:
    """Candidate index per task from a conditional-logit selector (softmax over a task's candidates, trained
    to pick the oracle's), each task scored by the model fitted on the other folds."""
    x = [torch.tensor([features(t, r, i) for i in range(len(r))]) for t, r in zip(tasks, rows)]
    y = [max(range(len(r)), key=lambda i: edit_similarity(r[i]["text"], t["middle"])) for t, r in zip(tasks, rows)]
    order = list(range(len(tasks)))
    random.Random(0).shuffle(order)
    picks = [0] * len(tasks)
    for f in range(folds):
        test = set(order[f::folds])
        w = torch.zeros(x[0].shape[1], requires_grad=True)
        opt = torch.optim.Adam([w], lr=0.05)
        for _ in range(300):
            opt.zero_grad()
            loss = sum(-torch.log_softmax(x[j] @ w, 0)[y[j]] for j in order if j not in test)
            (loss / (len(order) - len(test)) + 0.01 * (w ** 2).sum()).backward()
            opt.step()
        for j in test:
            picks[j] = int((x[j] @ w.detach()).argmax())
    return picks


Rule = Callable[[dict, list[dict]], dict]


def rules() -> dict[str, Rule]:
    out: dict[str, Rule] = {
        "the model's own stop": lambda t, r: next(c for c in r if c["own"]),
        "oracle (closest to the reference)": lambda t, r: max(r, key=lambda c: edit_similarity(c["text"], t["middle"])),
        "fim per token": lambda t, r: max(r, key=lambda c: c["fim"] / (c["tokens"] + 1)),
        "ntp only": lambda t, r: max(r, key=lambda c: c["ntp"]),
    }
    for lam in (0, 1, 4):
        out[f"fim + {lam} ntp"] = lambda t, r, lam=lam: max(r, key=lambda c: c["fim"] + lam * c["ntp"])
    return out


def table_row(name: str, tasks: list[dict], picked: list[str]) -> str:
    per_type = defaultdict(lambda: [0, 0.0, 0, 0])
    for task, text in zip(tasks, picked):
        a = per_type[task["task_type"]]
        a[0] += 1
        a[1] += edit_similarity(text, task["middle"])
        a[2] += len(text)
        a[3] += len(task["middle"])
    n, es, pred, ref = (sum(a[i] for a in per_type.values()) for i in range(4))
    in_range = sum(0.7 <= a[2] / a[3] <= 1.4 for a in per_type.values())
    lengths = ", ".join(f"{a[2] / a[3]:.2f}" for a in per_type.values())
    return f"| {name} | {es / n:.1f} | {pred / ref:.2f} | {in_range} of {len(per_type)} | {lengths} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=Path("run/quickstart"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    penalty = json.loads((args.run / "config.json").read_text())["eval"]["frequency_penalty"]
    tasks = [json.loads(line) for line in (args.run / "eval" / "tasks.jsonl").read_text().splitlines()]
    completer = Completer.load(args.run)
    rows = [scored_candidates(completer, t, penalty) for t in tasks]
    types = list(dict.fromkeys(t["task_type"] for t in tasks))
    print(f"{len(tasks)} tasks, {sum(map(len, rows)) / len(rows):.1f} candidates each, penalty {penalty}\n")
    print(f"| rule | ES | length | types within 0.7-1.4x | length per type ({', '.join(types)}) |")
    print("|---|---:|---:|---:|---|")
    for name, rule in rules().items():
        print(table_row(name, tasks, [rule(t, r)["text"] for t, r in zip(tasks, rows)]))
    picks = learned_picks(tasks, rows)
    print(table_row("learned selector (5-fold)", tasks, [r[i]["text"] for r, i in zip(rows, picks)]))


if __name__ == "__main__":
    main()
