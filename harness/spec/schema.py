"""The row schema: every column a result row carries, declared once, in order.

Every row a run writes carries every column (None where it does not apply), so a
reader can index any row by any name; a column a row should not have is a bug and
`complete` says so. docs/design.md ("The Case and the result row") explains each
group.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.spec.case import CASE_FIELDS, RESULT_COLUMNS

# Version of a result row and of env.json; a reader refuses anything newer.
ROW_SCHEMA = 1


@dataclass(frozen=True)
class Column:
    name: str
    meaning: str


_CASE = tuple(Column(name, "the Case field (docs/design.md, the Case)") for name in CASE_FIELDS)
_RESULT = tuple(Column(name, "the contract's result column (docs/design.md, the result row)")
                for name in RESULT_COLUMNS)
_MORE = (
    # how the cell was run
    Column("threads", "CPU threads the worker was pinned to"),
    Column("driver", "the GPU's NVIDIA driver version (GPU rows)"),
    Column("cuda_driver", "the CUDA version that driver supports (GPU rows)"),
    Column("settings", "framework environment the worker set before importing it"),
    Column("tuned", "false: the variant runs out of the box; true: pinned or compiled"),
    Column("kernel", "what the backend reports it ran (an SDPA kernel, an XLA path)"),
    Column("timer", "how samples were timed (sync inside; caches flushed or not)"),
    # where a Ray cluster ran it (rows of `--executor ray`)
    Column("executor", "ray, on rows a Ray cluster ran"),
    Column("ray_node_id", "the Ray node that ran the cell"),
    Column("ray_resources", "the resources its task asked for"),
    Column("ray_assigned", "the resources Ray granted the task"),
    Column("node_device", "the device on that node (its own cuda:N or cpu)"),
    # timing beyond the contract's figures
    Column("ci_low_ms", "95 % interval of the median (order statistics), low end"),
    Column("ci_high_ms", "95 % interval of the median (order statistics), high end"),
    Column("noisy", "IQR above the stated share of the median"),
    Column("warmup_calls", "untimed calls before sampling"),
    Column("calls_per_sample", "calls per timed sample (grown past the clock's resolution)"),
    Column("samples_ms", "every per-call sample, in order"),
    # between processes (`run --repeat K`: harness/results/repeats.py)
    Column("repeat", "which of the K processes (0-based) wrote this row; merged: None"),
    Column("repeats", "processes the row's figures come from (K of --repeat K)"),
    Column("process_medians_ms", "each process's median, in the order they ran"),
    Column("process_n_samples", "each process's share of samples_ms, in that order"),
    Column("between_spread_pct", "(slowest - fastest process median) / their median, %"),
    # where the cell's wall time went (harness/run/cell.py; the report's "where the
    # time went"); seconds
    Column("phase_worker_s", "worker start and framework import, on a worker's first cell"),
    Column("phase_setup_s", "weights, inputs and backend.prepare"),
    Column("phase_first_call_s", "the first call (tracing, compiling)"),
    Column("phase_warmup_s", "warm-up calls"),
    Column("phase_calibrate_s", "growing the calls per sample (autorange)"),
    Column("phase_samples_s", "the timed samples"),
    Column("phase_profile_s", "the profiled steps for device_ms (untimed)"),
    Column("phase_memory_s", "the peak-memory probe (on the CPU, the outputs' step too)"),
    Column("phase_outputs_s", "taking the outputs for the check, apart from the probe"),
    Column("phase_reference_s", "the float64 and own-dtype references, loaded or computed"),
    Column("phase_judge_s", "judging the outputs (reruns included), references aside"),
    # who else used the machine while the cell was timed (harness/measure/contention.py)
    Column("contended", "others used its CPUs past the stated share, or its GPU"),
    Column("others_cpu_share", "others' CPU time over the timed part, share of its CPUs"),
    Column("load_avg", "the 1-minute load average at the end of the timed part"),
    Column("gpu_others", "other processes computing on its GPU (NVML)"),
    Column("gpu_util_before_pct", "its GPU's utilization just before the cell (NVML)"),
    Column("throttle", "clock-throttle reasons active at the end (NVML); empty: none"),
    # device time (a separate, untimed profiled pass: harness/measure/device_time.py)
    Column("device_ms", "the summed duration of the device kernels one step launched, "
           "from the framework's own profiler (CPU: its op time, where it reports it)"),
    Column("launch_overhead_ms", "median_ms - device_ms: what the host spent around them"),
    Column("device_time_method", "the profiler and what was summed"),
    Column("device_time_note", "why there is no device time, in words"),
    # the device over the timed samples (harness/measure/energy.py)
    Column("sm_clock_mhz_start", "its GPU's SM clock as the timed samples began (NVML)"),
    Column("sm_clock_mhz_end", "its GPU's SM clock as they ended"),
    Column("mem_clock_mhz_start", "its GPU's memory clock as they began"),
    Column("mem_clock_mhz_end", "its GPU's memory clock as they ended"),
    Column("temp_c_start", "its GPU's temperature as they began, degrees C"),
    Column("temp_c_end", "its GPU's temperature as they ended"),
    Column("power_w_start", "its GPU's power draw as they began, W"),
    Column("power_w_end", "its GPU's power draw as they ended, W"),
    Column("power_limit_w", "its GPU's enforced power limit, W"),
    Column("throttled", "a slowing throttle reason was set, or the SM clock dropped"),
    Column("energy_j", "joules a step: the device's energy counter over the timed "
           "samples, over their calls"),
    Column("avg_watts", "average power over the timed samples, W"),
    Column("tflop_per_j", "flops over energy_j, in TFLOP per joule"),
    Column("energy_method", "the counter read (NVML's total energy, RAPL's packages)"),
    Column("energy_note", "why there is no energy figure, in words"),
    # memory beyond the contract's figures
    Column("nvml_mem_bytes", "NVML's figure for the worker's process on its GPU"),
    Column("nvml_mem_method", "how NVML's figure was read (process or device used)"),
    Column("mem_resident_bytes", "bytes of the weights and inputs (the spec's count)"),
    Column("mem_output_bytes", "bytes of the outputs (the spec's count)"),
    Column("mem_scores_bytes", "bytes of one B*H*q_len*N score matrix in the dtype"),
    Column("bytes_moved", "the least bytes a step reads and writes (harness/spec/costs.py)"),
    Column("gb_s", "bytes_moved over the median, GB/s: what bounds decoding"),
    # the roofline (harness/measure/roofs.py)
    Column("peak_tflops", "the roof pct_peak divides by: the dtype's dense peak, TFLOP/s"),
    Column("peak_gb_s", "the roof pct_peak_bw divides by: memory bandwidth, GB/s"),
    Column("roof_source", "where the roof comes from: a GPU's datasheet, a CPU's "
           "calibration (attnbench env --calibrate), or why there is none"),
    Column("pct_peak_bw", "gb_s as a share of peak_gb_s, %"),
    Column("arith_intensity", "flops / bytes_moved: FLOPs a byte"),
    Column("bound", "memory or compute: which roof the intensity puts the cell under"),
    # correctness beyond the contract's figures
    Column("err_tensor", "the tensor with the worst error ratio"),
    Column("check_rows", "query rows the cell was judged on (q_len: all of them)"),
    Column("check_note", "why the cell was not checked, or what judged it, in words"),
    Column("gate", "its configuration's check on small shapes: pass, fail, or empty"),
    Column("judged_by", "what `correct` rests on: cell (its own check) or config"),
    Column("verdict_from", "gate check rows: the run that checked the case, when this "
           "one reused its verdict (the gate's cache); empty: checked in this run"),
    Column("source", "the other tool's format a row was read from (pytest-benchmark)"),
    Column("schema", "the row's schema version"),
)
COLUMNS: tuple[Column, ...] = _CASE + _RESULT + _MORE
ROW_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS)


def empty_row() -> dict:
    """Every column, None, with the schema version set."""
    return {**dict.fromkeys(ROW_COLUMNS), "schema": ROW_SCHEMA}


def complete(row: dict) -> dict:
    """The row with every declared column, in declared order; a ValueError names
    any column the schema does not declare."""
    unknown = [k for k in row if k not in _DECLARED]
    if unknown:
        raise ValueError(f"undeclared row column(s) {unknown}: declare them in "
                         f"harness/spec/schema.py")
    return {**empty_row(), **row}


_DECLARED = frozenset(ROW_COLUMNS)
