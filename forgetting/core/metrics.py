"""The names of what a run measures: one home for every metric and status name.

A run's history has one row per epoch with HISTORY's fields; its final metrics are FINAL plus
the timings; its status is one of STATUSES. The sweep table, the Optuna sweeper's objectives,
the analysis and the figures all name metrics from here.
"""

from __future__ import annotations

OK, DIVERGED, PRUNED, FAILED = "ok", "diverged", "pruned", "failed"
STATUSES = (OK, DIVERGED, PRUNED, FAILED)
FINISHED = (OK, DIVERGED, PRUNED)  # a run that is not rerun (failed ones are)
# states a sweep table shows for a run that has not finished (never in a metrics.json)
RUNNING = "running"  # its folder's claim is held: a process is training it now
ABANDONED = "abandoned"  # an Optuna trial whose worker died; its params were retried
INTERRUPTED = "interrupted"  # stopped by a signal (Ctrl-C, pre-emption) with its checkpoint

# A mean training loss above this many nats ends a run as diverged, as a non-finite one does:
# chance is ln(classes) (2.3 nats on CIFAR-10), so 1,000 means the weights have blown up. Such
# a run can stay finite to the end (batch 512 at LR factor 32 went 5.9, 22, 5e5 ... 1e11 nats)
# and would otherwise read `ok`.
DIVERGED_LOSS = 1e3


def blown_up(loss: float) -> bool:
    """Whether a training loss says the run diverged: not finite, or above DIVERGED_LOSS."""
    return not loss <= DIVERGED_LOSS  # NaN compares false


# one row per epoch (history.parquet)
HISTORY = ("epoch", "step_lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_s",
           "wall_s")
# the final metrics of a run (metrics.json and the sweep table)
FINAL = ("train_loss", "clean_train_loss", "test_loss", "test_acc", "train_acc",
         "clean_train_acc", "epochs_run")
TIMINGS = ("wall_s", "train_s")  # process seconds for the run; training seconds
# what `diag.*` adds (core/diagnostics/monitor.py): per epoch in the history, final in metrics
DIAG_HISTORY = ("eta_eff", "sharpness", "sharpness_rel_change", "sharpness_iters",
                "sharpness_ratio", "sharpness_note", "sharpness_se", "noise_scale",
                "noise_scale_lo", "noise_scale_hi", "grad_sq", "grad_sq_lo", "grad_sq_hi",
                "trace_sigma", "trace_sigma_lo", "trace_sigma_hi", "noise_measurements",
                "noise_note", "forgetting_events", "weight_norm", "effective_lr")
# noise_*: the run's estimate from every measurement (noise_scale_run: the same, older name);
# noise_scale_median: the median of the epochs' noise_scale (NaN when no epoch has one)
DIAG_FINAL = ("sharpness", "sharpness_ratio", "max_sharpness_ratio", "stability_edge",
              "sharpness_examples", "noise_scale", "noise_scale_lo", "noise_scale_hi",
              "noise_scale_run", "noise_scale_median", "grad_sq", "grad_sq_lo", "grad_sq_hi",
              "trace_sigma", "trace_sigma_lo", "trace_sigma_hi", "noise_note",
              "noise_measurements", "share_never_forgotten", "mean_forgetting_events",
              "share_never_learned", "n_presented", "n_learned")
# with `target.*` (core/target.py): steps and examples to a target loss; null when not reached
TARGET_FINAL = ("steps_to_train_target", "examples_to_train_target", "examples_to_test_target")
# what a sweeper may optimise (a number per run); the first is the entry point's return value
OBJECTIVES = ("test_loss", "test_acc", "train_loss", "clean_train_loss", "train_acc",
              "clean_train_acc", "train_s", "wall_s")
