"""staircase2: g*(z) = z1 + z1 z2, k = 2: a two-step staircase.

Defaults (sensible choices, not from a paper):
α = 3, η = 0.5, T = 8, p = 2 ReLU units,
a = (1, −1)/√2, m_0 = 0 (the linear term z1 is learnt first, then z2 through z1 z2).
Writes runs/staircase2/{dmft,simulation}.h5 and figures/staircase2.png; every default can be
overridden on the command line (see --help).
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=2, activation="relu", second_layer="alternating",
    alpha=3.0, lr=0.5, steps=8,
)


def main(argv=None) -> int:
    return run_target("staircase2", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
