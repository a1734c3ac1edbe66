"""The spec in NumPy, forward and backward, by hand: the source of truth.

`outputs(case, weights, inputs)` computes in float64. With `dtype=case.dtype` the
same code emulates the Case's own precision: each op's result is rounded to the
storage dtype (bfloat16, float16) after accumulating in float32, softmax,
LayerNorm and GELU run in float32, and tf32 rounds matmul operands to 10
mantissa bits. That low-precision reference's error against float64 is the
yardstick for judging a backend's error (FlashAttention's rule, see accuracy.py).

Layouts as docs/design.md ("the math") gives them: q, k, v and the core's output
are (B, N, H, D); activations are (B, N, d_model); weights are (in, out). Internally
the core works on (B, H, N, D) so that np.matmul hands contiguous matrices to BLAS.
The layers take their weights by sub-layer and role, as harness.spec.params nests
them: {"q": {WEIGHT: w, BIAS: b}, ...} for mha, {"ln1": {GAIN: g, SHIFT: b},
"mha/q": ..., ...} for a block; gradients come back the same way.
"""
from __future__ import annotations

import numpy as np

from harness.spec import padding, params
from harness.spec.case import LAYERNORM_EPS, Case
from harness.spec.params import BIAS, GAIN, SHIFT, WEIGHT
from harness.spec.precision import round_tf32
from harness.spec.reference_core import Numerics, attention, attention_backward

_GELU_C = np.sqrt(2.0 / np.pi)
_GELU_A = 0.044715


# -- layers: each forward returns (output, cache); each backward takes the cache and
#    returns the input's gradient and the parameters' by role --------------------

def linear(nx: Numerics, x, layer: dict):
    """x W + b, W (in, out)."""
    w, b = layer[WEIGHT], layer[BIAS]
    if nx.dtype == "tf32":
        y = np.matmul(round_tf32(x), round_tf32(w))
    else:
        y = np.matmul(x.astype(nx.wide, copy=False), w.astype(nx.wide, copy=False))
    return nx.r(y + b), (x, w)


def linear_backward(nx: Numerics, dy, cache):
    x, w = cache
    dx = nx.mm(dy, w.T)
    dw = nx.mm(x.reshape(-1, x.shape[-1]).T, dy.reshape(-1, dy.shape[-1]))
    db = nx.r(dy.astype(nx.wide, copy=False).sum(axis=tuple(range(dy.ndim - 1))))
    return dx, {WEIGHT: dw, BIAS: db}


def layernorm(nx: Numerics, x, layer: dict):
    g, b = layer[GAIN], layer[SHIFT]
    xw = x.astype(nx.wide, copy=False)
    mu = xw.mean(axis=-1, keepdims=True)
    var = ((xw - mu) ** 2).mean(axis=-1, keepdims=True)     # biased, as the spec says
    rstd = 1.0 / np.sqrt(var + LAYERNORM_EPS)
    xhat = (xw - mu) * rstd
    return nx.r(xhat * g + b), (xhat, rstd, g)


def layernorm_backward(nx: Numerics, dy, cache):
    xhat, rstd, g = cache
    dyw = dy.astype(nx.wide, copy=False)
    dxhat = dyw * g
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    axes = tuple(range(dy.ndim - 1))
    return nx.r(dx), {GAIN: nx.r((dyw * xhat).sum(axis=axes)), SHIFT: nx.r(dyw.sum(axis=axes))}


def gelu(nx: Numerics, x):
    xw = x.astype(nx.wide, copy=False)
    t = np.tanh(_GELU_C * (xw + _GELU_A * xw ** 3))
    return nx.r(0.5 * xw * (1.0 + t)), (xw, t)


def gelu_backward(nx: Numerics, dy, cache):
    xw, t = cache
    dt = (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_A * xw * xw)
    return nx.r(dy.astype(nx.wide, copy=False) * (0.5 * (1.0 + t) + 0.5 * xw * dt))


# -- workloads: `rows` (sequence positions) are the output rows wanted, all when None --

def _take(x, rows):
    return x if rows is None else x[:, rows]


