"""Static analysis (aiXcoder step 7): drop files with high-risk bugs, every rule named and counted.

Python: ruff (pip install ruff), a batch of files per call, with the rules in PYTHON_RULES (data/config.py) -
the same run also reports syntax errors, which the syntax step uses for Python (quality.py) -
bugs that raise or misbehave at run time (aiXcoder's own example, "__init__ should not return a
value", is PLE0101). F821 (undefined name) is left out by default: on the stdlib it fires in
ssl.py, inspect.py and re/_constants.py, whose names come from `globals().update(...)`.
Without ruff on PATH or next to the interpreter, Python files pass and stats say so.

Java, JavaScript/TypeScript, C and C++: tree-sitter query rules (analysis_rules.TS_RULES, each
with a name and a one-line reason), aimed at definite bugs: self-assignment, `if (x = 0)`,
unreachable code, `for (i = 0; i < n; i--)`, duplicate keys/cases/conditions, `x === NaN`
(JS), gets()/double free/delete-vs-delete[] (C/C++), and more. Optional external analysers,
batched like ruff and used when installed: cppcheck for C/C++ (`cppcheck_hits`, the ids in
CPPCHECK_RULES) and ESLint for JavaScript (`eslint_hits`, ESLINT_RULES).

Example: ts_rule_hits("class A { void f(){ x = x; } }", "Java") -> {"self-assignment": 1}
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from lightcoder.data.analysis_rules import TS_RULES, rule_hits

ESLINT_CONFIG = """export default [{{
  files: ["**/*.js"], languageOptions: {{ ecmaVersion: "latest", sourceType: "{kind}" }},
  linterOptions: {{ noInlineConfig: true, reportUnusedDisableDirectives: "off" }},
  rules: {rules},
}}];
"""


@cache
def ruff_path() -> str | None:
    """The ruff executable (next to this interpreter first), or None when not installed."""
    local = Path(sys.executable).parent / "ruff"
    return str(local) if local.exists() else shutil.which("ruff")


RUFF_TARGET = "py314"  # the newest grammar: only real syntax errors, never "too new for 3.9"


def ruff_check(files: dict[str, str], rules: list[str]
               ) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """({key: {rule: hits}}, {key: first syntax error}) for Python sources given as {key: text};
    one ruff run for all of them. Empty results when ruff is not installed."""
    ruff = ruff_path()
    if ruff is None or not files:
        return {}, {}
    with tempfile.TemporaryDirectory(prefix="lc-ruff-") as tmp:
        names = {}
        for i, (key, text) in enumerate(files.items()):
            name = os.path.join(tmp, f"f{i}.py")
            with open(name, "w", encoding="utf-8") as fh:
                fh.write(text)
            names[name] = key
        out = subprocess.run([ruff, "check", "--isolated", "--no-cache", "--exit-zero",
                              "--target-version", RUFF_TARGET, "--select",
                              ",".join(rules or ["F632"]), "--output-format", "json", tmp],
                             capture_output=True, text=True, timeout=600, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"ruff failed ({out.returncode}): {out.stderr[-500:]}")
        hits: dict[str, dict[str, int]] = {}
        syntax: dict[str, str] = {}
        for item in json.loads(out.stdout or "[]"):
            key = names.get(item["filename"]) or names.get(os.path.realpath(item["filename"]))
            if key is None:
                continue
            code = item.get("code")
            if code in (None, "invalid-syntax") or str(item.get("message", "")).startswith(
                    "SyntaxError"):
                if key not in syntax:
                    row = (item.get("location") or {}).get("row", "?")
                    syntax[key] = f"line {row}: {item.get('message', '')[:80]}"
            elif code in rules:
                per = hits.setdefault(key, {})
                per[code] = per.get(code, 0) + 1
        return hits, syntax


@cache
def cppcheck_path() -> str | None:
    """The cppcheck executable (Debian: apt-get install cppcheck), or None when not installed."""
    return shutil.which("cppcheck")


def cppcheck_hits(files: dict[str, tuple[str, str]], rules: list[str]
                  ) -> dict[str, dict[str, int]]:
    """{key: {"cppcheck:<id>": hits}} for C/C++ sources given as {key: (text, language)}; one
    cppcheck run for all of them, one preprocessor configuration per file (the first). Empty
    when cppcheck is not installed or no rules are asked for."""
    exe = cppcheck_path()
    if exe is None or not files or not rules:
        return {}
    wanted = set(rules)
    with tempfile.TemporaryDirectory(prefix="lc-cppcheck-") as tmp:
        names = {}
        for i, (key, (text, language)) in enumerate(files.items()):
            name = os.path.join(tmp, f"f{i}.{'cpp' if language == 'C++' else 'c'}")
            with open(name, "w", encoding="utf-8") as fh:
                fh.write(text)
            names[name] = key
        listing = os.path.join(tmp, "files.txt")
        with open(listing, "w", encoding="utf-8") as fh:
            fh.write("\n".join(names))
        out = subprocess.run([exe, "--quiet", "--enable=warning", "--max-configs=1",
                              "--inline-suppr", "--template={file}\t{line}\t{id}",
                              f"--file-list={listing}"], capture_output=True, text=True,
                             timeout=600, check=False)
    hits: dict[str, dict[str, int]] = {}
    for line in (out.stderr + out.stdout).splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[2] not in wanted:
            continue
        key = names.get(parts[0]) or names.get(os.path.realpath(parts[0]))
        if key is not None:
            per = hits.setdefault(key, {})
            per[f"cppcheck:{parts[2]}"] = per.get(f"cppcheck:{parts[2]}", 0) + 1
    return hits


@cache
def eslint_path() -> str | None:
    """The eslint executable (npm install -g eslint), or None when not installed."""
    return shutil.which("eslint")


def eslint_hits(files: dict[str, str], rules: list[str]) -> dict[str, dict[str, int]]:
    """{key: {"eslint:<rule>": hits}} for JavaScript sources given as {key: text}; one eslint
    run for all of them (parsed as ES modules when they import/export, else CommonJS).
    Empty when eslint is not installed or no rules are asked for."""
    exe = eslint_path()
    if exe is None or not files or not rules:
        return {}
    # no-self-assign without props: `el.src = el.src` re-runs a setter on purpose
    config = {r: (["error", {"props": False}] if r == "no-self-assign" else "error") for r in rules}
    hits: dict[str, dict[str, int]] = {}
    for kind in ("module", "commonjs"):
        with tempfile.TemporaryDirectory(prefix="lc-eslint-") as tmp:
            names = {}
            for i, (key, text) in enumerate(files.items()):
                is_module = re.search(r"^\s*(import|export)\b", text, re.MULTILINE) is not None
                if is_module != (kind == "module"):
                    continue
                name = os.path.join(tmp, f"f{i}.js")
                with open(name, "w", encoding="utf-8") as fh:
                    fh.write(text)
                names[name] = key
            if not names:
                continue
            with open(os.path.join(tmp, "eslint.config.mjs"), "w", encoding="utf-8") as fh:
                fh.write(ESLINT_CONFIG.format(kind=kind, rules=json.dumps(config)))
            out = subprocess.run([exe, "--no-ignore", "--format", "json", *names], cwd=tmp,
                                 capture_output=True, text=True, timeout=600, check=False)
            if out.returncode not in (0, 1):
                raise RuntimeError(f"eslint failed ({out.returncode}): {out.stderr[-500:]}")
            for item in json.loads(out.stdout or "[]"):
                key = names.get(item["filePath"]) or names.get(os.path.realpath(item["filePath"]))
                for message in item.get("messages", []):
                    rule = message.get("ruleId")
                    if key is not None and rule in config:
                        per = hits.setdefault(key, {})
                        per[f"eslint:{rule}"] = per.get(f"eslint:{rule}", 0) + 1
    return hits


def ruff_hits(files: dict[str, str], rules: list[str]) -> dict[str, dict[str, int]]:
    """{key: {rule: hits}} of `ruff_check` (syntax errors left out)."""
    return ruff_check(files, rules)[0] if rules else {}


def ts_rule_hits(text: str, language: str, rules: list[str] | tuple[str, ...] = tuple(TS_RULES),
                 tree=None) -> dict[str, int]:
    """{rule: hits} of the tree-sitter rules that apply to the language."""
    return rule_hits(text, language, rules, tree)
