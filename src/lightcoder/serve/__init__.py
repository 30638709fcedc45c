"""`lightcoder serve`: the HTTP server (OpenAI /v1/completions with suffix, llama.cpp /infill, playground)."""
