"""Licence detection: SPDX-style ids from licence files and file headers, and the copyleft policy.

aiXcoder step 1 drops projects under copyleft licences (research/aixcoder-7b.md §2.1). A
repository's licence comes from a licence file at its top (LICENSE, COPYING, ...); a repository
without one inherits the licence found at its corpus root (the stdlib's packages inherit
LICENSE.txt = PSF-2.0). A file's own header can still mark it copyleft: an
`SPDX-License-Identifier:` line or licence wording in its first `HEADER_CHARS` characters (the
JDK's GPL-2.0 + Classpath exception, glibc's LGPL headers).

Ids are SPDX-like: "MIT", "GPL-2.0", "GPL-2.0-with-classpath-exception", "" (none found) and
"other" (a licence file we do not recognise). `is_copyleft` matches ids by prefix against a
configurable list, so "GPL" covers "GPL-2.0" and "GPL-3.0-or-later".

Example: detect_license_text("Permission is hereby granted, free of charge, ...") -> "MIT"
"""

from __future__ import annotations

import re

LICENSE_FILENAMES: tuple[str, ...] = (
    "LICENSE", "LICENSE.txt", "LICENSE.md", "LICENSE.rst", "LICENCE", "LICENCE.txt",
    "LICENCE.md", "COPYING", "COPYING.txt", "COPYING.md", "LICENSE-MIT", "LICENSE-APACHE",
)
HEADER_CHARS = 3000  # how much of a file's start is searched for licence wording
MAX_LICENSE_FILE_BYTES = 200_000

# (SPDX id, phrases that must all appear, case-insensitive, whitespace collapsed). First match
# wins, so specific licences come before the generic BSD/MIT wording other licences quote.
_LICENSE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PSF-2.0", ("python software foundation license",)),
    ("Apache-2.0", ("apache license", "version 2.0")),
    # MPL and EPL name GNU licences in their "Secondary License" clauses: they come before the GNU rules
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("EPL-2.0", ("eclipse public license",)),
    ("AGPL-3.0", ("gnu affero general public license",)),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3")),
    ("LGPL-2.1", ("gnu lesser general public license",)),
    ("LGPL-2.0", ("gnu library general public license",)),
    ("GPL-2.0-with-classpath-exception", ("gnu general public license", "classpath")),
    ("GPL-3.0", ("gnu general public license", "version 3")),
    ("GPL-2.0", ("gnu general public license",)),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("MIT", ("permission is hereby granted, free of charge",)),
    ("ISC", ("permission to use, copy, modify, and/or distribute this software",)),
    ("Unlicense", ("this is free and unencumbered software",)),
    ("CC0-1.0", ("cc0 1.0 universal",)),
    ("Zlib", ("this software is provided 'as-is', without any express or implied",)),
)
_SPDX_RE = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+\-() ]+?)\s*(?:\*/|-->|$)",
                      re.MULTILINE)
# Cheap gate before the phrase rules: most files mention no licence at all.
_HEADER_GATE_RE = re.compile(r"licen[cs]e|spdx", re.IGNORECASE)


def detect_license_text(text: str) -> str:
    """The SPDX id whose phrases all appear in text, "other" when none does.

    Example: detect_license_text("GNU General Public License version 2 ... Classpath exception")
    -> "GPL-2.0-with-classpath-exception"
    """
    flat = " ".join(text.lower().split())
    for spdx, phrases in _LICENSE_RULES:
        if all(ph in flat for ph in phrases):
            return spdx
    return "other"


def normalize_spdx(expression: str) -> str:
    """An SPDX expression as one of our ids; the first (main) licence of an OR/AND list.

    Example: normalize_spdx("GPL-2.0 WITH Linux-syscall-note") -> "GPL-2.0"
    Example: normalize_spdx("GPL-2.0-only WITH Classpath-exception-2.0")
    -> "GPL-2.0-with-classpath-exception"
    """
    expr = expression.strip().strip("()")
    main = re.split(r"\s+(?:OR|AND)\s+", expr)[0]
    base, _, exception = main.partition(" WITH ")
    base = re.sub(r"-(only|or-later)$|\+$", "", base.strip())
    if "classpath" in exception.lower():
        return f"{base}-with-classpath-exception"
    return base


def license_of_header(text: str) -> str:
    """The licence a file declares in its first HEADER_CHARS characters, "" when none.

    Example: license_of_header("// SPDX-License-Identifier: MIT\\nint x;") -> "MIT"
    """
    head = text[:HEADER_CHARS]
    if not _HEADER_GATE_RE.search(head):
        return ""
    m = _SPDX_RE.search(head)
    if m:
        return normalize_spdx(m.group(1))
    found = detect_license_text(head)
    return "" if found == "other" else found


def license_of_file_text(text: str) -> str:
    """The licence of a licence file's text ("other" when unrecognised)."""
    return detect_license_text(text[:MAX_LICENSE_FILE_BYTES])


def is_copyleft(license_id: str, prefixes: list[str] | tuple[str, ...]) -> bool:
    """True when the id starts with one of the prefixes (case-insensitive).

    Example: is_copyleft("GPL-3.0", ["GPL"]) -> True; is_copyleft("Apache-2.0", ["GPL"]) -> False
    """
    lid = license_id.lower()
    return any(lid.startswith(p.lower()) for p in prefixes)


def license_check(license_id: str, *, copyleft: list[str], unknown: str,
                  allow: list[str] | tuple[str, ...] = ()) -> tuple[str, str] | None:
    """(reason, detail) when a repository or file licence is not allowed, else None.

    `unknown` is the policy for "" and "other": "keep" or "drop".
    Example: license_check("GPL-2.0", copyleft=["GPL"], unknown="keep") -> ("copyleft", "GPL-2.0")
    """
    if license_id in ("", "other"):
        if unknown == "drop":
            return "license_unknown", license_id or "no licence file"
        return None
    if is_copyleft(license_id, copyleft) and license_id not in allow:
        return "copyleft", license_id
    return None
