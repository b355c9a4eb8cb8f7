"""forgetting: what limits the learning rate of fast CIFAR-10 ResNets: curvature or forgetting.

Data flows one way: config -> run -> train -> metrics on disk -> table -> figures and verdict,
and so do the imports between the package's layers (tests/test_layout.py checks every import,
function-level ones included, so a back-edge fails the tests):

    core/       what one training run is: the config schema (every key declared once), models,
                data and batches, SGD, schedules, the step (eager, compiled, CUDA graph), the
                loop, the probe, the checkpoint. Imports nothing of ours outside core/, and
                nothing of Hydra.
    rundir/     the run folder's format, which both sides below read: file names, the config
                hash and a folder's state, the claim a training process holds, what
                metrics.json holds. Imports core/.
    tables/     the sweep store: run folders read into tables, kept up to date from a change
                feed, with one face (its __init__: announce, update, read, ...); nothing
                outside imports its inner modules. Imports core/ and rundir/.
    runs/       running a point: command-line checks derived from the schema, job folders,
                resume and skip by config hash, preemption, provenance, progress, the end of
                a sweep, config registration with Hydra. Imports core/, rundir/, tables/.
    analysis/   verdicts and figures, read from the tables. Imports the layers above.
    bench/      measurements against baselines and ceilings. Imports core/ to runs/.
    hydra_plugins/forgetting_*   our Hydra plugins (beside this package). Import core/ to
                runs/.

No import circle anywhere, in functions and under TYPE_CHECKING too (tests/test_layout.py).

The commands are this folder's top-level modules, `python -m forgetting.NAME`: run (the Hydra
entry point), collect, analyze, plot; `python -m forgetting.bench` is bench/__main__.py. They
may import anything; nothing imports them.
"""

__version__ = "0.1.0"
