import pytest
import yaml

from qlib.presets import FIELDS, PRESET_DIR, from_notebook, load_preset, preset_names


def test_three_presets_load_and_validate():
    assert preset_names() == ["cifar-cpu", "cpu", "paper", "smoke"]
    for name in preset_names():
        assert load_preset(name).preset == name


def test_paper_preset_is_the_papers_setting():
    p = load_preset("paper")
    assert (p.dataset, p.model, p.epochs, p.width, p.train_size) == ("cifar10", "resnet18", 100, 1.0, None)
    assert (p.eps_d, p.eps_w) == (0.03, 0.5)
    gc, tgda = p.attacks["gc"], p.attacks["tgda"]
    assert (gc["epochs"], tgda["epochs"], tgda["follower_steps"], tgda["cg_iters"]) == (2000, 200, 20, 16)


def test_cpu_preset_is_the_default_scale_down():
    p = load_preset("cpu")
    assert p.dataset == "fashion-mnist" and len(p.seeds) >= 3


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'gpu'; valid: cifar-cpu, cpu, paper, smoke"):
        load_preset("gpu")


def test_unknown_key_lists_valid_ones():
    with pytest.raises(
        ValueError, match=r"unknown preset field 'epoch' in overrides \(did you mean epochs.*valid: preset, dataset"
    ):
        load_preset("cpu", epoch=3)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("epochs", 0, "epochs"),
        ("seeds", [], "seeds"),
        ("seeds", [0, 0], r"seeds=\[0, 0\]: allowed is a non-empty list of distinct"),
        ("dataset", "mnist", "unknown dataset"),
        ("model", "vgg", "unknown model"),
        ("lr", -1, "lr"),
        ("device", "tpu", "device"),
        ("train_size", 0, "train_size"),
        ("eps_d", 1.5, r"eps_d=1.5: allowed is a number in \(0, 1\]"),
        ("eps_d", 0, r"\(0, 1\]"),
        ("eps_w", 0, "eps_w=0: allowed is a positive finite number"),
        ("epochs", True, "epochs=True: allowed is an integer"),
        ("weight_decay", -1, "weight_decay=-1"),
        ("augment", "yes", "augment='yes': allowed is true or false"),
        ("attacks", {"gc": {"optimizer": "sgd"}}, "attacks.gc.optimizer='sgd': allowed is one of adam, gd"),
        ("attacks", {"gc": {"epochs": 0}}, "attacks.gc.epochs=0: allowed is a positive integer"),
        ("attacks", {"tgda": {"cg_iters": 2.5}}, r"attacks.tgda.cg_iters=2.5: allowed is an integer"),
        ("attacks", {"gc": {"lr": 0}}, "attacks.gc.lr=0: allowed is a positive finite number"),
        ("attacks", {"tgda": {"leader_lr": -1}}, "attacks.tgda.leader_lr=-1"),
        ("attacks", {"gc_q": {"epochs": 3}}, "gc_q runs with gc's settings; set them under attacks.gc"),
        ("attacks", {"gcc": {}}, r"unknown attack 'gcc' in preset field attacks \(did you mean gc"),
        ("attacks", {"em": {"bogus": 1}}, r"attacks.em: unknown setting\(s\) \['bogus'\]; valid: batch_size"),
        ("attacks", {"gc": {"target": 1}}, r"attacks.gc: unknown setting\(s\) \['target'\]"),
        ("attacks", {"gc": 3}, "attacks.gc=3: allowed is a mapping"),
        ("attacks", [1], "attacks=\\[1\\]: allowed is a mapping"),
    ],
)
def test_bad_values_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        load_preset("smoke", **{field: value})


def test_notebook_parameters_override_and_none_keeps():
    ns = {"epochs": 7, "lr": None, "unrelated": 1}
    p = from_notebook("smoke", ns)
    assert p.epochs == 7 and p.lr == load_preset("smoke").lr


def test_yaml_files_hold_every_field():
    for path in PRESET_DIR.glob("*.yaml"):
        assert tuple(yaml.safe_load(path.read_text())) == FIELDS, path.name
