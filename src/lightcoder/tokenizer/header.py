"""aiXcoder's file header: two comment lines (path, language) in the file's own comment syntax.

Example: file_header("json/decoder.py") ->
    "# the file path is: json/decoder.py\\n# the code file is written by Python\\n"
Unknown extensions get "" (aiXcoder omits both lines). `include_path=False` gives only the language
line, as aiXcoder's FIM-Eval PSM wrapper does (research/aixcoder-7b.md §1.4).
"""

from __future__ import annotations

from lightcoder.languages import comment, language_for_path


def file_header(path: str, *, language: str | None = None, include_path: bool = True) -> str:
    language = language or language_for_path(path)
    if language is None or not path:
        return ""
    lines = []
    if include_path:
        lines.append(comment(language, f"the file path is: {path}"))
    lines.append(comment(language, f"the code file is written by {language}"))
    return "\n".join(lines) + "\n"
