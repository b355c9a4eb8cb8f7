"""forgetting's Hydra sweeper on Optuna 5: `hydra/sweeper=optuna_study` (see config.py).

Lives in the `hydra_plugins` namespace package (which has no __init__.py) under a name of its
own, so it never clashes with the published hydra-optuna-sweeper (`hydra/sweeper=optuna`).
Modules: config (the sweeper's config), sweeper (the Sweeper), trial (the job's side:
reporting and pruning); private ones, which Hydra's plugin scan skips: _space (sweep syntax ->
Optuna distributions), _study (settings, storage, sampler, pruner), _workers (claims,
heartbeats, abandoned trials), _outcome (what Optuna is told of a job), _report (results
files), _errors.
"""
