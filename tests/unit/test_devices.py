"""Device discovery, expansion of a suite's device value, and the table of dense peaks."""
import pytest
from rich.console import Console

from harness.cli.env import show_env
from harness.measure import devices
from harness.measure.devices import describe, environment, expand, gpus, peak_tflops

VISIBLE = [{"index": 0, "name": "NVIDIA H100 80GB HBM3"},
           {"index": 1, "name": "NVIDIA A100-SXM4-80GB"},
           {"index": 2, "name": "NVIDIA H100 80GB HBM3"}]


@pytest.mark.parametrize("name, dtype, peak", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989),
    ("NVIDIA H100 80GB HBM3", "float16", 989),
    ("NVIDIA H100 80GB HBM3", "float32", 67),
    ("NVIDIA H100 80GB HBM3", "tf32", 495),
    ("NVIDIA H100 PCIe", "bfloat16", 756),          # not the SXM part
    ("NVIDIA H100 PCIe", "tf32", 378),
    ("NVIDIA H200", "bfloat16", 989),
    ("NVIDIA A100-SXM4-80GB", "tf32", 156),
    ("NVIDIA A100-SXM4-40GB", "bfloat16", 312),
    ("NVIDIA A10", "bfloat16", 125),                # not the A100
    ("NVIDIA L4", "tf32", 60),
    ("Tesla V100-SXM2-16GB", "float32", 15.7),
    ("NVIDIA GeForce RTX 4090", "bfloat16", 165),
    ("Tesla T4", "float16", 65),
])
def test_peak_tflops(name, dtype, peak):
    assert peak_tflops(name, dtype) == pytest.approx(peak)


@pytest.mark.parametrize("name, dtype", [
    ("Tesla T4", "tf32"),                           # no TF32 units
    ("Tesla V100-SXM2-16GB", "tf32"),
    ("Intel(R) Xeon(R) CPU @ 2.20GHz", "float32"),  # CPUs: unknown
    ("cpu", "bfloat16"),
    ("Some Future GPU", "bfloat16"),
])
def test_peak_tflops_unknown(name, dtype):
    assert peak_tflops(name, dtype) is None


@pytest.mark.parametrize("name", ["NVIDIA L40S", "NVIDIA RTX A1000 Laptop GPU"])
def test_peak_tflops_does_not_mistake_one_gpu_for_another(name):
    assert peak_tflops(name, "bfloat16") is None


def test_expand_with_gpus():
    assert expand("auto", VISIBLE) == ["cuda:0", "cuda:1", "cuda:2"]
    assert expand("cuda", VISIBLE) == ["cuda:0", "cuda:1", "cuda:2"]
    assert expand("gpu:h100", VISIBLE) == ["cuda:0", "cuda:2"]       # case-insensitive
    assert expand("gpu:A100", VISIBLE) == ["cuda:1"]
    assert expand("cpu", VISIBLE) == ["cpu"]
    assert expand("cuda:1", VISIBLE) == ["cuda:1"]


def test_expand_without_gpus():
    assert expand("auto", []) == ["cpu"]
    assert expand("cpu", []) == ["cpu"]
    # An explicit GPU request never silently becomes a CPU run: it stays a GPU device,
    # so the cell reports unsupported instead of vanishing.
    assert "cpu" not in expand("cuda", []) and expand("cuda", [])
    assert all(d.startswith("cuda") for d in expand("cuda", []))
    assert expand("gpu:V100", VISIBLE) == ["gpu:V100"]
    assert expand("gpu:h100", []) == ["gpu:h100"]


def test_describe_cpu():
    d = describe("cpu")
    assert isinstance(d["device_name"], str) and d["device_name"].strip()
    assert isinstance(d["threads"], int) and d["threads"] >= 1


def test_describe_gpu_from_visible_list():
    assert describe("cuda:1", VISIBLE)["device_name"] == "NVIDIA A100-SXM4-80GB"
    assert describe("cuda:7", VISIBLE)["device_name"] == "cuda:7"     # not visible


def test_gpus_lists_dicts_in_index_order():
    found = gpus()          # raises only where a GPU shows that NVML cannot list
    assert isinstance(found, list)
    for i, g in enumerate(found):
        assert g["index"] == i and g["name"] and g["memory_total"] > 0


def test_environment():
    env = environment()
    assert {"host", "platform", "python", "cpu", "cpu_threads", "gpus", "nvml",
            "gpu_signs"} <= env.keys()
    assert env["cpu_threads"] >= 1 and isinstance(env["gpus"], list)
    assert isinstance(env["gpu_signs"], list) and isinstance(env["nvml"], str)


def test_env_shows_an_nvml_failure_on_a_gpu_machine_as_a_failure(monkeypatch):
    broken = {**devices.environment(), "gpus": [], "gpu_signs": ["/dev/nvidia0"],
              "nvml": "NVML failed (NVMLError_GpuIsLost: GPU is lost)"}
    monkeypatch.setattr(devices, "environment", lambda: broken)
    console = Console(record=True, width=400)
    show_env(console)
    text = console.export_text()
    assert "FAILED: NVML failed (NVMLError_GpuIsLost: GPU is lost)" in text
    assert "shows an NVIDIA GPU (/dev/nvidia0)" in text and "not a machine without GPUs" in text
