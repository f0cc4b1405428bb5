"""tanh_he3: g*(z) = tanh(z1 + z2^3 - 3 z2), k = 2 — the published batch-reuse test case.

Defaults (Dandi et al. 2024): α = 3, η = 0.2, T = 6 steps, p = 2 ReLU units,
a = (1, -1)/√2, m_0 = 0, Q⊥_0 = I, no ridge, no label noise, the batch reused at every step.
Writes runs/tanh_he3/{dmft,simulation}.h5 and figures/tanh_he3.png; see --help.
"""

from dmft.cli import run_target

DEFAULTS = dict(
    p=2, activation="relu", second_layer="alternating",
    alpha=3.0, lr=0.2, steps=6,
)


def main(argv=None) -> int:
    return run_target("tanh_he3", DEFAULTS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
