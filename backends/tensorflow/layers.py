"""The spec's layers as tf.Module objects, their tf.Variables loaded from harness.spec.weights.

The modules nest as harness.spec.params's sub-layers do and name each variable
after its role, so loading walks the table (backends.common). Canonical weights
are (in, out), which is TF's own layout (y = x W), so they load and their
gradients come back untransposed. Keras layers are not used: their
defaults differ from the spec (LayerNormalization epsilon 1e-3, activations.gelu
exact), and plain modules keep every op in sight. Set from the spec explicitly:
LayerNorm epsilon 1e-5 with its math in float32, GELU in its tanh form (in float32,
as the reference computes it), MLP width 4 * d_model, pre-LN blocks.
In decode mode each MultiHeadAttention also holds its layer's KV caches
(KVCache, attach_caches).
"""
from __future__ import annotations

import tensorflow as tf

import backends.common as common
from backends.tensorflow.attention import attention, padded_visible
from harness.spec import LAYERNORM_EPS, MLP_RATIO, Case
from harness.spec.params import BIAS, GAIN, SHIFT, WEIGHT

# The attribute for each role: these modules name each variable after its role.
ATTRIBUTES = {WEIGHT: "weight", BIAS: "bias", GAIN: "gain", SHIFT: "shift"}


def _zeros(shape: tuple[int, ...], dtype: tf.DType) -> tf.Variable:
    """A variable of the module's own, filled from the canonical weights by `build`."""
    return tf.Variable(tf.zeros(shape, dtype))


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

    def __init__(self, d_in: int, d_out: int, dtype: tf.DType):
        super().__init__()
        self.weight, self.bias = _zeros((d_in, d_out), dtype), _zeros((d_out,), dtype)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        # One (B*N, in) x (in, out) GEMM, as torch's Linear does, rather than a
        # batched matmul that broadcasts W over the batch. Its result is rounded
        # to the storage dtype before the bias is added (and rounded again), as in
        # Keras' Dense: TF's CPU matmul kernels return the storage dtype only
        # (output_type=float32 is XLA-only), where torch's addmm adds the bias to
        # the float32 accumulator. In bfloat16 and float16 this is most of what
        # separates TF's errors from torch's (worst err_ratio ~1.7 against ~1.2).
        *lead, d_in = x.shape
        y = add_bias(tf.linalg.matmul(tf.reshape(x, [-1, d_in]), self.weight), self.bias)
        return tf.reshape(y, [*lead, self.weight.shape[-1]])


class LayerNorm(tf.Module):
    """The spec's LayerNorm: biased variance, epsilon 1e-5, math in float32 whatever
    the storage dtype (as torch's autocast runs it), result cast back."""

    def __init__(self, d_model: int, dtype: tf.DType):
        super().__init__()
        self.gain, self.shift = _zeros((d_model,), dtype), _zeros((d_model,), dtype)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        xf = tf.cast(x, tf.float32)
        mean = tf.reduce_mean(xf, axis=-1, keepdims=True)
        centered = xf - mean
        var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
        y = centered * tf.math.rsqrt(var + LAYERNORM_EPS)
        y = y * tf.cast(self.gain, tf.float32) + tf.cast(self.shift, tf.float32)
        return tf.cast(y, x.dtype)


def gelu(x: tf.Tensor) -> tf.Tensor:
    """GELU in its tanh form (tf.nn.gelu's default is the exact erf form), in
    float32 as the reference computes it: in bfloat16 each of its ops would round."""
    return tf.cast(tf.nn.gelu(tf.cast(x, tf.float32), approximate=True), x.dtype)


