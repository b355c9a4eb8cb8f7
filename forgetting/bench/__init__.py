"""Measurements against baselines and ceilings: `python -m forgetting.bench` (bench/steps.py
says what it times); whole-run figures from subprocesses (bench/runs.py); the plain-PyTorch
baseline (bench/baseline.py); FLOP counts (bench/flops.py)."""
