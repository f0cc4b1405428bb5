"""sign_z1z2z3: g*(z) = sign(z1 z2 z3), k = 3: the sign of a three-way product.

Defaults (sensible choices, not from a paper):
α = 3, η = 0.5, T = 8, p = 3 ReLU units,
a = (1, −1, 1)/√3, warm start m_0 = 0.1 in every entry (at m_0 = 0 nothing moves at d = ∞).
Writes runs/sign_z1z2z3/{dmft,simulation}.h5 and figures/sign_z1z2z3.png; every default can be
overridden on the command line (see --help).
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=3, activation="relu", second_layer="alternating", alpha=3.0,
    lr=0.5, steps=8, m0="0.1",
)


def main(argv=None) -> int:
    return run_target("sign_z1z2z3", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
