"""Runners registered in LAVIS: runner_sevila (torch.distributed) and runner_deepspeed."""
