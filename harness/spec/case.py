"""The Case (one cell of a sweep) and the constants of the Transformer spec.

Everything here is plain data: the names are the columns of every report
(docs/design.md, "The Case and the result row"), so they are kept exactly and only
ever extended.
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

WORKLOADS = ("attention", "mha", "block", "transformer")
MODES = ("forward", "train")
DTYPES = ("float32", "tf32", "bfloat16", "float16")
STATUSES = ("ok", "error", "oom", "timeout", "unsupported")

# The spec's numerics, set explicitly in every backend because framework
# defaults differ (Keras eps 1e-3, Flax 1e-6, torch GELU exact, ...).
LAYERNORM_EPS = 1e-5
MLP_RATIO = 4
GELU_APPROXIMATE = "tanh"

CASE_FIELDS = (
    "suite", "workload", "backend", "variant", "mode", "dtype", "device",
    "batch", "seq_len", "heads", "head_dim", "causal", "layers", "kv_heads",
)

RESULT_COLUMNS = (
    "run_id", "started_at", "host", "device_name", "backend_version",
    "status", "reason", "n_samples", "median_ms", "iqr_ms", "min_ms",
    "mean_ms", "p10_ms", "p90_ms", "first_call_ms", "peak_mem_bytes",
    "mem_method", "flops", "tflops", "pct_peak", "max_abs_err", "err_ratio",
    "correct",
)


@dataclass(frozen=True)
class Case:
    """One cell of a sweep: what to run, where, at which shape and precision."""

    suite: str
    workload: str
    backend: str
    variant: str
    mode: str
    dtype: str
    device: str
    batch: int
    seq_len: int
    heads: int
    head_dim: int
    causal: bool
    layers: int = 1
    # Key/value heads, dividing `heads`: query head h reads key/value head
    # h // (heads // kv_heads). Equal to heads (the default) is multi-head
    # attention, 1 multi-query, in between grouped-query (Llama 3: 32 and 8).
    kv_heads: int | None = None

    def __post_init__(self):
        kv = self.kv_heads
        kv = self.heads if kv is None or kv != kv or kv == 0 else int(kv)   # None, NaN: MHA
        if kv < 1 or self.heads % kv:
            raise ValueError(f"kv_heads = {kv} must divide heads = {self.heads}")
        object.__setattr__(self, "kv_heads", kv)

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads

    @property
    def d_model(self) -> int:
        return self.heads * self.head_dim

    @property
    def n_layers(self) -> int:
        """Blocks actually run: `layers` matters for `transformer` alone."""
        return self.layers if self.workload == "transformer" else 1

    @property
    def shape_key(self) -> str:
        """What fixes the numbers: same key, same weights, inputs and reference."""
        causal = "causal" if self.causal else "full"
        # Named only when grouped, so multi-head keys (seeds, caches) stay as they were.
        kv = "" if self.kv_heads == self.heads else f"-KV{self.kv_heads}"
        return (f"{self.workload}-B{self.batch}-N{self.seq_len}-H{self.heads}{kv}"
                f"-D{self.head_dim}-L{self.n_layers}-{causal}")

    @property
    def name(self) -> str:
        """A readable, unique name for the cell, used in logs and test ids."""
        return (f"{self.backend}-{self.variant}/{self.mode}/{self.dtype}/"
                f"{self.device}/{self.shape_key}")

    @property
    def file_stem(self) -> str:
        """The name as a file name (no slashes or colons)."""
        return self.name.replace("/", "~").replace(":", "")

    @property
    def seed(self) -> int:
        # Seeded from the shape alone, never the backend or dtype, so every
        # backend and precision sees the same draws (then rounded to its dtype).
        return zlib.crc32(self.shape_key.encode())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        return cls(**{k: d[k] for k in CASE_FIELDS if k != "kv_heads"},
                   kv_heads=d.get("kv_heads"))      # rows from before it: MHA

    def replace(self, **changes) -> "Case":
        if "heads" in changes and "kv_heads" not in changes and self.kv_heads == self.heads:
            changes["kv_heads"] = None        # multi-head stays multi-head
        return dataclasses.replace(self, **changes)
