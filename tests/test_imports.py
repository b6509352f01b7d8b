"""Imports go one way: qlib's module graph has no circle, counting imports inside functions, and a function imports
only an optional dependency (one that a machine may lack: Ray, torchao, papermill and nbconvert on a GPU box,
torchvision's downloaders), never one of qlib's modules."""

import ast
from pathlib import Path

QLIB = Path(__file__).resolve().parent.parent / "qlib"
OPTIONAL = {"ray", "torchao", "papermill", "nbconvert", "torchvision"}  # imported where used, each with its reason


def modules() -> dict[str, Path]:
    out = {}
    for path in QLIB.rglob("*.py"):
        parts = list(path.relative_to(QLIB.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, node: ast.AST, known: dict) -> list[str]:
    """The qlib modules an import statement in module ``name`` (file ``path``) names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = node.module or ""
    if node.level:
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        if f"{base}.{alias.name}" in known:
            out.append(f"{base}.{alias.name}")
        elif base in known:
            out.append(base)
    return out


def graph() -> dict[str, set[str]]:
    """Module → the qlib modules it imports anywhere in its file, with the packages an import runs on the way (a
    module's own packages excepted: they are running already)."""
    known, edges = modules(), {}
    for name, path in known.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported(name, path, node, known):
                    parts = target.split(".")
                    targets |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        own = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
        edges[name] = {t for t in targets if t in known and t not in own}
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_module_graph_has_no_circle():
    edges = graph()
    assert len(edges) > 40 and "qlib.cells" in edges["qlib.experiments.verdicts"]
    assert circles(edges) == []


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_a_function_imports_only_an_optional_dependency():
    inner = []
    for name, path in modules().items():
        for f in ast.walk(ast.parse(path.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(f):
                    if isinstance(node, ast.Import):
                        inner += [
                            f"{name}.{f.name}: {a.name}" for a in node.names if a.name.split(".")[0] not in OPTIONAL
                        ]
                    elif isinstance(node, ast.ImportFrom) and (
                        node.level or (node.module or "").split(".")[0] not in OPTIONAL
                    ):
                        inner.append(f"{name}.{f.name}: {'.' * node.level}{node.module or ''}")
    assert inner == []
