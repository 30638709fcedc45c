"""Real source files per language found on this machine, for SFIM property tests and benchmarks.

Nothing is downloaded: each language looks in the usual install places and returns what exists
(an empty list means "skip, with the reason from `missing_reason`"). Extra roots can be given with
LIGHTCODER_TEST_CORPORA (os.pathsep-separated directories; files are picked by extension).

    Python      this interpreter's standard library
    Java        the JDK's lib/src.zip (read with zipfile)
    C, C++      /usr/include, /usr/include/c++ (C++ headers often have no extension)
    JavaScript  npm's own files under /usr/lib/node_modules
    TypeScript  packages unpacked under ~/.cache/lightcoder/test-corpora (e.g. `npm pack rxjs`)
    Go          a GOROOT/src (Debian golang-src, /usr/local/go)
    Rust        ~/.cargo/registry/src, rustup's rust-src, Debian's /usr/share/cargo/registry

Samples are deterministic: the sorted candidate list is sampled with random.Random(seed).
Example: sample_files("Python", 5, seed=0) -> [("json/decoder.py", "..."), ...]
"""

from __future__ import annotations

import glob
import os
import random
import sysconfig
import zipfile
from functools import cache
from pathlib import Path

CACHE_ROOT = Path.home() / ".cache" / "lightcoder" / "test-corpora"
MAX_BYTES = 200_000  # larger files (generated tables) are skipped: slow and unrepresentative
_EXTENSIONS = {
    "Python": (".py",), "Java": (".java",), "C": (".c", ".h"), "C++": (".cc", ".cpp", ".hpp", ".tcc", ".h", ""),
    "JavaScript": (".js", ".mjs", ".cjs"), "TypeScript": (".ts",), "Go": (".go",), "Rust": (".rs",),
}


def _extra_roots() -> list[str]:
    return [r for r in os.environ.get("LIGHTCODER_TEST_CORPORA", "").split(os.pathsep) if r]


def _walk(roots: list[str], extensions: tuple[str, ...], *, exclude: tuple[str, ...] = ()) -> list[str]:
    out = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in ("testdata", "__pycache__"))
            for name in filenames:
                path = os.path.join(dirpath, name)
                if any(x in path for x in exclude):
                    continue
                ext = os.path.splitext(name)[1]
                if ext in extensions and (ext or "." not in name):
                    out.append(path)
    return sorted(out)


@cache
def candidate_paths(language: str) -> tuple[str, ...]:
    """Every candidate file for a language (zip members are 'zip:<archive>!<member>')."""
    ext = _EXTENSIONS[language]
    roots: list[str]
    if language == "Python":
        roots = [sysconfig.get_paths()["stdlib"]]
        paths = _walk(roots, ext, exclude=("site-packages", "/test/", "/tests/", "lib2to3/tests"))
    elif language == "Java":
        paths = []
        for archive in [a for a in sorted(glob.glob("/usr/lib/jvm/*/lib/src.zip")) if os.path.isfile(a)][:1]:
            with zipfile.ZipFile(archive) as zf:
                paths = [f"zip:{archive}!{n}" for n in sorted(zf.namelist()) if n.endswith(".java")]
    elif language == "C":
        paths = [p for p in _walk(["/usr/include"], ext) if "/c++/" not in p]
    elif language == "C++":
        paths = _walk(sorted(glob.glob("/usr/include/c++/*"))[-1:], ext)
    elif language == "JavaScript":
        paths = _walk(["/usr/lib/node_modules", "/usr/share/nodejs"], ext, exclude=(".min.js",))
    elif language == "TypeScript":
        paths = [p for p in _walk([str(CACHE_ROOT)], ext) if not p.endswith(".d.ts")]
    elif language == "Go":
        roots = [os.environ.get("GOROOT", ""), "/usr/local/go"] + sorted(glob.glob("/usr/share/go-*")) + \
            sorted(glob.glob("/usr/lib/go-*"))
        paths = _walk([os.path.join(r, "src") for r in roots if r and os.path.isdir(os.path.join(r, "src"))][:1],
                      ext, exclude=("_test.go",))
    elif language == "Rust":
        roots = sorted(glob.glob(str(Path.home() / ".cargo/registry/src/*"))) + \
            sorted(glob.glob(str(Path.home() / ".rustup/toolchains/*/lib/rustlib/src"))) + \
            ["/usr/share/cargo/registry"]
        paths = _walk([r for r in roots if os.path.isdir(r)], ext)
    else:
        raise ValueError(f"no sample corpus for {language!r}; choose from {sorted(_EXTENSIONS)}")
    paths += [p for p in _walk(_extra_roots(), ext) if ext != ("",) and os.path.splitext(p)[1]]
    return tuple(paths)


@cache
def _zip(archive: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(archive)


def read_source(path: str) -> str | None:
    """The UTF-8 text of a candidate path (None when not UTF-8 or larger than MAX_BYTES)."""
    if path.startswith("zip:"):
        archive, member = path[4:].split("!", 1)
        data = _zip(archive).read(member)
    else:
        if os.path.getsize(path) > MAX_BYTES:
            return None
        data = Path(path).read_bytes()
    if len(data) > MAX_BYTES or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def sample_files(language: str, n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """Up to n (path, text) pairs of one language, the same ones for the same (n, seed)."""
    paths = list(candidate_paths(language))
    random.Random(f"{language}:{seed}").shuffle(paths)
    out = []
    for path in paths:
        if len(out) >= n:
            break
        text = read_source(path)
        if text and text.strip():
            out.append((path, text))
    return out


def missing_reason(language: str) -> str:
    """Why a language has no files here, as a pytest skip reason."""
    return (f"no {language} sources on this machine (see lightcoder.fim.sample_corpora for where they "
            f"are looked for; LIGHTCODER_TEST_CORPORA adds roots)")
