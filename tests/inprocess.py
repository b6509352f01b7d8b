"""``python -m qlib`` run in the test's own process."""

import contextlib
import io
import os
import subprocess
import sys

from qlib.data import PROJECT_ROOT


def run_qlib(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """``python -m qlib ARGS`` in this process (``qlib.cli.main``), as ``subprocess.run`` would report it: the exit
    status argparse or the command gives, and what it printed. A subprocess would pay seconds of imports per call;
    ``tests/test_bad_inputs.py`` runs the real entry point in subprocesses."""
    from qlib.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    saved, here = {k: os.environ.get(k) for k in env or {}}, os.getcwd()
    os.environ.update(env or {})
    try:
        os.chdir(cwd or PROJECT_ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
    finally:
        os.chdir(here)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return subprocess.CompletedProcess(["qlib", *args], code or 0, out.getvalue(), err.getvalue())
