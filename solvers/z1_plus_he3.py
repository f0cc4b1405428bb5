"""z1_plus_he3: g*(z) = z1 + He3(z2)/√6, k = 2: a linear direction plus a cubic one.

Defaults (sensible choices, not from a paper):
α = 3, η = 0.5, T = 8, p = 2 ReLU units,
a = (1, −1)/√2, m_0 = 0.
Writes runs/z1_plus_he3/{dmft,simulation}.h5 and figures/z1_plus_he3.png; every default can be
overridden on the command line (see --help).
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=2, activation="relu", second_layer="alternating",
    alpha=3.0, lr=0.5, steps=8,
)


def main(argv=None) -> int:
    return run_target("z1_plus_he3", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
