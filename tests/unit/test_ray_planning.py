"""How a Ray cluster's resources turn a suite's devices into tasks, without Ray:
the planning half of harness/run/executors/ray_cluster.py on a described cluster."""
import pytest

from harness.run import runner
from harness.run.executors.ray_cluster import RayExecutor
from harness.spec import Case
from harness.run.suite import parse_suite


def cluster(types=("H100", "A100"), gpus=2, threads=4, node_cpus=16) -> RayExecutor:
    ex = RayExecutor.__new__(RayExecutor)          # no ray.init: the resources as given
    ex.gpu_types, ex.gpus, ex.threads, ex.node_cpus = sorted(types), gpus, threads, node_cpus
    return ex


def case(device: str) -> Case:
    return Case("r", "attention", "torch", "sdpa", "forward", "bfloat16", device,
                1, 64, 2, 16, False)


@pytest.mark.parametrize("device, expected", [
    ("auto", ["gpu:A100", "gpu:H100"]), ("cuda", ["gpu:A100", "gpu:H100"]),
    ("gpu:h100", ["gpu:H100"]),                     # spelled as the cluster spells it
    ("gpu:V100", ["gpu:V100"]), ("cpu", ["cpu"]), ("cuda:1", ["cuda:1"])])
def test_devices_expand_to_the_clusters_gpu_types(device, expected):
    assert cluster().expand(device) == expected


def test_a_cluster_without_gpus():
    ex = cluster(types=(), gpus=0)
    assert ex.expand("auto") == ["cpu"] and ex.expand("cuda") == ["cuda"]
    assert ex.refuse(case("cuda")) == ("unsupported", "the Ray cluster has no GPU")
    assert ex.refuse(case("cpu")) is None


def test_missing_types_are_refused_before_submitting():
    ex = cluster()
    assert ex.refuse(case("gpu:H100")) is None
    status, reason = ex.refuse(case("gpu:V100"))
    assert status == "unsupported" and "V100" in reason and "A100, H100" in reason


def test_each_task_asks_for_its_cells_resources():
    ex = cluster(threads=4)
    assert ex.options("gpu:A100") == {"num_cpus": 1, "num_gpus": 1, "accelerator_type": "A100"}
    assert ex.options("cuda:1") == {"num_cpus": 1, "num_gpus": 1}     # any GPU
    assert ex.options("cpu") == {"num_cpus": 4, "num_gpus": 0}
    # Never more CPUs than the largest node has: such a task would wait forever.
    assert cluster(threads=16, node_cpus=2).options("cpu") == {"num_cpus": 2, "num_gpus": 0}


def test_plan_and_device_filter_on_a_cluster():
    suite = parse_suite({"name": "r", "sweep": [{
        "workload": "attention", "backend": "torch", "device": ["auto", "cpu"],
        "batch": 1, "seq_len": 64, "heads": 2, "head_dim": 16,
        "variants": {"torch": ["sdpa"]}}]}, "r.toml")
    ex = cluster()
    planned = runner.plan(suite, gpus=[], expand=ex.expand)
    assert [c.device for c in planned] == ["gpu:A100", "gpu:H100", "cpu"]
    only = runner.plan(suite, gpus=[], only=["gpu:H100"], expand=ex.expand)
    assert [c.device for c in only] == ["gpu:H100"]
    for wanted in (["cuda"], ["auto"], ["gpu:h100", "gpu:a100"]):   # as the cluster expands
        gpu = runner.plan(suite, gpus=[], only=wanted, expand=ex.expand)
        assert [c.device for c in gpu] == ["gpu:A100", "gpu:H100"], wanted
