"""Build the bundled MultiPL-E-style JavaScript/Java/C++ files from HumanEval (run once; output shipped).

The MultiPL-E datasets are not on these machines, so we translate 12 HumanEval problems the way
MultiPL-E does (Cassano et al. 2023): the Python signature becomes a typed signature, the
docstring becomes a comment, the test inputs become asserts in the target language, and the
expected values are computed by running HumanEval's own canonical solution on those inputs (so
the tests are right by construction). We also write a canonical solution per language, which
the test suite runs to prove the files and the harness agree (100 % pass).

    python -m lightcoder.eval.tasks.multipl_e_build   # rewrites data/multipl_e_{js,java,cpp}.jsonl

Record format (MultiPL-E's fields, plus ours): name, language, prompt, tests, stop_tokens,
canonical_solution, humaneval_id.
"""

from __future__ import annotations

import json
import re

from lightcoder.eval.tasks import DATA_DIR

# (HumanEval id, params [(name, type)], return type, {lang: body}, [args tuples])
SPECS = [
    (0, [("numbers", "list[float]"), ("threshold", "float")], "bool", {
        "js": "  for (let i = 0; i < numbers.length; i++)\n    for (let j = 0; j < numbers.length; j++)\n"
              "      if (i !== j && Math.abs(numbers[i] - numbers[j]) < threshold) return true;\n  return false;\n}\n",
        "java": "        for (int i = 0; i < numbers.size(); i++)\n            for (int j = 0; j < numbers.size(); j++)\n"
                "                if (i != j && Math.abs(numbers.get(i) - numbers.get(j)) < threshold) return true;\n"
                "        return false;\n",
        "cpp": "    for (size_t i = 0; i < numbers.size(); i++)\n        for (size_t j = 0; j < numbers.size(); j++)\n"
               "            if (i != j && std::abs(numbers[i] - numbers[j]) < threshold) return true;\n    return false;\n"},
     [([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3), ([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05), ([1.0, 2.0, 5.9, 4.0, 5.0], 0.95),
      ([1.0, 2.0, 5.9, 4.0, 5.0], 0.8), ([1.1, 2.2, 3.1, 4.1, 5.1], 1.0), ([1.1, 2.2, 3.1, 4.1, 5.1], 0.5)]),
    (3, [("operations", "list[int]")], "bool", {
        "js": "  let balance = 0;\n  for (const op of operations) {\n    balance += op;\n    if (balance < 0) return true;\n  }\n  return false;\n}\n",
        "java": "        long balance = 0;\n        for (long op : operations) {\n            balance += op;\n            if (balance < 0) return true;\n        }\n        return false;\n",
        "cpp": "    long balance = 0;\n    for (long op : operations) {\n        balance += op;\n        if (balance < 0) return true;\n    }\n    return false;\n"},
     [([],), ([1, 2, -3, 1, 2, -3],), ([1, 2, -4, 5, 6],), ([1, -1, 2, -2, 5, -5, 4, -4],), ([1, -2, 2, -2, 5, -5, 4, -4],)]),
    (7, [("strings", "list[str]"), ("substring", "str")], "list[str]", {
        "js": "  return strings.filter(s => s.includes(substring));\n}\n",
        "java": "        ArrayList<String> out = new ArrayList<String>();\n        for (String s : strings) if (s.contains(substring)) out.add(s);\n        return out;\n",
        "cpp": "    std::vector<std::string> out;\n    for (const auto& s : strings) if (s.find(substring) != std::string::npos) out.push_back(s);\n    return out;\n"},
     [([], "john"), (["xxx", "asd", "xxy", "john doe", "xxxAAA", "xxx"], "xxx"), (["grunt", "trumpet", "prune", "gruesome"], "run")]),
    (13, [("a", "int"), ("b", "int")], "int", {
        "js": "  while (b) { [a, b] = [b, a % b]; }\n  return a;\n}\n",
        "java": "        while (b != 0) { long t = a % b; a = b; b = t; }\n        return a;\n",
        "cpp": "    while (b) { long t = a % b; a = b; b = t; }\n    return a;\n"},
     [(3, 7), (10, 15), (49, 14), (144, 60)]),
    (16, [("string", "str")], "int", {
        "js": "  return new Set(string.toLowerCase()).size;\n}\n",
        "java": "        return string.toLowerCase().chars().distinct().count();\n",
        "cpp": "    std::set<char> seen;\n    for (char c : string) seen.insert(std::tolower(c));\n    return seen.size();\n"},
     [("",), ("abcde",), ("abcdecadeCADE",), ("aaaaAAAAaaaa",), ("Jerry jERRY JeRRRY",)]),
    (23, [("string", "str")], "int", {
        "js": "  return string.length;\n}\n",
        "java": "        return string.length();\n",
        "cpp": "    return string.size();\n"},
     [("",), ("x",), ("asdasnakj",)]),
    (27, [("string", "str")], "str", {
        "js": "  return [...string].map(c => c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()).join('');\n}\n",
        "java": "        StringBuilder sb = new StringBuilder();\n        for (char c : string.toCharArray())\n"
                "            sb.append(Character.isUpperCase(c) ? Character.toLowerCase(c) : Character.toUpperCase(c));\n"
                "        return sb.toString();\n",
        "cpp": "    std::string out = string;\n    for (auto& c : out) c = std::isupper(c) ? std::tolower(c) : std::toupper(c);\n    return out;\n"},
     [("",), ("Hello!",), ("These violent delights have violent ends",)]),
    (30, [("l", "list[int]")], "list[int]", {
        "js": "  return l.filter(e => e > 0);\n}\n",
        "java": "        ArrayList<Long> out = new ArrayList<Long>();\n        for (long e : l) if (e > 0) out.add(e);\n        return out;\n",
        "cpp": "    std::vector<long> out;\n    for (long e : l) if (e > 0) out.push_back(e);\n    return out;\n"},
     [([-1, -2, 4, 5, 6],), ([5, 3, -5, 2, 3, 3, 9, 0, 123, 1, -10],), ([-1, -2],), ([],)]),
    (35, [("l", "list[int]")], "int", {
        "js": "  return Math.max(...l);\n}\n",
        "java": "        long m = l.get(0);\n        for (long e : l) if (e > m) m = e;\n        return m;\n",
        "cpp": "    return *std::max_element(l.begin(), l.end());\n"},
     [([1, 2, 3],), ([5, 3, -5, 2, -3, 3, 9, 0, 124, 1, -10],)]),
    (48, [("text", "str")], "bool", {
        "js": "  return text === [...text].reverse().join('');\n}\n",
        "java": "        return new StringBuilder(text).reverse().toString().equals(text);\n",
        "cpp": "    return std::string(text.rbegin(), text.rend()) == text;\n"},
     [("",), ("aba",), ("aaaaa",), ("zbcd",), ("xywyx",), ("xywyz",), ("xywzx",)]),
    (55, [("n", "int")], "int", {
        "js": "  let a = 0, b = 1;\n  for (let i = 0; i < n; i++) [a, b] = [b, a + b];\n  return a;\n}\n",
        "java": "        long a = 0, b = 1;\n        for (long i = 0; i < n; i++) { long t = a + b; a = b; b = t; }\n        return a;\n",
        "cpp": "    long a = 0, b = 1;\n    for (long i = 0; i < n; i++) { long t = a + b; a = b; b = t; }\n    return a;\n"},
     [(10,), (1,), (8,), (11,), (12,)]),
    (60, [("n", "int")], "int", {
        "js": "  return n * (n + 1) / 2;\n}\n",
        "java": "        return n * (n + 1) / 2;\n",
        "cpp": "    return n * (n + 1) / 2;\n"},
     [(1,), (6,), (11,), (30,), (100,)]),
]

STOP_TOKENS = {"js": ["\nfunction ", "\n/*", "\n//", "\nconsole.log"], "java": ["\n    }\n"], "cpp": ["\n}"]}
# MultiPL-E includes <bits/stdc++.h>; these few headers compile ~4x faster and cover the solutions
CPP_INCLUDES = ("#include <cassert>\n#include <cctype>\n#include <cmath>\n#include <algorithm>\n"
                "#include <set>\n#include <string>\n#include <vector>\n")
LANGUAGE = {"js": "javascript", "java": "java", "cpp": "cpp"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def _java_type(t: str) -> str:
    return {"int": "long", "float": "double", "str": "String", "bool": "boolean", "list[int]": "ArrayList<Long>",
            "list[str]": "ArrayList<String>", "list[float]": "ArrayList<Double>"}[t]


def _cpp_type(t: str) -> str:
    return {"int": "long", "float": "double", "str": "std::string", "bool": "bool",
            "list[int]": "std::vector<long>", "list[str]": "std::vector<std::string>",
            "list[float]": "std::vector<double>"}[t]


def _literal(value, t: str, lang: str) -> str:
    if t.startswith("list["):
        inner = t[5:-1]
        items = ", ".join(_literal(v, inner, lang) for v in value)
        if lang == "js":
            return f"[{items}]"
        if lang == "java":
            boxed = {"int": "Long", "float": "Double", "str": "String"}[inner]
            return f"new ArrayList<{boxed}>(Arrays.asList({items}))"
        return f"{_cpp_type(t)}({{{items}}})"
    if t == "bool":
        return "true" if value else "false"
    if t == "str":
        return json.dumps(value)
    if t == "float":
        return repr(float(value))
    return f"{value}L" if lang == "java" else str(value)


def _docstring(prompt: str) -> list[str]:
    match = re.search(r'(?:"""|\'\'\')(.*?)(?:"""|\'\'\')', prompt, re.S)
    text = match.group(1) if match else ""
    return [line.strip() for line in text.strip().splitlines()]


def build(humaneval_rows: list[dict]) -> dict[str, list[dict]]:
    """Records per language key ("js", "java", "cpp") for SPECS, expected values from the canonical solutions."""
    by_id = {int(r["task_id"].split("/")[1]): r for r in humaneval_rows}
    out: dict[str, list[dict]] = {"js": [], "java": [], "cpp": []}
    for hid, params, ret, bodies, cases in SPECS:
        row = by_id[hid]
        namespace: dict = {}
        exec(row["prompt"] + row["canonical_solution"], namespace)  # trusted dataset code, build time only
        fn = namespace[row["entry_point"]]
        expected = [fn(*[list(a) if isinstance(a, list) else a for a in args]) for args in cases]
        name, doc = row["entry_point"], _docstring(row["prompt"])
        for lang in out:
            fname = _camel(name) if lang == "java" else name
            calls = [(", ".join(_literal(a, t, lang) for a, (_, t) in zip(args, params)), _literal(e, ret, lang))
                     for args, e in zip(cases, expected)]
            if lang == "js":
                prompt = "".join(f"// {d}\n" for d in doc) + f"function {fname}({', '.join(p for p, _ in params)}){{\n"
                tests = ("\nconst assert = require('node:assert');\n\nfunction test() {\n"
                         f"  let candidate = {fname};\n"
                         + "".join(f"  assert.deepEqual(candidate({a}),{e});\n" for a, e in calls) + "}\n\ntest();\n")
            elif lang == "java":
                sig = ", ".join(f"{_java_type(t)} {p}" for p, t in params)
                prompt = ("import java.util.*;\nimport java.util.stream.*;\nclass Problem {\n"
                          + "".join(f"    // {d}\n" for d in doc)
                          + f"    public static {_java_type(ret)} {fname}({sig}) {{\n")
                cmp = (lambda a, e: f"{fname}({a}).equals({e})") if ret in ("str",) or ret.startswith("list") \
                    else (lambda a, e: f"{fname}({a}) == {e}")
                tests = ("    }\n    public static void main(String[] args) {\n"
                         + "".join(f"    assert({cmp(a, e)});\n" for a, e in calls) + "    }\n\n}\n")
            else:
                sig = ", ".join(f"{_cpp_type(t)} {p}" for p, t in params)
                prompt = (CPP_INCLUDES + "".join(f"// {d}\n" for d in doc)
                          + f"{_cpp_type(ret)} {fname}({sig}) {{\n")
                # the function is called by name (not `auto candidate = f`): strlen would be ambiguous
                tests = ("}\nint main() {\n"
                         + "".join(f"    assert({fname}({a}) == ({e}));\n" for a, e in calls) + "}\n")
            out[lang].append({"name": f"HumanEval_{hid}_{name}", "language": LANGUAGE[lang], "prompt": prompt,
                              "tests": tests, "stop_tokens": STOP_TOKENS[lang],
                              "canonical_solution": bodies[lang], "humaneval_id": f"HumanEval/{hid}"})
    return out


def main() -> None:
    from lightcoder.eval.tasks.humaneval import read_humaneval

    for lang, rows in build(read_humaneval()).items():
        path = DATA_DIR / f"multipl_e_{lang}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        print(f"{path}: {len(rows)} problems")


if __name__ == "__main__":
    main()
