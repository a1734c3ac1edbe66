"""The correctness gate: a benchmark row is only as correct as its configuration.

A configuration is what a row computes apart from its size: backend, variant,
workload, mode, dtype, mask and device. `attnbench check` judges configurations on
small odd shapes; `attnbench run` checks the configurations of its suite first
(into the run folder's check/), and a row whose configuration fails there is
recorded `correct = false` whatever its own check said, with a note naming the
failing case. A row too large for the float64 reference is judged by its
configuration alone, and its note says so.
"""
from __future__ import annotations

import pandas as pd

CONFIG_FIELDS = ("backend", "variant", "workload", "mode", "dtype", "causal", "device")
FAILED = ("error", "oom", "timeout")


def config_key(case_or_row) -> tuple:
    get = case_or_row.get if isinstance(case_or_row, dict) else case_or_row.to_dict().get
    flags = (("grouped", is_grouped(get)), ("fewer queries", has_fewer_queries(get)),
             ("window", _given(get("window")) is not None),
             ("padded", is_padded(get)))
    return tuple(str(get(k)) for k in CONFIG_FIELDS) + tuple(f for f, on in flags if on)


# Each flag is code of its own in every backend (a repeat of heads, a mask aligned
# bottom-right, a window, per-sequence lengths), so a configuration of its own. Rows from before: off.
def is_grouped(get) -> bool:
    """Fewer key/value heads than query heads."""
    kv = _given(get("kv_heads"))
    return kv is not None and kv != int(get("heads"))


def has_fewer_queries(get) -> bool:
    """Fewer query rows than keys (decode, or a core's q_len)."""
    q_len = _given(get("q_len"))
    return q_len is not None and q_len != int(get("seq_len"))


def is_padded(get) -> bool:
    """A padded batch (lengths): a mask of per-sequence lengths."""
    lengths = get("lengths")
    return lengths is not None and not pd.isna(lengths) and lengths not in ("", "none")


def _given(value) -> int | None:
    return None if value is None or pd.isna(value) or value == 0 else int(value)


def is_failure(row: dict) -> bool:
    """A case fails when it did not finish (error, oom, timeout) or finished wrong."""
    # `==`, not `is`: a value read back through pandas may be NumPy's False.
    return row["status"] in FAILED or row.get("correct") == False  # noqa: E712


def verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per check case: pass, FAIL or unsupported."""
    failed = pd.Series([is_failure(row) for row in frame.to_dict("records")],
                       index=frame.index, dtype=bool)
    verdict = pd.Series("pass", index=frame.index)
    verdict[frame["status"] == "unsupported"] = "unsupported"
    verdict[failed] = "FAIL"
    return frame.assign(verdict=verdict)


def what_failed(row: dict) -> str:
    """Why a failed row failed: its reason, or for a wrong result its worst tensor."""
    return row.get("reason") or f"{row.get('err_tensor')} err_ratio {row.get('err_ratio'):.3g}"


def failure_text(row: dict) -> str:
    from harness.spec import Case
    return f"{Case.from_dict(row).name}: {what_failed(row)}"


def config_verdicts(checks: pd.DataFrame) -> dict[tuple, str | None]:
    """Configuration -> None when every case of it that ran passed, else the first
    failing case. Configurations the device cannot run at all are left out."""
    result: dict[tuple, str | None] = {}
    for row in verdicts(checks).to_dict("records"):
        if row["verdict"] == "unsupported":
            continue
        key = config_key(row)
        if row["verdict"] == "FAIL":
            if result.get(key) is None:
                result[key] = failure_text(row)
        else:
            result.setdefault(key, None)
    return result


def apply(row: dict, configs: dict[tuple, str | None]) -> dict:
    """The row with the gate's verdict in `gate`, folded into `correct`; `judged_by`
    says when the configuration's check alone decides it (and `check_note` why)."""
    key = config_key(row)
    if row.get("status") != "ok" or key not in configs:
        return row
    failure = configs[key]
    if failure is not None:
        return {**row, "correct": False, "gate": "fail", "judged_by": "config",
                "check_note": f"configuration fails attnbench check: {failure}"}
    if row.get("correct") is None:
        own = row.get("check_note") or "this cell was not checked itself"
        return {**row, "correct": True, "gate": "pass", "judged_by": "config",
                "check_note": f"judged by its configuration's check on small shapes ({own})"}
    return {**row, "gate": "pass"}
