"""Built-in measure implementations of sharpbench, one module per family."""
