"""The spec's layers as tf.Module objects, their tf.Variables loaded from harness.spec.weights.

Canonical weights are (in, out), which is TF's own layout (y = x W), so they load
and their gradients come back untransposed. Keras layers are not used: their
defaults differ from the spec (LayerNormalization epsilon 1e-3, activations.gelu
exact), and plain modules keep every op in sight. Set from the spec explicitly:
LayerNorm epsilon 1e-5 with its math in float32, GELU in its tanh form (in float32,
as the reference computes it), MLP width 4 * d_model, pre-LN blocks.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from backends.tensorflow.attention import attention
from harness.spec import LAYERNORM_EPS, Case


def _variable(value: np.ndarray, dtype: tf.DType, name: str) -> tf.Variable:
    """A weight from its canonical array, rounded to the storage dtype (the arrays
    already hold values of that dtype, so the cast is exact)."""
    return tf.Variable(tf.cast(tf.constant(value), dtype), name=name.replace(".", "_"))


@tf.custom_gradient
def add_bias(y: tf.Tensor, b: tf.Tensor):
    """y + b for y of shape (rows, out), its bias gradient summed in float32.

    TF's own gradients sum the rows in the storage dtype: tf.nn.bias_add's
    (BiasAddGrad) in bfloat16 and float16, reduce_sum (the gradient of a broadcast
    `+`) in float16. On a 4096-row float16 sum that is 0.73 off where one rounding
    is 0.03, and grad/b1 (bfloat16) and grad/bk (float16, a tensor that is ~0 by
    construction) failed the verdict. The spec, like torch, accumulates in float32."""
    def grad(dy):
        return dy, tf.cast(tf.reduce_sum(tf.cast(dy, tf.float32), axis=0), b.dtype)

    return y + b, grad


class Dense(tf.Module):
    """y = x W + b, W of shape (in, out)."""

    def __init__(self, w: tf.Variable, b: tf.Variable):
        super().__init__()
        self.w, self.b = w, b

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        # One (B*N, in) x (in, out) GEMM, as torch's Linear does, rather than a
        # batched matmul that broadcasts W over the batch. Its result is rounded
        # to the storage dtype before the bias is added (and rounded again), as in
        # Keras' Dense: TF's CPU matmul kernels return the storage dtype only
        # (output_type=float32 is XLA-only), where torch's addmm adds the bias to
        # the float32 accumulator. In bfloat16 and float16 this is most of what
        # separates TF's errors from torch's (worst err_ratio ~1.7 against ~1.2).
        *lead, d_in = x.shape
        y = add_bias(tf.linalg.matmul(tf.reshape(x, [-1, d_in]), self.w), self.b)
        return tf.reshape(y, [*lead, self.w.shape[-1]])


class LayerNorm(tf.Module):
    """The spec's LayerNorm: biased variance, epsilon 1e-5, math in float32 whatever
    the storage dtype (as torch's autocast runs it), result cast back."""

    def __init__(self, g: tf.Variable, b: tf.Variable):
        super().__init__()
        self.g, self.b = g, b

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        xf = tf.cast(x, tf.float32)
        mean = tf.reduce_mean(xf, axis=-1, keepdims=True)
        centered = xf - mean
        var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
        y = centered * tf.math.rsqrt(var + LAYERNORM_EPS)
        y = y * tf.cast(self.g, tf.float32) + tf.cast(self.b, tf.float32)
        return tf.cast(y, x.dtype)


def gelu(x: tf.Tensor) -> tf.Tensor:
    """GELU in its tanh form (tf.nn.gelu's default is the exact erf form), in
    float32 as the reference computes it: in bfloat16 each of its ops would round."""
    return tf.cast(tf.nn.gelu(tf.cast(x, tf.float32), approximate=True), x.dtype)


class MultiHeadAttention(tf.Module):
    def __init__(self, p: dict, heads: int, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v, self.o = (Dense(p[f"w{s}"], p[f"b{s}"]) for s in "qkvo")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        b, n, d = x.shape
        h = self.heads

        def split(t):       # (B, N, d) -> (B, H, N, D): head h owns features h*D:(h+1)*D
            return tf.transpose(tf.reshape(t, [b, n, h, d // h]), [0, 2, 1, 3])

        o = attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), self.causal)
        return self.o(tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, n, d]))


class Block(tf.Module):
    """Pre-LN: h = x + mha(LN1(x)); out = h + W2 gelu(W1 LN2(h) + b1) + b2."""

    def __init__(self, p: dict, heads: int, causal: bool):
        super().__init__()
        self.ln1 = LayerNorm(p["ln1_g"], p["ln1_b"])
        self.mha = MultiHeadAttention(p, heads, causal)
        self.ln2 = LayerNorm(p["ln2_g"], p["ln2_b"])
        self.w1 = Dense(p["w1"], p["b1"])          # d_model -> 4 * d_model (from w1's shape)
        self.w2 = Dense(p["w2"], p["b2"])

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        h = x + self.mha(self.ln1(x))
        return h + self.w2(gelu(self.w1(self.ln2(h))))


class Transformer(tf.Module):
    def __init__(self, p: dict, heads: int, causal: bool, layers: int):
        super().__init__()
        self.blocks = [Block(_layer(p, i), heads, causal) for i in range(layers)]
        self.lnf = LayerNorm(p["lnf_g"], p["lnf_b"])

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.lnf(x)


def _layer(p: dict, i: int) -> dict:
    prefix = f"layer{i}."
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def build(case: Case, weights: dict, dtype: tf.DType) -> tuple[tf.Module, dict]:
    """The workload's module (mha, block or transformer) and its variables by
    canonical name, in the order of `weights`. Call it inside the device's scope."""
    params = {name: _variable(value, dtype, name) for name, value in weights.items()}
    if case.workload == "mha":
        return MultiHeadAttention(params, case.heads, case.causal), params
    if case.workload == "block":
        return Block(params, case.heads, case.causal), params
    return Transformer(params, case.heads, case.causal, case.n_layers), params
