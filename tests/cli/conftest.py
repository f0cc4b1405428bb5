"""Fixtures of the command-line tests (the helpers are in tests/_fakes.py)."""

import pytest
from _fakes import fake_trajectory

import dmft.io


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A theory file and a simulation file of the same problem that agree (compare: PASS)."""
    d = tmp_path_factory.mktemp("pair")
    th, sim = d / "dmft.h5", d / "sim.h5"
    dmft.io.save(fake_trajectory("dmft", steps=3), th)
    dmft.io.save(fake_trajectory("simulation", steps=3, shift=0.0005, seed=1), sim)
    return th, sim
