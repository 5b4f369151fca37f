"""Dataset loaders registered in :data:`sharpbench.data.DATASETS` (one module per source)."""
