"""Look-up by name, timm-style: ``REGISTRY.get("cnn")`` or a clear error listing the known names."""


class Registry:
    """A named table of constructors; unknown names raise ``ValueError`` naming the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items = {}

    def register(self, name: str):
        def add(fn):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = fn
            return fn

        return add

    def get(self, name: str):
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)
