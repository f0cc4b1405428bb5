"""The table of observables: derived quantities computed from a result's reported ones."""

from __future__ import annotations

import numpy as np
import pytest
from _fakes import fake_trajectory

from dmft import Estimate
from dmft.observables import DERIVED


def test_m_norm_and_its_error_bound():
    v = np.array([[[3.0, 0.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])  # (T+1, p, k)
    e = np.array([[[0.1, 0.2], [0.2, 0.4]], [[0.3, 0.0], [0.0, 0.4]]])
    norm, se = DERIVED["m_norm"].derive({"m": (v, e)})
    np.testing.assert_allclose(norm, [5.0, 0.0])
    np.testing.assert_allclose(se, [np.sqrt(0.01 + 0.04 + 0.04 + 0.16), 0.5])  # also at m = 0


def test_unit_norm_is_the_gram_diagonal():
    traj = fake_trajectory()
    est = traj.observable("unit_norm")
    q = traj.observable("Q")
    np.testing.assert_array_equal(est.value, np.diagonal(q.value, axis1=1, axis2=2))
    np.testing.assert_array_equal(est.error, np.diagonal(q.error, axis1=1, axis2=2))
    assert isinstance(est, Estimate)


def test_unknown_observable_names_the_choices():
    with pytest.raises(KeyError, match="m_norm"):
        fake_trajectory().observable("nope")
