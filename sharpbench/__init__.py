"""sharpbench: does a sharpness (or generalization) measure predict how well a network generalizes?

The public API for measure authors and scripts: `MeasureContext` (what a measure receives), `computes_many` (a
measure's many-model form), `compute_measure` (a registered measure on any model), the sharpness kernels of the
study with `FlatModel` (a model's parameters as one flat vector), and `MeasureError` (what a measure raises when
it cannot give a value). Importing it loads torch and these modules only: the collections, datasets, scoring and
results store load when a command or `compute_measure` needs them.
"""

from sharpbench.errors import MeasureError, SharpbenchError
from sharpbench.evaluation.compute import compute_measure
from sharpbench.kernels.flat import FlatModel
from sharpbench.kernels.sharpness import (Execution, average_case_sharpness, average_case_sharpness_many,
                                          worst_case_sharpness, worst_case_sharpness_many)
from sharpbench.losses import LOSSES, LossFn
from sharpbench.measure import Batch, MeasureContext, computes_many
from sharpbench.models.layers import ToImage
from sharpbench.version import __version__

__all__ = ["Batch", "Execution", "FlatModel", "LOSSES", "LossFn", "MeasureContext", "MeasureError", "SharpbenchError",
           "ToImage", "average_case_sharpness", "average_case_sharpness_many", "compute_measure", "computes_many",
           "worst_case_sharpness", "worst_case_sharpness_many", "__version__"]
