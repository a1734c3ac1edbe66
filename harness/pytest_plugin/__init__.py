"""pytest plugin: attnbench cells as pytest-benchmark benchmarks.

Loaded by the `pytest11` entry point `harness.pytest_plugin` once attnbench is
installed, or with `-p harness.pytest_plugin` from the repository root. It does
nothing unless asked:

  pytest --attnbench-suite suites/smoke.toml --benchmark-json out.json

collects every cell of the suite (and no test file, unless paths are given too) as
one benchmark item named after its Case, timed by `benchmark.pedantic` with the
backend's sync inside the timed call and warm-up rounds after a first, compiling
call (harness/pytest_plugin/pedantic.py), the rest measured by the worker's own steps
(harness/run/cell.py); extra_info holds the Case, FLOPs, TFLOP/s, % of peak, peak
memory, first-call time and the correctness verdict. A cell this machine
cannot run is skipped with the reason; a cell that computes the wrong thing fails
after its benchmark is recorded. Frameworks load in the pytest process itself, so
run one framework per process: `--attnbench-backend torch`, then jax, then
tensorflow, each with its own --benchmark-json.

The `attn_benchmark(fn, case)` fixture does the same for a user's own attention
callable: fn(q, k, v) on the Case's inputs, on its device, in the framework the
Case's backend names, checked against the float64 reference.

Nothing here imports a framework or the heavier harness modules at import time:
the plugin is loaded in every pytest session of an environment that has attnbench.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# GPU numbering as NVML's, no JAX preallocation, TF memory growth: set before any
# framework is imported in this process, as the runner sets them for a worker.
_ENVIRONMENT = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def pytest_addoption(parser) -> None:
    group = parser.getgroup("attnbench", "attnbench cells as pytest-benchmark benchmarks")
    group.addoption("--attnbench-suite", metavar="SUITE",
                    help="benchmark every cell of this attnbench suite (TOML); with no test "
                         "paths given, only those cells are collected")
    group.addoption("--attnbench-backend", action="append", metavar="B",
                    help="only this backend's cells (repeatable); frameworks load in the "
                         "pytest process, so one per process is safest")
    group.addoption("--attnbench-device", action="append", metavar="DEV",
                    help="only cells on this device: cpu, cuda, cuda:N, gpu:TYPE")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "attnbench: a cell of an attnbench suite")
    suite = config.getoption("attnbench_suite", None)
    if not suite:
        return
    path = Path(suite)
    if not path.is_file():
        raise pytest.UsageError(f"--attnbench-suite {suite}: no such file")
    for key, value in _ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    resolved = str(path.resolve())
    source = getattr(config, "args_source", None)
    if source is None or source.name != "ARGS":       # testpaths: the suite alone
        config.args = [resolved]
    elif resolved not in [str(Path(a.split("::")[0]).resolve()) for a in config.args]:
        config.args.append(resolved)


def pytest_collect_file(file_path: Path, parent):
    suite = parent.config.getoption("attnbench_suite", None)
    if suite and file_path.resolve() == Path(suite).resolve():
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    """A suite file as a collector: one benchmark item per planned cell."""

    def collect(self):
        from harness.measure import devices
        from harness.run.plan import planned_cases
        from harness.run.suite import SuiteError, load_suite
        try:
            suite = load_suite(self.path)
        except SuiteError as exc:
            raise self.CollectError(str(exc)) from None
        gpus, _ = devices.discover()
        config = self.config
        cases = planned_cases(suite, config.getoption("attnbench_backend"), gpus,
                              config.getoption("attnbench_device"))
        for case in cases:
            item = pytest.Function.from_parent(self, name=case.name,
                                               callobj=_cell_test(case, suite.measure))
            item.add_marker("attnbench")
            yield item

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def _cell_test(case, measure):
    def test_attnbench_cell(benchmark, attnbench_session):
        attnbench_session.run_cell(benchmark, case, measure)
    return test_attnbench_cell


@pytest.fixture(scope="session")
def attnbench_session():
    """What the cells of one pytest session share: loaded backends, references,
    a scratch folder for compile caches (cold, as in a worker)."""
    session = _Session()
    yield session
    session.close()


@pytest.fixture
def attn_benchmark(benchmark, attnbench_session):
    """attn_benchmark(fn, case, *, layout="bnhd", measure=None, check=True) -> dict:
    time fn(q, k, v) on the Case's inputs, on its device, as the Case's backend's
    framework's arrays ((B, N, H, D), or (B, H, N, D) with layout="bhnd"); the
    output must be the attention core's, causal when case.causal (aligned bottom-
    right where q_len < seq_len, windowed with case.window, and in a padded batch
    blind to each sequence's keys past harness.spec.padding.key_lengths(case)). Same sync,
    warm-up and extra columns as a suite cell; fails when the output is wrong
    (check=False only records the verdict). Returns the extra columns."""
    def run(fn, case, *, layout: str = "bnhd", measure=None, check: bool = True) -> dict:
        from harness.run.suite import Measure
        return attnbench_session.run_callable(benchmark, fn, case, layout,
                                              measure or Measure(), check)
    return run


class _Session:
    def __init__(self):
        from harness.correctness.judging import References
        from harness.measure import devices
        from harness.measure.memory import pin_allocator
        for key, value in _ENVIRONMENT.items():   # the fixture alone needs them too
            os.environ.setdefault(key, value)
        self.gpus, self.nvml_error = devices.discover()
        self.refs = References()
        self.scratch = tempfile.mkdtemp(prefix="attnbench-pytest-")
        self.backends: dict[str, object] = {}
        pin_allocator()                  # the worker's malloc policy (harness/measure/memory.py)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def backend(self, name: str, device: str):
        """The backend, its framework imported after its settings; skip if missing."""
        if name not in self.backends:
            from backends import load_backend
            from harness.run.environment import in_process_environment
            os.environ.update(in_process_environment(name, device, self.scratch))
            try:
                self.backends[name] = load_backend(name)
            except ImportError as exc:
                self.backends[name] = f"{name} is not installed ({exc})"
        backend = self.backends[name]
        if isinstance(backend, str):
            pytest.skip(backend)
        return backend

    def refuse(self, case) -> None:
        """Skip, with the reason, a cell this machine cannot run (the run's refusal
        chain, harness.run.plan.refusal)."""
        from harness.run.plan import refusal
        refused = refusal(case, self.gpus, self.nvml_error)
        if refused:
            pytest.skip(refused[1])

    def run_cell(self, benchmark, case, measure) -> None:
        from harness.correctness.judging import rerun_on
        from harness.pytest_plugin import pedantic
        from harness.results.pytest_benchmark_format import group_name
        from harness.run import cell
        from harness.spec.weights import make_inputs, make_weights
        self.refuse(case)
        backend = self.backend(case.backend, case.device)
        reason = backend.unsupported(case)
        if reason:
            pytest.skip(reason)
        weights, inputs = make_weights(case), make_inputs(case)
        benchmark.group = group_name(case)
        # the prepared step is passed inline: freed before a sampled check asks again
        measured = cell.measure_step(backend, case, backend.prepare(case, weights, inputs),
                                     pedantic.loop(benchmark, measure),
                                     flush_l2=measure.flush_l2, profile=measure.device_time)
        self._record(benchmark, case, measured, weights, inputs, True,
                     rerun_on(backend, case, weights), backend_version=backend.version())

    def run_callable(self, benchmark, fn, case, layout: str, measure, check: bool) -> dict:
        from harness.measure import devices
        from harness.pytest_plugin import pedantic
        from harness.pytest_plugin.user_call import UserCall
        from harness.results.pytest_benchmark_format import group_name
        from harness.run import cell
        from harness.spec.weights import make_inputs, make_weights
        if case.workload != "attention" or case.mode != "forward":
            raise ValueError("attn_benchmark times an attention core's forward call: give a "
                             "Case with workload='attention' and mode='forward'")
        if layout not in ("bnhd", "bhnd"):
            raise ValueError(f"layout must be 'bnhd' or 'bhnd', not {layout!r}")
        reason = devices.unavailable(case.device, self.gpus, self.nvml_error)
        if reason:
            pytest.skip(reason)
        backend = self.backend(case.backend, case.device)
        weights, inputs = make_weights(case), make_inputs(case)
        benchmark.group = group_name(case)
        measured = cell.measure_step(backend, case, UserCall(fn, case, inputs, layout),
                                     pedantic.loop(benchmark, measure))
        out, expected = measured.got["out"], inputs["q"].shape
        if out.shape != expected:
            pytest.fail(f"attn_benchmark: {fn!r} returned shape {out.shape}, expected "
                        f"{expected} ({layout})")
        return self._record(benchmark, case, measured, weights, inputs, check)

    def _record(self, benchmark, case, measured, weights, inputs, check, rerun=None,
                **more) -> dict:
        """The cell's extra_info: where it ran, the measured columns and the
        verdict (harness.run.cell.finish); fails a wrong result after recording it."""
        from harness.run import cell
        from harness.run.rows import case_columns
        extra = case_columns(case, self.gpus)
        extra = {**extra, **more, **cell.finish(case, measured, extra["device_name"], weights,
                                                inputs, self.refs, rerun)}
        benchmark.extra_info.update({k: _plain(v) for k, v in extra.items()})
        if check and extra.get("correct") is False:
            pytest.fail(f"{case.name} computes the wrong thing: {extra['err_tensor']} is "
                        f"{extra['err_ratio']:.3g}x the error of the reference in "
                        f"{case.dtype} (limit 2); its benchmark is recorded")
        return extra


def _plain(value):
    """JSON-ready: NumPy scalars as Python numbers."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) \
        else value
