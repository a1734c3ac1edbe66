"""`--executor ray` on a real local Ray cluster with two pretend GPUs of two types
(H100, A100): cells of each type run on tasks that asked for that type, a type the
cluster lacks is `unsupported`, a task whose process is killed is recorded and the
rest goes on, timeouts hold (the worker's own and the driver's), --resume
completes a run, and a CPU sweep gives the local executor's cells and statuses.

The backends are test plugins: fake_gpu_backend.py pretends to run on CUDA (its
`kernel` column names the CUDA_VISIBLE_DEVICES Ray gave the task), faulty_backend.py
plants failures on the CPU.
"""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from backends.base import REGISTRY
from harness.measure import devices
from harness.results import store
from harness.run import runner
from harness.run.executors import ray_cluster
from harness.run.suite import Measure, Suite
from harness.spec import Case
from tests.integration import fake_gpu_backend, faulty_backend
from tests.integration.runs_helpers import ROOT

ray = pytest.importorskip("ray")
PLUGINS = "tests.integration.faulty_backend,tests.integration.fake_gpu_backend"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    fixed = tmp_path_factory.mktemp("flaky") / "fixed"
    env = {"ATTNBENCH_BACKENDS": PLUGINS, "PYTHONPATH": str(ROOT),
           "ATTNBENCH_TEST_FIXED": str(fixed)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setitem(REGISTRY, "faulty", faulty_backend.INFO)
        mp.setitem(REGISTRY, "fakegpu", fake_gpu_backend.INFO)
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                 resources={"accelerator_type:H100": 1, "accelerator_type:A100": 1},
                 runtime_env={"env_vars": env})
        try:
            yield fixed
        finally:
            ray.shutdown()


def cell(backend: str, variant: str, device: str, n: int = 8) -> Case:
    return Case("ray", "attention", backend, variant, "forward", "float32", device,
                1, n, 2, 4, False)


def sweep(cases, timeout_s: float = 60) -> Suite:
    measure = Measure(min_run_ms=1, min_samples=2, warmup_ms=0, timeout_s=timeout_s)
    return Suite("ray", "", "ray.toml", measure, tuple(cases))


def rows_of(folder) -> dict[str, dict]:
    return {Case.from_dict(r).name: r for r in store.latest_rows(store.read_rows(folder))}


def test_each_gpu_type_runs_on_a_task_that_asked_for_it(cluster, tmp_path):
    cases = [cell("fakegpu", "exact", d, n) for d in ("gpu:H100", "gpu:A100")
             for n in (8, 16)] + [cell("fakegpu", "exact", "gpu:V100"),
                                  cell("faulty", "exact", "cpu")]
    folder = runner.run(sweep(cases), out=tmp_path / "run", quiet=True, gate_check=False,
                        executor="ray")
    rows = rows_of(folder)
    assert len(rows) == len(cases)
    for case in cases:
        r = rows[case.name]
        if case.device == "gpu:V100":
            assert r["status"] == "unsupported"
            assert "no V100" in r["reason"] and "A100" in r["reason"]
            continue
        assert r["status"] == "ok", r["reason"]
        assert r["executor"] == "ray" and r["ray_node_id"] and r["host"]
        assert r["device"] == case.device                 # the cell as planned
        if case.device == "cpu":      # the driver's threads, as far as a node has them
            threads = min(devices.cpu_threads(), 2)
            assert r["ray_resources"] == {"num_cpus": threads, "num_gpus": 0}
            assert r["ray_assigned"] == {"CPU": threads}
            continue
        gpu_type = case.device[4:]
        assert r["ray_resources"] == {"num_cpus": 1, "num_gpus": 1,
                                      "accelerator_type": gpu_type}
        assert set(r["ray_assigned"]) == {"CPU", "GPU", f"accelerator_type:{gpu_type}"}
        # The worker saw the one GPU Ray assigned to the task, as cuda:0.
        assert r["kernel"] == f"fake, CUDA_VISIBLE_DEVICES={r['node_device'][5:]}"
        assert r["correct"] is True


def test_a_killed_task_is_recorded_and_a_new_task_takes_the_rest(cluster, tmp_path):
    cases = [cell("fakegpu", "orphans", "gpu:H100"), cell("fakegpu", "exact", "gpu:H100")]
    folder = runner.run(sweep(cases), out=tmp_path / "run", quiet=True, gate_check=False,
                        executor="ray")
    rows = rows_of(folder)
    killed = rows[cases[0].name]
    assert killed["status"] == "error" and "Ray task died" in killed["reason"]
    assert rows[cases[1].name]["status"] == "ok"


