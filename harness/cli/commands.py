"""What each attnbench command does with its parsed arguments; each returns the
exit status (docs/design.md, "The command line and the Python surface")."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.correctness import gate, grid
from harness.measure import devices
from harness.report import check_report, run_report
from harness.results import cache, store
from harness.run import check, gating, plan, run_folder, runner
from harness.run.suite import Suite, load_suite
from harness.run.suite_messages import show
from harness.spec.errors import UserError


def run(args, console: Console) -> int:
    suite = only_workloads(load_suite(args.suite), args.workload)
    if args.address and args.executor != "ray":
        raise UserError("--address names a Ray cluster: give it with --executor ray")
    if args.versions:
        return run_versions(args, console)
    if args.dry_run:
        return dry_run(args, suite)
    if args.resume and args.out:
        raise UserError("--resume DIR continues a run in DIR; --out cannot be given with it")
    if args.resume_any_suite:
        if not args.resume:
            raise UserError("--resume-any-suite goes with --resume DIR")
        suite = run_folder.adopt(suite, args.resume)
    try:
        runner.run(suite, out=args.out, backends=args.backend, threads=args.threads,
                   quiet=args.quiet, console=console, resume=args.resume,
                   gate_check=not args.no_gate, only=args.device, serial=args.serial,
                   executor=args.executor, address=args.address,
                   quiet_machine_s=args.quiet_machine, repeat=args.repeat,
                   use_cache=not args.no_cache)
    except KeyboardInterrupt:
        return 130                     # the runner has said how to resume
    return 0


def only_workloads(suite: Suite, workloads: list[str] | None) -> Suite:
    """The suite's cells of these workloads (--workload), or a one-line error."""
    if not workloads:
        return suite
    cases = tuple(c for c in suite.cases if c.workload in workloads)
    if not cases:
        raise UserError(f"{suite.path}: no cell of workload {', '.join(workloads)}")
    return dataclasses.replace(suite, cases=cases)


