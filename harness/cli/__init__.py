"""The attnbench command (also `python -m harness` from the repository root)."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.spec.catalog import BACKENDS, PLUGIN_ERRORS, static_unsupported
from harness.run import check
from harness.correctness import grid
from harness.report import check_report
from harness.measure import devices
from harness.report import run_report
from harness.run import runner
from harness.results import store
from harness.results.store import StoreError
from harness.spec.errors import UserError
from harness.spec import DTYPES, WORKLOADS
from harness.run.suite import SuiteError, load_suite

DESCRIPTION = """\
attnbench: one Transformer spec (attention core, multi-head attention, pre-LN
block, block stack) in PyTorch, TensorFlow and JAX, measured the same way on
every device and checked against one float64 reference."""

EXAMPLES = {
    "run": """\
examples:
  attnbench run suites/smoke.toml                  # a one-minute sweep on this machine
  attnbench run suites/default.toml --backend torch --out results/mine
  attnbench run suites/default.toml --resume results/mine  # after Ctrl-C or a crash
  attnbench run suites/gpu.toml --dry-run          # what would run, and where
  attnbench run suites/gpu.toml --executor ray --address 10.0.0.5:6379   # on a cluster""",
    "check": """\
examples:
  attnbench check                                  # every backend this machine has
  attnbench check --backend jax --dtype float32 --workload mha
  attnbench check --all-shapes --jobs 4            # every case at every shape""",
    "env": """\
example:
  attnbench env          # host, CPU, GPUs (NVML), framework versions, dense peaks""",
    "report": """\
examples:
  attnbench report results/20261128-101500-default   # into the run folder itself
  attnbench report results/cpu-run results/h100-run --out results/cpu-vs-h100
  attnbench report results/RUN --baseline "torch eager" """,
    "compare": """\
example:
  attnbench compare results/before results/after --threshold 5   # exit 1 on a regression""",
    "publish": """\
example:
  attnbench publish results/20261129-062220-default --name cpu-xeon-2core""",
    "export": """\
examples:
  attnbench export results/RUN --format pytest-benchmark --out run.json
  pytest-benchmark compare run.json other.json     # pytest-benchmark's own tools
  attnbench report other.json                      # and back: any pytest-benchmark file""",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    top = _Parser(prog="attnbench", description=DESCRIPTION,
                  formatter_class=argparse.RawDescriptionHelpFormatter,
                  epilog="example:\n  attnbench run suites/smoke.toml\n\n"
                         "`attnbench COMMAND --help` explains each command.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text,
                              epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    run = command("run", "Run a suite (a TOML grid of cells) and write a run folder: "
                         "results.jsonl, results.csv, env.json, report.md.")
    run.add_argument("suite", metavar="SUITE", help="suite file, e.g. suites/default.toml")
    run.add_argument("--out", metavar="DIR", help="run folder (default: results/<run_id>/)")
    run.add_argument("--resume", metavar="DIR",
                     help="continue the run in DIR: rerun every planned cell that is not "
                          "already ok there, appending to the same results")
    run.add_argument("--backend", action="extend", nargs="+", choices=BACKENDS, metavar="B",
                     help=f"only these backends ({', '.join(BACKENDS)})")
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
    run.add_argument("--serial", action="store_true",
                     help="one worker at a time (default: one worker per GPU side by side, "
                          "then the CPU cells alone)")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="CPU threads for every framework (default: all this process may use)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the planned cells per backend and device, which of them "
                          "this machine can run and why not; run nothing")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="with --dry-run, list every planned cell")
    run.add_argument("--no-gate", action="store_true",
                     help="skip the correctness gate: by default every configuration "
                          "(backend, variant, workload, mode, dtype, mask) is checked on "
                          "small shapes first, and the rows of one that fails are "
                          "recorded correct = false")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bar or summary table, only the closing lines")

    chk = command("check", "Check every backend, variant, workload, dtype, mode and mask "
                           "against the float64 reference (outputs and gradients) on small "
                           "odd shapes, and backends against each other; print both "
                           "matrices, write check.csv, pairs.csv and check.md; exit 1 on "
                           "any failure or disagreement.")
    chk.add_argument("--backend", action="extend", nargs="+", choices=BACKENDS, metavar="B",
                     help=f"only these backends ({', '.join(BACKENDS)})")
    chk.add_argument("--variant", action="extend", nargs="+", metavar="V",
                     help="only these variants (e.g. eager compile; `attnbench env` lists "
                          "them)")
    chk.add_argument("--dtype", action="extend", nargs="+", choices=DTYPES, metavar="D",
                     help=f"only these dtypes ({', '.join(DTYPES)})")
    chk.add_argument("--workload", action="extend", nargs="+", choices=WORKLOADS, metavar="W",
                     help=f"only these workloads ({', '.join(WORKLOADS)})")
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

    command("env", "Show this machine: host, CPU, GPUs, framework versions, peaks.")

    rep = command("report", "Tables (markdown, CSV, HTML), plots and one self-contained "
                            "report.html from one or more run folders, from any machines.")
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--out", metavar="DIR",
                     help="where to write (default: the run folder for one run, "
                          "results/report-<time>/ for several)")
    rep.add_argument("--baseline", metavar="LABEL",
                     help="'backend variant' the speedups are against (default: the one "
                          "measured in most cells)")

    cmp = command("compare", "Match the cells of two runs and call a regression only when "
                             "the slowdown passes the threshold and the two runs' IQRs do "
                             "not overlap; markdown on stdout; exit 1 on a regression.")
    cmp.add_argument("base", metavar="BASE_DIR")
    cmp.add_argument("new", metavar="NEW_DIR")
    cmp.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                     help="smallest slowdown, in percent, that can be a regression "
                          "(default 5)")
    cmp.add_argument("--out", metavar="FILE", help="also write the markdown to FILE")

    pub = command("publish", "Write the report of a run into results/published/NAME/ and "
                             "list it in results/published/README.md.")
    pub.add_argument("run", metavar="RUN_DIR")
    pub.add_argument("--name", required=True, metavar="NAME",
                     help="folder name under results/published/ (letters, digits, - _ .)")

    exp = command("export", "Write a run's measured cells in another tool's format: "
                            "pytest-benchmark JSON, which `pytest-benchmark compare` reads "
                            "(report and compare read such files back).")
    exp.add_argument("run", metavar="RUN_DIR")
    exp.add_argument("--format", required=True, choices=["pytest-benchmark"])
    exp.add_argument("--out", metavar="FILE",
                     help="where to write (default: RUN_DIR/pytest-benchmark.json)")
    return top


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _device(text: str) -> str:
    from harness.run.suite import DEVICE_RE
    if not DEVICE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N, auto or gpu:TYPE, "
                                         f"got {text!r}")
    return text


