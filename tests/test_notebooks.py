"""Notebooks are committed thin and clean: no outputs, a tagged parameters cell first, the qlib kernel."""

import re
from pathlib import Path

import nbformat
import pytest

from qlib.presets import FIELDS

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert 'os.environ.get("QLIB_PRESET", "cpu")' in first.source
    for field in FIELDS:  # every preset field can be set by papermill -p / -f
        assert re.search(rf"^{field} = ", first.source, re.M), f"{path.name}: parameters cell lacks {field}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_names_the_qlib_kernel_and_has_a_headline(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "qlib"
    assert any("headline" in c.metadata.get("tags", []) for c in nb.cells)
