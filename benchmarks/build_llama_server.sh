#!/usr/bin/env bash
# Build llama.cpp's own HTTP server (llama-server: parallel slots, continuous batching) for
# benchmarks/bench_serve.py --llama-server. The source is the llama.cpp tree vendored in the
# llama-cpp-python sdist from PyPI (the same llama.cpp the `llamacpp` extra compiles), so no other
# download is needed. CPU only, no web UI, no TLS. Several minutes on 2 cores.
#
#   bash benchmarks/build_llama_server.sh            # -> ~/.cache/lightcoder/llama-server/bin/llama-server
set -euo pipefail
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
DEST=${LLAMA_SERVER_DIR:-$HOME/.cache/lightcoder/llama-server}
PIP=${PIP:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/pip}
if [ -x "$DEST/bin/llama-server" ]; then echo "$DEST/bin/llama-server"; exit 0; fi
mkdir -p "$DEST/src"
cd "$DEST/src"
if [ ! -d "llama_cpp_python-$VERSION" ]; then
  "$PIP" download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .
  tar xzf "llama_cpp_python-$VERSION.tar.gz"
fi
SRC="$DEST/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$DEST/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >/dev/null
cmake --build "$DEST/build" --target llama-server -j "${JOBS:-2}"
mkdir -p "$DEST/bin"
cp "$DEST/build/bin/llama-server" "$DEST/bin/"
cp -P "$DEST"/build/bin/*.so* "$DEST/bin/" 2>/dev/null || true
echo "$DEST/bin/llama-server"