class KVCache(tf.Module):
    """One layer's decode caches, k and v, as tf.Variables in the core's layout
    (B, KV, N, D), filled from the canonical (B, N, KV, D) arrays (untimed). A step
    writes the new tokens' keys and values into the last slots in place and reads
    the whole cache back: the same slots every call, so the step repeats."""

    def __init__(self, k: tf.Tensor, v: tf.Tensor, share_reads: bool):
        super().__init__()
        self.k = tf.Variable(k, trainable=False)
        self.v = tf.Variable(v, trainable=False)
        self.share_reads = share_reads

    def update(self, k_new: tf.Tensor, v_new: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Writes (B, KV, S, D) into slots [N - S, N) of each cache; both whole caches."""
        return self._write(self.k, k_new), self._write(self.v, v_new)

    def _write(self, cache: tf.Variable, new: tf.Tensor) -> tf.Tensor:
        b, kv, n, d = cache.shape
        # The raw op, as Variable[...].assign would run it, without the slice of the
        # old value that __getitem__ reads first (a dead op, and a live reference
        # to the buffer that can force a copy of it).
        tf.raw_ops.ResourceStridedSliceAssign(
            ref=cache.handle, begin=[0, 0, n - new.shape[2], 0], end=[b, kv, n, d],
            strides=[1, 1, 1, 1], value=new)
        if self.share_reads:
            # TF's slice-assign kernel switches the variable to copy-on-read
            # (EnsureSparseVariableAccess), after which every read copies the whole
            # cache (B 8, N 4096, two 128 MiB caches: +45 ms a step, 258 MiB of
            # peak). Switched back, reads share the buffer, and a write while a read
            # still holds it copies first (TF's copy-on-write): no reader sees it
            # change. Not an XLA op; under XLA the write is a dynamic-update-slice
            # aliased to the variable, no copy either.
            tf.raw_ops.DisableCopyOnRead(resource=cache.handle)
        return cache.value()


class MultiHeadAttention(tf.Module):
    def __init__(self, d_model: int, heads: int, causal: bool, dtype: tf.DType, kv_heads: int,
                 window: int | None = None, padded: tf.Tensor | None = None):
        super().__init__()
        self.heads, self.causal, self.window = heads, causal, window
        self.padded = padded        # a padded batch's mask (attention.padded_visible)
        kv_width = kv_heads * (d_model // heads)      # grouped heads: narrower k and v
        self.q, self.o = Dense(d_model, d_model, dtype), Dense(d_model, d_model, dtype)
        self.k, self.v = Dense(d_model, kv_width, dtype), Dense(d_model, kv_width, dtype)
        self.cache: KVCache | None = None       # decode mode: set by attach_caches

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """x: every token (B, N, d), or in decode the new tokens (B, S, d), whose keys
        and values go into the cache before the attention reads all N of them."""
        b, n, d = x.shape
        size = d // self.heads

        def split(t):       # (B, N, d) -> (B, H, N, D): head h owns features h*D:(h+1)*D
            return tf.transpose(tf.reshape(t, [b, n, t.shape[-1] // size, size]), [0, 2, 1, 3])

        k, v = split(self.k(x)), split(self.v(x))
        if self.cache is not None:
            k, v = self.cache.update(k, v)
        o = attention(split(self.q(x)), k, v, self.causal, self.window, self.padded)
        return self.o(tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, n, d]))


class Block(tf.Module):
    """Pre-LN: h = x + mha(LN1(x)); out = h + W2 gelu(W1 LN2(h) + b1) + b2."""

    def __init__(self, d_model: int, heads: int, causal: bool, dtype: tf.DType, kv_heads: int,
                 window: int | None = None, padded: tf.Tensor | None = None):
        super().__init__()
        self.ln1 = LayerNorm(d_model, dtype)
        self.mha = MultiHeadAttention(d_model, heads, causal, dtype, kv_heads, window, padded)
        self.ln2 = LayerNorm(d_model, dtype)
        self.w1 = Dense(d_model, MLP_RATIO * d_model, dtype)
        self.w2 = Dense(MLP_RATIO * d_model, d_model, dtype)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        h = x + self.mha(self.ln1(x))
        return h + self.w2(gelu(self.w1(self.ln2(h))))


class Transformer(tf.Module):
    def __init__(self, d_model: int, heads: int, causal: bool, dtype: tf.DType, layers: int,
                 kv_heads: int, window: int | None = None, padded: tf.Tensor | None = None):
        super().__init__()
        self.blocks = [Block(d_model, heads, causal, dtype, kv_heads, window, padded)
                       for _ in range(layers)]
        self.lnf = LayerNorm(d_model, dtype)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.lnf(x)


def build(case: Case, weights: dict, dtype: tf.DType) -> tuple[tf.Module, dict]:
    """The workload's module (mha, block or transformer) and its variables by
    canonical name, in the table's order, holding `weights` (already of the storage
    dtype, so the cast is exact), and a padded batch's mask, built here once (untimed)
    and shared by every layer. Call it inside the device's scope."""
    module = common.workload_module(case, (MultiHeadAttention, Block, Transformer), dtype,
                                    padded=padded_visible(case))
    variables = common.module_params(case, module, ATTRIBUTES)
    for name, variable in variables.items():
        variable.assign(tf.cast(tf.constant(weights[name]), dtype))
    return module, variables


def attach_caches(module: tf.Module, inputs: dict, dtype: tf.DType, share_reads: bool) -> None:
    """Decode mode: gives each layer's attention its KVCache, layer i's from
    inputs["k_cache"][i] and inputs["v_cache"][i] (B, N, KV, D), stored (B, KV, N, D).
    `share_reads`: everywhere but under XLA (KVCache._write). Call it inside the
    device's scope."""
    if isinstance(module, MultiHeadAttention):
        layers = [module]
    elif isinstance(module, Block):
        layers = [module.mha]
    else:
        layers = [block.mha for block in module.blocks]

    def stored(a):          # (B, N, KV, D) -> (B, KV, N, D), already of the storage dtype
        return tf.cast(tf.constant(common.swap_heads(a)), dtype)

    for i, mha in enumerate(layers):
        mha.cache = KVCache(stored(inputs["k_cache"][i]), stored(inputs["v_cache"][i]),
                            share_reads)
