"""ReLU + 2x2 max pool as one op whose backward is a single pass (fast on XLA:CPU).

Why: autodiff of `models.max_pool_2x2(nn.relu(x))` (reshape + max) keeps the whole pre-pool
activation (conv1's output at paper width, 8 x 1280 x 128 x 96 float32, is 500 MB) and, in the
backward, compares it with the broadcast maximum, counts the ties per window, divides and selects,
in several passes over it. `relu_max_pool_2x2` has the identical forward and a `jax.custom_vjp`:
  * forward: y = max_pool_2x2(relu(x)), plus a 1-byte code per window (an int8, 1/16 of a
    float32 x) naming the element that receives the window's gradient;
  * backward: dx = where(code == position, dy, 0), one fused elementwise pass that writes dx
    and reads only dy and the code (the pre-pool activation is not kept for the backward).

Gradient semantics (the only difference from autodiff of the plain version): each window's
gradient goes to ONE element, the first maximal one in window order (time-major: (0, 0), (0, 1),
(1, 0), (1, 1)), and none when the window's maximum is <= 0 (the ReLU cuts it; `nn.relu`'s
gradient at 0 is 0 too) or NaN. That is exactly PyTorch's and cuDNN's max-pool gradient
(`torch.nn.functional.max_pool2d` keeps the first maximum). Autodiff of the reshape-max instead
splits the gradient equally among tied maxima. The two differ only where a window holds two
exactly equal positive maxima: measure-zero for real-valued activations (possible in constant
regions, e.g. a bias-only output; the total gradient of the window is the same either way,
only its split differs).

`impl="auto"` uses the custom-VJP op on the CPU backend only (chosen when traced); elsewhere it
is the plain `max_pool_2x2(relu(x))` (autodiff's gradient), so GPUs are unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLS = ("auto", "xla", "fused")
_NO_GRAD = 4  # code of a window whose maximum is <= 0 or NaN: no element gets its gradient


def resolve_impl(impl: str) -> str:
    """"auto" -> "fused" on the CPU backend, "xla" elsewhere; "xla" / "fused" unchanged."""
    if impl not in IMPLS:
        raise ValueError(f"pool impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "fused" if jax.default_backend() == "cpu" else "xla"
    return impl


def _windows(x: jax.Array) -> jax.Array:
    """[B, T, F, C] -> [B, T//2, 2, F//2, 2, C] (a trailing odd row / column dropped)."""
    b, t, f, c = x.shape
    return x[:, : t // 2 * 2, : f // 2 * 2].reshape(b, t // 2, 2, f // 2, 2, c)


def plain_relu_max_pool_2x2(x: jax.Array) -> jax.Array:
    """max_pool_2x2(relu(x)) by reshape-and-max (= `models.max_pool_2x2(nn.relu(x))`)."""
    return _windows(jnp.maximum(x, 0)).max(axis=(2, 4))


def _forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = plain_relu_max_pool_2x2(x)
    b, h, _, w, _, c = _windows(x).shape
    # argmax (a reduce, first maximum on ties) over the window's 4 elements in order 2i + j.
    flat = _windows(x).transpose(0, 1, 3, 5, 2, 4).reshape(b, h, w, c, 4)
    code = jnp.argmax(flat, axis=-1).astype(jnp.int8)
    code = jnp.where(y > 0, code, jnp.int8(_NO_GRAD))
    return y, code


@jax.custom_vjp
def _relu_max_pool_2x2(x: jax.Array) -> jax.Array:
    return plain_relu_max_pool_2x2(x)


def _fwd(x):
    y, code = _forward(x)
    # The input's shape and dtype ride along as a zero-size array (no 500 MB residual).
    return y, (code, jnp.zeros((0,) + x.shape, x.dtype))


def _bwd(res, dy):
    code, like = res
    shape = like.shape[1:]
    b, h, w, c = code.shape
    pos = (2 * jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 2)
           + jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 4))
    hit = code[:, :, None, :, None, :] == pos
    dx = jnp.where(hit, dy[:, :, None, :, None, :].astype(like.dtype), jnp.zeros((), like.dtype))
    dx = dx.reshape(b, 2 * h, 2 * w, c)
    if dx.shape != shape:  # trailing odd row / column: no gradient
        dx = jnp.pad(dx, ((0, 0), (0, shape[1] - 2 * h), (0, shape[2] - 2 * w), (0, 0)))
    return (dx,)


_relu_max_pool_2x2.defvjp(_fwd, _bwd)


def relu_max_pool_2x2(x: jax.Array, impl: str = "auto") -> jax.Array:
    """max_pool_2x2(relu(x)) on [B, T, F, C] -> [B, T//2, F//2, C]; stride 2, VALID.

    The forward equals `models.max_pool_2x2(nn.relu(x))` exactly for every impl. impl="fused":
    custom VJP, each window's gradient to its first maximal element (see the module docstring);
    "xla": the plain reshape-max (autodiff's gradient, split among ties); "auto": fused on the
    CPU backend, xla elsewhere.
    """
    if x.ndim != 4:
        raise ValueError(f"relu_max_pool_2x2 takes [B, T, F, C], got shape {x.shape}")
    if resolve_impl(impl) == "xla":
        return plain_relu_max_pool_2x2(x)
    return _relu_max_pool_2x2(x)
