"""``python -m lavis_sevila.evaluate --cfg-path projects/sevila/... [--options k=v ...]``.

LAVIS's evaluate.py with the SeViLA plugin loaded: builds everything from the config and
evaluates the test splits (``run.test_splits``) without training.
"""
from lavis_sevila.cli import main

if __name__ == "__main__":
    main(evaluate_only=True)
