"""The Case (one cell of a sweep) and the constants of the Transformer spec.

Everything here is plain data: the names are the columns of every report
(docs/design.md, "The Case and the result row"), so they are kept exactly and only
ever extended.
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import harness.spec.padding as padding

WORKLOADS = ("attention", "mha", "block", "transformer")
MODES = ("forward", "train", "decode")
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
    "q_len", "window", "lengths",
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
    # Query rows, against seq_len keys: fewer in decode (1 by default there), or on
    # the attention core alone; the causal mask aligns bottom-right, so query i sits
    # at position seq_len - q_len + i (FlashAttention >= 2.1).
    q_len: int | None = None
    # Sliding window (with causal): the query at position p sees keys p - window < j <= p.
    window: int | None = None
    # A padded batch (varlen): each sequence's length, drawn ("uniform:0.25") or given
    # ("17,0,33"); keys past a sequence's length are never attended (harness.spec.padding).
    lengths: str | None = None

    def __post_init__(self):
        kv = _given(self.kv_heads) or self.heads                   # None, NaN: MHA
        if kv < 1 or self.heads % kv:
            raise ValueError(f"kv_heads = {kv} must divide heads = {self.heads}")
        q_len = _given(self.q_len) or (1 if self.mode == "decode" else self.seq_len)
        if not 1 <= q_len <= self.seq_len:
            raise ValueError(f"q_len = {q_len} must be 1 to seq_len = {self.seq_len}")
        if q_len < self.seq_len and self.workload != "attention" and self.mode != "decode":
            raise ValueError(f"q_len < seq_len runs the attention core, or {self.workload} "
                             "in mode decode (against a KV cache)")
        window = _given(self.window)
        if window is not None and (window < 1 or not self.causal):
            raise ValueError(f"window = {window}: a sliding window is 1 key or more, "
                             "with causal = true")
        object.__setattr__(self, "kv_heads", kv)
        object.__setattr__(self, "q_len", q_len)
        lengths = padding.canonical(self.lengths, self.batch, self.seq_len)
        if lengths is not None and (self.mode == "decode" or q_len < self.seq_len):
            raise ValueError("lengths pads a batch of whole sequences (mode forward or "
                             "train, q_len = seq_len)")
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "lengths", lengths)

    @property
    def mask_hides_keys(self) -> bool:
        """Whether the mask hides any key from any query: not when causal leaves one
        query at the last position every key (a one-token decode step, no window
        short of the cache). Backends run that step unmasked, as serving does (a
        kernel's is_causal would align its one row top-left, and a mask of all
        True would keep the fused kernels out)."""
        return self.causal and not (self.q_len == 1 and (self.window or self.seq_len)
                                    >= self.seq_len)

    @property
    def padded(self) -> bool:
        """Whether some sequence is shorter than seq_len: keys past it are hidden."""
        lengths = padding.key_lengths(self)
        return lengths is not None and bool((lengths < self.seq_len).any())

    @property
    def q_offset(self) -> int:
        """The position of the first query row (bottom-right alignment)."""
        return self.seq_len - self.q_len

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
        q = f"-Q{self.q_len}" if self.q_len != self.seq_len or self.mode == "decode" else ""
        window = f"-W{self.window}" if self.window else ""
        lengths = f"-len{padding.tag(self.lengths)}" if self.lengths else ""
        return (f"{self.workload}-B{self.batch}-N{self.seq_len}{q}-H{self.heads}{kv}"
                f"-D{self.head_dim}-L{self.n_layers}-{causal}{window}{lengths}")

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
        # Rows from before an optional field: MHA, every query row, no window, unpadded.
        return cls(**{k: d[k] for k in CASE_FIELDS if k not in OPTIONAL_FIELDS},
                   **{k: d.get(k) for k in OPTIONAL_FIELDS})

    def replace(self, **changes) -> "Case":
        if "heads" in changes and "kv_heads" not in changes and self.kv_heads == self.heads:
            changes["kv_heads"] = None        # multi-head stays multi-head
        if ({"seq_len", "mode"} & set(changes) and "q_len" not in changes
                and self.q_len == self.seq_len):
            changes["q_len"] = None           # every row stays every row
        return dataclasses.replace(self, **changes)


# Fields later than the first contract: None (or absent) means their default.
OPTIONAL_FIELDS = ("kv_heads", "q_len", "window", "lengths")


def _given(value) -> int | None:
    """An optional integer field as given: None for None, NaN (a pandas row) or 0."""
    if value is None or value != value or value == 0:
        return None
    return int(value)
