"""Poisoning attacks, each in its own module, registered by name behind one interface (see ``base``)."""

from . import label_flip  # noqa: F401  (registers the attack)
from .base import ATTACKS, poison_count, run_attack, source_indices, validate

__all__ = ["ATTACKS", "poison_count", "run_attack", "source_indices", "validate"]
