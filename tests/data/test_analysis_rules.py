"""Every tree-sitter bug rule: one snippet it must flag and a near miss it must not."""

import pytest

from lightcoder.data.analysis import cppcheck_hits, cppcheck_path, eslint_hits, eslint_path, ts_rule_hits
from lightcoder.data.analysis_rules import TS_RULES
from lightcoder.data.config import CPPCHECK_RULES, ESLINT_RULES, TS_RULE_NAMES, AnalysisConfig


def java(body: str) -> str:
    return "class A { int x; void f(int a, int b, String s) { " + body + " } }"


def c(body: str) -> str:
    return "void f(char *p, char q[8], int a, int n) { " + body + " }"


# (rule, language, bug, near miss that is correct code)
CASES = [
    ("self-assignment", "Java", java("x = x;"), java("this.x = a;")),
    ("self-assignment", "JavaScript", "function f(a) { a = a; }", "el.src = el.src;"),  # setter
    ("self-assignment", "C++", "struct P { int x; void f(P p) { x = x; } };",
     "template <class T> void need_assign(T a) { a = a; }"),  # concept check
    ("self-assignment", "C", c("a = a;"), c("a = n;")),
    ("self-comparison", "Java", java("if (a < a) {}"), java("if (a != a) {}")),  # NaN test
    ("self-comparison", "JavaScript", "if (x.y && x.y) {}", "if (x.y && y.y) {}"),
    ("self-comparison", "C", c("while (a >= a) {}"), c("while (f() && f()) {}")),
    ("self-comparison", "C++", "bool f(R *g) { return g->rank < g->rank; }",
     "bool irreflexive(It it) { return !(*it < *it); }"),
    ("identical-branches", "Java", java("if (a > b) { a++; } else { a++; }"),
     java("if (a > b) { a++; } else { b++; }")),
    ("identical-branches", "C", c("if (a) n = 1; /* x */ else n =  1;"),
     c("if (a) n = 1; else n = 2;")),
    ("identical-branches", "Java", java('if (a == 0) { f(" %s"); } else { f(" %s"); }'),
     java('if (a == 0) { f(" %s"); } else { f("   %s"); }')),  # strings keep their spaces
    ("identical-branches", "JavaScript", "if (a) { f(); } else { f(); }",
     "if (a) f(); else if (b) g(); else g();"),  # tail of an else-if chain: symmetry
    ("identical-branches", "JavaScript", "if (a) x = 1; else x = 1;",
     "if (a) { // TODO\n} else { // TODO\n}"),  # placeholders, no code
    ("duplicate-condition", "JavaScript", "if (a == 1) f(); else if (b) g(); else if (a == 1) h();",
     "if (a == 1) f(); else if (a == 2) g();"),
    ("duplicate-condition", "C++", "void f() { if (n > 0) g(); else if (n > 0) h(); }",
     "void f() { if (next()) g(); else if (next()) h(); }"),  # calls may differ
    ("assignment-in-condition", "Java", java("boolean ok = false; if (ok = true) {}"),
     java("boolean ok = false; if (ok == true) {}")),
    ("assignment-in-condition", "C", c("if (a = 0) return;"), c("if ((a = n)) return;")),
    ("assignment-in-condition", "C++", "void f(int a) { while (a = 1) {} }",
     "void f(int a) { while (a == 1) {} }"),
    ("assignment-in-condition", "JavaScript", "if (mode = 'dark') {}", "if ((m = re.exec(s))) {}"),
    ("unreachable-code", "JavaScript", "function f() { return 1; g(); }",
     "function f() { return g(); function g() { return 1; } }"),  # hoisted
    ("unreachable-code", "JavaScript", "function f() { return b; var u = 1; }",
     "function f() { return b; var u; }"),  # a bare `var` only hoists
    ("unreachable-code", "C", c("return; a = 1;"), c("goto out; out: a = 1;")),
    ("unreachable-code", "Java", java("while (a > 0) { a--; break; b++; }"),
     java("switch (a) { case 1: b++; break; /* done */ case 2: b--; }")),
    ("unreachable-code", "Java", java("return; // done\n b++;"), java("if (a > 0) { return; // done\n }")),
    ("unreachable-code", "C++", "void f() { throw 1; g(); }",
     "void f() {\n#ifdef X\n return;\n#endif\n g(); }"),
    ("wrong-loop-direction", "Java", java("for (int i = 0; i < a; i--) {}"),
     java("for (int i = a; i >= 0; i--) {}")),
    ("wrong-loop-direction", "C", c("int i; for (i = 10; i > 0; i++) {}"),
     c("size_t i; for (i = n - 1; i < n; i--) {}")),  # unsigned wrap-around idiom
    ("wrong-loop-direction", "JavaScript", "for (let i = 0; i <= n; i -= 1) {}",
     "for (let i = 0; i <= n; i += 1) {}"),
    ("integer-division-to-float", "Java", java("double d = 1 / 2;"), java("double d = 1.0 / 2;")),
    ("integer-division-to-float", "C", c("double d = 1 / 3;"), c("int d = 1 / 3;")),
    ("string-reference-equality", "Java", java('if (s == "yes") {}'),
     java('if ("yes".equals(s)) {}')),
    ("split-on-regex-metachar", "Java", java('String[] p = s.split(".");'),
     java('String[] p = s.split("\\\\.");')),
    ("misnamed-override", "Java", "class A { public int hashcode() { return 1; } }",
     "class A { public int hashCode() { return 1; } }"),
    ("misnamed-override", "Java", "class A { public boolean equal(Object o) { return true; } }",
     "class A { boolean equal(State a) { return a.s == s; } }"),  # a typed helper
    ("thread-run", "Java", java("new Thread(() -> {}).run();"),
     java("new Thread(() -> {}).start();")),
    ("compare-with-nan", "JavaScript", "if (NaN == v) {}", "if (Number.isNaN(v)) {}"),
    ("compare-with-nan", "TypeScript", "let b: boolean = v !== NaN;", "let b = v !== v;"),
    ("invalid-typeof", "JavaScript", 'if (typeof x === "undefned") {}',
     'if (typeof x === "undefined") {}'),
    ("invalid-typeof", "TypeScript", "const f = typeof x == 'float';", "const f = typeof x == t;"),
    ("invalid-typeof", "JavaScript", "typeof e.rv != 'unknwn' && g();",
     "typeof e.rv != 'unknown' && g();"),  # old IE's ActiveX objects: "unknown"
    ("duplicate-key", "JavaScript", "const o = {a: 1, b: 2, 'a': 3};",
     "const o = {get a() { return 1; }, set a(v) {}, [k]: 1, [k]: 2};"),
    ("duplicate-case", "JavaScript", "switch (x) { case 1: f(); break; case 1: g(); }",
     "switch (x) { case 1: f(); break; case 2: g(); }"),
    ("unsafe-negation", "JavaScript", "if (!key in obj) {}", "if (!(key in obj)) {}"),
    ("unsafe-negation", "TypeScript", "if (!e instanceof Error) {}",
     "if (!(e instanceof Error)) {}"),
    ("dangerous-gets", "C", c("gets(p);"), c("fgets(p, n, stdin);")),
    ("sizeof-pointer", "C", c("memset(p, 0, sizeof(p));"),
     "void f(void) { char q[8]; memset(q, 0, sizeof(q)); }"),  # a real array
    ("sizeof-pointer", "C++", "void f(int q[4]) { memcpy(q, src, sizeof q); }",
     "void f(int *q) { memcpy(q, src, sizeof *q); }"),
    ("memset-zero-length", "C", c("memset(p, 255, 0);"), c("memset(p, 0, 0);")),
    ("double-free", "C", c("free(p); n = 1; free(p);"), c("free(p); p = malloc(n); free(p);")),
    ("delete-mismatch", "C++", "void f() { int *v = new int[8]; delete v; }",
     "void f() { int *v = new int[8]; delete[] v; int *w = new int; delete w; }"),
    ("empty-if-body", "C", c("if (a > n); a = n;"), c("if (a > n)\n    ;\nelse a = n;")),
    ("empty-if-body", "C++", "void f(bool s) { if (s > 1); g(); }",
     "void f(bool s) {\n if (false) ;\n#if X\n else if (s) g();\n#endif\n}"),
    ("empty-if-body", "Java", java("if (a > b); a = b;"), java("if (a > b) a = b;")),
]


