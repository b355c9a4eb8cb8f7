"""What a run folder and a sweep folder hold: the name of every file, in one place.

Run folder (Hydra's run or sweep sub-folder): METRICS, HISTORY, RECENCY (probe), EXAMPLES and
STEPS (diagnostics), ERROR_LOG (traceback of a crash), CHECKPOINT (only while a pre-empted
run waits to resume), CLAIM (held while a process trains it, forgetting/rundir/claims.py),
Hydra's `.hydra/config.yaml`.
Sweep folder: RESULTS (+ RESULTS_CSV), HISTORY and RECENCY gathered over its runs (these two
folders of parts, forgetting/tables/parts.py),
OPTUNA_TRIALS (the optuna_study sweeper's trials), TABLE_LOCK (writers take it), CONFIG_INDEX
(which folder holds which config hash, forgetting/runs/resume.py).
"""

METRICS = "metrics.json"
HISTORY = "history.parquet"
RECENCY = "recency.parquet"
EXAMPLES = "examples.parquet"  # per training example, with diag.forgetting_events
STEPS = "steps.parquet"  # every diag.step_loss_every steps: the fixed batch's loss
ERROR_LOG = "error.log"
CHECKPOINT = "checkpoint.pt"
CLAIM = ".claim"
HYDRA_CONFIG = ".hydra/config.yaml"
HYDRA_OVERRIDES = ".hydra/overrides.yaml"
HYDRA_YAML = ".hydra/hydra.yaml"  # Hydra's own config: the group choices of an unfinished run

RESULTS = "results.parquet"
RESULTS_CSV = "results.csv"
OPTUNA_TRIALS = "optuna_trials.parquet"
TABLE_LOCK = ".results.lock"
CONFIG_INDEX = ".configs"  # a folder: one file per config hash, holding its run folder's name
MANIFEST = ".results.manifest.parquet"  # each run folder's files as the tables last saw them
PENDING = ".results.pending"  # the change feed: run folders written since the tables were
