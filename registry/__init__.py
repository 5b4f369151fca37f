"""Built-in YAML cards of sharpbench: measures/*.yaml and collections/*.yaml."""
