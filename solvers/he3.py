"""he3: g*(z) = He3(z1)/√6, k = 1: the single-index cubic Hermite target.

Defaults (the published batch-reuse setting):
α = 2, η = 1.0, T = 10 steps, p = 2 ReLU units,
a = (1, −1)/√2, m_0 = 0, Q⊥_0 = I, the batch reused at every step.
Writes runs/he3/{dmft,simulation}.h5 and figures/he3.png; every default can be
overridden on the command line (see --help).
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=2, activation="relu", second_layer="alternating",
    alpha=2.0, lr=1.0, steps=10,
)


def main(argv=None) -> int:
    return run_target("he3", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
