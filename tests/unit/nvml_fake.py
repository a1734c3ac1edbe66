"""A stand-in for nvidia-ml-py's `pynvml` module, for the NVML branches of
harness.measure.devices on a machine without a GPU. Its names, signatures, error classes
and error texts are those of the real module (nvidia-ml-py 13.x, pynvml.py);
tests/unit/test_nvml.py checks them against the real one where it is installed."""
from __future__ import annotations

import types

NVML_DEVICE_MIG_DISABLE = 0x0
NVML_DEVICE_MIG_ENABLE = 0x1
NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0


class NVMLError(Exception):
    """As in pynvml: the base of one subclass per NVML_ERROR_* code; str() is the
    code's text from pynvml's table (NVMLError._errcode_to_string)."""
    value = 999
    text = "Unknown Error"

    def __str__(self):
        return self.text


def _error_class(name: str, value: int, text: str) -> type[NVMLError]:
    # pynvml builds these in _extractNVMLErrorsAsClasses; built with no argument.
    return type(f"NVMLError_{name}", (NVMLError,), {"value": value, "text": text})


NVMLError_Uninitialized = _error_class("Uninitialized", 1, "Uninitialized")
NVMLError_NotSupported = _error_class("NotSupported", 3, "Not Supported")
NVMLError_NoPermission = _error_class("NoPermission", 4, "Insufficient Permissions")
NVMLError_DriverNotLoaded = _error_class("DriverNotLoaded", 9, "Driver Not Loaded")
NVMLError_LibraryNotFound = _error_class("LibraryNotFound", 12, "NVML Shared Library Not Found")
NVMLError_FunctionNotFound = _error_class("FunctionNotFound", 13, "Function Not Found")
NVMLError_GpuIsLost = _error_class("GpuIsLost", 15, "GPU is lost")
NVMLError_LibRmVersionMismatch = _error_class(
    "LibRmVersionMismatch", 18, "RM has detected an NVML/RM version mismatch.")
NVMLError_Unknown = _error_class("Unknown", 999, "Unknown Error")
ERROR_CLASSES = (NVMLError_Uninitialized, NVMLError_NotSupported, NVMLError_NoPermission,
                 NVMLError_DriverNotLoaded, NVMLError_LibraryNotFound,
                 NVMLError_FunctionNotFound, NVMLError_GpuIsLost,
                 NVMLError_LibRmVersionMismatch, NVMLError_Unknown)


def gpu(name="NVIDIA H100 80GB HBM3", total=80 * 2**30, free=79 * 2**30, used=2**30,
        mig=None, processes=(), readings=None) -> dict:
    """One GPU of the fake: mig None (no MIG: NotSupported), 0 (off) or 1 (on);
    processes as (pid, usedGpuMemory) pairs; readings: NVML's answers over time, by
    function name ("energy_mj", "sm_mhz", "mem_mhz", "temp_c", "power_mw",
    "limit_mw", "reasons", "app_sm_mhz", "app_mem_mhz"), each a list read in turn,
    its last value kept once reached; a name left out is NotSupported."""
    return {"name": name, "total": total, "free": free, "used": used, "mig": mig,
            "processes": list(processes),
            "readings": {k: list(v) for k, v in (readings or {}).items()}}


class FakeNvml(types.ModuleType):
    """pynvml over a list of GPUs. `init_error`: raised by nvmlInit; `fail`:
    (function name, GPU index, error) raised when that function reaches that GPU.
    `calls` records nvmlInit and nvmlShutdown, in order."""

    def __init__(self, gpus=(), driver="580.65.06", cuda=13000, init_error=None,
                 fail=None, shutdown_error=None):
        super().__init__("pynvml")
        self.__dict__.update({k: v for k, v in globals().items()
                              if k.startswith(("NVMLError", "NVML_"))})
        self.gpus, self.driver, self.cuda = list(gpus), driver, cuda
        self.init_error, self.fail, self.shutdown_error = init_error, fail, shutdown_error
        self.calls: list[str] = []

    def _check(self, function: str, index: int) -> dict:
        if self.fail and self.fail[:2] == (function, index):
            raise self.fail[2]
        return self.gpus[index]

    def nvmlInit(self):
        self.calls.append("nvmlInit")
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls.append("nvmlShutdown")
        if self.shutdown_error:
            raise self.shutdown_error

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check("nvmlDeviceGetHandleByIndex", index)
        return types.SimpleNamespace(index=index)

    def nvmlDeviceGetName(self, handle):
        return self._check("nvmlDeviceGetName", handle.index)["name"]

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        g = self._check("nvmlDeviceGetMemoryInfo", handle.index)
        return types.SimpleNamespace(total=g["total"], free=g["free"], used=g["used"])

    def nvmlDeviceGetMigMode(self, device):
        g = self._check("nvmlDeviceGetMigMode", device.index)
        if g["mig"] is None:
            raise NVMLError_NotSupported()
        return [g["mig"], g["mig"]]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        g = self._check("nvmlDeviceGetComputeRunningProcesses", handle.index)
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used)
                for pid, used in g["processes"]]


    def _reading(self, function: str, index: int, name: str):
        values = self._check(function, index)["readings"].get(name)
        if not values:
            raise NVMLError_NotSupported()
        return values.pop(0) if len(values) > 1 else values[0]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self._reading("nvmlDeviceGetTotalEnergyConsumption", handle.index, "energy_mj")

    def nvmlDeviceGetClockInfo(self, handle, type):
        name = {NVML_CLOCK_SM: "sm_mhz", NVML_CLOCK_MEM: "mem_mhz"}[type]
        return self._reading("nvmlDeviceGetClockInfo", handle.index, name)

    def nvmlDeviceGetApplicationsClock(self, handle, type):
        name = {NVML_CLOCK_SM: "app_sm_mhz", NVML_CLOCK_MEM: "app_mem_mhz"}[type]
        return self._reading("nvmlDeviceGetApplicationsClock", handle.index, name)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._reading("nvmlDeviceGetTemperature", handle.index, "temp_c")

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._reading("nvmlDeviceGetPowerUsage", handle.index, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._reading("nvmlDeviceGetEnforcedPowerLimit", handle.index, "limit_mw")

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._reading("nvmlDeviceGetCurrentClocksEventReasons", handle.index, "reasons")


FUNCTIONS = ("nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion",
             "nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetCount",
             "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
             "nvmlDeviceGetMigMode", "nvmlDeviceGetComputeRunningProcesses",
             "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetClockInfo",
             "nvmlDeviceGetApplicationsClock", "nvmlDeviceGetTemperature",
             "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit",
             "nvmlDeviceGetCurrentClocksEventReasons")
