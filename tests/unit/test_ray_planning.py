"""How a Ray cluster's resources turn a suite's devices into tasks, without Ray:
the planning half of harness/run/executors/ray_cluster.py on a described cluster,
and the one line for a cluster that cannot be reached."""
import pytest

from harness.run import plan
from harness.run.executors import ray_cluster
from harness.run.executors.ray_cluster import ExecutorError, RayExecutor
from harness.run.suite import parse_suite
from harness.spec import Case


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
    assert ex.unavailable("cuda") == "the Ray cluster has no GPU"
    assert ex.unavailable("cpu") is None
    assert plan.refusal(case("cuda"), [], None, ex) == ("unsupported",
                                                        "the Ray cluster has no GPU")


def test_missing_types_are_refused_before_submitting():
    ex = cluster()
    assert ex.unavailable("gpu:H100") is None
    reason = ex.unavailable("gpu:V100")
    assert "V100" in reason and "A100, H100" in reason
    assert plan.refusal(case("gpu:V100"), [], None, ex) == ("unsupported", reason)


def test_the_refusal_chain_on_a_cluster():
    """A gpu:TYPE cell is a CUDA cell to the catalogue, and this machine's memory
    says nothing of a node's: only the cluster and the catalogue refuse."""
    ex = cluster()
    assert plan.refusal(case("gpu:H100"), [], None, ex) is None
    flash = case("gpu:H100").replace(variant="sdpa-flash", dtype="float32")
    assert plan.refusal(flash, [], None, ex) == ("unsupported",
                                                 "torch sdpa-flash does not run float32")
    huge = case("cpu").replace(batch=4096, seq_len=65536, heads=64, head_dim=256)
    assert plan.refusal(huge, [], None, ex) is None
    assert plan.refusal(huge, [], None)[0] == "oom"            # on this machine


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
    planned = plan.planned_cases(suite, gpus=[], expand=ex.expand)
    assert [c.device for c in planned] == ["gpu:A100", "gpu:H100", "cpu"]
    only = plan.planned_cases(suite, gpus=[], only=["gpu:H100"], expand=ex.expand)
    assert [c.device for c in only] == ["gpu:H100"]
    for wanted in (["cuda"], ["auto"], ["gpu:h100", "gpu:a100"]):   # as the cluster expands
        gpu = plan.planned_cases(suite, gpus=[], only=wanted, expand=ex.expand)
        assert [c.device for c in gpu] == ["gpu:A100", "gpu:H100"], wanted


def test_on_a_cluster_the_gate_checks_the_cpu_cells_alone():
    """The gate runs on this machine, which cannot see a node's GPUs."""
    target = plan.Target([], None, cluster())
    cells = [case("gpu:H100"), case("cpu"), case("gpu:V100")]
    assert target.gated_cells(cells) == [case("cpu")]
    here = plan.Target([])                  # this machine, no GPU: the CPU cell alone runs
    assert here.gated_cells([case("cuda:0"), case("cpu")]) == [case("cpu")]


def test_a_dry_run_on_a_cluster_counts_its_gpu_cells_as_runnable():
    suite = parse_suite({"name": "r", "sweep": [{
        "workload": "attention", "backend": "torch", "device": ["auto", "gpu:V100"],
        "dtype": "bfloat16", "batch": 1, "seq_len": 64, "heads": 2, "head_dim": 16,
        "variants": {"torch": ["sdpa"]}}]}, "r.toml")
    ex = cluster()
    rows = plan.plan_summary(plan.planned_cases(suite, gpus=[], expand=ex.expand),
                             plan.Target([], None, ex))
    by_device = {r["device"]: r for r in rows}
    assert by_device["gpu:H100"]["to_run"] == by_device["gpu:A100"]["to_run"] == 1
    assert by_device["gpu:V100"]["to_run"] == 0
    assert "no V100 GPU" in by_device["gpu:V100"]["why_not"]


# -- a cluster that cannot be reached ------------------------------------------------

class FailingRay:
    """ray whose init fails as given: no cluster is started."""

    def __init__(self, error: BaseException):
        self.error = error

    def is_initialized(self) -> bool:
        return False

    def init(self, **_):
        raise self.error


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def in_context(outer: BaseException, context: BaseException) -> BaseException:
    outer.__context__ = context                  # raised while handling it
    return outer


# As Ray 2.60 fails against `ray start --head` with RAY_AUTH_MODE=token and no token
# on the driver: a ConnectionError from the GCS client's RuntimeError.
REFUSED = {
    "ray-2.60": chained(ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379"),
                        RuntimeError("Failed to connect to GCS. Last connection error: "
                                     "Unauthenticated: RPC error: InvalidAuthToken: "
                                     "Authentication token is missing or incorrect")),
    "context": in_context(ConnectionError("GCS unreachable"),
                          RuntimeError("status UNAUTHENTICATED")),
    "auth-error": type("AuthenticationError", (Exception,), {})("token mismatch"),
    "text": RuntimeError("rpc failed: invalid auth token"),
}


def executor_error(monkeypatch, error: BaseException) -> str:
    monkeypatch.setattr(ray_cluster, "_ray", lambda: FailingRay(error))
    with pytest.raises(ExecutorError) as info:
        RayExecutor("10.0.0.5:6379")
    line = str(info.value)
    assert len(line.splitlines()) == 1
    assert line.startswith(f"cannot reach a Ray cluster at 10.0.0.5:6379: "
                           f"{type(error).__name__}: ")
    return line


@pytest.mark.parametrize("error", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_token_is_named_with_what_to_set(monkeypatch, error):
    line = executor_error(monkeypatch, error)
    for words in ("refused this driver's token", "token authentication", "RAY_AUTH_MODE=token",
                  "RAY_AUTH_TOKEN,", "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token"):
        assert words in line, words


def test_a_cluster_that_is_not_there_is_not_called_an_auth_failure(monkeypatch):
    line = executor_error(monkeypatch, ConnectionError("Could not find any running Ray "
                                                       "instance."))
    assert line.endswith("ConnectionError: Could not find any running Ray instance.")
    assert "token" not in line