def _add_rows(nx: Numerics, full, part, rows):
    """full + part, where `part` holds only the given rows (all when rows is None);
    the other rows of `full` pass unchanged, as if `part` were zero there."""
    if rows is None:
        return nx.r(full.astype(nx.wide, copy=False) + part)
    out = full.copy()
    out[:, rows] = nx.r(full[:, rows].astype(nx.wide, copy=False) + part)
    return out


def mha(nx: Numerics, x, w: dict, heads: int, mask: tuple, rows=None, cache=None):
    """Queries for the wanted rows only; keys and values for every row. `mask` is
    (causal, window, lengths). With `cache` (decode: this layer's k and v caches, (B, N, KV, D)),
    x holds the new tokens, whose keys and values overwrite the caches' last rows."""
    b, _, d = x.shape
    # head h: columns h*D:(h+1)*D; k and v have as many heads as their width holds
    split = lambda t: t.reshape(b, t.shape[1], t.shape[2] // (d // heads), d // heads)
    q, cq = linear(nx, _take(x, rows), w["q"])
    k, ck = linear(nx, x, w["k"])
    v, cv = linear(nx, x, w["v"])
    k, v = split(k), split(v)
    if cache is not None:
        k, v = (np.concatenate([c[:, :c.shape[1] - new.shape[1]], new], axis=1)
                for c, new in zip(cache, (k, v)))
    o, ca = attention(nx, split(q), k, v, mask[0], rows, *mask[1:])
    out, co = linear(nx, o.reshape(b, o.shape[1], d), w["o"])
    return out, (cq, ck, cv, ca, co, rows)


def mha_backward(nx: Numerics, dout, cache):
    cq, ck, cv, ca, co, rows = cache
    b, wanted, d = dout.shape
    grads = {}
    do, grads["o"] = linear_backward(nx, dout, co)
    heads = ca[0].shape[1]
    dq, dk, dv = attention_backward(nx, do.reshape(b, wanted, heads, d // heads), ca)
    dxq, grads["q"] = linear_backward(nx, dq.reshape(b, wanted, d), cq)
    dxk, grads["k"] = linear_backward(nx, dk.reshape(b, dk.shape[1], -1), ck)
    dxv, grads["v"] = linear_backward(nx, dv.reshape(b, dv.shape[1], -1), cv)
    return nx.r(_add_rows(nx, dxk, dxq, rows).astype(nx.wide, copy=False) + dxv), grads


def block(nx: Numerics, x, w: dict, heads: int, mask: tuple, rows=None, cache=None):
    a, c1 = layernorm(nx, x, w["ln1"])
    m, cm = mha(nx, a, params.within(w, params.ATTENTION), heads, mask, rows, cache)
    h = nx.r(_take(x, rows).astype(nx.wide, copy=False) + m)
    c, c2 = layernorm(nx, h, w["ln2"])
    u, cu = linear(nx, c, w["w1"])
    gu, cg = gelu(nx, u)
    z, cz = linear(nx, gu, w["w2"])
    return nx.r(h.astype(nx.wide, copy=False) + z), (c1, cm, c2, cu, cg, cz, rows)


def block_backward(nx: Numerics, dout, cache):
    c1, cm, c2, cu, cg, cz, rows = cache
    grads = {}
    dgu, grads["w2"] = linear_backward(nx, dout, cz)
    du = gelu_backward(nx, dgu, cg)
    dc, grads["w1"] = linear_backward(nx, du, cu)
    dh_ln, grads["ln2"] = layernorm_backward(nx, dc, c2)
    dh = nx.r(dout.astype(nx.wide, copy=False) + dh_ln)
    da, gm = mha_backward(nx, dh, cm)
    grads.update(params.under(params.ATTENTION, gm))
    dx_ln, grads["ln1"] = layernorm_backward(nx, da, c1)
    return _add_rows(nx, dx_ln, dh, rows), grads


def _run(case: Case, nx: Numerics, weights: dict, inputs: dict, train: bool,
         rows=None) -> dict:
    w = params.by_module(case, {k: nx.r(v) for k, v in weights.items()})
    # Queries and the output's cotangent only for the wanted rows; the rest in full.
    x = {k: nx.r(_take(v, rows) if k in ("q", "g") else v) for k, v in inputs.items()}
    g = x["g"] if train else None
    mask = (case.causal, case.window, padding.key_lengths(case))
    if case.workload == "attention":
        q_pos = None if rows is None else case.q_offset + np.asarray(rows)
        out, cache = attention(nx, x["q"], x["k"], x["v"], case.causal, q_pos, *mask[1:])
        if not train:
            return {"out": out}
        # With rows: dq of those queries, dk and dv of the keys at the same positions.
        dq, dk, dv = attention_backward(nx, g, cache, key_rows=rows)
        return {"out": out, "grad/q": dq, "grad/k": dk, "grad/v": dv}
    if case.workload in ("mha", "block"):
        layer, layer_backward = (mha, mha_backward) if case.workload == "mha" \
            else (block, block_backward)
        out, cache = layer(nx, x["x"], w, case.heads, mask, rows, _kv_cache(x, 0))
        if not train:
            return {"out": out}
        dx, grads = layer_backward(nx, g, cache)
        return _pack(case, out, dx, grads)
    h, caches = x["x"], []
    for i in range(case.n_layers):     # every row of every layer but the last feeds it
        last = i == case.n_layers - 1
        layer = params.within(w, params.layer_module(i))
        h, c = block(nx, h, layer, case.heads, mask, rows if last else None,
                     _kv_cache(x, i))
        caches.append(c)
    out, cf = layernorm(nx, h, w[params.FINAL_NORM])
    if not train:
        return {"out": out}
    dh, final = layernorm_backward(nx, g, cf)
    grads = {params.FINAL_NORM: final}
    for i in reversed(range(case.n_layers)):
        dh, gi = block_backward(nx, dh, caches[i])
        grads.update(params.under(params.layer_module(i), gi))
    return _pack(case, out, dh, grads)


def _kv_cache(inputs: dict, layer: int):
    """Layer `layer`'s (k, v) caches in decode mode; None otherwise."""
    return (inputs["k_cache"][layer], inputs["v_cache"][layer]) if "k_cache" in inputs else None


def _pack(case: Case, out, dx, grads: dict) -> dict:
    """Gradients by sub-layer, named as make_weights names the weights."""
    named = params.by_name(case, grads)
    return {"out": out, "grad/x": dx, **{f"grad/{k}": v for k, v in named.items()}}


def outputs(case: Case, weights: dict, inputs: dict, dtype: str = "float64",
            rows=None) -> dict:
    """The Case's results: {"out"} in forward and decode modes; with "grad/<name>" for every
    input and weight in train mode (gradients of sum(out * g)). With `rows`
    (sorted sequence positions), "out" holds those rows alone and the gradients
    are those of the loss on those rows, sum(out[:, rows] * g[:, rows]): whole,
    but for the attention core's dq, dk and dv, given at those positions alone
    (harness/correctness/sampling.py). Under the causal mask the rows see no position past
    the last of them, so the sequence is cut there (its grad/x is zero past it)."""
    n = case.seq_len
    # Not in decode: its caches hold the sequence on another axis, and its rows are few.
    cut = rows is not None and case.causal and case.q_len == n and case.mode != "decode"
    seen = int(np.max(rows)) + 1 if cut else n
    if seen < n:
        inputs = {k: v[:, :seen] for k, v in inputs.items()}
    result = _run(case, Numerics(dtype), weights, inputs, case.mode == "train", rows)
    if seen < n and "grad/x" in result:
        dx = result["grad/x"]
        result["grad/x"] = np.concatenate(
            [dx, np.zeros((dx.shape[0], n - seen, *dx.shape[2:]), dx.dtype)], axis=1)
    return result


def forward(case: Case, weights: dict, inputs: dict, dtype: str = "float64") -> np.ndarray:
    """The forward output alone, in float64 unless told otherwise."""
    return _run(case, Numerics(dtype), weights, inputs, train=False)["out"]
