import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import matplotlib

matplotlib.use("Agg")

import os

# tests do not write to the user's persistent compilation cache (tests/cli/test_cache.py turns it
# on explicitly, in a temporary folder)
os.environ.setdefault("DMFT_NO_COMPILE_CACHE", "1")
