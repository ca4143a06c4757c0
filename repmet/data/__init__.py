"""Labelled image data sets by name: ``load_dataset("digits")`` returns a :class:`DatasetSplits`.

Registered sets: ``digits`` (default, bundled with scikit-learn), ``digits-distorted`` (the same
digits, distorted; :mod:`repmet.data.distorted`), ``glyphs`` (102 classes of letters rendered
with matplotlib's fonts; :mod:`repmet.data.glyphs`), ``mnist``, ``fashion-mnist``,
``arrays`` (an ``.npz``), ``flowers102``, ``oxford-pet``, ``stanford-dogs``, ``folder``, and the
class-split benchmarks ``cub200``, ``cars196`` and ``sop`` (:mod:`repmet.data.retrieval_sets`).
"""

from repmet.data import (  # noqa: F401  (registers the data sets)
    distorted,
    glyphs,
    in_memory,
    photos,
    retrieval_sets,
)
from repmet.data.datasets import DatasetSplits, FileDataset, InMemoryDataset, LabeledDataset
from repmet.data.registry import DATASETS, DataRequest, default_data_root, load_dataset

__all__ = [
    "DATASETS",
    "DataRequest",
    "DatasetSplits",
    "FileDataset",
    "InMemoryDataset",
    "LabeledDataset",
    "default_data_root",
    "load_dataset",
]
