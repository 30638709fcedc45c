"""`lightcoder --help` lists every command, the ones with their own parsers (serve, export) included."""

import subprocess
import sys

from lightcoder.cli import MODULE_COMMANDS, MODULE_HELP, STAGE_FUNCTIONS, STAGE_SUBCOMMANDS


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "lightcoder.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    expected = {"quickstart", "config", "complete", *STAGE_FUNCTIONS, *(words[0] for words in MODULE_COMMANDS)}
    assert expected <= listed, f"missing from --help: {sorted(expected - listed)}"
    flat = " ".join(out.split())  # argparse wraps help lines
    for words in (w for w in MODULE_COMMANDS if len(w) == 2):  # `data report`, `eval run`: in their stage's line
        if words[0] in STAGE_SUBCOMMANDS:
            line = STAGE_SUBCOMMANDS[words[0]]
            assert line in flat and words[1] in line.split(" ", 1)[1].split("|")
        else:  # `finetune demo`: named in its module command's help line
            assert " ".join(words) in " ".join(MODULE_HELP[words[0]].split()) and words[0] in listed


def test_serve_help_still_parses_its_own_arguments():
    out = subprocess.run([sys.executable, "-m", "lightcoder.cli", "serve", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--parallel" in out and "usage: lightcoder serve" in out
