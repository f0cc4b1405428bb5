"""The package's exceptions: bad input, and runs that diverge."""

from __future__ import annotations


class DMFTInputError(ValueError):
    """Raised for invalid user input, before any heavy computation."""


class DivergenceError(FloatingPointError):
    """A run produced non-finite or overflowing values.

    Attributes:
        step: the first GD step at which a bad value was found.
        quantity: what went bad.
        path: where the partial results were saved, if anywhere.
        partial: the partial result object (computed up to ``step``), if any.
        causes: the sentence on likely causes (a generic one by default; see
            :func:`step0_causes` for a run that fails at its first step).
        saved: overrides the "; partial results saved to <path>" clause (e.g. to say that the
            partial file could not be written).
    """

    DEFAULT_CAUSES = ("Likely causes: a learning rate too large for this problem, too few Monte "
                      "Carlo samples, or (ODE solvers) too many solver steps.")

    def __init__(self, step: int, quantity: str, path: str | None = None, partial=None,
                 causes: str | None = None, saved: str | None = None):
        self.step = int(step)
        self.quantity = quantity
        self.path = path
        self.partial = partial
        self.causes = causes or self.DEFAULT_CAUSES
        if saved is None:
            saved = f"; partial results saved to {path}" if path else ""
        self.saved = saved
        super().__init__(
            f"run diverged at step {step}: {quantity} is not finite or overflowed{saved}. "
            f"{self.causes}"
        )
