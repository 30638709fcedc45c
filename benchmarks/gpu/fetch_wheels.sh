#!/usr/bin/env bash
# Wheels (and HumanEval) for the GPU machine (`device` tool): the packages lightcoder needs that its image lacks, for
# its Python 3.12, at the versions this project's .venv has (bitsandbytes for QLoRA: the newest).
# The image already holds torch (CUDA), numpy, tokenizers, safetensors, pyarrow, peft, transformers,
# sentencepiece, matplotlib, tensorboard, tqdm, httpx (the list: the device tool's KINDS.md).
#
#   bash benchmarks/gpu/fetch_wheels.sh          # -> .whl/ (~55 MB; .gitignore'd, carried by the run)
#
# Then benchmarks/gpu/checks.sh installs them there with pip --no-index.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV_PY=${VENV_PY:-.venv/bin/python}
OUT_DIR=${OUT_DIR:-.whl}
# what the data stage (tree-sitter grammars, rapidfuzz, detect-secrets), the eval and the server need
NAMES="tree-sitter tree-sitter-python tree-sitter-java tree-sitter-javascript tree-sitter-typescript
tree-sitter-c tree-sitter-cpp tree-sitter-go tree-sitter-rust rapidfuzz detect-secrets fastapi starlette
pydantic pydantic-core annotated-types typing-inspection uvicorn"
pins=()
for name in $NAMES; do
  version=$("$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") || {
    echo "$name is not installed in $VENV_PY: run make install first" >&2; exit 1; }
  pins+=("$name==$version")
done
pins+=("bitsandbytes")
mkdir -p "$OUT_DIR"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$OUT_DIR" "${pins[@]}"
# HumanEval for the eval (the device gets the repo only; checks.sh puts it where the eval looks)
he=$("$VENV_PY" -c "from lightcoder.benchmark_files import humaneval_path; print(humaneval_path())") \
  && cp "$he" "$OUT_DIR/" || echo "no HumanEval on this machine: the HumanEval rows will be skipped there" >&2
ls -l "$OUT_DIR" | awk 'NR > 1 {sum += $5} END {printf "%d wheels, %.1f MB in '"$OUT_DIR"'\n", NR - 1, sum / 1e6}'