@pytest.mark.parametrize(("rule", "language", "bug", "ok"), CASES,
                         ids=[f"{r}-{lang}" for r, lang, _, _ in CASES])
def test_rule_flags_bug_and_passes_near_miss(rule, language, bug, ok):
    assert ts_rule_hits(bug, language, [rule]) == {rule: 1}
    assert ts_rule_hits(ok, language, [rule]) == {}


def test_every_rule_is_tested_in_every_language_family():
    assert {rule for rule, *_ in CASES} == set(TS_RULES)
    assert all(rule.why and rule.languages for rule in TS_RULES.values())


def test_correct_programs_pass_every_rule():
    clean = {
        "Java": "class A { int n; A(int n) { this.n = n; } int f(int a) {"
                " for (int i = 0; i < a; i++) { if (i == n) return i; else if (i > n) break; }"
                " return -1; } }",
        "JavaScript": "function f(a) { const o = {x: 1, y: 2}; if (typeof a === 'string')"
                      " return o.x; switch (a) { case 1: return 2; default: return 3; } }",
        "C": "int f(int *p, int n) { int i, s = 0; for (i = 0; i < n; i++) s += p[i];"
             " if (s > 10) return 1; free(p); return s; }",
        "C++": "int f() { int *v = new int[3]; v[0] = 1; int r = v[0]; delete[] v; return r; }",
    }
    for language, text in clean.items():
        assert ts_rule_hits(text, language) == {}, language


