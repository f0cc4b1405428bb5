"""linear: g*(z) = z1, k = 1: the exactly solvable linear case.

Defaults: α = 2, η = 0.2, T = 10 steps, one linear unit (p = 1, σ(h) = h, a = 1), m_0 = 0, Q⊥_0 = 1.
The GD trajectory also has a closed form (Marchenko–Pastur); η = 0.2 is below the stability
limit 2/(1 + √α)² ≈ 0.34.
Writes runs/linear/{dmft,simulation}.h5 and figures/linear.png; every default can be
overridden on the command line (see --help).
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=1, activation="linear", second_layer="ones",
    alpha=2.0, lr=0.2, steps=10,
)


def main(argv=None) -> int:
    return run_target("linear", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
