"""The model shared by the DMFT solver and the simulator: activations, losses, targets, batch
schedules, the two-layer network, the :class:`Problem` that holds them and its
:class:`Numbers` (the pytree that compiled code traces).

Nothing of either solver's machinery lives here, so that an error in one cannot hide in the
other.
"""

from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._activations import get_activation as get_activation
from ._losses import LOSSES as LOSSES
from ._losses import Loss as Loss
from ._losses import get_loss as get_loss
from ._losses import loss as loss
from ._losses import loss_grad_f as loss_grad_f
from ._losses import loss_grad_h as loss_grad_h
from ._network import network_output as network_output
from ._network import second_layer_vector as second_layer_vector
from ._network import sum_last as sum_last
from ._numbers import Numbers as Numbers
from ._problem import Problem as Problem
from ._problem import check_problem as check_problem
from ._problem import make_problem as make_problem
from ._problem import warn_small_minibatch as warn_small_minibatch
from ._schedules import Schedule as Schedule
from ._schedules import batch_index as batch_index
from ._schedules import parse_schedule as parse_schedule
from ._targets import TARGETS as TARGETS
from ._targets import Target as Target
from ._targets import custom_target as custom_target
from ._targets import get_target as get_target
from ._targets import unavailable_target as unavailable_target
