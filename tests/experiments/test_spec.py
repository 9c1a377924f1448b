import pytest

import experiments


def base(**over):
    d = dict(task={"kind": "teacher_student"}, model={"kind": "rf_ridge"},
             grid={"D": [10, 20], "P": [10], "seed": [0]})
    d.update(over)
    return d


@pytest.mark.parametrize("change, match", [
    (dict(task={"kind": "imagenet"}), "unknown task kind 'imagenet'; expected one of: teacher_student"),
    (dict(model={"kind": "svm"}), "unknown model kind 'svm'"),
    (dict(grid={"D": [10], "seed": [0]}), r"grid is missing dims \['P'\]"),
    (dict(grid={"D": [10], "P": [5], "seed": [0], "width": [3]}), r"grid dims \['width'\] are not used"),
    (dict(grid={"D": [20, 10], "P": [5], "seed": [0]}), r"grid\['D'\] must be strictly increasing"),
    (dict(grid={"D": [10.5], "P": [5], "seed": [0]}), r"grid\['D'\] must hold integers"),
    (dict(grid={"D": [0, 10], "P": [5], "seed": [0]}), r"grid\['D'\] values must be >= 1"),
    (dict(grid={"D": [], "P": [5], "seed": [0]}), r"grid\['D'\] must be a non-empty list"),
    (dict(task={"kind": "teacher_student", "alpah": 1}), r"unknown teacher_student task parameters \['alpah'\]"),
    (dict(train={"lr": 0.1}), r"unknown train settings \['lr'\]"),
])
def test_invalid_specs_are_rejected_up_front(change, match):
    with pytest.raises(ValueError, match=match):
        experiments.SweepSpec(**base(**change))


def test_network_specs_need_a_size_dimension():
    with pytest.raises(ValueError, match="exactly one of grid dims 'width' or 'P'.*got none"):
        experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "mlp"}, grid={"D": [10], "seed": [0]})
    with pytest.raises(ValueError, match="needs image inputs"):
        experiments.SweepSpec(task={"kind": "teacher_student"}, model={"kind": "cnn"},
                              grid={"D": [10], "seed": [0], "width": [4]})


def test_toml_round_trip_and_structure(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("""
name = "x"
n_test = 300
[task]
kind = "digits"
[model]
kind = "mlp"
depth = 2
[grid]
D = [50, 100]
width = [16, 32]
seed = [0, 1, 2]
[train]
steps = 100
""")
    s = experiments.SweepSpec.from_toml(p)
    # networks: every D, width and seed of a unit train in shared device programs
    assert s.unit_dims == ("D", "width", "seed") and s.outer_dims == ()
    assert len(s.units()) == 1 and s.cells_per_unit == 12 and s.n_cells == 12
    assert experiments.SweepSpec.from_dict(s.to_dict()) == s
    assert s.fingerprint == experiments.SweepSpec.from_dict({**s.to_dict(), "name": "other"}).fingerprint
    with pytest.raises(ValueError, match="invalid TOML"):
        experiments.SweepSpec.from_toml("[task\nkind=")
    with pytest.raises(ValueError, match="needs a \\[grid\\] table"):
        experiments.SweepSpec.from_dict({"task": {"kind": "digits"}, "model": {"kind": "krr"}})