def _run(args, console: Console) -> int:
    suite = load_suite(args.suite)
    if args.address and args.executor != "ray":
        raise StoreError("--address names a Ray cluster: give it with --executor ray")
    if args.dry_run:
        gpus, nvml_error = devices.discover()
        expand = refuse = None
        where = f"GPUs: {nvml_error or 'none visible (NVML)'}" if not gpus else ""
        if args.executor == "ray":               # planned against the cluster's GPUs
            from harness.run.executors.ray_cluster import RayExecutor
            cluster = RayExecutor(args.address, args.threads or devices.cpu_threads())
            gpus, nvml_error, expand, refuse = [], None, cluster.expand, cluster.refuse
            where = (f"the Ray cluster has {cluster.gpus} GPUs "
                     f"({', '.join(cluster.gpu_types) or 'no types named'})")
        refuse = refuse or (lambda c: runner.refused(c, gpus, nvml_error))
        cases = runner.plan(suite, args.backend, gpus, args.device, expand=expand)
        rows = runner.plan_summary(cases, gpus, nvml_error, refuse)
        table = Table(title=f"{suite.name}: {len(cases)} cells planned")
        for name in ("backend", "device", "name", "cells", "to run", "not here: why"):
            table.add_column(name, overflow="fold")
        for r in rows:
            table.add_row(r["backend"], r["device"], r["device_name"], str(r["cells"]),
                          str(r["to_run"]), r["why_not"])
        Console().print(table)
        runnable = [c for c in cases if not static_unsupported(c) and not refuse(c)]
        print(f"{len(runnable)} of {len(cases)} cells can run here" + (f"; {where}" if where
                                                                         else ""))
        if not args.no_gate:      # on a cluster the gate checks the CPU cells' alone
            gated = grid.gate_cases([c for c in runnable if args.executor != "ray"
                                      or c.device == "cpu"])
            print(f"gate: {len(gated) // len(grid.SHAPES)} configurations checked against "
                  f"float64 first ({len(gated)} cases on small shapes; --no-gate skips it)")
        if args.verbose:
            for case in cases:
                print(case.name)
        return 0
    if args.resume and args.out:
        raise StoreError("--resume DIR continues a run in DIR; --out cannot be given with it")
    try:
        runner.run(suite, out=args.out, backends=args.backend, threads=args.threads,
                   quiet=args.quiet, console=console, resume=args.resume,
                   gate_check=not args.no_gate, only=args.device, serial=args.serial,
                   executor=args.executor, address=args.address)
    except KeyboardInterrupt:
        return 130                     # the runner has said how to resume
    return 0


