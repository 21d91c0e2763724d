"""Cheap, stable random streams keyed by integers: one NumPy generator per worker, its state set per sample.

Seeding a fresh generator per sample the usual way (``np.random.SeedSequence`` → ``np.random.default_rng`` plus a
``random.Random``) costs about 50-90 µs on a busy core, most of it in SeedSequence's hashing and in seeding the
Mersenne Twister. Here the key (e.g. ``(seed, tag, epoch, rank, position)``) is hashed once with BLAKE2b (a
cryptographic hash: fixed by RFC 7693, identical on every machine and Python version) into the 128-bit state and the
odd 128-bit increment of a PCG64 generator, which is written into an existing generator in place: about 4 µs, and
every object that holds that generator (all the transforms of a pipeline) sees the new stream at once.
:class:`NumpyRandom` is a ``random.Random`` whose draws come from the same NumPy generator, so a pipeline that draws
from both (albumentations decides ``p`` with ``py_random``) needs one stream per sample, not two.

Distinct keys give unrelated streams (PCG64 with independent random states and increments, O'Neill,
https://www.pcg-random.org/paper.html); the same key gives the same stream on every machine.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any

import numpy as np

__all__ = ["NumpyRandom", "keyed_generator", "reseed", "stream_state"]

_MASK64 = (1 << 64) - 1


def stream_state(*parts: int) -> tuple[int, int]:
    """The PCG64 ``(state, increment)`` of the stream keyed by ``parts`` (integers; negatives wrap mod 2⁶⁴)."""
    packed = struct.pack(f"<{len(parts) + 1}Q", len(parts), *(int(p) & _MASK64 for p in parts))
    digest = hashlib.blake2b(packed, digest_size=32, person=b"timm-recipes").digest()
    return int.from_bytes(digest[:16], "little"), int.from_bytes(digest[16:], "little") | 1


def reseed(generator: np.random.Generator, *parts: int) -> np.random.Generator:
    """Put ``generator`` (PCG64-backed) at the start of the stream keyed by ``parts``, in place; return it."""
    state, inc = stream_state(*parts)
    generator.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }
    return generator


def keyed_generator(*parts: int) -> np.random.Generator:
    """A new PCG64 ``np.random.Generator`` at the start of the stream keyed by ``parts``."""
    return reseed(np.random.Generator(np.random.PCG64(0)), *parts)


class NumpyRandom(random.Random):
    """A ``random.Random`` that draws from a NumPy generator (so that reseeding that generator reseeds this too).

    ``random()`` is the generator's ``random()`` (53-bit doubles) and ``getrandbits(k)`` takes whole bytes from it;
    every other method of ``random.Random`` (``uniform``, ``randint``, ``choice``, ``shuffle``, ``gauss``…) is built
    on these two. ``seed(n)`` with an int moves the generator to the stream keyed by ``n``.
    """

    def __init__(self, generator: np.random.Generator) -> None:
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator, got {type(generator).__name__}")
        super().__init__(0)  # seeds the base class's unused state (before the generator is attached)
        self._generator = generator

    @property
    def generator(self) -> np.random.Generator:
        return self._generator

    def seed(self, a: Any = None, version: int = 2) -> None:
        super().seed(a, version)  # the unused Mersenne Twister state of the base class
        if isinstance(a, int) and getattr(self, "_generator", None) is not None:
            reseed(self._generator, a)

    def random(self) -> float:
        return self._generator.random()

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        n = (k + 7) // 8
        return int.from_bytes(self._generator.bytes(n), "little") >> (8 * n - k) if n else 0

    def getstate(self) -> Any:
        return self._generator.bit_generator.state

    def setstate(self, state: Any) -> None:
        self._generator.bit_generator.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self._generator,)