def run_versions(args, console: Console) -> int:
    """The suite under each environment of --versions, then their history."""
    from harness.run import versions
    if args.resume or args.dry_run:
        raise UserError("--versions makes new runs: --resume and --dry-run cannot go with it")
    if os.environ.get(versions.CHILD):
        raise UserError("--versions inside a run that --versions started")
    specs = versions.parse(args.versions)
    out = Path(args.out or f"results/versions-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    run_folder.writable_folder(out, "--out" if args.out else "the default --out")
    argv = versions.without_flags(args.argv[args.argv.index("run") + 1:],
                                  ("--versions", "--out"))
    # Each run starts where this one did, but its paths must not depend on that.
    argv[argv.index(args.suite)] = str(Path(args.suite).resolve())
    folders = versions.run_each(specs, argv, out, lambda text: console.print(text))
    args.runs, args.out, args.min_step, args.fail_on_step = folders, out / "history", 5.0, None
    return history(args, console)


def dry_run(args, suite: Suite) -> int:
    """The planned cells per backend and device, how many can run where they are
    headed (this machine, or the Ray cluster) and why not the rest; nothing runs."""
    target = plan.target_for(args.executor, args.address, args.threads or devices.cpu_threads())
    if target.cluster:                    # planned against the cluster's GPUs
        where = (f"the Ray cluster has {target.cluster.gpus} GPUs "
                 f"({', '.join(target.cluster.gpu_types) or 'no types named'})")
    else:
        where = "" if target.gpus else f"GPUs: {target.nvml_error or 'none visible (NVML)'}"
    cases = target.planned_cases(suite, args.backend, args.device)
    rows = plan.plan_summary(cases, target)
    table = Table(title=f"{suite.name}: {len(cases)} cells planned")
    for name in ("backend", "device", "name", "cells", "to run", "not here: why"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(r["backend"], r["device"], r["device_name"], str(r["cells"]),
                      str(r["to_run"]), r["why_not"])
    Console().print(table)
    runnable = [c for c in cases if not target.refusal(c)]
    print(f"{len(runnable)} of {len(cases)} cells can run here" + (f"; {where}" if where
                                                                     else ""))
    if not args.no_gate:
        gated = target.gated_cells(cases)
        configs = len({gate.config_key(c) for c in gated})
        print(f"gate: {configs} configurations checked against float64 first "
              f"({len(grid.gate_cases(gated))} cases on small shapes{_cached(args, gated, target)}"
              f"; --no-gate skips it)")
    if args.verbose:
        for case in cases:
            print(case.name)
    return 0


def _cached(args, gated: list, target) -> str:
    """How many of the gate's cases the cache would answer (harness/run/gating.py)."""
    if args.no_cache:
        return ", none from the cache (--no-cache)"
    kept = gating.GateCache(cache.root() / "gate", args.threads or devices.cpu_threads(),
                            target.gpus)
    hits = sum(kept.get(c) is not None for c in grid.gate_cases(gated))
    return f", {hits} of them kept from earlier runs" if hits else ""


def check_command(args, console: Console) -> int:
    folder = run_folder.writable_folder(
        args.out or f"results/check-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}", "--out")
    cases = grid.grid(args.backend, args.dtype, args.workload, args.device, args.all_shapes,
                      args.variant)
    cases = [c for c in cases if not args.mode or c.mode in args.mode]
    if not cases:
        raise UserError("no backend has the variants asked for (see attnbench env)")
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


def report(args, console: Console) -> int:
    for folder in args.runs:
        store.read_rows(folder)                        # one-line error if not a run
    folder = len(args.runs) == 1 and Path(args.runs[0]).is_dir()   # not a JSON file
    out = args.out or (args.runs[0] if folder else
                       f"results/report-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    run_folder.writable_folder(out, "--out" if args.out else "the default --out")
    if folder and Path(out).resolve() == Path(args.runs[0]).resolve():   # only there
        store.write_csv(store.load(args.runs[0]), f"{args.runs[0]}/results.csv")
    html = run_report.write_report(args.runs, out, args.baseline)
    run_report.print_summary(store.load(*args.runs), console)
    console.print(f"wrote {out}/: report.md, report.csv, tables/, plots/\nreport: {html}")
    return 0


def compare(args) -> int:
    from harness.report import compare as comparing
    from harness.report import compare_text
    if args.out:
        _writable_file(Path(args.out), "--out")
    base, new = store.load(args.base), store.load(args.new)
    result = comparing.compare(base, new, args.threshold)
    one_process = tuple(name for name, frame in ((args.base, base), (args.new, new))
                        if comparing.single_process(frame))
    text = compare_text.markdown(result, args.threshold, args.base, args.new, one_process)
    print(text)
    if args.out:
        try:
            Path(args.out).write_text(text)
        except OSError as exc:
            raise UserError(f"--out {show(args.out)}: cannot write "
                            f"({exc.strerror or exc})") from None
    return 1 if result["verdict"].map(comparing.is_regression).any() else 0


def history(args, console: Console) -> int:
    from harness.history import analysis, page
    from harness.report import publish as publishing
    out = Path(args.out or f"results/history-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    run_folder.writable_folder(out, "--out" if args.out else "the default --out")
    # A --fail-on-step below --min-step must still see its steps.
    found = analysis.collect(args.runs, min(args.min_step, args.fail_on_step or args.min_step))
    html = page.write(found, out)
    if out.resolve().parent == publishing.ROOT.resolve():
        publishing.keep_history_inputs(found.runs, out)
        publishing.write_index()              # the index links the published history
    console.print(f"{page.summary(found)}\nwrote {out}/: history.md, steps.csv, "
                  f"series.csv\nhistory: {html}")
    if args.fail_on_step is None:
        return 0
    slower = analysis.newest_slowdowns(found, args.fail_on_step)
    if analysis.too_short(found):
        console.print(f"note: {analysis.too_short(found)} cells have fewer than "
                      f"{analysis.MIN_RUNS} runs: no step can be judged there (for two runs, "
                      f"`attnbench compare`)")
    for step in slower:
        changed = "; ".join(step.changed) or "nothing recorded changed"
        console.print(f"[red]step[/red] {step.series.label}: {step.size_pct:+.1f}% "
                      f"from {step.after.run_id} ({changed})")
    if slower:
        console.print(f"{len(slower)} cells slowed by at least {args.fail_on_step:g}% in the "
                      f"newest run, {found.runs[-1].run_id}")
    return 1 if slower else 0


def export(args, console: Console) -> int:
    from harness.results import pytest_benchmark_format as pbf
    rows = store.latest_rows(store.read_rows(args.run))
    out = Path(args.out or Path(args.run) / "pytest-benchmark.json")
    _writable_file(out, "--out" if args.out else "the default --out")
    try:
        count = pbf.export(rows, store.read_env(args.run), out)
    except pbf.FormatError as exc:
        raise UserError(f"{args.run}: {exc}") from None
    console.print(f"wrote {out}: {count} benchmarks ({args.format} JSON; "
                  f"`pytest-benchmark compare {out}` reads it)")
    return 0


def publish(args, console: Console) -> int:
    from harness.report import publish as publishing
    publishing.check_name(args.name)
    run_folder.writable_folder(publishing.ROOT, "the publish folder")
    folder = publishing.publish(args.run, args.name)
    console.print(f"published {args.run} as {folder}/ (listed in {folder.parent}/README.md)")
    return 0


def _writable_file(path: Path, what: str) -> None:
    """A file may be written at `path`: its folder exists and takes files, and it
    is not a folder itself; nothing is made."""
    shown = show(str(path))
    if path.is_dir():
        raise UserError(f"{what} {shown}: is a folder, not a file")
    if not path.parent.is_dir():
        raise UserError(f"{what} {shown}: no folder {show(str(path.parent))} to write it in")
    try:
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise UserError(f"{what} {shown}: cannot write there ({exc.strerror or exc})") from None
