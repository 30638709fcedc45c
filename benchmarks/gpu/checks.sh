#!/usr/bin/env bash
# The GPU checks of the open issues, prepared to run as one command each on the lent GPU machine
# (the `device` tool: 15 device minutes a session, 10 per command, the machine warm for 30 s after one).
#
#   recipe      issue 12: the quickstart recipe with lc-125m on the stdlib plus big pure-Python packages of
#               the machine's site-packages, trained on the GPU for what the command's 9.5 minutes leave
#               after data, tokenizer, packing, the eval reserve (2.5 min) and the HumanEval run (about
#               4.5 minutes; TRAIN_MIN fixes it instead, the issue allows up to 8), scored there by the
#               run's eval stage (240 held-out FIM tasks + the HumanEval rows), then HumanEval single-line
#               infilling EM on HE_LIMIT (300) tasks through the eval harness. OPTIMIZER=muon trains with
#               Muon instead of AdamW (one recipe run fits the budget: choose before the call).
#   tests       the CUDA tests (tests/infer/test_cuda_inference.py, tests/train/test_cuda.py), about 1 minute
#   finetune7b  issue 14: one LoRA step and one QLoRA step on the exact aiXcoder-7B shape (random bf16
#               weights): trainable parameters, step time, peak memory. About 3 minutes.
#
# Before (here, once): bash benchmarks/gpu/fetch_wheels.sh   (wheels the image lacks + HumanEval -> .whl/)
# On the device:       run(command="bash benchmarks/gpu/checks.sh recipe", carry=[".whl"], timeout_s=600)
#                      then, on the still-warm machine: "bash benchmarks/gpu/checks.sh tests finetune7b"
# Everything lands in $OUT (report.md, train_summary.json, the logs) even when a step runs out of time.
# A dry run of the same flow on this CPU machine (tiny model, a minute of training):
#   SKIP_INSTALL=1 OUT=/tmp/gpu-dry DEVICE=cpu PRESET=lc-tiny SEQ_LEN=256 BATCH=8 HE_LIMIT=10 \
#     CORPUS_PACKAGES="rich click" DEADLINE_S=420 \
#     PY=.venv/bin/python bash benchmarks/gpu/checks.sh recipe
set -uo pipefail
cd "$(dirname "$0")/../.."
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || { echo "usage: checks.sh recipe|tests|finetune7b ..." >&2; exit 2; }
OUT=${OUT:-/tmp/gpu-checks}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-lc-125m}
TRAIN_MIN=${TRAIN_MIN:-}  # empty: quickstart sizes training from the time left (see recipe)
SEQ_LEN=${SEQ_LEN:-1024}  # tokens per training window (lc-125m's context is 4096)
BATCH=${BATCH:-32}  # windows per step
OPTIMIZER=${OPTIMIZER:-adamw}  # or muon (docs/training.md, "The optimizer")
HE_LIMIT=${HE_LIMIT:-300}
DEADLINE_S=${DEADLINE_S:-570}  # the whole command ends by then (the tool stops a command at 600 s)
RUN=${RUN:-/tmp/lightcoder-gpu-run}
CORPUS_PACKAGES=${CORPUS_PACKAGES:-"transformers sympy networkx"}  # ~90 MB of Python on top of the stdlib
START=$(date +%s)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }

within() {  # within SECONDS CMD...: run CMD for at most SECONDS (killed 10 s after a TERM it ignores);
  local seconds=$1; shift  # skipped, saying so, when fewer than 20 s would be left to it
  if [ "$seconds" -lt 20 ]; then echo "skipped (${seconds} s left): $*" | tee -a "$OUT/skipped.txt"; return 1; fi
  timeout -k 10 "$seconds" "$@"
}

