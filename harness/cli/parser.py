"""The attnbench command line: one parser, a sub-parser per command, each with its
flags, help and examples (docs/design.md, "The command line and the Python surface")."""
from __future__ import annotations

import argparse

from harness.cli.examples import EXAMPLES
from harness.run import check
from harness.run.suite import DEVICE_RE
from harness.spec import DTYPES, MODES, WORKLOADS
from harness.spec.catalog import BACKENDS

DESCRIPTION = """\
attnbench: one Transformer spec (attention core, multi-head attention, pre-LN
block, block stack) in PyTorch, TensorFlow and JAX, measured the same way on
every device and checked against one float64 reference."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    """The whole command line: `attnbench COMMAND ...`."""
    top = _Parser(prog="attnbench", description=DESCRIPTION,
                  formatter_class=argparse.RawDescriptionHelpFormatter,
                  epilog="example:\n  attnbench run suites/smoke.toml\n\n"
                         "`attnbench COMMAND --help` explains each command.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_run(sub)
    _add_check(sub)
    _add_env(sub)
    _add_report(sub)
    _add_compare(sub)
    _add_history(sub)
    _add_publish(sub)
    _add_export(sub)
    return top


def _add_env(sub) -> None:
    env = _command(sub, "env", "Show this machine: host, CPU, GPUs, framework versions, "
                               "peaks; --calibrate measures a CPU's own roof.")
    env.add_argument("--calibrate", action="store_true",
                     help="measure this CPU's roof (a large matmul per dtype and a stream "
                          "copy in every installed framework, a minute or two) and keep it, "
                          "so CPU cells get pct_peak and pct_peak_bw against their dtype")
    env.add_argument("--threads", type=_positive_int, metavar="N",
                     help="threads to calibrate with: those `run --threads N` will use "
                          "(default: all this process may use, as run's default)")
    env.add_argument("--size", type=_positive_int, default=4096, metavar="N",
                     help="matmul size, N x N by N x N (default 4096)")


def _command(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    # No abbreviations: `run --version X` must not be read as --versions, which
    # passes the rest on to runs that would read it the same way.
    return sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          allow_abbrev=False)


def _add_run(sub) -> None:
    run = _command(sub, "run", "Run a suite (a TOML grid of cells) and write a run folder: "
                               "results.jsonl, results.csv, env.json, report.md.")
    run.add_argument("suite", metavar="SUITE", help="suite file, e.g. suites/default.toml")
    run.add_argument("--out", metavar="DIR", help="run folder, made if missing (default: "
                                                   "results/<run_id>/)")
    run.add_argument("--resume", metavar="DIR",
                     help="continue the run in DIR: rerun every planned cell that is not "
                          "already ok there, appending to the same results; DIR must hold "
                          "a run of this suite (same name, grid and [measure])")
    run.add_argument("--resume-any-suite", action="store_true",
                     help="with --resume: continue DIR even if another suite, or an edited "
                          "one, wrote it; the cells are recorded under DIR's suite name")
    run.add_argument("--backend", action="extend", nargs="+", choices=BACKENDS, metavar="B",
                     help=f"only these backends ({', '.join(BACKENDS)})")
    run.add_argument("--workload", action="extend", nargs="+", choices=WORKLOADS,
                     metavar="W", help=f"only these workloads ({', '.join(WORKLOADS)})")
    run.add_argument("--device", action="extend", nargs="+", type=_device, metavar="DEV",
                     help="only cells on these devices, after the suite's own are expanded: "
                          "cpu, cuda (every GPU), cuda:N, gpu:TYPE (every GPU whose name has "
                          "TYPE as a word, e.g. gpu:H100)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: worker processes on this machine (default); ray: Ray "
                          "tasks on a cluster, one GPU each by GPU type (pip install "
                          "'attnbench[ray]')")
    run.add_argument("--address", metavar="ADDR",
                     help="with --executor ray: the cluster (e.g. 10.0.0.5:6379, or auto for "
                          "the one this machine has joined; default: RAY_ADDRESS if set, "
                          "else a new local Ray instance)")
    run.add_argument("--quiet-machine", type=_seconds, metavar="WAIT_S", dest="quiet_machine",
                     help="before each CPU batch, wait up to WAIT_S seconds for other "
                          "processes to leave its CPUs (cells timed beside them are marked "
                          "contended either way)")
    run.add_argument("--repeat", type=_positive_int, metavar="K",
                     help="run every batch K times, each in fresh worker processes, round "
                          "after round; a cell's row then gives the median of its K process "
                          "medians and how far apart they were (between_spread_pct), and "
                          "compare resamples processes before samples. K = 3 is enough to "
                          "see the spread (default: 1)")
    run.add_argument("--serial", action="store_true",
                     help="one worker at a time (default: one worker per GPU side by side, "
                          "then the CPU batches two at a time, timing in turn: each "
                          "stopped while the other times a cell)")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="CPU threads for every framework (default: all this process may use)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the planned cells per backend and device, which of them "
                          "this machine can run and why not; run nothing")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="with --dry-run, list every planned cell")
    run.add_argument("--versions", metavar="SPECS",
                     help="run the suite once per environment, e.g. jax==0.9.2,jax==0.10.2 "
                          "(pins of one environment joined by '+'), each a virtual "
                          "environment made on demand from the package index (kept in "
                          "ATTNBENCH_VENVS, default ~/.cache/attnbench-venvs); the runs go "
                          "to --out/NN-SPEC and their history to --out/history")
    _add_gate_options(run)
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bar or summary table, only the closing lines")


def _add_gate_options(run) -> None:
    run.add_argument("--no-gate", action="store_true",
                     help="skip the correctness gate: by default every configuration "
                          "(backend, variant, workload, mode, dtype, mask) is checked on "
                          "small shapes first, and the rows of one that fails are "
                          "recorded correct = false")
    run.add_argument("--no-cache", action="store_true",
                     help="check every configuration again and recompute every reference, "
                          "ignoring what earlier runs left in the cache (ATTNBENCH_CACHE, "
                          "by default ~/.cache/attnbench, at most ATTNBENCH_CACHE_MB = 2048 "
                          "MB); by default a gate verdict is reused while the case, the "
                          "backend's code, its framework's versions, the harness's "
                          "checking code and the worker's settings are unchanged")


def _add_check(sub) -> None:
    chk = _command(sub, "check", "Check every backend, variant, workload, dtype, mode and "
                                 "mask against the float64 reference (outputs and gradients) "
                                 "on small odd shapes, and backends against each other; print "
                                 "both matrices, write check.csv, pairs.csv and check.md; exit "
                                 "1 on any failure or disagreement.")
    chk.add_argument("--backend", action="extend", nargs="+", choices=BACKENDS, metavar="B",
                     help=f"only these backends ({', '.join(BACKENDS)})")
    chk.add_argument("--variant", action="extend", nargs="+", metavar="V",
                     help="only these variants (e.g. eager compile; `attnbench env` lists "
                          "them)")
    chk.add_argument("--dtype", action="extend", nargs="+", choices=DTYPES, metavar="D",
                     help=f"only these dtypes ({', '.join(DTYPES)})")
    chk.add_argument("--workload", action="extend", nargs="+", choices=WORKLOADS, metavar="W",
                     help=f"only these workloads ({', '.join(WORKLOADS)})")
    chk.add_argument("--mode", action="extend", nargs="+", choices=MODES, metavar="M",
                     help=f"only these modes ({', '.join(MODES)})")
    chk.add_argument("--device", default="cpu", metavar="DEV",
                     help="cpu (default) or cuda:N")
    chk.add_argument("--out", metavar="DIR", help="folder (default: results/check-<time>/)")
    chk.add_argument("--timeout-s", type=_positive_int, default=check.TIMEOUT_S, metavar="S",
                     help=f"seconds a case may take before its worker is replaced "
                          f"(default {check.TIMEOUT_S})")
    chk.add_argument("--threads", type=_positive_int, metavar="N",
                     help="CPU threads shared by the workers (default: all this process "
                          "may use)")
    chk.add_argument("--jobs", "-j", type=_positive_int, metavar="N",
                     help=f"workers at once (default: one per CPU thread, at most "
                          f"{check.MAX_JOBS}); nothing is timed, so they may share the CPUs")
    chk.add_argument("--all-shapes", action="store_true",
                     help="every combination at every check shape (default: a covering "
                          "design, each combination at one shape, every shape met)")
    chk.add_argument("--keep-outputs", action="store_true",
                     help="keep every case's tensors in DIR/outputs/ (default: removed "
                          "once backends are compared)")
    chk.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _add_report(sub) -> None:
    rep = _command(sub, "report", "Tables (markdown, CSV, HTML), plots and one self-contained "
                                  "report.html from one or more run folders, from any machines.")
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--out", metavar="DIR",
                     help="where to write (default: the run folder for one run, "
                          "results/report-<time>/ for several)")
    rep.add_argument("--baseline", metavar="LABEL",
                     help="'backend variant' the speedups are against (default: the one "
                          "measured in most cells)")


def _add_compare(sub) -> None:
    cmp = _command(sub, "compare", "Match the cells of two runs and call a regression only "
                                   "when the slowdown passes the threshold and the two runs' "
                                   "IQRs do not overlap; markdown on stdout; exit 1 on a "
                                   "regression.")
    cmp.add_argument("base", metavar="BASE_DIR")
    cmp.add_argument("new", metavar="NEW_DIR")
    cmp.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                     help="smallest slowdown, in percent, that can be a regression "
                          "(default 5)")
    cmp.add_argument("--out", metavar="FILE", help="also write the markdown to FILE")


def _add_history(sub) -> None:
    his = _command(sub, "history", "One time series per cell across runs (run folders, "
                                   "published folders, pytest-benchmark JSON), ordered by "
                                   "date; the steps in each, with what changed between the "
                                   "runs either side; history.html, history.md, steps.csv.")
    his.add_argument("runs", nargs="+", metavar="RUN",
                     help="run folders or files, or a folder of run folders")
    his.add_argument("--out", metavar="DIR",
                     help="where to write (default results/history-<time>/)")
    his.add_argument("--min-step", type=_percent, default=5.0, metavar="PCT",
                     help="smallest change of level, in percent, that can be a step "
                          "(default 5)")
    his.add_argument("--fail-on-step", type=_percent, metavar="PCT",
                     help="exit 1 when the newest run starts a slowdown of at least PCT "
                          "percent on any cell, and list those cells")


def _add_publish(sub) -> None:
    pub = _command(sub, "publish", "Write the report of a run into results/published/NAME/ "
                                   "and list it in results/published/README.md.")
    pub.add_argument("run", metavar="RUN_DIR")
    pub.add_argument("--name", required=True, metavar="NAME",
                     help="folder name under results/published/ (letters, digits, - _ .; "
                          "not starting with '.'; at most 100 characters)")


def _add_export(sub) -> None:
    exp = _command(sub, "export", "Write a run's measured cells in another tool's format: "
                                  "pytest-benchmark JSON, which `pytest-benchmark compare` "
                                  "reads (report and compare read such files back).")
    exp.add_argument("run", metavar="RUN_DIR")
    exp.add_argument("--format", required=True, choices=["pytest-benchmark"])
    exp.add_argument("--out", metavar="FILE",
                     help="where to write (default: RUN_DIR/pytest-benchmark.json)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a percentage above 0, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text}")
    return value


def _device(text: str) -> str:
    if not DEVICE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N, auto or gpu:TYPE, "
                                         f"got {text!r}")
    return text
