"""What a problem's structure and its numbers are: :class:`Numbers`, the pytree that compiled code
traces, and the properties that it and :class:`~dmft.model.Problem` both derive from their
structural fields."""

from __future__ import annotations

import equinox as eqx
import numpy as np

from ._activations import Activation, get_activation
from ._losses import Loss, get_loss
from ._schedules import Schedule
from ._targets import Target


class _Structure:
    """What a :class:`Problem` and its :class:`Numbers` both derive from their structural
    fields (``activation``, ``loss``, ``target``, ``schedule``, ``steps``)."""

    @property
    def k(self) -> int:
        return self.target.k

    @property
    def act(self) -> Activation:
        return get_activation(self.activation)

    @property
    def loss_fn(self) -> Loss:
        return get_loss(self.loss)

    @property
    def batch_schedule(self) -> Schedule:
        """The parsed :class:`~dmft.model.Schedule` of ``schedule``."""
        return Schedule.parse(self.schedule, self.steps)

    @property
    def batches(self) -> np.ndarray:
        """Batch label (0, 1, ...) used at each time t = 0..T."""
        return self.batch_schedule.batches

    @property
    def selection(self) -> str:
        """``"sgd"``, ``"epochs"`` (mini-batches of one dataset) or ``"none"``."""
        return self.batch_schedule.selection

    @property
    def epoch_length(self) -> int:
        """B for ``epochs:B``, else 1."""
        return self.batch_schedule.epoch


def structural_schedule(schedule: str) -> str:
    """The part of a schedule that compiled code is specialised on: ``sgd:b`` → ``sgd:1`` (b is
    the traced ``Numbers.batch_fraction``); every other schedule (``epochs:B`` included: B sets
    the epochs' step pattern) is structural as it is."""
    return Schedule.parse(schedule, _list_steps(schedule)).structural


def _list_steps(schedule: str) -> int:
    return len(schedule[5:].split(",")) if schedule.startswith("list:") else 1


class Numbers(_Structure, eqx.Module):
    """A problem's numbers as arrays (traced under jit) and its structure as static fields.

    Built by :meth:`Problem.numbers`. ``lr`` and ``lr_a`` have T + 1 entries, the last 0 (η_T is
    never used), so that compiled loops can index them at every time t = 0..T;
    ``batch_fraction`` is b of ``sgd:b`` (1/B for ``epochs:B``, 1 otherwise) and ``schedule``
    only the structural part (:func:`structural_schedule`), so that neither a new η, α, λ, Δ,
    m₀, Q⊥₀, a, η_a nor a new b recompiles. ``momentum`` and ``momentum_a`` (β_t, T + 1
    entries, the last 0 so that Nesterov's look-ahead at t = T is the iterate) are numbers too;
    ``nesterov`` is structural.
    """

    second_layer: np.ndarray
    alpha: np.ndarray
    noise: np.ndarray
    lr: np.ndarray
    ridge: np.ndarray
    m0: np.ndarray
    qperp0: np.ndarray
    lr_a: np.ndarray
    batch_fraction: np.ndarray
    momentum: np.ndarray
    momentum_a: np.ndarray
    p: int = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    target: Target = eqx.field(static=True)
    loss: str = eqx.field(static=True)
    schedule: str = eqx.field(static=True)
    nesterov: bool = eqx.field(static=True, default=False)