install() {  # the carried wheels (fetch_wheels.sh) into /tmp/site; HumanEval where the eval looks for it
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # the package runs from the copied tree, uninstalled
  [ -n "${SKIP_INSTALL:-}" ] && return  # the CPU dry run: this machine's .venv has everything
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "wheel install failed" >&2; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
  else
    echo "no .whl/ carried: tree-sitter, rapidfuzz and detect-secrets will be missing (fetch_wheels.sh)" >&2
  fi
  if [ -f .whl/HumanEval.jsonl.gz ] && [ ! -f /work/shared/data/HumanEval.jsonl.gz ]; then
    mkdir -p /work/shared/data && cp .whl/HumanEval.jsonl.gz /work/shared/data/
  fi
  { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  } 2>&1 | tee "$OUT/machine.txt"
}

collect() {  # whatever the recipe finished, into $OUT (runs on exit, also after a timeout)
  for f in report.md train_summary.json stages.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done
  [ -f "$RUN/he-single/scores.json" ] && cp "$RUN/he-single/scores.json" "$OUT/he_single_scores.json"
  echo "checks.sh ${STEPS[*]}: $(( $(date +%s) - START )) s" | tee -a "$OUT/machine.txt"
}

recipe() {
  local site stdlib corpus=()
  stdlib=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")
  site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  corpus+=("$stdlib")
  for name in $CORPUS_PACKAGES; do
    for base in "$site" /tmp/site; do [ -d "$base/$name" ] && { corpus+=("$base/$name"); break; }; done
  done
  echo "corpus: ${corpus[*]}" | tee "$OUT/recipe.log"
  # quickstart's --minutes is its whole wall clock: what is left, less ~150 s for an eval that outruns its
  # 2.5-minute reserve and for the HumanEval run after it
  local minutes budget=()
  minutes=$(awk -v s="$(left)" 'BEGIN { printf "%.2f", (s - 150) / 60 }')
  [ -n "$TRAIN_MIN" ] && budget=(--train.max_minutes "$TRAIN_MIN")
  # batch 32 x 1024 tokens and GPT-3-small's peak rate for the 125M model; trained and scored on the GPU
  within $(( $(left) - 45 )) "$PY" -m lightcoder quickstart --out "$RUN" --model-preset "$PRESET" \
    --minutes "$minutes" "${budget[@]}" --corpus "${corpus[@]}" --train.device "$DEVICE" --eval.device "$DEVICE" \
    --pack.seq_len "$SEQ_LEN" --train.batch_size "$BATCH" --train.lr 6e-4 --train.min_lr 6e-5 \
    --train.optimizer "$OPTIMIZER" 2>&1 | tee -a "$OUT/recipe.log"
  # HumanEval single-line infilling through the harness, as the issue measured it (greedy, penalty as the run's eval)
  [ -f "$RUN/report.md" ] || { echo "no report: the quickstart did not finish" | tee -a "$OUT/recipe.log"; return; }
  within $(( $(left) - 5 )) "$PY" -m lightcoder.eval run --task humaneval-infill-single-line --model "$RUN" \
    --out "$RUN/he-single" --limit "$HE_LIMIT" --device "$DEVICE" --frequency-penalty 1 --max-new-tokens 64 \
    --workers 8 2>&1 | tail -20 | tee -a "$OUT/recipe.log"
}

tests() {
  within $(( $(left) / 3 )) "$PY" -m pytest -q -p no:cacheprovider tests/infer/test_cuda_inference.py \
    tests/train/test_cuda.py 2>&1 | tail -30 | tee "$OUT/tests.log"
}

finetune7b() {
  within $(( $(left) / 2 )) "$PY" benchmarks/bench_finetune_7b.py --device "$DEVICE" --method lora --tokens 1024 \
    2>&1 | tee -a "$OUT/finetune7b.log"
  within $(( $(left) - 5 )) "$PY" benchmarks/bench_finetune_7b.py --device "$DEVICE" --method qlora --tokens 1024 \
    2>&1 | tee -a "$OUT/finetune7b.log"
}

trap collect EXIT
install
for step in "${STEPS[@]}"; do
  case "$step" in
    recipe|tests|finetune7b) "$step" ;;
    *) echo "unknown step $step: recipe, tests or finetune7b" >&2; exit 2 ;;
  esac
done
