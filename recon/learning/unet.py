"""A small 2-D U-Net in JAX: neighbouring slices in, one slice's mu-map (1/cm) out; its layers
are those :mod:`recon.learning.onnxgraph` writes as ONNX (3x3 convolutions with ReLU, 2x2 max
pooling, nearest upsampling, skip concatenation, a linear 1x1 convolution at the end: a ReLU
there stops learning once every output is zero; the reader clips the map at zero)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Shape:
    """The network's size: input channels, first level's width, levels below the first."""

    channels_in: int = 5
    width: int = 8
    levels: int = 3

    def convs(self) -> list[tuple[int, int, int]]:
        """(out, in, kernel) of every convolution, in the order of the parameters."""
        w = [self.width << k for k in range(self.levels + 1)]
        layers, c = [], self.channels_in
        for k in range(self.levels + 1):                      # down, then the bottom
            layers += [(w[k], c, 3), (w[k], w[k], 3)]
            c = w[k]
        for k in reversed(range(self.levels)):                # up
            layers += [(w[k], c + w[k], 3), (w[k], w[k], 3)]
            c = w[k]
        return [*layers, (1, c, 1)]


def init(shape: Shape, key: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    """He-normal weights (OIHW) and zero biases."""
    params = []
    for out, cin, k in shape.convs():
        key, sub = jax.random.split(key)
        std = np.sqrt(2.0 / (cin * k * k))
        params.append((jax.random.normal(sub, (out, cin, k, k), jnp.float32) * std,
                       jnp.zeros((out,), jnp.float32)))
    return params


def _conv(x, wb, relu=True):
    w, b = wb
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    y = y + b[None, :, None, None]
    return jax.nn.relu(y) if relu else y


def _pool(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def _up(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)


def apply(params, x: jax.Array, levels: int) -> jax.Array:
    """[n, channels, h, w] -> [n, 1, h, w] (h and w divisible by 2**levels)."""
    p = iter(params)
    skips = []
    for _ in range(levels):
        x = _conv(_conv(x, next(p)), next(p))
        skips.append(x)
        x = _pool(x)
    x = _conv(_conv(x, next(p)), next(p))
    for skip in reversed(skips):
        x = jnp.concatenate([_up(x), skip], axis=1)
        x = _conv(_conv(x, next(p)), next(p))
    return _conv(x, next(p), relu=False)
