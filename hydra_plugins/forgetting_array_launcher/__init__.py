"""forgetting's plain array mode: `hydra/launcher=array` runs only point i of a sweep, so any
scheduler's job array (SLURM `sbatch --array`, PBS/LSF arrays, Kubernetes indexed jobs) can run
a sweep one task per point (array_launcher.py; example: examples/sweep_array.sbatch).

Lives in the `hydra_plugins` namespace package (which has no __init__.py) under a name of its
own.
"""
