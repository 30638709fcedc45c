"""Cleaning step: found files -> decoded `SourceFile`s, dropping what is not usable source text.

Checks run cheapest first, and the first failing check names the reason:

    language    extension not in the allowed languages (no read)
    oversized   larger than max_file_bytes (no read)
    empty       0 bytes, or only whitespace after decoding
    binary      contains a NUL byte
    undecodable not valid UTF-8

Each check is a pure function returning a reason and detail, or None to keep the file; the step
`clean_files` applies them and reports drops through `on_drop`. Content is kept byte-exact except
that a leading UTF-8 BOM is removed. PEP 263 coding cookies are not honoured: a latin-1 file is
"undecodable", like in StarCoder's pipeline, which keeps UTF-8 only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from lightcoder.data.records import Rejection, SourceFile
from lightcoder.data.sources import FoundFile
from lightcoder.languages import language_for_path

Check = tuple[str, str] | None  # (reason, detail) to drop, None to keep
OnDrop = Callable[[Rejection], None]


def check_language(path: str, languages: frozenset[str]) -> Check:
    """Drop a file whose extension maps to no allowed language.

    Example: check_language("a/b.txt", frozenset({"Python"})) -> ("language", "unknown extension")
    """
    lang = language_for_path(path)
    if lang is None:
        suffix = Path(path).suffix
        return "language", f"unknown extension {suffix!r}" if suffix else "no extension"
    if lang not in languages:
        return "language", f"{lang} is not in the allowed languages"
    return None


def check_size(size: int, max_file_bytes: int) -> Check:
    if size == 0:
        return "empty", "0 bytes"
    if size > max_file_bytes:
        return "oversized", f"{size} bytes > max_file_bytes={max_file_bytes}"
    return None


def decode_source(data: bytes) -> tuple[str, Check]:
    """(text, None) for usable UTF-8 source, else ("", (reason, detail)).

    Example: decode_source(b"x = 1\\n") -> ("x = 1\\n", None)
    Example: decode_source(b"\\0") -> ("", ("binary", "NUL byte at offset 0"))
    """
    nul = data.find(b"\0")
    if nul >= 0:
        return "", ("binary", f"NUL byte at offset {nul}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return "", ("undecodable", f"invalid UTF-8 byte 0x{data[e.start]:02x} at offset {e.start}")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return "", ("empty", "whitespace only")
    return text, None


def clean_files(
    found: Iterable[FoundFile],
    *,
    languages: frozenset[str],
    max_file_bytes: int,
    on_drop: OnDrop,
) -> Iterator[SourceFile]:
    """Read and decode found files, yielding those that pass every check above."""
    for f in found:
        check = check_language(f.path, languages) or check_size(f.size, max_file_bytes)
        if check is None:
            try:
                data = Path(f.abs_path).read_bytes()
            except OSError as e:
                check = ("unreadable", f"{type(e).__name__}: {e.strerror}")
            else:
                # A file can change between the scan and the read: re-check the size.
                text, check = decode_source(data) if len(data) <= max_file_bytes else (
                    "", check_size(len(data), max_file_bytes))
        if check is not None:
            on_drop(Rejection(repo=f.repo, path=f.path, reason=check[0], detail=check[1],
                              size=f.size))
            continue
        yield SourceFile(
            repo=f.repo,
            path=f.path,
            language=language_for_path(f.path) or "",
            content=text,
            license=f.license,
            meta={"size": len(data), "lines": text.count("\n") + (not text.endswith("\n"))},
        )
