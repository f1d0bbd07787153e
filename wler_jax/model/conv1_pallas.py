"""The conv1 block (Conv 3x3, 1 -> C, SAME + bias + ReLU + 2x2 max pool) as one Pallas kernel,
forward and backward.

Why: conv1 runs 1 -> 96 channels over the full 1280 x 128 grid. As separate XLA ops its 96-channel
output (31 MB per example in bfloat16) is written by the convolution, read by the pool, kept for
the backward, read again by the pool's backward, the ReLU mask and the kernel gradient: ~160 MB
per example, the largest part of the step's memory traffic on an H100 (docs/performance.md, "GPU
runs"). Here the kernel reads the 1-channel input (1/96 of that output) and writes only the pooled
output (a quarter); the backward recomputes the convolution from the input in the same tile (nine
multiply-adds per output, cheap at one input channel) instead of reading a stored activation, so
the only residual is the input itself.

Layout. The SAME-padded input is split by parity into four phase images
`xq[b, 2 * ri + rj, t, f] = xpad[b, 2 t + ri, 2 f + rj]` (the same bytes as the input, reordered
once by XLA), so that the conv output at pool-window position (pi, pj) of pooled cell (t, f),
tap (ki, kj), is phase ((pi + ki) % 2, (pj + kj) % 2) at (t + (pi + ki) // 2, f + (pj + kj) // 2):
plain shifted slices, no strided access or reshape inside the kernel. Grid: (example, tile of
`block_rows` pooled rows, channel tile). Each program computes the four window positions' conv
values for its tile and channels (float32 accumulation, rounded to the compute dtype as the XLA
convolution's output is), their maximum, + bias, ReLU.

Backward (`jax.custom_vjp`): per program, recompute the four positions, route dy to the first
maximal position of each window whose output is > 0 (PyTorch's and `relu_max_pool`'s "fused"
semantics: ties go to the first element in window order (0,0), (0,1), (1,0), (1,1)), and reduce
the kernel and bias gradients over the tile; the per-tile partial sums ([B, tiles, 9, C] and
[B, tiles, C], float32) are summed by XLA. The input gradient (never needed in training: the
input is the log-mel features) is XLA's vjp of the plain op, removed as dead code when unused.

Shapes are chosen for the Triton lowering (GPUs), which needs every loaded or stored array to
have a power-of-2 size: slices [8, 64] of the input, output / cotangent tiles [8, 64, CB] with CB
the largest power of 2 dividing C (96 -> 32: three channel tiles), the taps' rows padded to 16.
Mosaic (TPUs) wants the last two block dimensions in multiples of (8, 128) or whole: CB = 32 is
neither, so on TPUs the channel tile would have to be the whole C (not done).

Status: equal to the plain path on the CPU in Pallas interpret mode (tests/test_conv1_pallas.py:
forward, gradients, bfloat16, masked recordings, odd sizes). Not yet compiled or timed on a GPU or
TPU (bench/device_run.sh compiles, tests and times it): `model.conv1_impl="pallas"` is opt-in,
the plain path stays the default and the reference.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes as flax_dtypes
from jax.experimental import pallas as pl

from wler_jax.model import conv as conv_lib
from wler_jax.model import relu_max_pool

IMPLS = ("plain", "pallas", "pallas_interpret")  # ModelSpec.conv1_impl
BLOCK_ROWS = 8  # pooled output rows per program (16 conv rows)
MAX_CHANNEL_BLOCK = 128
TAPS = 16  # the 9 taps' rows, padded to a power of two (Triton loads and stores power-of-2 sizes)


def _channel_block(c: int) -> int:
    """The largest power of two dividing c, at most MAX_CHANNEL_BLOCK (96 -> 32): Triton needs
    power-of-2 tensor sizes, and a divisor needs no padded channels (no slice copy after)."""
    cb = 1
    while cb < MAX_CHANNEL_BLOCK and c % (2 * cb) == 0:
        cb *= 2
    return cb


def _geometry(t: int, f: int, c: int, block_rows: int):
    t_out, f_out = t // 2, f // 2
    tiles = max(1, -(-t_out // block_rows))
    cb = _channel_block(c)
    return t_out, f_out, tiles, cb, c


def _phases(x: jax.Array, t_out_pad: int, f_out: int) -> jax.Array:
    """[B, T, F] -> [B, 4, t_out_pad + 1, f_out + 1]: SAME zero padding, split by row/column
    parity (rows beyond what the pooled rows use are zeros)."""
    rows, cols = 2 * t_out_pad + 2, 2 * f_out + 2
    tc, fc = min(x.shape[1], rows - 1), min(x.shape[2], cols - 1)
    xpad = jnp.pad(x[:, :tc, :fc], ((0, 0), (1, rows - 1 - tc), (1, cols - 1 - fc)))
    return jnp.stack([xpad[:, ri::2, rj::2] for ri in (0, 1) for rj in (0, 1)], axis=1)


def _positions(xq_ref, w_ref, t0, rows, f_out, out_dtype):
    """The conv values of the four pool-window positions of a tile: 4 x [rows, f_out, CB]
    (float32 accumulation, rounded to `out_dtype`), and the 9 x 4 input slices they read."""
    slices = {}
    accs = []
    for pi in (0, 1):
        for pj in (0, 1):
            acc = None
            for ki in range(3):
                for kj in range(3):
                    ri, oi = (pi + ki) % 2, (pi + ki) // 2
                    rj, oj = (pj + kj) % 2, (pj + kj) // 2
                    xs = xq_ref[2 * ri + rj, pl.ds(t0 + oi, rows), pl.ds(oj, f_out)]
                    xs = xs.astype(jnp.float32)
                    slices[(pi, pj, ki, kj)] = xs
                    wk = w_ref[3 * ki + kj, :].astype(jnp.float32)  # [CB]
                    term = xs[:, :, None] * wk[None, None, :]
                    acc = term if acc is None else acc + term
            accs.append(acc.astype(out_dtype))
    return accs, slices


def _window_max(accs):
    """Elementwise max of the four positions and the first position attaining it."""
    m, code = accs[0], jnp.zeros(accs[0].shape, jnp.int32)
    for p in (1, 2, 3):
        better = accs[p] > m  # strict: ties keep the earlier position
        m = jnp.where(better, accs[p], m)
        code = jnp.where(better, p, code)
    return m, code


def _forward_kernel(xq_ref, w_ref, b_ref, y_ref, *, rows, f_out):
    t0 = pl.program_id(1) * rows
    accs, _ = _positions(xq_ref, w_ref, t0, rows, f_out, y_ref.dtype)
    m, _ = _window_max(accs)
    y = m + b_ref[0].astype(y_ref.dtype)
    y_ref[...] = jnp.maximum(y, jnp.zeros((), y.dtype))


def _backward_kernel(xq_ref, w_ref, b_ref, dy_ref, dw_ref, db_ref, *, rows, f_out, out_dtype):
    t0 = pl.program_id(1) * rows
    accs, slices = _positions(xq_ref, w_ref, t0, rows, f_out, out_dtype)
    m, code = _window_max(accs)
    y = m + b_ref[0].astype(out_dtype)
    dy = jnp.where(y > 0, dy_ref[...].astype(jnp.float32), 0.0)  # ReLU; NaN windows: none
    db_ref[0, :] = dy.sum(axis=0).sum(axis=0)
    routed = [jnp.where(code == p, dy, 0.0) for p in range(4)]
    for ki in range(3):
        for kj in range(3):
            g = None
            for p, (pi, pj) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                term = (slices[(pi, pj, ki, kj)][:, :, None] * routed[p]).sum(axis=0).sum(axis=0)
                g = term if g is None else g + term
            dw_ref[3 * ki + kj, :] = g  # rows 9..15 are never read


def _specs(b, tiles, cb, c_pad, tq, fq, rows, f_out):
    x_spec = pl.BlockSpec((None, 4, tq, fq), lambda n, i, c: (n, 0, 0, 0))
    w_spec = pl.BlockSpec((TAPS, cb), lambda n, i, c: (0, c))
    b_spec = pl.BlockSpec((1, cb), lambda n, i, c: (0, c))
    y_spec = pl.BlockSpec((None, rows, f_out, cb), lambda n, i, c: (n, i, 0, c))
    return x_spec, w_spec, b_spec, y_spec


def _prepare(x, kernel, bias, block_rows):
    b, t, f = x.shape
    c = kernel.shape[-1]
    t_out, f_out, tiles, cb, c_pad = _geometry(t, f, c, block_rows)
    xq = _phases(x, tiles * block_rows, f_out)
    w = jnp.pad(kernel.reshape(9, c), ((0, TAPS - 9), (0, 0)))
    bias2 = bias.reshape(1, c)
    return xq, w, bias2, (b, t_out, f_out, tiles, cb, c_pad, c)


def _forward(x, kernel, bias, block_rows, interpret):
    xq, w, bias2, (b, t_out, f_out, tiles, cb, c_pad, c) = _prepare(x, kernel, bias, block_rows)
    x_spec, w_spec, b_spec, y_spec = _specs(b, tiles, cb, c_pad, xq.shape[2], xq.shape[3],
                                            block_rows, f_out)
    y = pl.pallas_call(
        functools.partial(_forward_kernel, rows=block_rows, f_out=f_out),
        out_shape=jax.ShapeDtypeStruct((b, tiles * block_rows, f_out, c_pad), x.dtype),
        grid=(b, tiles, c_pad // cb), in_specs=[x_spec, w_spec, b_spec], out_specs=y_spec,
        interpret=interpret, name="conv1_relu_pool")(xq, w, bias2)
    return y[:, :t_out, :, :c]  # no copy when the tiles cover t_out exactly (T % 16 == 0)


def plain_conv1_block(x: jax.Array, kernel: jax.Array, bias: jax.Array,
                      conv_impl: str = "xla", pool_impl: str = "xla") -> jax.Array:
    """The reference: `max_pool_2x2(relu(conv3x3_same(x, kernel) + bias))` by the model's ops.

    Args:
      x: [B, T, F] (one input channel, squeezed); kernel: [3, 3, 1, C]; bias: [C] (x's dtype).
    Returns:
      [B, T // 2, F // 2, C].
    """
    y = conv_lib.conv2d(x[..., None], kernel, "SAME", conv_impl)
    return relu_max_pool.relu_max_pool_2x2(y, bias, pool_impl)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def conv1_block(x: jax.Array, kernel: jax.Array, bias: jax.Array,
                block_rows: int = BLOCK_ROWS, interpret: bool = False) -> jax.Array:
    """The conv1 block fused in one Pallas kernel: equal to `plain_conv1_block` (up to the
    float32 summation order of the nine taps).

    Args:
      x: [B, T, F] one-channel input (the model's masked log-mel), compute dtype.
      kernel: [3, 3, 1, C]; bias: [C]; both in x's dtype.
      block_rows: pooled output rows per kernel program.
      interpret: run the kernel in Pallas interpret mode (any backend; the CPU's only mode).
    Returns:
      [B, T // 2, F // 2, C] in x's dtype.
    """
    return _forward(x, kernel, bias, block_rows, interpret)


def _fwd(x, kernel, bias, block_rows, interpret):
    return _forward(x, kernel, bias, block_rows, interpret), (x, kernel, bias)


def _bwd(block_rows, interpret, res, dy):
    x, kernel, bias = res
    xq, w, bias2, (b, t_out, f_out, tiles, cb, c_pad, c) = _prepare(x, kernel, bias, block_rows)
    dy = jnp.pad(dy, ((0, 0), (0, tiles * block_rows - t_out), (0, 0), (0, c_pad - c)))
    x_spec, w_spec, b_spec, y_spec = _specs(b, tiles, cb, c_pad, xq.shape[2], xq.shape[3],
                                            block_rows, f_out)
    dw, db = pl.pallas_call(
        functools.partial(_backward_kernel, rows=block_rows, f_out=f_out, out_dtype=x.dtype),
        out_shape=(jax.ShapeDtypeStruct((b, tiles, TAPS, c_pad), jnp.float32),
                   jax.ShapeDtypeStruct((b, tiles, 1, c_pad), jnp.float32)),
        grid=(b, tiles, c_pad // cb), in_specs=[x_spec, w_spec, b_spec, y_spec],
        out_specs=(pl.BlockSpec((None, None, TAPS, cb), lambda n, i, k: (n, i, 0, k)),
                   pl.BlockSpec((None, None, 1, cb), lambda n, i, k: (n, i, 0, k))),
        interpret=interpret, name="conv1_relu_pool_backward")(xq, w, bias2, dy)
    dkernel = dw[:, :, :9].sum(axis=(0, 1))[:, :c].reshape(kernel.shape).astype(kernel.dtype)
    dbias = db.sum(axis=(0, 1, 2))[:c].astype(bias.dtype)
    # The input's gradient (unused in training, then dead code): XLA's, same tie semantics.
    _, x_vjp = jax.vjp(lambda x_: plain_conv1_block(x_, kernel, bias, "xla", "fused"), x)
    (dx,) = x_vjp(dy[:, :t_out, :, :c].astype(x.dtype))
    return dx, dkernel, dbias


conv1_block.defvjp(_fwd, _bwd)


class Conv1Block(nn.Module):
    """conv1 + bias + ReLU + 2x2 max pool with `conv.Conv`'s parameters ("kernel" [3, 3, 1, C],
    "bias" [C], same initialisers and dtype promotion), so checkpoints do not see which
    implementation ran. Input [B, T, F, 1] or [B, T, F]."""

    features: int
    dtype: Any = None
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()
    impl: str = "pallas"
    block_rows: int = BLOCK_ROWS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.impl not in IMPLS[1:]:
            raise ValueError(f"Conv1Block impl must be one of {IMPLS[1:]}, got {self.impl!r}")
        if x.ndim == 4:
            if x.shape[-1] != 1:
                raise ValueError(f"conv1 takes one input channel, got shape {x.shape}")
            x = x[..., 0]
        kernel = self.param("kernel", self.kernel_init, (3, 3, 1, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        x, kernel, bias = flax_dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return conv1_block(x, kernel, bias, self.block_rows, self.impl == "pallas_interpret")

