"""forgetting's packed sweeps: `hydra/launcher=packed` trains the points of a sweep that can share
one fused step as one model, K at a time, each point still its own run folder
(packed_launcher.py; forgetting/runs/packs.py, forgetting/core/packed.py).

Lives in the `hydra_plugins` namespace package (which has no __init__.py) under a name of its
own.
"""