def test_config_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown rules"):
        AnalysisConfig(ts_rules=["self-assignment", "no-such-rule"])


def test_rules_skip_code_inside_parse_errors():
    # `#if` inside an expression leaves tree-sitter guessing: the guessed tree shows a
    # `return` followed by code, which must not count as unreachable
    text = ("struct S {\n  void* g(const T& t) noexcept override\n  {\n"
            "    if (&t == &tag()\n        ||\n#if R\n        t == typeid(X)\n#else\n"
            "        eq(t)\n#endif\n       )\n      return p;\n    return nullptr;\n  }\n};\n")
    assert ts_rule_hits(text, "C++", ["unreachable-code"]) == {}
    assert ts_rule_hits("int f() { return 0; g(); }", "C++", ["unreachable-code"]) == {
        "unreachable-code": 1}


@pytest.mark.skipif(cppcheck_path() is None, reason="cppcheck not installed (apt-get install cppcheck)")
def test_cppcheck_backend_names_and_counts_its_rules():
    double_free = "#include <stdlib.h>\nvoid f(void) { char *p = malloc(4); free(p); free(p); }\n"
    files = {"double_free": (double_free, "C"),
             "delete": ("void h() { int *v = new int[4]; delete v; }\n", "C++"),
             "clean": ("int g(int a) { int v[4] = {0}; return v[a & 3]; }\n", "C")}
    hits = cppcheck_hits(files, list(CPPCHECK_RULES))
    assert hits == {"double_free": {"cppcheck:doubleFree": 1},
                    "delete": {"cppcheck:mismatchAllocDealloc": 1}}
    assert cppcheck_hits(files, ["zerodiv"]) == {}


def test_the_config_lists_every_rule_in_order():
    assert tuple(TS_RULES) == TS_RULE_NAMES  # data/config.py validates ts_rules without loading the rules


def test_noisy_rules_are_opt_in():
    default = AnalysisConfig().ts_rules
    assert "string-reference-equality" not in default and "identical-branches" not in default
    assert set(default) | {"string-reference-equality", "identical-branches"} == set(TS_RULES)
    assert AnalysisConfig(ts_rules=["string-reference-equality"]).ts_rules == [
        "string-reference-equality"]


@pytest.mark.skipif(eslint_path() is None, reason="eslint not installed (npm install -g eslint)")
def test_eslint_backend_names_and_counts_its_rules():
    files = {"dead": "function f() { return 1; g(); }\nconst o = {a: 1, a: 2};\n",
             "module": "import x from 'y';\nexport const z = x === NaN;\n",
             "setter": "el.src = el.src;\n", "clean": "const v = 1;\n"}
    assert eslint_hits(files, list(ESLINT_RULES)) == {
        "dead": {"eslint:no-unreachable": 1, "eslint:no-dupe-keys": 1},
        "module": {"eslint:use-isnan": 1}}
