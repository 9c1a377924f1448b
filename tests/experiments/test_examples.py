"""The cluster recipe in examples/ is importable without starting anything."""

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "slurm_dask.py"


def test_slurm_script_does_nothing_on_import_and_defaults_to_a_loopback_dashboard(monkeypatch):
    ns = runpy.run_path(str(SCRIPT), run_name="imported")  # the __main__ guard: no cluster, no jobs
    captured = {}

    class FakeCluster:  # stands in for dask_jobqueue.SLURMCluster: records what the script asks
        def __init__(self, **kw):
            captured.update(kw)

    import sys
    import types

    monkeypatch.setitem(sys.modules, "dask_jobqueue", types.SimpleNamespace(SLURMCluster=FakeCluster))
    args = ns["parser"]().parse_args(["spec.toml", "--out", "run.zarr"])  # the defaults
    ns["build_cluster"](args)
    assert captured["worker_extra_args"] == ["--resources", "GPU=1"]
    assert "--gres=gpu:1" in captured["job_extra_directives"]
    assert captured["scheduler_options"]["dashboard_address"].startswith("127.0.0.1")
    with pytest.raises(SystemExit):
        ns["main"](["--help"])
    text = SCRIPT.read_text()
    assert 'resources={"GPU": 1}' in text and 'if __name__ == "__main__":' in text
