"""staircase3: g*(z) = z1 + z1 z2 + z1 z2 z3, k = 3: a three-step staircase.

Defaults (sensible choices, not from a paper):
α = 3, η = 0.5, T = 8, p = 3 ReLU units,
a = (1, −1, 1)/√3, m_0 = 0.
Writes runs/staircase3/{dmft,simulation}.h5 and figures/staircase3.png; every default can be
overridden on the command line (see --help).
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=3, activation="relu", second_layer="alternating",
    alpha=3.0, lr=0.5, steps=8,
)


def main(argv=None) -> int:
    return run_target("staircase3", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
