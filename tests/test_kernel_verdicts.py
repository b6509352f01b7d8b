"""``bench/kernel_verdicts.py --compare``: a verdict decided one way under one kernel family and the other way under
the other is a flip; decided under one and undecided under the other is a move; agreeing verdicts are neither."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compare_reports_flips_and_moves(tmp_path):
    a = {
        "drops": {"lr|image|gc|0.03": "drop", "mlp|image|gc|0.03": "drop", "lr|none|gc|1": "undecided"},
        "claims": {"x": "holds", "y": "holds", "z": "undecided", "w": "fails"},
    }
    b = {
        "drops": {"lr|image|gc|0.03": "rise", "mlp|image|gc|0.03": "drop", "lr|none|gc|1": "drop"},
        "claims": {"x": "holds", "y": "undecided", "z": "undecided", "w": "holds"},
    }
    for name, d in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    out = subprocess.run(
        [sys.executable, "bench/kernel_verdicts.py", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        "drops: 3 compared, 2 decided in the first family; 1 decided one way in one family and the other way in the "
        "other; 1 moved between decided and undecided"
    ) in out
    assert (
        "claims: 4 compared, 3 decided in the first family; 1 decided one way in one family and the other way in "
        "the other; 1 moved between decided and undecided"
    ) in out
    assert "  lr|image|gc|0.03: drop → rise" in out and "  w: fails → holds" in out and "  y: holds → undecided" in out
