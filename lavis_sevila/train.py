"""``python -m lavis_sevila.train --cfg-path projects/sevila/... [--options k=v ...]``.

LAVIS's train.py with the SeViLA plugin loaded (the LAVIS wheel ships no train module).
Multi-process: ``torchrun --nproc_per_node N -m lavis_sevila.train ...`` (gloo on CPU,
nccl on GPU) or ``deepspeed --num_gpus N --module lavis_sevila.train ...``.
"""
from lavis_sevila.cli import main

if __name__ == "__main__":
    main()
