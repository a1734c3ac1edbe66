"""Device discovery and description, and each device's dense peak.

GPUs are found through NVML (nvidia-ml-py), never through a framework, so the
core can plan GPU runs without importing one. CUDA_DEVICE_ORDER=PCI_BUS_ID makes
NVML's numbering and the frameworks' agree (set for every worker). The driver's
/proc entries and /dev/nvidiaN files tell a machine without a GPU from one whose
NVML failed: the second is an error, never "no GPU".
"""
from __future__ import annotations

import glob
import os
import platform
import re
import socket

from harness.measure import energy

# Dense peaks, TFLOP/s, from docs/measurement.md: (fp32, tf32, bf16/fp16), then memory
# bandwidth, GB/s. None: no such unit. Keys are matched against the NVML name, most
# specific first.
GPU_PEAKS: tuple[tuple[str, tuple[float, float | None, float, float]], ...] = (
    ("H100 PCIe", (51.0, 378.0, 756.0, 2000.0)),
    ("H100", (67.0, 495.0, 989.0, 3350.0)),
    ("H200", (67.0, 495.0, 989.0, 4800.0)),
    ("A100", (19.5, 156.0, 312.0, 1555.0)),        # 80 GB: 2039 (peak_bandwidth_gb_s)
    ("V100", (15.7, None, 125.0, 900.0)),
    ("L4", (30.3, 60.0, 121.0, 300.0)),
    ("A10", (31.2, 62.5, 125.0, 600.0)),
    ("RTX 4090", (82.6, 82.6, 165.0, 1008.0)),
    ("T4", (8.1, None, 65.0, 320.0)),
)
_DTYPE_INDEX = {"float32": 0, "tf32": 1, "bfloat16": 2, "float16": 2}


def is_model(device_name: str, model: str) -> bool:
    """Whether a GPU name names this model as a whole word: "NVIDIA L40S" is not
    an L4, "NVIDIA A100-SXM4-80GB" is an A100 but not an A10."""
    pattern = r"(?<![A-Za-z0-9])" + re.escape(model) + r"(?![A-Za-z0-9])"
    return re.search(pattern, device_name, re.IGNORECASE) is not None


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """The dense peak of a device for a dtype, or None where it is not known (CPUs)."""
    for key, peaks in GPU_PEAKS:
        if is_model(device_name, key):
            return peaks[_DTYPE_INDEX[dtype]]
    return None


def peak_bandwidth_gb_s(device_name: str) -> float | None:
    """A GPU's memory bandwidth, GB/s, or None where it is not known (CPUs)."""
    if is_model(device_name, "A100") and "80GB" in device_name.replace(" ", ""):
        return 2039.0
    return next((peaks[3] for key, peaks in GPU_PEAKS if is_model(device_name, key)), None)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_threads() -> int:
    """CPUs this process may run on (its affinity), which frameworks size pools from."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Framework-free signs of an NVIDIA GPU, NVML aside: the driver's entry per GPU,
# and the device files a container is given with its GPUs (under a root tests move).
GPU_SIGN_ROOT = "/"
GPU_SIGN_PATTERNS = ("proc/driver/nvidia/gpus/*", "dev/nvidia[0-9]*")
NVML_PROCESS_USED = "nvml process used"     # process_gpu_memory's two ways of reading
NVML_DEVICE_USED = "nvml device used"


class GpuDiscoveryError(RuntimeError):
    """NVML failed on a machine that shows an NVIDIA GPU: not the same as no GPU."""


def gpu_signs() -> list[str]:
    """Paths that show an NVIDIA GPU on this machine without asking NVML or a
    framework, so that "NVML failed" is never mistaken for "no GPU"."""
    return [path for pattern in GPU_SIGN_PATTERNS
            for path in sorted(glob.glob(os.path.join(GPU_SIGN_ROOT, pattern)))]


def listed(signs: list[str]) -> str:
    """A few of gpu_signs' paths for a message (eight GPUs show sixteen)."""
    return ", ".join(signs[:3]) + (f" and {len(signs) - 3} more" if len(signs) > 3 else "")


def discover() -> tuple[list[dict], str | None]:
    """Visible NVIDIA GPUs through NVML, and why NVML could not answer (None when
    the list is certain). No NVML library or no loaded driver is a certain "no
    GPU" only where nothing else shows one (gpu_signs): a container may be given
    a GPU without NVML's library. No nvidia-ml-py, or any other NVML failure, is
    not an answer: then the frameworks decide. Indices follow the PCI bus order,
    as the frameworks' do under CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed, so NVML cannot be asked"
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        no_driver = (pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded)
        signs = gpu_signs()
        if isinstance(exc, no_driver) and not signs:
            return [], None                   # a machine without an NVIDIA driver
        shown = f" on a machine that shows an NVIDIA GPU ({listed(signs)})" if signs else ""
        return [], f"NVML failed to start ({type(exc).__name__}: {exc}){shown}"
    try:
        return _list_gpus(pynvml), None
    except Exception as exc:
        return [], f"NVML failed ({type(exc).__name__}: {exc})"
    finally:
        _shutdown(pynvml)


def _list_gpus(pynvml) -> list[dict]:
    driver = _text(pynvml.nvmlSystemGetDriverVersion())
    cuda = cuda_version(pynvml.nvmlSystemGetCudaDriverVersion())
    found = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        found.append({"index": i, "name": _text(pynvml.nvmlDeviceGetName(handle)),
                      "memory_total": int(mem.total), "memory_free": int(mem.free),
                      "driver": driver, "cuda_driver": cuda,
                      "mig": mig_enabled(pynvml, handle), **energy.clocks_and_power(pynvml, handle)})
    return found


def cuda_version(code: int) -> str:
    """NVML's CUDA driver version, 1000 * major + 10 * minor (12040), as "12.4"."""
    return f"{code // 1000}.{code % 1000 // 10}"


