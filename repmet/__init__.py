"""repmet-study core library: data, embedding networks, losses, cluster index, batch sampling,
evaluation and the single-trial training pipeline for Magnet loss, RepMet and the
cluster-margin loss.

Nothing in this package imports Ray; ``trainables/`` adapts it to Ray Tune.
"""

__version__ = "0.1.0"
