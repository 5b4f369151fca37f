"""The leaderboard: published results (one JSON file per collection and measure) and the tables, page and
plots generated from them.

- :mod:`~sharpbench.leaderboard.results`: the result document, its JSON Schema, publishing and loading.
- :mod:`~sharpbench.leaderboard.tables`: the rows of each collection's table, and the Markdown tables.
- :mod:`~sharpbench.leaderboard.plots`: deterministic SVG scatter plots (matplotlib).
- :mod:`~sharpbench.leaderboard.page`: the static, self-contained HTML page.
- :mod:`~sharpbench.leaderboard.build`: ``sharpbench leaderboard build``: README.md and index.html.
"""
