"""The TensorBoard records of one trial: its curves, its HParams entry and its projector snapshot.

The trainable is the only writer (the study turns Tune's own TensorBoard logger off, see
``study.tuning``), and it writes into the trial folder itself, so that ``tensorboard --logdir
<study>`` shows exactly one run per trial, named ``<loss>/trial_<NNN>_<trial id>``.

- **When.** Everything is written during a step and flushed before the step returns. Tune copies
  the trial folder to the study's storage with the checkpoint of each step, and a trial that the
  scheduler stops gets no later hook whose writes would still be copied (with ``reuse_actors`` the
  next thing the actor hears is the next trial's ``reset_config``). The writer opens at the first
  step, not in ``setup``: Tune sometimes starts an actor that runs ``setup`` and is stopped without
  training, which would leave an empty run behind.
- **Curves.** Every metric of the step under its study name (``train/loss``, ``val/error_simple``,
  ``val/best/error_simple``, ...) against the iteration count.
- **HParams.** Each trial is one session whose hyperparameters are the loss and the fields its loss
  searches (the catalogue's ``searched``); its metrics are the study's objective
  (``val/best/<select>``, what the search ranks trials by) and the validation metrics. The plugin
  reads a metric's value from the last scalar of the same tag in the run, so the table shows every
  trial at its latest step, those stopped early included. The experiment definition (which columns
  exist) is the same in every trial of a study: the plugin reads it from one run, whichever it
  finds first, so it lists the loss and every field that some catalogued loss searches; a trial
  leaves the fields its loss does not search empty. Both are built by tensorboard's own
  ``summary_v2.hparams_config_pb`` and ``hparams_pb``, which need no TensorFlow (the older
  ``hparams.summary`` module imports it).
- **Projector.** The validation embeddings of the trial's best step so far, with the
  representatives (learned, RepMet-style losses) or the centroids (k-means, Magnet-style losses)
  the step was measured against as extra points; the metadata columns ``class`` (colour by it) and
  ``kind`` (``example``, ``representative`` or ``centroid``) tell them apart. It is rewritten at
  every step that is the best so far, so every trial that trained has one, at the step its best
  checkpoint holds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf import text_format
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.plugins.projector import metadata as projector_metadata
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch.utils.tensorboard import SummaryWriter

from repmet.catalogue import LOSSES
from repmet.config import TrainingConfig
from repmet.protocols import CLOSED_SET
from repmet.study_folder import layout

#: The name of the hyperparameter that says which loss a trial trained.
LOSS_HPARAM = "loss"
#: The projector's tensor name.
EMBEDDING_TAG = "val/embedding"


def session_hparams(config: TrainingConfig) -> dict[str, Any]:
    """The HParams of a trial: its loss and the fields its loss searches, with their values."""
    values = {name: getattr(config, name) for name in config.loss_entry.searched}
    return {LOSS_HPARAM: config.loss, **values}


def final_metrics(select: str, protocol: str = CLOSED_SET) -> tuple[str, ...]:
    """The HParams metrics: the objective of the search, then every validation metric."""
    return (layout.best_metric(select), *layout.validation_metrics(protocol))


def searched_fields() -> tuple[str, ...]:
    """Every field some catalogued loss searches, in catalogue order."""
    fields: dict[str, None] = {}
    for loss in LOSSES.in_order():
        fields.update(dict.fromkeys(LOSSES.get(loss).searched))
    return tuple(fields)


def experiment_summary(select: str, protocol: str = CLOSED_SET) -> Summary:
    """The HParams experiment: which hyperparameter and metric columns the table has."""
    losses = LOSSES.in_order()
    columns = [hp.HParam(LOSS_HPARAM, hp.Discrete(losses), description="the loss trained")]
    for name in searched_fields():
        searcher = next(loss for loss in losses if name in LOSSES.get(loss).searched)
        example = getattr(TrainingConfig(loss=searcher), name)
        columns.append(hp.HParam(name, _type_only(example)))
    objective = layout.best_metric(select)
    metrics = [
        hp.Metric(
            tag,
            description=f"best {select} on validation over the trial's steps (the search's "
            "objective)"
            if tag == objective
            else "at the trial's latest step",
        )
        for tag in final_metrics(select, protocol)
    ]
    return hp.hparams_config_pb(columns, metrics)


def session_start_summary(
    hparams: Mapping[str, Any], *, start_time: float | None = None
) -> Summary:
    """The HParams session of one trial.

    Its group name is empty, so that the plugin groups sessions by run: each trial is its own row
    even when two trials drew the same values (``hparams_pb`` would otherwise group by a hash of
    the values)."""
    values = {
        name: value if isinstance(value, (bool, int, float, str)) else str(value)
        for name, value in hparams.items()
    }
    return hp.hparams_pb(values, trial_id="", start_time_secs=start_time)


def _type_only(example: Any) -> hp.Discrete:
    """The domain of a searched field: its type only (the search space, not the records, holds
    its range), except a flag's two values. A ``Discrete`` domain without values writes exactly
    that: the type, and no list of values for the plugin to filter by."""
    if isinstance(example, bool):
        return hp.Discrete([False, True])
    if isinstance(example, (int, float)):
        return hp.Discrete([], dtype=float)
    return hp.Discrete([], dtype=str)


# ------------------------------------------------------------------------------ projector


@dataclass(frozen=True)
class ProjectorSnapshot:
    """What the projector shows: validation embeddings and the centroids they were measured
    against.

    Attributes:
        iteration: the iteration the embeddings were computed at.
        embeddings: ``[N, E]`` validation embeddings.
        labels: ``[N]`` their classes.
        centroids: ``[J, E]`` representatives or centroids.
        centroid_classes: ``[J]`` the class of each.
        class_names: names of the classes by index (None: the index).
        centroid_kind: ``representative`` (learned) or ``centroid`` (k-means).
    """

    iteration: int
    embeddings: torch.Tensor
    labels: torch.Tensor
    centroids: torch.Tensor
    centroid_classes: torch.Tensor
    class_names: Sequence[str] | None
    centroid_kind: str


def write_projector(folder: Path, snapshot: ProjectorSnapshot) -> None:
    """Writes (or replaces) the projector snapshot of a run folder: ``projector_config.pbtxt``
    there, and the tensors and their metadata under ``projector/``. Each file is replaced
    atomically, so that a copy taken meanwhile never holds half a file."""
    points = torch.cat([snapshot.embeddings, snapshot.centroids.to(snapshot.embeddings)])
    names = snapshot.class_names

    def name(index: int) -> str:
        text = names[index] if names else str(index)
        return " ".join(str(text).split()) or str(index)  # no tabs or line breaks in a cell

    rows = [(name(c), "example") for c in snapshot.labels.tolist()]
    rows += [(name(c), snapshot.centroid_kind) for c in snapshot.centroid_classes.tolist()]
    lines = ["class\tkind", *("\t".join(row) for row in rows)]
    assets = folder / layout.PROJECTOR_DIR
    assets.mkdir(parents=True, exist_ok=True)
    _replace(assets / "tensors.tsv", _tsv(points.detach().float().cpu().numpy()))
    _replace(assets / "metadata.tsv", "\n".join(lines) + "\n")
    config = ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = f"{EMBEDDING_TAG} (best step, iteration {snapshot.iteration})"
    embedding.tensor_shape.extend(points.shape)
    embedding.tensor_path = f"{layout.PROJECTOR_DIR}/tensors.tsv"
    embedding.metadata_path = f"{layout.PROJECTOR_DIR}/metadata.tsv"
    _replace(folder / projector_metadata.PROJECTOR_FILENAME, text_format.MessageToString(config))


def _tsv(matrix: np.ndarray) -> str:
    row = "\t".join(["%.6g"] * matrix.shape[1])
    return "\n".join(row % tuple(values) for values in matrix.tolist()) + "\n"


def _replace(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, path)


# -------------------------------------------------------------------------------- records


class TrialRecords:
    """The TensorBoard records of one trial in its folder (see the module)."""

    def __init__(self, folder: str | os.PathLike[str], config: TrainingConfig) -> None:
        self.folder = Path(folder) / layout.TENSORBOARD_DIR
        self.config = config
        self._writer: SummaryWriter | None = None

    def log_step(
        self,
        metrics: Mapping[str, Any],
        *,
        iteration: int,
        snapshot: ProjectorSnapshot | None = None,
    ) -> None:
        """Writes the metrics of one step against ``iteration`` (numbers only; the iteration
        itself is the x axis, not a curve), and the projector snapshot when given."""
        writer = self._open()
        for tag, value in _numbers(metrics):
            if tag != layout.ITERATION:
                writer.add_scalar(tag, value, global_step=iteration)
        if snapshot is not None:
            write_projector(self.folder, snapshot)
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self) -> SummaryWriter:
        if self._writer is None:
            self._writer = SummaryWriter(log_dir=str(self.folder))
            # A trial that resumes (after a failure, or a pause) opens a new events file in the
            # same run and repeats these: same content, so the plugin sees one session.
            file_writer = self._writer.file_writer
            file_writer.add_summary(experiment_summary(self.config.select, self.config.protocol))
            file_writer.add_summary(session_start_summary(session_hparams(self.config)))
        return self._writer


def _numbers(metrics: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    for tag, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield tag, float(value)
