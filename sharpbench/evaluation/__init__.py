"""A measure over a collection, and one measure on any model.

- :mod:`~sharpbench.evaluation.run`: ``evaluate``: the measure on every model of a collection, cached by key.
- :mod:`~sharpbench.evaluation.guard`: the integrity guard (eval mode, finite values, weights unchanged).
- :mod:`~sharpbench.evaluation.report`: ``Report``: the document of ``--json`` and of a published result.
- :mod:`~sharpbench.evaluation.sweep`: ``Sweep`` and ``evaluate_sweep``: one evaluation per parameter value.
- :mod:`~sharpbench.evaluation.store`: the results store (SQLite), one value per (measure key, checkpoint).
- :mod:`~sharpbench.evaluation.compute`: ``compute_measure`` (public as ``sharpbench.compute_measure``).

This package's ``__init__`` imports nothing: ``import sharpbench`` reaches compute and guard only.
"""
