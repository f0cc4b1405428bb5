"""Batch schedules: which batch each GD step uses (spec §1).

``reuse``, ``fresh``, ``repeat:R``, a list of batch labels, and mini-batch SGD on one dataset
(``sgd:b``, ``epochs:B``): parsing to the canonical string, and the batch index per step.
Re-exported by :mod:`dmft.problem`.
"""

from __future__ import annotations

import numpy as np

from .._errors import DMFTInputError
from .._validate import check_int


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
    try:
        B = int(text)
    except ValueError:
        B = 0
    if B < 1:
        raise DMFTInputError(
            f"`schedule` 'epochs:B' needs an integer number of mini-batches per epoch B >= 1; "
            f"got schedule={schedule!r}"
        )
    return B


def selection_kind(schedule: str) -> str:
    """``"sgd"`` or ``"epochs"`` for the mini-batch schedules on one dataset, else ``"none"``."""
    for kind in ("sgd", "epochs"):
        if schedule.startswith(kind + ":"):
            return kind
    return "none"


def minibatch_fraction(schedule: str) -> float:
    """The expected fraction b of the dataset in a mini-batch (``sgd:b``; 1/B for
    ``epochs:B``; 1 for the full-batch schedules)."""
    kind = selection_kind(schedule)
    if kind == "sgd":
        return _parse_fraction(schedule[4:], schedule)
    if kind == "epochs":
        return 1.0 / _parse_epoch(schedule[7:], schedule)
    return 1.0


def epoch_length(schedule: str) -> int:
    """B for ``epochs:B`` (steps per epoch), else 1."""
    return _parse_epoch(schedule[7:], schedule) if selection_kind(schedule) == "epochs" else 1


def parse_schedule(schedule, steps: int) -> str:
    """Canonical schedule string: ``reuse``, ``fresh``, ``repeat:R`` or ``list:b0,...,b_{T-1}``.

    ``schedule`` may also be a sequence of T batch labels (step t uses batch b_t).
    """
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
        return schedule
    if schedule.startswith("sgd:"):
        b = _parse_fraction(schedule[4:], schedule)
        return f"sgd:{int(b)}" if b == 1.0 else f"sgd:{b!r}"
    if schedule.startswith("epochs:"):
        text = schedule[7:].strip()
        if not text.isdigit():  # refuse 2.5, 2.0, -1: B is an integer
            _parse_epoch("0", schedule)
        return f"epochs:{_parse_epoch(text, schedule)}"
    if schedule.startswith("repeat:"):
        try:
            r = int(schedule.split(":", 1)[1])
        except ValueError:
            r = 0
        if r < 1:
            raise DMFTInputError(
                f"`schedule` 'repeat:R' needs an integer R >= 1; got schedule={schedule!r}"
            )
        return f"repeat:{r}"
    if schedule.startswith("list:"):
        try:
            labels = [int(v) for v in schedule[5:].split(",")]
        except ValueError:
            labels = [-1]
        if len(labels) != steps or min(labels) < 0:
            raise DMFTInputError(
                f"`schedule` as a list needs {steps} non-negative integer batch labels (one per "
                f"step); got schedule={schedule!r}"
            )
        return schedule
    raise DMFTInputError(
        f"`schedule` must be one of 'reuse', 'fresh', 'repeat:R' (R >= 1), 'sgd:b' (0 < b <= 1), "
        f"'epochs:B' (integer B >= 1) or a list of batch labels; got schedule={schedule!r}"
    )


def batch_index(schedule: str, steps: int) -> np.ndarray:
    """Batch used at each time t = 0..T (t = T: the batch the train loss is measured on).

    Labels are renumbered 0, 1, ... in order of first use. ``fresh`` uses batch t at time t,
    ``repeat:R`` batch t // R, ``reuse``, ``sgd:b`` and ``epochs:B`` batch 0 (mini-batches of
    one dataset); a list uses its last label at t = T.
    """
    T1 = steps + 1
    if schedule == "reuse" or selection_kind(schedule) != "none":  # one dataset
        raw = np.zeros(T1, int)
    elif schedule == "fresh":
        raw = np.arange(T1)
    elif schedule.startswith("repeat:"):
        raw = np.arange(T1) // int(schedule.split(":")[1])
    else:
        lab = [int(v) for v in schedule[5:].split(",")]
        raw = np.array(lab + [lab[-1]])
    _, first = np.unique(raw, return_index=True)
    order = {v: i for i, v in enumerate(raw[np.sort(first)])}
    return np.array([order[v] for v in raw])
