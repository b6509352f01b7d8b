"""Poisoning attacks, each in its own module, registered by name behind one interface (see ``base``)."""

from . import (  # noqa: F401  (each registers its attacks)
    badnets,
    blend,
    gc,
    gc_q,
    gradient_matching,
    label_flip,
    sleeper_agent,
    tgda,
    unlearnable,
)
from .base import ATTACKS, run_attack, source_indices

__all__ = ["ATTACKS", "run_attack", "source_indices"]
