"""Notebooks are committed thin and clean: no outputs, a tagged parameters cell first, the qlib kernel."""

import ast
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


PRESET_LINE = 'preset: str = os.environ.get("QLIB_PRESET", "cpu")'
PARAMETER = re.compile(r"^(?P<name>\w+): (?P<hint>[^=]+?) = (?P<value>.+?)  # (?P<help>.+) \(cpu: (?P<cpu>.+)\)$")


def parameter_lines(source: str) -> list[str]:
    """The parameters cell's lines that are neither blank, a comment nor an import."""
    return [line for line in source.splitlines() if line.strip() and not line.startswith(("#", "import "))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_parameters_cell(path):
    """The parameters cell: ``preset`` first (from QLIB_PRESET), then one typed line per parameter, each with a help
    comment naming the ``cpu`` preset's value: a preset field this notebook uses (None keeps the preset's value,
    the type is the field's) or one of the notebook's own (qlib.params.OWN, its default the cpu value)."""
    import dataclasses
    import typing

    import yaml

    from qlib.params import OWN, parse_hint
    from qlib.presets import Preset, read_yaml

    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    lines = parameter_lines(first.source)
    assert lines[0].startswith(PRESET_LINE + "  # "), (
        f"{path.name}: the first parameter is not the preset: {lines[0]!r}"
    )
    cpu, hints, seen = read_yaml("cpu"), typing.get_type_hints(Preset), set()
    for line in lines[1:]:
        match = PARAMETER.match(line)
        assert match, f"{path.name}: not a typed parameter with a help comment naming the cpu value: {line!r}"
        name, hint, said = match["name"], parse_hint(match["hint"]), yaml.safe_load(match["cpu"])
        assert name not in seen and name != "preset", f"{path.name}: {name} is set twice"
        seen.add(name)
        assert match["help"].strip(), f"{path.name}: {name} has no help"
        if name in FIELDS:
            assert match["value"] == "None", f"{path.name}: {name} should be None (keep the preset's value)"
            field = dict if dataclasses.is_dataclass(hints[name]) else hints[name]  # blocks of settings: a mapping
            assert hint in (field, *[a for a in typing.get_args(field) if a is not type(None)]), (
                f"{path.name}: {name} is annotated {match['hint']}, the preset field is {field}"
            )
            if isinstance(cpu[name], dict):  # the entries this notebook reads; a long one abbreviated to "…"
                assert (
                    said and all(v in ("…", cpu[name].get(k)) for k, v in said.items()) and set(said) <= set(cpu[name])
                ), f"{path.name}: {name}'s cpu value says {said}, cpu.yaml {cpu[name]}"
            else:
                assert said == cpu[name], (
                    f"{path.name}: {name}'s comment says cpu: {said!r}, cpu.yaml has {cpu[name]!r}"
                )
        else:
            assert name in OWN, f"{path.name}: {name} is neither a preset field nor one of qlib.params.OWN"
            assert hint == OWN[name][0], f"{path.name}: {name} is annotated {match['hint']}"
            assert ast.literal_eval(match["value"]) == said, f"{path.name}: {name}'s default is not its cpu value"
    assert seen & set(FIELDS), f"{path.name}: the parameters cell sets no preset field"


# A valid value other than the smoke preset's, per preset field.
ALTERED = {
    "dataset": "cifar10",
    "model": "resnet18",
    "width": 0.5,
    "train_size": 800,
    "test_size": 400,
    "epochs": 2,
    "batch_size": 50,
    "lr": 0.1,
    "weight_decay": 0.0,
    "augment": True,
    "seeds": [1],
    "device": "cpu",
    "deterministic": True,
    "eps_d": 0.1,
    "eps_w": 0.02,
    "attacks": {
        "gc": {"epochs": 4},
        "tgda": {"epochs": 3},
        "em": {"train_steps": 1},
        "gradient_matching": {"steps": 3},
    },
    "keep_fp": [],
    "experiments": {
        "targeted": {"targets": 2, "seeds": [1], "eps_d": 0.1, "train_size": 500, "epochs": 2, "bits": [1, 4]},
        "strength": {"seeds": [0, 1, 2], "choice_seeds": [1], "claim_seeds": [5]},
        "unlearnable": {"train_size": 500},
        "ablation": {"lsq_bits": [4]},
        "backdoors": {"budgets": {"badnets": 0.1}},
        "formats": {"schemes": ["4W:torchao-g16"], "seeds": [1]},
    },
    "primary": {
        "pilot_seeds": [0, 1],
        "first_seed": 200,
        "group": 2,
        "cap": 2,
        "delta": 0.5,
        "comparisons": [{"id": "x", "claim": 6, "attack": "label_flip", "better": "QAT 1W bnn", "worse": "FP"}],
    },
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_preset_field_that_changes_a_notebooks_cells_is_its_parameter(path):
    """A notebook lists only the preset fields it uses, but every one it uses: a field its parameters cell leaves
    out changes none of the cells the notebook computes (their ids are their cache keys). The same per experiment
    block: a block its ``experiments`` parameter does not name changes none of them."""
    from dataclasses import replace

    import yaml

    from qlib.experiments import planned
    from qlib.pipeline import graph
    from qlib.presets import load_preset
    from qlib.settings import BLOCKS, merge_experiments

    assert set(ALTERED) == set(FIELDS) - {"preset"}
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    lines = {line.split(":", 1)[0]: line for line in parameter_lines(first.source)}
    cfg = load_preset("smoke")
    ids = lambda c: {cell.id for cell in graph(planned(path.stem, c))}
    base = ids(cfg)
    assert ids(replace(cfg, epochs=ALTERED["epochs"])) != base  # the comparison can tell
    for name, value in ALTERED.items():
        if name == "experiments":
            continue
        assert value != getattr(cfg, name), name
        if name not in lines:
            assert ids(replace(cfg, **{name: value})) == base, (
                f"{path.name} uses preset field {name} but does not list it"
            )
    named = set(yaml.safe_load(PARAMETER.match(lines["experiments"])["cpu"])) if "experiments" in lines else set()
    assert set(ALTERED["experiments"]) == set(BLOCKS)
    for block, values in ALTERED["experiments"].items():
        altered = replace(cfg, experiments=merge_experiments(cfg.experiments, {block: values}))
        assert altered.experiments != cfg.experiments, block
        if block not in named:
            assert ids(altered) == base, f"{path.name} uses experiments.{block} but its parameter does not name it"


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
    assert shown.strip() == "qlib: error: unknown preset 'gpu' (from QLIB_PRESET); valid: cifar-cpu, cpu, paper, smoke"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_own_parameters_are_annotated_and_checked(path):
    """papermill reads every parameter of the cell (so ``python -m qlib run -p`` takes each), and a parameter beyond
    the preset's fields has a check in qlib.params.OWN and the same type in the cell's annotation, which is what
    papermill reports and ``python -m qlib run`` checks -p and -f values against."""
    import papermill

    from qlib.params import OWN, parse_hint

    declared = papermill.inspect_notebook(str(path))
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    in_cell = [line.split(":", 1)[0] for line in parameter_lines(first.source)]
    assert in_cell == list(declared), (
        f"{path.name}: papermill reads {list(declared)} of the cell's {in_cell} (it skips an annotation it cannot "
        "parse, such as `str | None`: write `str = None`), so `qlib run -p` would refuse the others"
    )
    for name, p in declared.items():
        if name not in FIELDS:
            assert name in OWN, f"{path.name}: parameter {name} has no check in qlib.params.OWN"
            assert parse_hint(p["inferred_type_name"]) == OWN[name][0], (
                f"{path.name}: {name} is annotated {p['inferred_type_name']}"
            )
