"""Named PRNG streams: every random draw derives from ``fold_in(key(seed), stream)``."""

from __future__ import annotations

import jax

from ._validate import check_int

# Named PRNG streams: root = key(seed); stream = fold_in(root, STREAM_*).
STREAM_DMFT = 1


STREAM_SIM = 2


# 3: reserved (an unused test-error stream in earlier versions); dmft.online uses 4
KEY_SCHEME = (
    "dmft-keys-v3: fold_in(key(seed), stream) -> fold_in(., replica|seed) -> DMFT: split "
    "(z, h*, xi), row blocks of 32768 samples from fold_in(., block), extra batches from "
    "fold_in(., 2**30) / simulation: fold_in(., purpose|step)"
)


def stream_key(seed: int, stream: int):
    seed = check_int("seed", seed, low=0, high=2**63 - 1)
    return jax.random.fold_in(jax.random.key(seed), stream)
