"""Typed parameters: a value checked against its type, the one-line error a bad one gets, and the checks of the
notebooks' own parameters (those beyond the preset's fields, such as 01's ``sweep_eps_d``)."""

import ast
import types
import typing
from pathlib import Path

from .attacks import ATTACKS
from .poison import PIXELS, check_budget
from .quant import REGIMES, scheme_named
from .registry import ParameterError

_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list, "None": type(None)}


def parse_hint(text: str):
    """The type of an annotation as papermill reports it (``int``, ``list[float]``, ``int | None``, …)."""

    def build(node):
        if isinstance(node, ast.Name) and node.id in _NAMES:
            return _NAMES[node.id]
        if isinstance(node, ast.Constant) and node.value is None:
            return type(None)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "list":
            return list[build(node.slice)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return build(node.left) | build(node.right)
        raise ParameterError(
            f"unsupported parameter annotation {text!r}; allowed: int, float, str, bool, dict, list[T] and T | None"
        )

    return build(ast.parse(text, mode="eval").body)


def _union_args(hint):
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else None


def conforms(value, hint) -> bool:
    """Whether ``value`` (as YAML or Python gives it) has type ``hint``; an int is a float, a bool is not an int."""
    if (args := _union_args(hint)) is not None:
        return any(conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def describe(hint) -> str:
    """``hint`` in words: "an integer or null", "a list of numbers", …"""
    if (args := _union_args(hint)) is not None:
        return " or ".join(describe(a) for a in args)
    if typing.get_origin(hint) is list:
        return {int: "a list of integers", float: "a list of numbers", str: "a list of strings"}.get(
            typing.get_args(hint)[0], f"a list whose items are each {describe(typing.get_args(hint)[0])}"
        )
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a mapping",
        list: "a list",
        type(None): "null",
    }.get(hint, f"a {getattr(hint, '__name__', hint)}")


def check_type(name: str, value, hint, where: str = "parameter") -> None:
    if not conforms(value, hint):
        raise ParameterError(f"{where} {name}={value!r}: allowed is {describe(hint)}")


def _budgets(name, values):
    if not values:
        raise ParameterError(f"parameter {name}={values!r}: allowed is a non-empty list of budgets in (0, 1]")
    for v in values:
        try:
            check_budget(v)
        except ValueError as e:
            raise ParameterError(f"parameter {name}: {e}") from None


def _attacks(name, values):
    if not values:
        raise ParameterError(
            f"parameter {name}={values!r}: allowed is a non-empty list of attack names: {', '.join(ATTACKS.names())}"
        )
    for v in values:
        if v not in ATTACKS.names():
            raise ParameterError(f"parameter {name}: unknown attack {v!r}; allowed: {', '.join(ATTACKS.names())}")


def _schemes(name, values):
    if not values:
        raise ParameterError(
            f"parameter {name}={values!r}: allowed is a non-empty list of schemes such as fp, 1W, 4W, 8W, 4W4A"
        )
    for v in values:
        scheme_named(v)


def _regimes(name, values):
    if not values or not set(values) <= set(REGIMES):
        raise ParameterError(
            f"parameter {name}={values!r}: allowed is a non-empty list of regimes among {', '.join(REGIMES)}"
        )


def _pixels(name, value):
    if value not in PIXELS:
        raise ParameterError(f"parameter {name}={value!r}: allowed is one of {', '.join(PIXELS)}")


def _poison_path(name, value):
    if value is not None and not Path(value).exists():
        raise ParameterError(
            f"parameter {name}={value!r}: no such file or folder; allowed: a poison file (.npz, a "
            "folder of PNG files with labels.csv, a qlib PoisonSet) or null for notebook 07's own"
        )


# The notebooks' own parameters, by name: their type (the parameters cell must annotate it the same) and their check.
OWN = {
    "sweep_eps_d": (list[float], _budgets),
    "sweep_attacks": (list[str], _attacks),
    "poison_path": (str, _poison_path),  # annotated `str = None` in the cell: papermill reads no `str | None`
    "schemes": (list[str], _schemes),
    "regimes": (list[str], _regimes),
    "pixels": (str, _pixels),
}


def check_own(name: str, value) -> None:
    """Check a value of one of the notebooks' own parameters (see ``OWN``)."""
    hint, check = OWN[name]
    if value is not None:  # null: each check says whether it is allowed (poison_path's: notebook 07's own poison)
        check_type(name, value, hint)
    check(name, value)
