"""forgetting: what limits the learning rate of fast CIFAR-10 ResNets: curvature or forgetting.

Data flows one way: config -> run -> train -> metrics on disk -> table -> figures and verdict,
and so do the imports between the package's layers (tests/test_layout.py checks every import,
function-level ones included, so a back-edge fails the tests):

    core/       what one training run is: the config schema (every key declared once), models,
                data and batches, SGD, schedules, the step (eager, compiled, CUDA graph), the
                loop, the probe, the checkpoint. Imports nothing of ours outside core/, and
                nothing of Hydra.
    runs/       runs as files: command-line checks derived from the schema, job folders,
                resume and skip by config hash, preemption, provenance, atomic tables, config
                registration with Hydra. Imports core/.
    analysis/   verdicts and figures, read from the tables. Imports core/ and runs/.
    bench/      measurements against baselines and ceilings. Imports core/ and runs/.
    hydra_plugins/forgetting_*   our Hydra plugins (beside this package). Import core/, runs/.

The commands are this folder's top-level modules, `python -m forgetting.NAME`: run (the Hydra
entry point), collect, analyze, plot; `python -m forgetting.bench` is bench/__main__.py. They
may import anything; nothing imports them.
"""

__version__ = "0.1.0"
