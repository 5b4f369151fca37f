"""sharpbench: does a sharpness (or generalization) measure predict how well a network generalizes?

The public API for measure authors and scripts: `MeasureContext` (what a measure receives),
`compute_measure` (a registered measure on any model), and the sharpness kernels of the study.
"""

from sharpbench.evaluation.compute import compute_measure
from sharpbench.measure import MeasureContext, computes_many
from sharpbench.kernels.sharpness import (Execution, average_case_sharpness, average_case_sharpness_many, worst_case_sharpness,
                                  worst_case_sharpness_many)
from sharpbench.version import __version__

__all__ = ["Execution", "MeasureContext", "average_case_sharpness", "average_case_sharpness_many", "compute_measure",
           "computes_many", "worst_case_sharpness", "worst_case_sharpness_many", "__version__"]
