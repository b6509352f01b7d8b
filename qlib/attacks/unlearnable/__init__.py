"""Unlearnable examples (Section 4.3, Table 5): availability attacks that perturb the whole training set.

Each attack is its own module and registers itself in ``qlib.attacks.ATTACKS``; ``common`` holds what
they share.
"""

from . import ar, dc, em, ntga, ops, rem, sn, tap  # noqa: F401  (each registers its attack)
from .common import UNLEARNABLE

__all__ = ["UNLEARNABLE"]
