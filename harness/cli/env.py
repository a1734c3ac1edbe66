"""`attnbench env`: this machine as attnbench sees it (host, CPU, GPUs through NVML,
each backend's framework and version, the dense-peak table), without importing a
framework: versions come from package metadata."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.measure import devices, roofs
from harness.results import cache
from harness.spec.catalog import REGISTRY


def show_env(console: Console) -> int:
    import importlib.metadata as md
    env = devices.environment()
    table = Table(title=f"attnbench env: {env['host']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("platform", env["platform"])
    table.add_row("python", env["python"])
    table.add_row("cpu", f"{env['cpu']} ({env['cpu_threads']} threads)")
    table.add_row("cpu roof", roof_text(env["cpu"], env["cpu_threads"]))
    add_nvml_rows(table, env)
    for gpu in env["gpus"]:
        peaks = [devices.peak_tflops(gpu["name"], d) for d in ("float32", "tf32", "bfloat16")]
        table.add_row(f"gpu {gpu['index']} (cuda:{gpu['index']})",
                      f"{gpu['name']}, {gpu['memory_total'] / 2**30:.0f} GiB "
                      f"({gpu['memory_free'] / 2**30:.0f} free), driver {gpu['driver']}, "
                      f"CUDA {gpu['cuda_driver']}; dense peak TFLOP/s fp32 / tf32 / bf16-fp16: "
                      + (" / ".join(str(p or "-") for p in peaks)
                         if any(peaks) else "not in the table (pct_peak stays empty)")
                      + ("; MIG mode on" if gpu.get("mig") else "") + clocks_text(gpu))
    # The distribution that provides each framework's module (tensorflow-cpu
    # provides tensorflow): read from metadata, nothing imported.
    providers = md.packages_distributions()
    for name, info in REGISTRY.items():
        dists = providers.get(info.framework, [info.framework])
        version = next((f"{d} {md.version(d)}" for d in dists if installed(md, d)),
                       f"{info.framework} not installed (its cells are `unsupported`)")
        table.add_row(f"backend {name}", f"{version}; variants: "
                      + ", ".join(v.name + ("" if "cpu" in v.devices else " (GPU)")
                                  for v in info.variants))
    table.add_row("cache", cache_text())
    console.print(table)
    peaks = Table(title="dense peaks, TFLOP/s, and memory bandwidth (docs/measurement.md); "
                        "pct_peak = tflops / peak",
                  caption="GPU names are matched on these model names, most specific first")
    for name in ("model", "float32", "tf32", "bfloat16 / float16", "GB/s"):
        peaks.add_column(name, justify="left" if name == "model" else "right")
    for model, (fp32, tf32, half, gb_s) in devices.GPU_PEAKS:
        peaks.add_row(model, f"{fp32:g}", f"{tf32:g}" if tf32 else "-", f"{half:g}",
                      f"{gb_s:g}")
    console.print(peaks)
    return 0


def roof_text(cpu: str, threads: int) -> str:
    """The CPU's calibrated roof (harness/measure/roofs.py), or how to measure it."""
    entry = roofs.load().get(roofs.key(cpu, threads))
    if not entry:
        return (f"not calibrated for {threads} threads: `attnbench env --calibrate` "
                "measures it (pct_peak stays empty on this CPU until then)")
    peaks = ", ".join(f"{d} {1e3 * v:.0f}" for d, v in entry.get("tflops", {}).items())
    return (f"GFLOP/s {peaks}; {entry.get('gb_s', 0):.1f} GB/s (measured "
            f"{entry.get('measured_at', '')[:16]}, {entry.get('how', '')}; {roofs.roofs_file()})")


def clocks_text(gpu: dict) -> str:
    """Application clocks and power limit, where NVML gave them."""
    parts = []
    if gpu.get("app_sm_clock_mhz"):
        parts.append(f"application clocks SM {gpu['app_sm_clock_mhz']} / memory "
                     f"{gpu.get('app_mem_clock_mhz') or '-'} MHz")
    if gpu.get("power_limit_w"):
        parts.append(f"power limit {gpu['power_limit_w']:.0f} W")
    return "; " + ", ".join(parts) if parts else ""


def calibrate_env(console: Console, threads: int | None, size: int) -> int:
    """`attnbench env --calibrate`: measure and keep this CPU's roof, then show it."""
    from harness.run.calibrate import calibrate
    with console.status("calibrating: a matmul per dtype and a stream copy in each "
                        "installed framework (a minute or two)"):
        entry = calibrate(threads, size)
    table = Table(title=f"this CPU's roof, {entry['threads']} threads (kept in "
                        f"{entry['path']})")
    for name in ("framework", "float32 GFLOP/s", "bfloat16 GFLOP/s", "float16 GFLOP/s",
                 "copy GB/s", "note"):
        table.add_column(name, justify="left" if name in ("framework", "note") else "right")
    for found in entry["frameworks"]:
        flops = found.get("tflops", {})
        version = str(found.get("version", ""))
        table.add_row(version if version.startswith(found["backend"])
                      else f"{found['backend']} {version}",
                      *(f"{1e3 * flops[d]:.0f}" if d in flops else "-"
                        for d in ("float32", "bfloat16", "float16")),
                      f"{found['gb_s']:.1f}" if "gb_s" in found else "-",
                      escape(found.get("failed") or "; ".join(
                          f"{d}: {e}" for d, e in found.get("errors", {}).items())))
    best = entry["tflops"]
    table.add_row("roof (best)", *(f"{1e3 * best[d]:.0f}" if d in best else "-"
                                   for d in ("float32", "bfloat16", "float16")),
                  f"{entry['gb_s']:.1f}", f"numpy copy {entry['copies_gb_s']['numpy']:.1f} GB/s")
    console.print(table)
    return 0


def add_nvml_rows(table: Table, env: dict) -> None:
    """NVML's answer: a failure in red with its message (and, where the machine
    shows a GPU anyway, that this is not "no GPU"); no GPU said plainly."""
    signs = env.get("gpu_signs") or []
    if env["nvml"] != "ok":
        shown = (f"; this machine shows an NVIDIA GPU ({devices.listed(signs)}): a broken "
                 "NVML, not a machine without GPUs" if signs else "")
        table.add_row("nvml", f"[bold red]FAILED[/]: {escape(env['nvml'])}{escape(shown)}")
    if not env["gpus"]:
        why = ("NVML could not say (above)" if env["nvml"] != "ok"
               else "no NVIDIA GPU or driver (NVML)")
        table.add_row("gpus", f"none visible: {why}")


def cache_text() -> str:
    """Where gate verdicts and references are kept across runs, and how full it is."""
    return (f"{cache.root()}: {cache.size_bytes() / 2**20:.0f} MB of "
            f"{cache.limit_bytes() / 2**20:.0f} MB (gate verdicts, references; "
            f"ATTNBENCH_CACHE moves it, ATTNBENCH_CACHE_MB bounds it, run --no-cache "
            f"ignores it)")


def installed(md, dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False
