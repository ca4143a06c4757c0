"""Names of the metrics every trial reports, defined once for the trainable, study and report.

The names double as TensorBoard tags, so they read as ``<group>/<what>``.
"""

from __future__ import annotations

ITERATION = "iteration"
TRAIN_LOSS = "train/loss"
TRAIN_BATCH_ACCURACY = "train/batch_accuracy"
VAL_ERROR_SIMPLE = "val/error_simple"
VAL_ERROR_MAGNET = "val/error_magnet"
VAL_ERROR_REPMET = "val/error_repmet"
VAL_ERROR_UNSUPERVISED = "val/error_unsupervised"
SECONDS_PER_ITERATION = "time/seconds_per_iteration"
EXAMPLES_PER_SECOND = "time/examples_per_second"

#: Validation errors by accuracy type, as returned by ``repmet.trial.Trial.evaluate``.
VAL_ERRORS: dict[str, str] = {
    "simple": VAL_ERROR_SIMPLE,
    "magnet": VAL_ERROR_MAGNET,
    "repmet": VAL_ERROR_REPMET,
    "unsupervised": VAL_ERROR_UNSUPERVISED,
}

#: Hyperparameter search and ASHA select on this validation error. The test split is never used
#: while searching: ``analysis/report.py`` evaluates it once, from the best checkpoint.
SELECTION_METRIC = VAL_ERROR_SIMPLE
SELECTION_MODE = "min"

ALL: tuple[str, ...] = (
    ITERATION,
    TRAIN_LOSS,
    TRAIN_BATCH_ACCURACY,
    *VAL_ERRORS.values(),
    SECONDS_PER_ITERATION,
    EXAMPLES_PER_SECOND,
)
