"""Named PRNG streams: every random draw of the package derives from ``stream_key(seed, stream)``
= ``fold_in(key(seed), stream)``, one stream per kind of run, so that two kinds of run with the
same user seed never share random numbers.
"""

from __future__ import annotations

import jax

from ._validate import check_int

STREAM_DMFT = 1  # the DMFT solver's samples (dmft.solver)
STREAM_SIM = 2  # the large-d simulator (dmft.simulator)
# 3 is not used (files of format 1.0 recorded it for a test-error stream)
STREAM_ONLINE = 4  # the online-SGD ODE's Monte Carlo points (dmft.baselines)
STREAM_FEATURES = 5  # the giant-step feature simulations (dmft.features)

KEY_SCHEME = (
    "dmft-keys-v3: fold_in(key(seed), stream) -> fold_in(., replica|seed) -> DMFT: split "
    "(z, h*, xi), row blocks of 32768 samples from fold_in(., block), extra batches from "
    "fold_in(., 2**30) / simulation: fold_in(., purpose|step)"
)


def stream_key(seed: int, stream: int):
    """The root key of ``stream`` for the user seed ``seed``."""
    seed = check_int("seed", seed, low=0, high=2**63 - 1)
    return jax.random.fold_in(jax.random.key(seed), stream)
