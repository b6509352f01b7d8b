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


def test_a_bad_preset_stops_a_notebook_with_one_line(monkeypatch):
    """Run by nbval or by hand, a notebook with a bad QLIB_PRESET fails at its first cell after the parameters with
    the error the command line gives, not a traceback."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("QLIB_PRESET", "gpu")
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    client = NotebookClient(nb, kernel_name="qlib", resources={"metadata": {"path": str(NOTEBOOKS[0].parent)}})
    with pytest.raises(CellExecutionError) as error:
        client.execute()
    assert error.value.ename == "ParameterError"
    shown = error.value.traceback.rsplit("------------------", 1)[1]  # what follows the failing cell's source
    assert shown.strip() == "qlib: error: unknown preset 'gpu' (from QLIB_PRESET); valid: cpu, paper, smoke"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_own_parameters_are_annotated_and_checked(path):
    """A parameter beyond the preset's fields has a check in qlib.params.OWN and the same type in the cell's
    annotation, which is what papermill reports and ``python -m qlib run`` checks -p and -f values against."""
    import papermill

    from qlib.params import OWN, parse_hint

    for name, p in papermill.inspect_notebook(str(path)).items():
        if name not in FIELDS:
            assert name in OWN, f"{path.name}: parameter {name} has no check in qlib.params.OWN"
            assert parse_hint(p["inferred_type_name"]) == OWN[name][0], f"{path.name}: {name} is annotated {p['inferred_type_name']}"
