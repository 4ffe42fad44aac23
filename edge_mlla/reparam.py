"""Training form -> deploy form. Lives in :mod:`edge_mlla.nn.reparam` (the model side); this name is kept so
``from edge_mlla.reparam import reparameterize`` keeps working."""

from edge_mlla.nn.reparam import *  # noqa: F401,F403
from edge_mlla.nn.reparam import __all__, _unwrap  # noqa: F401
