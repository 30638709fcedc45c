"""SFIM document construction throughput per language, next to tokenisation of the same documents.

The pack stage builds a document (tree-sitter parse, span draw, PSM/SPM layout) and then tokenises
it; building must never be the slower half. For each language this prints MB/s and docs/s of
(a) SFIM document construction (`make_document`, every document SFIM), (b) random-FIM
construction, (c) tokenisation of the SFIM documents with the pack stage's call
(`encode_pieces_batch`, the HF tokenizers thread pool) and (d) the same one document at a time,
and the ratio SFIM-build / tokenise (target: >= 1). Both sides run in this process, one after the
other, on the same files, so a busy machine slows both alike; the ratios are what to compare.

    .venv/bin/python benchmarks/bench_sfim.py                  # 150 files per language
    .venv/bin/python benchmarks/bench_sfim.py --files 400 --tokenizer run/quickstart/tokenizer

Files come from lightcoder.fim.sample_corpora (languages without sources here are skipped).
Without --tokenizer, a 4096-token BPE is trained on the sampled files first (a few seconds).
"""

from __future__ import annotations

import argparse
import random
import time

from lightcoder.fim.mix import make_document
from lightcoder.fim.sample_corpora import sample_files
from lightcoder.pack_config import MixConfig
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.tokenizer import Tokenizer
from lightcoder.tokenizer.train import train_tokenizer

LANGUAGES = ("Python", "Java", "JavaScript", "TypeScript", "C", "C++", "Go", "Rust")
SFIM = MixConfig(ntp_rate=0.0, sfim_rate=1.0, sfim_partial_parse=True)
RANDOM_FIM = MixConfig(ntp_rate=0.0, sfim_rate=0.0)


def best_of(repeats: int, fn) -> float:
    """Fastest of `repeats` runs, in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=150, help="files per language (default 150)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokenizer", help="a tokenizer dir (default: train a 4096-token BPE here)")
    args = parser.parse_args()

    corpora = {lang: sample_files(lang, args.files, seed=1) for lang in LANGUAGES}
    corpora = {lang: files for lang, files in corpora.items() if files}
    if args.tokenizer:
        tok = Tokenizer.load(args.tokenizer)
    else:
        texts = [t for files in corpora.values() for _, t in files[:40]]
        tok = train_tokenizer(texts, TokenizerConfig(vocab_size=4096))

    print(f"{'language':<11} {'files':>5} {'MB':>6} | {'SFIM build':>17} | {'random FIM':>10} | "
          f"{'tokenise batch':>14} | {'tokenise 1-by-1':>15} | {'build/tok':>9} {'build/tok1':>10} {'SFIM%':>6}")
    print(f"{'':<11} {'':>5} {'':>6} | {'MB/s':>8} {'docs/s':>8} | {'MB/s':>10} | {'MB/s':>14} | "
          f"{'MB/s':>15} | {'':>9} {'':>10} {'':>6}")
    worst = float("inf")
    for lang, files in corpora.items():
        mb = sum(len(t.encode("utf-8")) for _, t in files) / 1e6
        docs = []

        def build(cfg=SFIM, out=docs):
            out.clear()
            out.extend(make_document(t, p, lang, cfg, random.Random(i)) for i, (p, t) in enumerate(files))

        t_sfim = best_of(args.repeats, build)
        sfim_share = sum(d.objective == "sfim" for d in docs) / len(docs)
        pieces = [d.pieces for d in docs]
        t_rand = best_of(args.repeats, lambda: build(RANDOM_FIM, []))
        t_tok = best_of(args.repeats, lambda: tok.encode_pieces_batch(pieces))
        t_tok1 = best_of(args.repeats, lambda: [tok.encode_pieces(p) for p in pieces])
        worst = min(worst, t_tok / t_sfim)
        print(f"{lang:<11} {len(files):>5} {mb:>6.2f} | {mb / t_sfim:>8.2f} {len(files) / t_sfim:>8.0f} | "
              f"{mb / t_rand:>10.2f} | {mb / t_tok:>14.2f} | {mb / t_tok1:>15.2f} | "
              f"{t_tok / t_sfim:>9.2f} {t_tok1 / t_sfim:>10.2f} {100 * sfim_share:>5.0f}%")
    print(f"\nworst build/tokenise-batch ratio: {worst:.2f} (target >= 1: building SFIM documents is never "
          "slower than tokenising them)")


if __name__ == "__main__":
    main()
