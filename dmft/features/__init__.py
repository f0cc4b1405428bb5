"""Wide networks after one or a few giant steps: the feature spectra and ridge readouts of a
first layer of p = κd units, simulated, with the random-features closed form at initialisation."""

from ._config import N_TOP as N_TOP
from ._config import FeaturesConfig as FeaturesConfig
from ._config import FeaturesResult as FeaturesResult
from ._plot import plot_features as plot_features
from ._rf_theory import hermite_coefficients as hermite_coefficients
from ._rf_theory import rf_test_error as rf_test_error
from ._rf_theory import target_coefficients as target_coefficients
from ._simulate import simulate_features as simulate_features
from ._theory import FeaturesTheory as FeaturesTheory
from ._theory import features_theory as features_theory
