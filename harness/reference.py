"""The spec in NumPy, forward and backward, by hand: the source of truth.

`outputs(case, weights, inputs)` computes in float64. With `dtype=case.dtype` the
same code emulates the Case's own precision: each op's result is rounded to the
storage dtype (bfloat16, float16) after accumulating in float32, softmax,
LayerNorm and GELU run in float32, and tf32 rounds matmul operands to 10
mantissa bits. That low-precision reference's error against float64 is the
yardstick for judging a backend's error (FlashAttention's rule, see accuracy.py).

Layouts follow contract 5: q, k, v and the core's output are (B, N, H, D);
activations are (B, N, d_model); weights are (in, out). Internally the core works
on (B, H, N, D) so that np.matmul hands contiguous matrices to BLAS.
"""
from __future__ import annotations

import numpy as np

from harness.precision import round_to, round_tf32
from harness.spec import LAYERNORM_EPS, Case

_GELU_C = np.sqrt(2.0 / np.pi)
_GELU_A = 0.044715


class Numerics:
    """How one precision stores and computes: float64 exactly, or an emulation."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.wide = np.float64 if dtype == "float64" else np.float32

    def r(self, x) -> np.ndarray:
        """Store a result: round to the storage dtype."""
        return round_to(np.asarray(x, dtype=self.wide), self.dtype)

    def mm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """A matmul: operands in storage precision (tf32-rounded), wide accumulation."""
        if self.dtype == "tf32":
            a, b = round_tf32(a), round_tf32(b)
        return self.r(np.matmul(a.astype(self.wide), b.astype(self.wide)))


# -- layers: each forward returns (output, cache); each backward takes the cache --

def linear(nx: Numerics, x, w, b):
    if nx.dtype == "tf32":
        y = np.matmul(round_tf32(x), round_tf32(w))
    else:
        y = np.matmul(x.astype(nx.wide), w.astype(nx.wide))
    return nx.r(y + b), (x, w)


def linear_backward(nx: Numerics, dy, cache):
    x, w = cache
    dx = nx.mm(dy, w.T)
    dw = nx.mm(x.reshape(-1, x.shape[-1]).T, dy.reshape(-1, dy.shape[-1]))
    db = nx.r(dy.astype(nx.wide).sum(axis=tuple(range(dy.ndim - 1))))
    return dx, dw, db


def layernorm(nx: Numerics, x, g, b):
    xw = x.astype(nx.wide)
    mu = xw.mean(axis=-1, keepdims=True)
    var = ((xw - mu) ** 2).mean(axis=-1, keepdims=True)     # biased, as the spec says
    rstd = 1.0 / np.sqrt(var + LAYERNORM_EPS)
    xhat = (xw - mu) * rstd
    return nx.r(xhat * g + b), (xhat, rstd, g)


def layernorm_backward(nx: Numerics, dy, cache):
    xhat, rstd, g = cache
    dyw = dy.astype(nx.wide)
    dxhat = dyw * g
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    axes = tuple(range(dy.ndim - 1))
    return nx.r(dx), nx.r((dyw * xhat).sum(axis=axes)), nx.r(dyw.sum(axis=axes))


def gelu(nx: Numerics, x):
    xw = x.astype(nx.wide)
    t = np.tanh(_GELU_C * (xw + _GELU_A * xw ** 3))
    return nx.r(0.5 * xw * (1.0 + t)), (xw, t)


def gelu_backward(nx: Numerics, dy, cache):
    xw, t = cache
    dt = (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_A * xw * xw)
    return nx.r(dy.astype(nx.wide) * (0.5 * (1.0 + t) + 0.5 * xw * dt))


def attention(nx: Numerics, q, k, v, causal: bool):
    """softmax(q k^T / sqrt(D) + mask) v per head; softmax in float32 or wider."""
    qt, kt, vt = (a.transpose(0, 2, 1, 3) for a in (q, k, v))      # (B, H, N, D)
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = nx.r(nx.mm(qt, kt.swapaxes(-1, -2)) * scale).astype(nx.wide)
    if causal:
        n = q.shape[1]
        s = np.where(np.triu(np.ones((n, n), dtype=bool), k=1), -np.inf, s)
    s -= s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    p_wide = e / e.sum(axis=-1, keepdims=True)
    p = nx.r(p_wide)
    o = nx.mm(p, vt)
    return o.transpose(0, 2, 1, 3), (qt, kt, vt, p, p_wide, scale)


def attention_backward(nx: Numerics, do, cache):
    qt, kt, vt, p, p_wide, scale = cache
    dot = do.transpose(0, 2, 1, 3)
    dv = nx.mm(p.swapaxes(-1, -2), dot)
    dp = nx.mm(dot, vt.swapaxes(-1, -2)).astype(nx.wide)
    ds = nx.r(p_wide * (dp - (dp * p_wide).sum(axis=-1, keepdims=True)))
    ds = nx.r(ds * scale)
    dq = nx.mm(ds, kt)
    dk = nx.mm(ds.swapaxes(-1, -2), qt)
    return tuple(a.transpose(0, 2, 1, 3) for a in (dq, dk, dv))


# -- workloads --

def mha(nx: Numerics, x, w: dict, heads: int, causal: bool):
    b, n, d = x.shape
    split = lambda t: t.reshape(b, n, heads, d // heads)     # head h owns features h*D:(h+1)*D
    q, cq = linear(nx, x, w["wq"], w["bq"])
    k, ck = linear(nx, x, w["wk"], w["bk"])
    v, cv = linear(nx, x, w["wv"], w["bv"])
    o, ca = attention(nx, split(q), split(k), split(v), causal)
    out, co = linear(nx, o.reshape(b, n, d), w["wo"], w["bo"])
    return out, (cq, ck, cv, ca, co)


def mha_backward(nx: Numerics, dout, cache):
    cq, ck, cv, ca, co = cache
    b, n, d = dout.shape
    do, grads = _linear_grads(nx, dout, co, "o")
    heads = ca[0].shape[1]
    dq, dk, dv = attention_backward(nx, do.reshape(b, n, heads, d // heads), ca)
    dx = None
    for name, dy, c in (("q", dq, cq), ("k", dk, ck), ("v", dv, cv)):
        dxi, g = _linear_grads(nx, dy.reshape(b, n, d), c, name)
        grads.update(g)
        dx = dxi if dx is None else nx.r(dx.astype(nx.wide) + dxi)
    return dx, grads


def _linear_grads(nx, dy, cache, suffix):
    dx, dw, db = linear_backward(nx, dy, cache)
    return dx, {f"w{suffix}": dw, f"b{suffix}": db}


def block(nx: Numerics, x, w: dict, heads: int, causal: bool):
    a, c1 = layernorm(nx, x, w["ln1_g"], w["ln1_b"])
    m, cm = mha(nx, a, w, heads, causal)
    h = nx.r(x.astype(nx.wide) + m)
    c, c2 = layernorm(nx, h, w["ln2_g"], w["ln2_b"])
    u, cu = linear(nx, c, w["w1"], w["b1"])
    gu, cg = gelu(nx, u)
    z, cz = linear(nx, gu, w["w2"], w["b2"])
    return nx.r(h.astype(nx.wide) + z), (c1, cm, c2, cu, cg, cz)


def block_backward(nx: Numerics, dout, cache):
    c1, cm, c2, cu, cg, cz = cache
    dgu, grads = _linear_grads(nx, dout, cz, "2")
    du = gelu_backward(nx, dgu, cg)
    dc, g1 = _linear_grads(nx, du, cu, "1")
    grads.update(g1)
    dh_ln, grads["ln2_g"], grads["ln2_b"] = layernorm_backward(nx, dc, c2)
    dh = nx.r(dout.astype(nx.wide) + dh_ln)
    da, gm = mha_backward(nx, dh, cm)
    grads.update(gm)
    dx_ln, grads["ln1_g"], grads["ln1_b"] = layernorm_backward(nx, da, c1)
    return nx.r(dh.astype(nx.wide) + dx_ln), grads


def _layer(w: dict, i: int) -> dict:
    prefix = f"layer{i}."
    return {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}


def _run(case: Case, nx: Numerics, weights: dict, inputs: dict, train: bool) -> dict:
    w = {k: nx.r(v) for k, v in weights.items()}
    x = {k: nx.r(v) for k, v in inputs.items()}
    if case.workload == "attention":
        out, cache = attention(nx, x["q"], x["k"], x["v"], case.causal)
        if not train:
            return {"out": out}
        dq, dk, dv = attention_backward(nx, x["g"], cache)
        return {"out": out, "grad/q": dq, "grad/k": dk, "grad/v": dv}
    if case.workload == "mha":
        out, cache = mha(nx, x["x"], w, case.heads, case.causal)
        if not train:
            return {"out": out}
        dx, grads = mha_backward(nx, x["g"], cache)
        return _pack(out, dx, grads)
    if case.workload == "block":
        out, cache = block(nx, x["x"], w, case.heads, case.causal)
        if not train:
            return {"out": out}
        dx, grads = block_backward(nx, x["g"], cache)
        return _pack(out, dx, grads)
    h, caches = x["x"], []
    for i in range(case.n_layers):
        h, c = block(nx, h, _layer(w, i), case.heads, case.causal)
        caches.append(c)
    out, cf = layernorm(nx, h, w["lnf_g"], w["lnf_b"])
    if not train:
        return {"out": out}
    dh, dg, db = layernorm_backward(nx, x["g"], cf)
    grads = {"lnf_g": dg, "lnf_b": db}
    for i in reversed(range(case.n_layers)):
        dh, gi = block_backward(nx, dh, caches[i])
        grads.update({f"layer{i}.{k}": v for k, v in gi.items()})
    return _pack(out, dh, grads)


def _pack(out, dx, grads: dict) -> dict:
    return {"out": out, "grad/x": dx, **{f"grad/{k}": v for k, v in grads.items()}}


def outputs(case: Case, weights: dict, inputs: dict, dtype: str = "float64") -> dict:
    """The Case's results: {"out"} in forward mode; with "grad/<name>" for every
    input and weight in train mode (gradients of sum(out * g))."""
    return _run(case, Numerics(dtype), weights, inputs, train=case.mode == "train")


def forward(case: Case, weights: dict, inputs: dict, dtype: str = "float64") -> np.ndarray:
    """The forward output alone, in float64 unless told otherwise."""
    return _run(case, Numerics(dtype), weights, inputs, train=False)["out"]
