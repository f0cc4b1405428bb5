"""he2: g*(z) = He2(z1)/√2, k = 1: an even target (information exponent 2).

Defaults (sensible choices, not from a paper):
α = 3, η = 0.5, T = 8, p = 2 ReLU units with a = (1, 1)/√2
(so that |h| is representable) and m_0 = (0.1, −0.1): at m_0 = 0 the overlap of an even target
stays 0 at d = ∞, so a small warm start shows the dynamics.
Writes runs/he2/{dmft,simulation}.h5 and figures/he2.png; every default can be
overridden on the command line (see --help).
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=2, activation="relu", second_layer="ones", alpha=3.0,
    lr=0.5, steps=8, m0="0.1,-0.1",
)


def main(argv=None) -> int:
    return run_target("he2", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