def mig_enabled(pynvml, handle) -> bool:
    """Whether MIG mode is on (then CUDA sees MIG instances, not the whole GPU).
    GPUs without MIG, and drivers older than MIG, answer NotSupported / FunctionNotFound."""
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
        return False
    return current == pynvml.NVML_DEVICE_MIG_ENABLE


def _shutdown(pynvml) -> None:
    try:
        pynvml.nvmlShutdown()
    except Exception:                 # the answer is already read; keep it
        pass


def gpus() -> list[dict]:
    """Visible NVIDIA GPUs through NVML; [] where there is no GPU, or NVML cannot
    be asked and nothing shows one. Raises GpuDiscoveryError where NVML failed
    although the machine shows a GPU."""
    found, nvml_error = discover()
    if nvml_error and gpu_signs():
        raise GpuDiscoveryError(nvml_error)
    return found


def presence() -> tuple[str, str]:
    """This machine for the GPU check, as (kind, one line): "gpu" where NVML lists
    GPUs, "none" where no GPU shows at all, "broken" where NVML failed although a
    GPU shows (gpu_signs): a failure, never reported as "no GPU"."""
    found, nvml_error = discover()
    if found:
        return "gpu", "GPUs (NVML): " + "; ".join(
            f"cuda:{g['index']} {g['name']}" + (" (MIG on)" if g.get("mig") else "")
            for g in found)
    signs = gpu_signs()
    if nvml_error and signs:
        return "broken", (f"NVML failed on a machine that shows an NVIDIA GPU "
                          f"({listed(signs)}): {nvml_error}")
    if nvml_error:
        return "none", ("no GPU on this machine: no /proc/driver/nvidia/gpus entry, no "
                        f"/dev/nvidiaN device, and {nvml_error}")
    return "none", "no GPU on this machine: NVML finds no NVIDIA driver or GPU"


def unavailable(device: str, visible: list[dict], nvml_error: str | None = None) -> str | None:
    """Why a planned device does not exist on this machine, or None. Only NVML's
    own answer counts: where NVML itself is missing, the frameworks decide."""
    if device == "cpu" or (nvml_error and not device.startswith("gpu:")):
        return None
    names = ", ".join(f"cuda:{g['index']} {g['name']}" for g in visible)
    seen = f"visible: {names}" if visible else "no NVIDIA GPU or driver on this machine"
    if device.startswith("gpu:"):       # expand() found no GPU of that type
        return f"no visible GPU is a {device[4:]} ({seen})"
    index = int(device.split(":")[1]) if ":" in device else 0
    if any(g["index"] == index for g in visible):
        return None
    return f"no GPU {device} ({seen})"


def process_gpu_memory(index: int, pid: int) -> tuple[int | None, str]:
    """GPU memory NVML accounts to one process on one GPU (its CUDA context and
    every framework pool included), in bytes, and how it was read: NVML_PROCESS_USED.
    Where NVML cannot match the process (another PID namespace, as in some
    containers, or no per-process figure), the device's whole used memory stands
    in, named NVML_DEVICE_USED. Never raises: "unavailable: ..." says why."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as exc:
        return None, f"unavailable: NVML ({type(exc).__name__}: {exc})"
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory), NVML_PROCESS_USED
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used), NVML_DEVICE_USED
    except Exception as exc:
        return None, f"unavailable: NVML ({type(exc).__name__}: {exc})"
    finally:
        _shutdown(pynvml)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def expand(device: str, visible: list[dict]) -> list[str]:
    """A suite's device value as concrete devices: auto -> every GPU, else the CPU;
    cuda -> every GPU; gpu:TYPE -> the GPUs whose name contains TYPE."""
    if device == "auto":
        return [f"cuda:{g['index']}" for g in visible] or ["cpu"]
    if device == "cuda":
        return [f"cuda:{g['index']}" for g in visible] or ["cuda:0"]
    if device.startswith("gpu:"):
        return [f"cuda:{g['index']}" for g in visible if is_model(g["name"], device[4:])] \
            or [device]
    return [device]


def describe(device: str, visible: list[dict] | None = None) -> dict:
    """What a row says about its device: name, and for CPUs the thread count."""
    if device == "cpu":
        return {"device_name": cpu_name(), "threads": cpu_threads()}
    visible = gpus() if visible is None else visible
    if device.startswith("cuda:"):
        index = int(device.split(":")[1])
        for g in visible:
            if g["index"] == index:
                return {"device_name": g["name"], "threads": cpu_threads(),
                        "driver": g.get("driver"), "cuda_driver": g.get("cuda_driver")}
    return {"device_name": device, "threads": cpu_threads()}


def free_bytes(device: str, visible: list[dict]) -> int | None:
    """Memory a cell on `device` could have: the kernel's MemAvailable for the CPU,
    NVML's free memory for a GPU; None where unknown."""
    if device == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None
    if device.startswith("cuda:"):
        index = int(device.split(":")[1])
        return next((g.get("memory_free") for g in visible if g["index"] == index), None)
    return None


def host() -> str:
    return socket.gethostname()


def environment() -> dict:
    found, nvml_error = discover()
    return {"host": host(), "platform": platform.platform(),
            "python": platform.python_version(), "cpu": cpu_name(),
            "cpu_threads": cpu_threads(), "gpus": found, "nvml": nvml_error or "ok",
            "gpu_signs": gpu_signs()}