def _check(args, console: Console) -> int:
    from datetime import datetime, timezone
    folder = Path(args.out or f"results/check-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    cases = grid.grid(args.backend, args.dtype, args.workload, args.device, args.all_shapes,
                       args.variant)
    if not cases:
        raise SuiteError("no backend has the variants asked for (see attnbench env)")
    threads = args.threads or devices.cpu_threads()
    jobs = args.jobs or check.default_jobs()
    result = check.run_check(cases, folder, threads, console, args.timeout_s, jobs,
                             args.keep_outputs, args.quiet)
    table, pairs = check_report.write(result, folder)
    check_report.print_tables(table, pairs, Console())
    failed, differ = len(result.failures), len(result.disagreements)
    console.print(f"{len(result.cases)} cases: {failed} failed; {len(result.pairs)} backend "
                  f"pairs: {differ} disagree\nwrote {folder}/check.md, check.csv, pairs.csv")
    return 1 if failed or differ else 0


def _report(args, console: Console) -> int:
    from datetime import datetime, timezone
    for folder in args.runs:
        store.read_rows(folder)                        # one-line error if not a run
    folder = len(args.runs) == 1 and Path(args.runs[0]).is_dir()   # not a JSON file
    out = args.out or (args.runs[0] if folder else
                       f"results/report-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    if folder:
        store.write_csv(store.load(args.runs[0]), f"{args.runs[0]}/results.csv")
    html = run_report.write_report(args.runs, out, args.baseline)
    run_report.print_summary(store.load(*args.runs), console)
    console.print(f"wrote {out}/: report.md, report.csv, tables/, plots/\nreport: {html}")
    return 0


def _compare(args) -> int:
    from harness.report import compare
    base, new = store.load(args.base), store.load(args.new)
    result = compare.compare(base, new, args.threshold)
    text = compare.markdown(result, args.threshold, args.base, args.new)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if result["verdict"].map(compare.is_regression).any() else 0


def _export(args, console: Console) -> int:
    from harness.results import pytest_benchmark_format as pbf
    rows = store.latest_rows(store.read_rows(args.run))
    out = Path(args.out or Path(args.run) / "pytest-benchmark.json")
    try:
        count = pbf.export(rows, store.read_env(args.run), out)
    except pbf.FormatError as exc:
        raise StoreError(f"{args.run}: {exc}") from None
    console.print(f"wrote {out}: {count} benchmarks ({args.format} JSON; "
                  f"`pytest-benchmark compare {out}` reads it)")
    return 0


def _publish(args, console: Console) -> int:
    from harness.report import publish
    folder = publish.publish(args.run, args.name)
    console.print(f"published {args.run} as {folder}/ (listed in {folder.parent}/README.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    if PLUGIN_ERRORS:
        print(f"attnbench: error: {PLUGIN_ERRORS[0]}", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    # A warning (a row cut off by a crash) is one line, not Python's source echo.
    warnings.formatwarning = lambda message, *_, **__: f"attnbench: warning: {message}\n"
    console = Console()
    try:
        if args.command == "run":
            return _run(args, Console(stderr=True))
        if args.command == "check":
            return _check(args, Console(stderr=True))
        if args.command == "env":
            from harness.cli.env import show_env
            return show_env(console)
        if args.command == "compare":
            return _compare(args)
        if args.command == "export":
            return _export(args, console)
        if args.command == "publish":
            return _publish(args, console)
        return _report(args, console)
    except UserError as exc:
        print(f"attnbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
