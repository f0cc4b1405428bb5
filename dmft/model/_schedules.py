"""Batch schedules: which batch, and which part of it, each GD step uses (docs/THEORY.md §1, §5).

A :class:`Schedule` is parsed once from its text (``reuse``, ``fresh``, ``repeat:R``, a list of
batch labels ``list:b0,...``, or mini-batch SGD on one dataset ``sgd:b`` / ``epochs:B``) and holds
everything compiled code branches on: the batch label of every time, which times share a batch
(``same_batch``), and the mini-batch selection (``selection`` is ``"none"``, ``"sgd"`` or
``"epochs"``, never anything else: code that selects samples dispatches on it with
:meth:`Schedule.check_selection` and refuses an unknown kind instead of guessing).
The canonical text is what a :class:`~dmft.model.Problem` stores and files record.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._errors import DMFTInputError
from .._validate import check_int

KINDS = ("reuse", "fresh", "repeat", "list", "sgd", "epochs")
SELECTIONS = ("none", "sgd", "epochs")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A parsed batch schedule of ``steps`` GD steps.

    Attributes:
        kind: one of ``KINDS``.
        text: the canonical text (``reuse``, ``fresh``, ``repeat:R``, ``list:b0,...``,
            ``sgd:b``, ``epochs:B``).
        steps: T.
        repeat: R of ``repeat:R`` (1 otherwise).
        labels: the T batch labels of ``list:`` (empty otherwise).
        fraction: the expected fraction b of the dataset in a step's mini-batch (``sgd:b``;
            1/B for ``epochs:B``; 1 for the full-batch schedules).
        epoch: B of ``epochs:B`` (1 otherwise).
    """

    kind: str
    text: str
    steps: int
    repeat: int = 1
    labels: tuple = ()
    fraction: float = 1.0
    epoch: int = 1

    @classmethod
    def parse(cls, schedule, steps: int) -> Schedule:
        """Parse a schedule's text, or a sequence of T batch labels."""
        if not isinstance(schedule, str):
            try:
                labels = [check_int(f"schedule[{i}]", b, low=0) for i, b in enumerate(schedule)]
            except TypeError:
                raise DMFTInputError(
                    f"`schedule` must be 'reuse', 'fresh', 'repeat:R' or a list of {steps} batch "
                    f"labels; got schedule={schedule!r}"
                ) from None
            schedule = "list:" + ",".join(str(b) for b in labels)
        if schedule in ("reuse", "fresh"):
            return cls(schedule, schedule, steps)
        head, _, rest = schedule.partition(":")
        if head == "sgd" and _:
            b = _parse_fraction(rest, schedule)
            return cls("sgd", f"sgd:{int(b)}" if b == 1.0 else f"sgd:{b!r}", steps, fraction=b)
        if head == "epochs" and _:
            B = _parse_epoch(rest.strip(), schedule)
            return cls("epochs", f"epochs:{B}", steps, fraction=1.0 / B, epoch=B)
        if head == "repeat" and _:
            try:
                r = int(rest)
            except ValueError:
                r = 0
            if r < 1:
                raise DMFTInputError(
                    f"`schedule` 'repeat:R' needs an integer R >= 1; got schedule={schedule!r}")
            return cls("repeat", f"repeat:{r}", steps, repeat=r)
        if head == "list" and _:
            try:
                labels = [int(v) for v in rest.split(",")]
            except ValueError:
                labels = [-1]
            if len(labels) != steps or min(labels) < 0:
                raise DMFTInputError(
                    f"`schedule` as a list needs {steps} non-negative integer batch labels (one "
                    f"per step); got schedule={schedule!r}")
            return cls("list", "list:" + ",".join(map(str, labels)), steps, labels=tuple(labels))
        raise DMFTInputError(
            "`schedule` must be one of 'reuse', 'fresh', 'repeat:R' (R >= 1), 'sgd:b' "
            "(0 < b <= 1), 'epochs:B' (integer B >= 1) or a list of batch labels; got "
            f"schedule={schedule!r}")

    @property
    def selection(self) -> str:
        """``"sgd"`` or ``"epochs"`` (mini-batches of one dataset), else ``"none"``."""
        return self.kind if self.kind in ("sgd", "epochs") else "none"

    @property
    def one_dataset(self) -> bool:
        """Every step uses (part of) the same dataset."""
        return self.kind in ("reuse", "sgd", "epochs")

    @property
    def batches(self) -> np.ndarray:
        """Batch label used at each time t = 0..T (t = T: the batch the train loss is measured
        on), renumbered 0, 1, ... in order of first use. ``fresh`` uses batch t at time t,
        ``repeat:R`` batch t // R, the one-dataset schedules batch 0; a list uses its last label
        at t = T."""
        T1 = self.steps + 1
        if self.one_dataset:
            raw = np.zeros(T1, int)
        elif self.kind == "fresh":
            raw = np.arange(T1)
        elif self.kind == "repeat":
            raw = np.arange(T1) // self.repeat
        else:
            raw = np.array(list(self.labels) + [self.labels[-1]])
        _, first = np.unique(raw, return_index=True)
        order = {v: i for i, v in enumerate(raw[np.sort(first)])}
        return np.array([order[v] for v in raw])

    @property
    def same_batch(self) -> np.ndarray:
        """(T+1, T+1) booleans: times t and s use the same batch (their fields are correlated;
        across batches they are independent)."""
        b = self.batches
        return b[:, None] == b[None, :]

    def check_selection(self, selection: str) -> str:
        """``selection`` if it is one of ``SELECTIONS``; code that selects mini-batches calls
        this before dispatching, so that a new kind cannot fall into another kind's branch."""
        if selection not in SELECTIONS:
            raise ValueError(f"unknown mini-batch selection {selection!r}; known: {SELECTIONS}")
        return selection

    @property
    def structural(self) -> str:
        """The part of the text that compiled code is specialised on: ``sgd:b`` → ``sgd:1`` (b
        is a traced number); every other schedule (``epochs:B`` included: B sets the epochs'
        step pattern) as it is."""
        return "sgd:1" if self.kind == "sgd" else self.text


