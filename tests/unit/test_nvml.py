"""NVML through harness.measure.devices, every branch, with a stand-in pynvml
(tests/unit/nvml_fake.py): no GPU, no nvidia-ml-py, NVML failing at start or
mid-way (a failure, not "no GPU", where the machine shows a GPU), what a listing
holds, and the per-process memory figure with its named device-wide fallback."""
from __future__ import annotations

import inspect
import sys

import pytest

from harness.measure import devices
from tests.unit import nvml_fake
from tests.unit.nvml_fake import FakeNvml, gpu


@pytest.fixture(autouse=True)
def no_signs(tmp_path, monkeypatch):
    """Framework-free GPU signs read under an empty folder: none, whatever this
    machine has. Returns that folder, for tests that plant them."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setattr(devices, "GPU_SIGN_ROOT", str(root))
    return root


@pytest.fixture
def signs(no_signs):
    """A GPU machine's signs: the driver's entry for one GPU and its device file,
    beside files of the driver that are not GPUs."""
    (no_signs / "proc/driver/nvidia/gpus/0000:18:00.0").mkdir(parents=True)
    (no_signs / "dev").mkdir()
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-modeset"):
        (no_signs / "dev" / name).touch()
    return [str(no_signs / "proc/driver/nvidia/gpus/0000:18:00.0"),
            str(no_signs / "dev/nvidia0")]


def use(monkeypatch, fake) -> FakeNvml:
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


# --- the stand-in is the real module's shape ----------------------------------------

def test_the_fake_mirrors_real_pynvml():
    real = pytest.importorskip("pynvml")
    for cls in nvml_fake.ERROR_CLASSES:
        twin = getattr(real, cls.__name__)
        assert issubclass(twin, real.NVMLError) and twin is not real.NVMLError
        assert twin().value == cls.value and str(twin()) == str(cls())
    for name in nvml_fake.FUNCTIONS:
        want = list(inspect.signature(getattr(real, name)).parameters)
        assert list(inspect.signature(getattr(FakeNvml, name)).parameters)[1:] == want, name
    assert real.NVML_DEVICE_MIG_ENABLE == nvml_fake.NVML_DEVICE_MIG_ENABLE
    for name in ("NVML_CLOCK_SM", "NVML_CLOCK_MEM", "NVML_TEMPERATURE_GPU"):
        assert getattr(real, name) == getattr(nvml_fake, name), name


def test_gpu_signs_are_gpu_entries_and_numbered_device_files_only(signs):
    assert devices.gpu_signs() == signs


# --- no GPU, or NVML that cannot answer ---------------------------------------------

def test_without_nvidia_ml_py_nvml_cannot_be_asked(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)          # import pynvml: ImportError
    found, error = devices.discover()
    assert found == [] and "nvidia-ml-py is not installed" in error
    kind, line = devices.presence()
    assert kind == "none" and line.startswith("no GPU on this machine") and error in line
    assert devices.gpus() == []


def test_without_nvidia_ml_py_on_a_gpu_machine_is_a_failure(monkeypatch, signs):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    kind, line = devices.presence()
    assert kind == "broken" and "nvidia-ml-py is not installed" in line and signs[0] in line
    with pytest.raises(devices.GpuDiscoveryError, match="nvidia-ml-py"):
        devices.gpus()


@pytest.mark.parametrize("error", [nvml_fake.NVMLError_LibraryNotFound,
                                   nvml_fake.NVMLError_DriverNotLoaded])
def test_no_library_or_no_driver_is_a_certain_no_gpu(monkeypatch, error):
    fake = use(monkeypatch, FakeNvml(init_error=error()))
    assert devices.discover() == ([], None)
    assert fake.calls == ["nvmlInit"]          # nothing to shut down after a failed start
    assert devices.presence() == (
        "none", "no GPU on this machine: NVML finds no NVIDIA driver or GPU")


@pytest.mark.parametrize("error", [nvml_fake.NVMLError_LibraryNotFound,
                                   nvml_fake.NVMLError_DriverNotLoaded])
def test_no_library_or_no_driver_where_a_gpu_shows_is_an_nvml_failure(monkeypatch, signs,
                                                                       error):
    use(monkeypatch, FakeNvml(init_error=error()))
    found, message = devices.discover()
    assert found == [] and message is not None
    assert f"{error.__name__}: {error()}" in message and signs[0] in message
    assert devices.presence()[0] == "broken"
    with pytest.raises(devices.GpuDiscoveryError, match=error.__name__):
        devices.gpus()


@pytest.mark.parametrize("error", [nvml_fake.NVMLError_LibRmVersionMismatch,
                                   nvml_fake.NVMLError_NoPermission,
                                   nvml_fake.NVMLError_Unknown])
def test_any_other_failure_to_start_is_reported_with_nvmls_message(monkeypatch, signs,
                                                                   error):
    use(monkeypatch, FakeNvml(init_error=error()))
    found, message = devices.discover()
    assert found == [] and f"NVML failed to start ({error.__name__}: {error()})" in message
    kind, line = devices.presence()
    assert kind == "broken" and str(error()) in line and signs[1] in line


def test_a_failure_to_start_without_any_gpu_sign_is_no_gpu_with_the_reason(monkeypatch):
    use(monkeypatch, FakeNvml(init_error=nvml_fake.NVMLError_Unknown()))
    kind, line = devices.presence()
    assert kind == "none" and "NVMLError_Unknown: Unknown Error" in line
    assert devices.gpus() == []


@pytest.mark.parametrize("function", ["nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName",
                                      "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMigMode"])
def test_a_call_failing_mid_listing_fails_the_listing_and_shuts_nvml_down(monkeypatch,
                                                                          signs, function):
    fake = use(monkeypatch, FakeNvml(
        [gpu(), gpu()], fail=(function, 1, nvml_fake.NVMLError_GpuIsLost())))
    assert devices.discover() == ([], "NVML failed (NVMLError_GpuIsLost: GPU is lost)")
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]
    kind, line = devices.presence()
    assert kind == "broken" and "GPU is lost" in line
    with pytest.raises(devices.GpuDiscoveryError, match="GPU is lost"):
        devices.gpus()


# --- what a listing holds -------------------------------------------------------------

@pytest.mark.parametrize("as_bytes", [False, True])
def test_names_and_driver_version_as_bytes_or_text(monkeypatch, as_bytes):
    name, driver = "NVIDIA H200", "580.65.06"
    encode = (lambda s: s.encode()) if as_bytes else (lambda s: s)
    use(monkeypatch, FakeNvml([gpu(name=encode(name))], driver=encode(driver)))
    [found], error = devices.discover()
    assert error is None
    assert found["name"] == name and found["driver"] == driver


@pytest.mark.parametrize("code, version", [(12040, "12.4"), (12080, "12.8"),
                                           (11020, "11.2"), (13000, "13.0"),
                                           (12090, "12.9"), (10010, "10.1")])
def test_cuda_driver_version(monkeypatch, code, version):
    assert devices.cuda_version(code) == version
    use(monkeypatch, FakeNvml([gpu()], cuda=code))
    assert devices.discover()[0][0]["cuda_driver"] == version


def test_several_gpus_in_index_order_with_their_own_memory_and_mig_mode(monkeypatch):
    fake = use(monkeypatch, FakeNvml([
        gpu("NVIDIA H100 80GB HBM3", total=80 * 2**30, free=70 * 2**30),
        gpu("NVIDIA A100-SXM4-40GB", total=40 * 2**30, free=39 * 2**30, mig=1),
        gpu("NVIDIA L4", total=24 * 2**30, free=2**30, mig=0)]))
    found, error = devices.discover()
    assert error is None
    assert [(g["index"], g["name"], g["memory_total"], g["memory_free"], g["mig"])
            for g in found] == [
        (0, "NVIDIA H100 80GB HBM3", 80 * 2**30, 70 * 2**30, False),
        (1, "NVIDIA A100-SXM4-40GB", 40 * 2**30, 39 * 2**30, True),
        (2, "NVIDIA L4", 24 * 2**30, 2**30, False)]
    assert {g["driver"] for g in found} == {"580.65.06"}
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]
    kind, line = devices.presence()
    assert kind == "gpu" and "cuda:1 NVIDIA A100-SXM4-40GB (MIG on)" in line
    assert "cuda:0 NVIDIA H100 80GB HBM3;" in line and "L4 (MIG" not in line


@pytest.mark.parametrize("no_mig", [nvml_fake.NVMLError_NotSupported,
                                    nvml_fake.NVMLError_FunctionNotFound])
def test_gpus_or_drivers_without_mig_list_with_mig_off(monkeypatch, no_mig):
    fake = use(monkeypatch, FakeNvml([gpu(), gpu()]))
    fake.nvmlDeviceGetMigMode = lambda device: (_ for _ in ()).throw(no_mig())
    found, error = devices.discover()
    assert error is None and [g["mig"] for g in found] == [False, False]


def test_a_failing_shutdown_keeps_the_listing(monkeypatch):
    use(monkeypatch, FakeNvml([gpu()], shutdown_error=nvml_fake.NVMLError_Uninitialized()))
    found, error = devices.discover()
    assert error is None and [g["index"] for g in found] == [0]


def test_no_gpu_listed_by_a_working_nvml_is_no_gpu(monkeypatch, signs):
    use(monkeypatch, FakeNvml([]))          # e.g. a container given none of the GPUs
    assert devices.discover() == ([], None) and devices.gpus() == []
    assert devices.presence()[0] == "none"


# --- memory NVML accounts to one process ----------------------------------------------

def test_process_memory_when_nvml_sees_the_process(monkeypatch):
    fake = use(monkeypatch, FakeNvml([gpu(), gpu(used=9 * 2**30, processes=[
        (100, 5 * 2**30), (4242, 3 * 2**30)])]))
    assert devices.process_gpu_memory(1, 4242) == (3 * 2**30, devices.NVML_PROCESS_USED)
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]


@pytest.mark.parametrize("processes", [[(100, 5 * 2**30)],        # another PID namespace
                                       [(4242, None)]])            # no per-process figure
def test_process_memory_falls_back_to_the_devices_used_memory_named_so(monkeypatch,
                                                                       processes):
    use(monkeypatch, FakeNvml([gpu(used=9 * 2**30, processes=processes)]))
    assert devices.process_gpu_memory(0, 4242) == (9 * 2**30, devices.NVML_DEVICE_USED)


def test_process_memory_says_why_it_is_unavailable(monkeypatch):
    fake = use(monkeypatch, FakeNvml([gpu()], fail=(
        "nvmlDeviceGetComputeRunningProcesses", 0, nvml_fake.NVMLError_NoPermission())))
    assert devices.process_gpu_memory(0, 4242) == (
        None, "unavailable: NVML (NVMLError_NoPermission: Insufficient Permissions)")
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]
    use(monkeypatch, FakeNvml(init_error=nvml_fake.NVMLError_DriverNotLoaded()))
    assert devices.process_gpu_memory(0, 4242) == (
        None, "unavailable: NVML (NVMLError_DriverNotLoaded: Driver Not Loaded)")


# --- the GPU tests' gate (tests/gpu/conftest.py) --------------------------------------

@pytest.mark.parametrize("nvml, signs_here, frameworks, kind", [
    (([{"index": 0}], None), [], [], "run"),
    (([], None), [], [], "skip"),                              # no GPU anywhere
    (([], "nvidia-ml-py is not installed"), [], [], "skip"),
    (([], "NVML failed (NVMLError_GpuIsLost: GPU is lost)"), ["/dev/nvidia0"], [], "fail"),
    (([], "nvidia-ml-py is not installed"), [], ["torch sees 1 CUDA device(s)"], "fail"),
    (([], None), [], ["JAX sees 8 GPU device(s)"], "fail"),    # NVML blind, JAX not
])
def test_the_gpu_tests_skip_only_where_no_gpu_is_present(monkeypatch, nvml, signs_here,
                                                         frameworks, kind):
    from tests.gpu import conftest
    monkeypatch.setattr(devices, "discover", lambda: nvml)
    monkeypatch.setattr(devices, "gpu_signs", lambda: signs_here)
    monkeypatch.setattr(conftest, "frameworks_seeing_a_gpu", lambda: frameworks)
    conftest.gpu_verdict.cache_clear()
    try:
        got, why = conftest.gpu_verdict()
    finally:
        conftest.gpu_verdict.cache_clear()
    assert got == kind
    if kind == "fail":          # NVML's own message, and what shows the GPU
        assert (nvml[1] or "NVML finds no") in why and (signs_here + frameworks)[0] in why
