"""`lightcoder --help` lists every command, the ones with their own parsers (serve, export) included."""

import subprocess
import sys

import pytest

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


def test_an_out_path_that_is_a_file_is_a_one_line_error_not_a_traceback(tmp_path, capsys):
    from lightcoder.cli import main

    taken = tmp_path / "single.py"
    taken.write_text("x = 1\n")
    assert main(["data", "--out", str(taken), "--corpus", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{taken} exists and is not a directory" in err and "Traceback" not in err


def test_describe_os_error_names_the_path_and_the_fix():
    from lightcoder.cli import describe_os_error

    assert "permission denied on /x" in describe_os_error(PermissionError(13, "Permission denied", "/x"))
    assert "/d is a directory: give a file path" in describe_os_error(IsADirectoryError(21, "Is a directory", "/d"))
    assert "a file is in the way of /f/g" in describe_os_error(NotADirectoryError(20, "Not a directory", "/f/g"))


def test_settings_that_cannot_work_are_refused_before_any_stage_runs(tmp_path, capsys):
    from lightcoder.cli import main

    run = tmp_path / "run"
    assert main(["data", "--out", str(run), "--model-preset", "lc-tiny", "--corpus", str(tmp_path)]) == 2
    assert "pass --pack.seq_len 256" in capsys.readouterr().err and not run.exists()  # lc-tiny holds 256
    assert main(["report", "--out", str(run)]) == 1
    assert "no run directory at" in capsys.readouterr().err and not run.exists()
    for command in (["quickstart"], ["ablate"], ["finetune", "demo", "--base", str(run)]):  # one shared type
        for minutes in ("nan", "0", "-1"):
            with pytest.raises(SystemExit):
                main([*command, "--out", str(run), "--minutes", minutes])
            assert "number of minutes > 0" in capsys.readouterr().err


def test_serve_refuses_a_port_out_of_range_before_loading_the_model(capsys):
    from lightcoder.serve.command import main as serve

    with pytest.raises(SystemExit):
        serve(["no/such/run", "--port", "99999"])
    assert "a TCP port is 0-65535, got 99999" in capsys.readouterr().err
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(SystemExit):
            serve(["no/such/run", "--port", str(holder.getsockname()[1])])
    assert "Address already in use); choose another --port" in capsys.readouterr().err


def test_a_truncated_archive_keeps_its_readable_files_and_says_so(tmp_path, capsys):
    import inspect
    import io
    import tarfile
    import textwrap

    from lightcoder.cli import main

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for i, module in enumerate((textwrap, inspect, io)):
            data = inspect.getsource(module).encode()
            info = tarfile.TarInfo(f"pkg{i}/{module.__name__}.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = archive.getvalue()
    (tmp_path / "cut.tgz").write_bytes(whole[: len(whole) * 2 // 3])
    assert main(["data", "--out", str(tmp_path / "run"), "--corpus", str(tmp_path / "cut.tgz")]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 source(s) broken archive; what could be read was kept" in err
    assert (tmp_path / "run" / "data" / "rejected" / "broken_archive.jsonl").exists()
