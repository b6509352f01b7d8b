"""The preset's way down: from ``experiments.evaluate.run`` to the training loop, every stack that reaches
``train.fit`` enters each module once, returning to a module above at most 3 times (a callback such as the cache's
``build``), and the preset itself is read in two modules only, the experiment's and ``qlib.cells``."""

import sys
from collections import Counter

from qlib import train
from qlib.experiments import evaluate
from qlib.presets import Preset, load_preset


def _collapse(modules: list[str]) -> list[str]:
    return [m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m]


def test_the_preset_goes_down_one_way(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_CACHE", str(tmp_path))
    stacks, readers = [], set()

    def profile(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if event != "call" or not module.startswith("qlib"):
            return
        if frame.f_code is train.fit.__code__:
            chain, f = [], frame
            while f is not None:
                if f.f_globals.get("__name__", "").startswith("qlib"):
                    chain.append(f.f_globals["__name__"])
                f = f.f_back
            stacks.append(_collapse(chain[::-1]))
        if any(isinstance(v, Preset) for k, v in frame.f_locals.items() if k != "self"):  # not the preset's own
            readers.add(module)

    sys.setprofile(profile)
    try:
        evaluate.run(load_preset("smoke"), None, ["fp", "1W"], ["fp", "qat"], "float", progress=False)
    finally:
        sys.setprofile(None)
    assert stacks, "no model was trained"
    for stack in stacks:
        returns = sum(n - 1 for n in Counter(stack).values())
        assert stack[0] == "qlib.experiments.evaluate" and returns <= 3, " -> ".join(stack)
    assert readers == {"qlib.experiments.evaluate", "qlib.cells"}, readers