# Limits sized for a loaded 2-core machine: an `exact` cell (well under a second
# unloaded) always fits in LIMIT_S, the 60 s `sleeps` cell never does; the driver's
# guard, moved to fire at LIMIT_S, leaves the worker's own clock LIMIT_S more.
LIMIT_S = 15


@pytest.mark.slow          # 35 s of timeouts; `make check-all` runs it (make test's 10 minutes)
def test_timeouts_hold_in_the_task_and_at_the_driver(cluster, tmp_path, monkeypatch):
    sleeps = [cell("faulty", "sleeps", "cpu"), cell("faulty", "exact", "cpu")]
    folder = runner.run(sweep(sleeps, timeout_s=LIMIT_S), out=tmp_path / "inner",
                        quiet=True, gate_check=False, executor="ray")
    rows = rows_of(folder)
    assert rows[sleeps[0].name]["status"] == "timeout"        # the worker's own clock
    assert f"timeout_s = {LIMIT_S}" in rows[sleeps[0].name]["reason"]
    assert rows[sleeps[1].name]["status"] == "ok"
    # The driver's guard, for a task that cannot keep its own time (a hung node):
    # made to fire first here, it cancels the task and records the cell.
    monkeypatch.setattr(ray_cluster, "GRACE_S", -LIMIT_S)
    folder = runner.run(sweep(sleeps, timeout_s=2 * LIMIT_S), out=tmp_path / "outer",
                        quiet=True, gate_check=False, executor="ray")
    rows = rows_of(folder)
    assert rows[sleeps[0].name]["status"] == "timeout"
    assert "Ray task was cancelled" in rows[sleeps[0].name]["reason"]
    assert rows[sleeps[1].name]["status"] == "ok"


def test_resume_completes_the_run(cluster, tmp_path):
    cases = [cell("fakegpu", "flaky", "gpu:A100"), cell("fakegpu", "exact", "gpu:A100")]
    folder = runner.run(sweep(cases), out=tmp_path / "run", quiet=True, gate_check=False,
                        executor="ray")
    assert rows_of(folder)[cases[0].name]["status"] == "error"
    cluster.touch()                                   # the flaky cell is fixed
    runner.run(sweep(cases), resume=folder, quiet=True, gate_check=False, executor="ray")
    assert {r["status"] for r in rows_of(folder).values()} == {"ok"}
    written = [Case.from_dict(r).name for r in store.read_rows(folder)]
    assert written.count(cases[1].name) == 1          # the ok cell was not rerun


def test_a_cpu_sweep_gives_the_local_executors_cells_and_statuses(cluster, tmp_path):
    cases = [cell("faulty", v, "cpu", n) for v in ("exact", "raises", "memory", "wrong")
             for n in (8, 16)]
    outcome = {}
    for executor in ("local", "ray"):
        folder = runner.run(sweep(cases), out=tmp_path / executor, quiet=True,
                            gate_check=False, executor=executor)
        outcome[executor] = {name: (r["status"], r.get("correct"))
                             for name, r in rows_of(folder).items()}
    assert outcome["ray"] == outcome["local"]
    assert {s for s, _ in outcome["ray"].values()} == {"ok", "error", "oom"}


def test_without_ray_the_executor_says_how_to_install_it(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[[sweep]]\nworkload = "attention"\nbackend = "torch"\nbatch = 1\n'
                     'seq_len = 8\nheads = 1\nhead_dim = 4\n')
    probe = ("import sys; sys.modules['ray'] = None; from harness.cli import main; "
             f"sys.exit(main(['run', {str(suite)!r}, '--executor', 'ray', '--no-gate']))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "attnbench: error: --executor ray needs Ray, which is not installed: "
        "pip install 'attnbench[ray]'"]


def test_a_task_that_raises_is_recorded_once_per_cell_not_resubmitted_forever(
        cluster, tmp_path, monkeypatch):
    """A backend the driver knows and the nodes do not (a plugin missing there):
    the task fails before any cell starts; each cell gets an error row, and the run
    ends."""
    from backends.base import BackendInfo, Variant
    ghost = BackendInfo(name="ghost", framework="numpy", module="nowhere",
                        settings="nowhere", variants=(Variant("v", "-", devices=("cpu",)),))
    monkeypatch.setitem(REGISTRY, "ghost", ghost)
    cases = [cell("ghost", "v", "cpu", n) for n in (8, 16)]
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("folder", runner.run(
        sweep(cases), out=tmp_path / "run", quiet=True, gate_check=False, executor="ray")),
        daemon=True)
    thread.start()
    thread.join(timeout=180)
    assert not thread.is_alive(), "the driver kept resubmitting a failing task"
    rows = rows_of(result["folder"])
    assert {r["status"] for r in rows.values()} == {"error"} and len(rows) == 2
    assert all("Ray task died" in r["reason"] for r in rows.values())
