"""Collections: a card (spec) -> checkpoints + per-example outcomes + manifest.json, built (resumable), pulled or
imported, then read-only and verified on load."""
