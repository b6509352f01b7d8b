"""The pipeline: graph resolution, and every experiment's cells as a checked graph (tests/test_executors.py computes
them: each cell exactly its own entry and its declared units, under every executor)."""

import pytest

from qlib import cells
from qlib.experiments import NOTEBOOKS, planned
from qlib.pipeline import Cell, GraphError, graph
from qlib.presets import load_preset


def _value(cell: Cell):
    return cell.key["name"]


def toy(name: str, *inputs: Cell) -> Cell:
    return Cell("toy", {"name": name}, _value, {}, inputs)


def test_graph_lists_every_input_once_before_its_readers():
    a = toy("a")
    b, c = toy("b", a), toy("c", a)
    d = toy("d", b, c, a)
    order = graph([d, toy("b", a)])
    assert [x.key["name"] for x in order] == ["a", "b", "c", "d"]


def test_a_cycle_is_refused_naming_it():
    a = toy("a")
    b = toy("b", a)
    with pytest.raises(GraphError, match="cycle: toy/.* -> toy/.* -> toy/"):
        graph([toy("a", b)])  # the same id as a, reading b, which reads a


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_experiment_declares_a_graph_of_versioned_cells(notebook, preset):
    order = graph(planned(notebook, load_preset(preset)))
    seen = set()
    for cell in order:
        assert all(i.id in seen for i in cell.inputs), f"{cell} reads a cell the graph did not list before it"
        assert cell.kind in cells.VERSIONS and cell.key["code"] == cells.VERSIONS[cell.kind]
        seen.add(cell.id)
    assert len(seen) == len(order)
