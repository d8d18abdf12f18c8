"""SeViLA model, its backbone and its checkpoints."""
