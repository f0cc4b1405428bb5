"""What a giant-step feature simulation is given (:class:`FeaturesConfig`) and what it returns
(:class:`FeaturesResult`, per-seed outputs with their estimates)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._errors import DMFTInputError
from .._result import Estimate, estimate_from_replicas
from .._validate import check_choice, check_int, check_real
from ..model import get_activation, get_target

MAPS = ("rf", "step", "spiked")
SECOND_LAYERS = ("sign", "gaussian")
# leading eigenvalues (and eigenvector overlaps) recorded per spectrum; also the rank of the
# learned subspace of ``step_overlap`` (the top right singular vectors of W_t − W₀): 3 holds
# every direction of the shipped targets (k ≤ 3)
N_TOP = 3
MAX_ELEMENTS = 2.5e8  # largest n×max(d,p) matrix one seed may build (2 GB in float64)


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    """Hyper-parameters of one study (all validated in ``__post_init__``)."""

    target: str = "tanh_he3"
    activation: str = "relu"
    d: int = 500
    kappa: float = 1.0
    alpha0: float = 2.0
    samples_exponent: float = 1.0  # n0 = round(alpha0 · d**samples_exponent)
    alpha1: float = 2.0
    lr: float = 1.0
    lr_scaling: str = "sqrt_p"
    steps: int = 1
    batch: str = "fresh"
    ridges: tuple = (0.01, 0.1, 1.0, 10.0)
    noise: float = 0.0
    spike_rank: int = 1
    n_test: int = 0  # 0: n_test = max(n1, 1000)
    outlier_margin: float = 0.05
    second_layer: str = "sign"  # a_j = ±1/√p ("sign") or N(0, 1)/√p ("gaussian"), fixed

    def __post_init__(self):
        from ..model import TARGETS

        check_choice("target", self.target, set(TARGETS))  # registered names only (saved)
        get_activation(self.activation)
        check_int("d", self.d, low=16, high=100_000)
        check_real("kappa", self.kappa, low=0.25, high=4.0)
        check_real("alpha0", self.alpha0, low=0.0, low_open=True, high=1000.0)
        object.__setattr__(self, "samples_exponent", check_real(
            "samples_exponent", self.samples_exponent, low=1.0, high=2.0))
        check_real("alpha1", self.alpha1, low=0.0, low_open=True, high=1000.0)
        check_real("lr", self.lr, low=0.0)
        check_choice("lr_scaling", self.lr_scaling, {"sqrt_p", "const"})
        check_int("steps", self.steps, low=0, high=100)
        check_choice("batch", self.batch, {"fresh", "reuse"})
        lam = np.atleast_1d(np.asarray(self.ridges, dtype=np.float64))
        if lam.ndim != 1 or lam.size < 1 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise DMFTInputError(
                "`ridges` must be a non-empty list of finite values > 0; got "
                f"ridges={self.ridges!r}"
            )
        object.__setattr__(self, "ridges", tuple(float(v) for v in lam))
        check_real("noise", self.noise, low=0.0)
        k = get_target(self.target).k
        check_int("spike_rank", self.spike_rank, low=0, high=min(16, self.p))
        check_int("n_test", self.n_test, low=0)
        check_real("outlier_margin", self.outlier_margin, low=0.0)
        check_choice("second_layer", self.second_layer, set(SECOND_LAYERS))
        if self.samples_exponent > 1.0 and self.n0 * max(self.d, self.p) > MAX_ELEMENTS:
            raise DMFTInputError(
                f"`samples_exponent`: the step batch is too large for one seed in memory: "
                f"n0 = alpha0·d**samples_exponent = {self.alpha0:g}·{self.d}**"
                f"{self.samples_exponent:g} = {self.n0} samples of dimension d={self.d} "
                f"(p={self.p}) give an n0×max(d,p) matrix of {self.n0 * max(self.d, self.p):.3g} "
                f"entries, allowed {MAX_ELEMENTS:.3g}; lower alpha0, samples_exponent or d")
        n_max = max(self.n0, self.n1, self.n_test_eff)
        if n_max * max(self.d, self.p) > MAX_ELEMENTS or self.p * self.d > MAX_ELEMENTS:
            raise DMFTInputError(
                f"`d` too large for one seed in memory: d={self.d} gives p={self.p}, "
                f"n0={self.n0}, n1={self.n1}, n_test={self.n_test_eff}; the largest matrix has "
                f"{n_max * max(self.d, self.p):.3g} entries, allowed {MAX_ELEMENTS:.3g}"
            )
        if k > self.d:
            raise DMFTInputError(f"`d` must be >= k={k}; got d={self.d}")

    @property
    def p(self) -> int:
        return max(1, int(round(self.kappa * self.d)))

    @property
    def n0(self) -> int:
        """Step batch size max(1, round(alpha0 · d**samples_exponent)) (d**1.0 == d exactly)."""
        return max(1, int(round(self.alpha0 * float(self.d) ** self.samples_exponent)))

    @property
    def n1(self) -> int:
        return max(1, int(round(self.alpha1 * self.d)))

    @property
    def n_test_eff(self) -> int:
        return self.n_test if self.n_test > 0 else max(self.n1, 1000)

    @property
    def eta(self) -> float:
        return self.lr * (math.sqrt(self.p) if self.lr_scaling == "sqrt_p" else 1.0)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["ridges"] = list(self.ridges)
        out.update(p=self.p, n0=self.n0, n1=self.n1, n_test_eff=self.n_test_eff, eta=self.eta,
                   k=get_target(self.target).k)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> FeaturesConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["ridges"] = tuple(kw.get("ridges", cls.ridges))
        return cls(**kw)


@dataclasses.dataclass
class FeaturesResult:
    """Per-seed outputs of :func:`simulate_features` (leading axis: seed).

    ``per_seed`` holds, for each map M in ``maps`` (``rf``, ``step``, ``spiked``):

    - ``M/eigenvalues`` (S, p): eigenvalues of FᵀF/n₁, ascending;
    - ``M/top`` (S, 3): the three largest; ``M/overlap`` (S, 3, k): |cos| between the input-space
      direction Wᵀu of each of their eigenvectors u and the target directions;
    - ``M/n_outliers`` (S,): eigenvalues above (1 + outlier_margin) × the bulk edge (the largest
      eigenvalue of the spike-free bulk of the spiked model: W₀ + isotropic part);
    - ``M/train_error``, ``M/test_error`` (S, L): readout errors for each λ;

    and ``bulk_edge`` (S,), ``update_singular_values`` (S, N_TOP + spike_rank) of W_T − W₀,
    ``w1_step_spiked`` (S,): Wasserstein-1 distance between the two empirical spectra;
    ``step_overlap`` (S, T, k): after step t, ‖P_t e_i‖ with P_t the projector onto the span of
    the top N_TOP right singular vectors (input space) of W_t − W₀ (a random N_TOP-dimensional
    subspace gives about √(N_TOP/d)); ``step_update_norm`` (S, T): ‖W_t − W₀‖_F/√p.
    """

    config: FeaturesConfig
    per_seed: dict
    maps: tuple = MAPS
    settings: dict = dataclasses.field(default_factory=dict)
    theory: dict | None = None  # closed form at init (rf_theory): test_error, train_error per λ
    # after-step theory (features_theory(...).as_dict()): per-λ errors, outliers, overlaps
    step_theory: dict | None = None

    def estimate(self, name: str) -> Estimate:
        """Mean over seeds and its standard error, e.g. ``estimate("step/test_error")``."""
        if name not in self.per_seed:
            raise KeyError(f"unknown output {name!r}; have {sorted(self.per_seed)}")
        return estimate_from_replicas(self.per_seed[name])

    def paired(self, a: str, b: str) -> Estimate:
        """Mean over seeds of (a − b), same seeds and data, and its standard error."""
        return estimate_from_replicas(self.per_seed[a] - self.per_seed[b])

    @property
    def seeds(self) -> int:
        return int(next(iter(self.per_seed.values())).shape[0])

    def __str__(self) -> str:
        c = self.config
        lines = [f"features: {c.target}, σ={c.activation}, d={c.d}, p={c.p}, n0={c.n0}, "
                 f"n1={c.n1}, η={c.eta:.4g}, steps={c.steps} ({c.batch}), seeds={self.seeds}"]
        for m in self.maps:
            if f"{m}/test_error" not in self.per_seed:
                continue
            te = self.estimate(f"{m}/test_error")
            top = self.estimate(f"{m}/top")
            cells = "  ".join(f"{v:.4f}±{e:.4f}" for v, e in zip(te.value, te.error, strict=True))
            lines.append(f"  {m:<7} top eig {top.value[-1]:.4g}±{top.error[-1]:.2g}   "
                         f"test error per λ: {cells}")
        return "\n".join(lines)
