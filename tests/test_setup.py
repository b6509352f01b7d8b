"""Set-up on machines as researchers have them: root in a container (JupyterLab), a package lock held by unattended
upgrades (apt), and pinned versions."""

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_qlib_kernel(tmp_path):
    """``make lab`` starts JupyterLab (as root too: --allow-root) and its REST API lists the qlib kernel."""
    port, token = free_port(), "qlib-test"
    log = tmp_path / "lab.log"
    with open(log, "w") as out:  # -o setup: the set-up `make test` has just done is not redone here
        lab = subprocess.Popen(
            [
                "make",
                "-s",
                "-o",
                "setup",
                "lab",
                f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={token}",
            ],
            cwd=ROOT,
            start_new_session=True,
            stdout=out,
            stderr=out,
        )
    try:
        deadline, specs = time.time() + 120, None
        while specs is None and time.time() < deadline and lab.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}", timeout=5) as r:
                    specs = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert specs is not None, f"JupyterLab did not answer (exit {lab.poll()}): {log.read_text()[-2000:]}"
        assert '"qlib"' in specs
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(30)


@pytest.mark.skipif(
    os.geteuid() != 0
    or shutil.which("apt-get") is None
    or not os.path.exists(DPKG_LOCKS[0])
    or subprocess.run(["dpkg", "-s", "dataset-fashion-mnist"], capture_output=True).returncode != 0,
    reason="needs root, apt and Debian's dataset-fashion-mnist installed",
)
def test_apt_install_waits_for_a_held_package_lock():
    """The set-up's apt step waits for the dpkg lock that another process holds, says so, and then succeeds (the
    package is already installed, so apt needs no network)."""
    fds = [os.open(path, os.O_RDWR) for path in DPKG_LOCKS]
    for fd in fds:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as dpkg and apt take it
    threading.Timer(4.0, lambda: [os.close(fd) for fd in fds]).start()
    started = time.time()
    out = subprocess.run(
        ["scripts/apt-install.sh", "dataset-fashion-mnist"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "APT_LOCK_WAIT": "60"},
    )
    assert out.returncode == 0, out.stderr
    assert "waiting up to 60 s for the package lock" in out.stderr
    assert time.time() - started >= 4.0


def test_constraints_pin_every_dependency_exactly():
    """``make setup`` installs with constraints.txt: every dependency, torch included, has an exact version there."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.match(r"[A-Za-z0-9_.\-]+", r).group().lower()
        for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    }
    pins = dict(
        re.match(r"([A-Za-z0-9_.\-]+)==(\S+)$", line).groups()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert names <= {n.lower() for n in pins}, f"not pinned: {sorted(names - {n.lower() for n in pins})}"
    assert pins["torch"] == "2.14.1"  # the committed reports' torch
    assert "-c $(CONSTRAINTS)" in (ROOT / "Makefile").read_text()
