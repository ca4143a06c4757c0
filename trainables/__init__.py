"""Ray Tune adapters: the ``Trainable`` that runs one ``repmet`` training trial per Tune trial,
with checkpointing and metric reporting. With ``study/``, the only place that imports Ray."""

from trainables.metric_learning import MetricLearningTrainable

__all__ = ["MetricLearningTrainable"]
