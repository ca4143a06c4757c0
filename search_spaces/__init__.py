"""Named hyperparameter search spaces (Magnet loss, RepMet, cluster-margin loss) for the study,
each mapping a loss family to the Optuna/Tune distributions of its settings."""