def _parse_fraction(text: str, schedule) -> float:
    try:
        b = float(text)
    except ValueError:
        b = float("nan")
    if not (0.0 < b <= 1.0):  # also refuses NaN
        raise DMFTInputError(
            f"`schedule` 'sgd:b' needs a mini-batch fraction b in (0, 1]; got schedule={schedule!r}"
        )
    return b


def _parse_epoch(text: str, schedule) -> int:
    B = int(text) if text.isdigit() else 0  # refuses 2.5, 2.0, -1: B is an integer
    if B < 1:
        raise DMFTInputError(
            f"`schedule` 'epochs:B' needs an integer number of mini-batches per epoch B >= 1; "
            f"got schedule={schedule!r}"
        )
    return B


# The function forms (the canonical text in, a property of its Schedule out).


def parse_schedule(schedule, steps: int) -> str:
    """Canonical schedule text (see :class:`Schedule`)."""
    return Schedule.parse(schedule, steps).text


def batch_index(schedule: str, steps: int) -> np.ndarray:
    """Batch used at each time t = 0..T (:attr:`Schedule.batches`)."""
    return Schedule.parse(schedule, steps).batches


def _of_text(schedule: str) -> Schedule:
    """A canonical text's Schedule, with the step count a list implies (others need none)."""
    steps = len(schedule[5:].split(",")) if schedule.startswith("list:") else 1
    return Schedule.parse(schedule, steps)


def selection_kind(schedule: str) -> str:
    """``"sgd"`` or ``"epochs"`` for the mini-batch schedules on one dataset, else ``"none"``."""
    return _of_text(schedule).selection


def minibatch_fraction(schedule: str) -> float:
    """The expected fraction b of the dataset in a mini-batch (:attr:`Schedule.fraction`)."""
    return _of_text(schedule).fraction


def epoch_length(schedule: str) -> int:
    """B for ``epochs:B`` (steps per epoch), else 1."""
    return _of_text(schedule).epoch
