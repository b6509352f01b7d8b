"""Look-up by name, timm-style: ``REGISTRY.get("cnn")`` or a clear error listing the known names."""

import difflib


class ParameterError(ValueError):
    """A bad parameter value or name. The message names the value and what is allowed; in a notebook the error
    shows as that one line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this in place of the traceback
        return [f"qlib: error: {self}"]


def unknown_name(kind: str, name, valid, where: str = "") -> ParameterError:
    """The error for an unknown ``name``: the closest valid names first, then all of them."""
    close = difflib.get_close_matches(str(name), list(valid), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ParameterError(f"unknown {kind} {name!r}{' in ' + where if where else ''}{hint}; valid: {', '.join(valid)}")


class Registry:
    """A named table of constructors, each with what it declared when it was registered (``meta``); an unknown name
    raises :class:`ParameterError` naming the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items = {}
        self._meta = {}

    def register(self, name: str, meta=None):
        def add(fn):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = fn
            self._meta[name] = meta
            return fn

        return add

    def meta(self, name: str):
        """What ``name`` declared when it was registered (None if nothing)."""
        self.get(name)
        return self._meta[name]

    def get(self, name: str):
        if name not in self._items:
            raise unknown_name(self.kind, name, self.names())
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)
