"""How a finished program in each execution language is run in the sandbox: files, command, limits.

    python      main.py       python3 -I -S main.py       (an interpreter the sandbox uid may run; isolated
                                                          mode, no site-packages: stdlib only. The sandbox
                                                          recognises this argv and runs main.py in a fresh
                                                          fork of its slot's server interpreter: no start-up)
    javascript  main.js       node main.js
    java        Main.java     java -ea Main.java          (single-file launcher: compiles in memory and
                                                          runs the first class; MultiPL-E's `class Problem`)
    cpp         main.cpp      g++ -std=c++17 -O0, then ./main

Compilation happens inside the sandbox too, under the same limits: a completion that makes the
compiler loop or explode is that sample's failure, like any other.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace

from lightcoder.eval.sandbox import Limits, sandbox_python

LANGUAGES = ("python", "javascript", "java", "cpp")
_JVM_FLAGS = "-ea -Xmx256m -Xss16m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CompressedClassSpaceSize=64m"


@dataclass(frozen=True)
class Runtime:
    language: str
    filename: str
    command: tuple[str, ...]
    limits: Limits
    tool: str  # the executable that must exist

    def available(self) -> bool:
        return shutil.which(self.tool) is not None


def runtime_for(language: str, *, wall_seconds: float | None = None) -> Runtime:
    """The Runtime for `language` (one of LANGUAGES); wall_seconds overrides the default timeout."""
    if language == "python":
        rt = Runtime("python", "main.py", (sandbox_python(), "-I", "-S", "main.py"), Limits(), "python3")
    elif language == "javascript":
        rt = Runtime("javascript", "main.js", ("node", "main.js"), Limits(memory_mb=4096), "node")
    elif language == "java":
        rt = Runtime("java", "Main.java",
                     ("java", *_JVM_FLAGS.split(), "Main.java"),
                     Limits(memory_mb=4096, max_processes=96, wall_seconds=30, cpu_seconds=30), "java")
    elif language == "cpp":
        rt = Runtime("cpp", "main.cpp", ("/bin/sh", "-c", "g++ -std=c++17 -O0 -w main.cpp -o main && ./main"),
                     Limits(memory_mb=2048, wall_seconds=30, cpu_seconds=30), "g++")
    else:
        raise ValueError(f"no runtime for language {language!r}; choose one of {LANGUAGES}")
    if wall_seconds is not None:
        rt = replace(rt, limits=replace(rt.limits, wall_seconds=wall_seconds,
                                        cpu_seconds=max(1, int(wall_seconds))))
    return rt
