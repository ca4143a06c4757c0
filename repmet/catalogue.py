"""The loss catalogue: one entry per loss, from which every list, label, default, branch and search
space of the suite derives.

An entry says what a loss is (its module), how the pipeline treats it (where its clusters come from
and how its batches are drawn), what a study searches for it, its defaults, and what the report must
say about it. Adding a loss is one new module plus one entry here; nothing else names losses.

This module imports neither torch nor Ray: the configuration, the command lines and the analysis
read the catalogue without paying for either. :meth:`LossEntry.load` imports the loss's module.

Losses from outside the package are added by modules named in ``$REPMET_PLUGINS`` (comma-separated
import paths), imported the first time the catalogue is looked up: the hook reaches Ray workers too,
which inherit the environment of the process that started them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from repmet.errors import ConfigError
from repmet.registry import Registry

#: Where a loss's clusters come from. ``k-means``: per-class k-means of the current training
#: embeddings, rebuilt at every refresh and for evaluation (Magnet). ``representatives``: learned
#: representatives, initialised by k-means; examples join their nearest own-class one (RepMet).
Clusters = Literal["k-means", "representatives"]
#: How training batches are drawn. ``neighbourhood``: M clusters of D examples, a loss-weighted
#: seed cluster and its nearest impostor clusters (Magnet section 3.3). ``uniform``: M * D
#: examples drawn uniformly without replacement.
Batches = Literal["neighbourhood", "uniform"]

PLUGINS_ENV = "REPMET_PLUGINS"


@dataclass(frozen=True, kw_only=True)
class LossEntry:
    """One loss of the suite.

    Attributes:
        name: registry name (``--loss``, the study's loss folders, the Optuna study names).
        label: the row label of the results table.
        module: ``"package.module:ClassName"`` of the ``nn.Module`` that computes the loss.
        summary: one line saying what the loss is, with its paper equation.
        clusters: where its clusters come from (see :data:`Clusters`).
        batches: how its batches are drawn (see :data:`Batches`).
        searched: the configuration fields a study searches for this loss.
        ranges: search ranges of this loss that differ from the search space's defaults, by field.
        defaults: configuration defaults of this loss that differ from the global ones, by field.
        notes: what the report says under the table, formatted with the selected trial's
            configuration (``str.format`` fields: the configuration's fields and ``label``).
    """

    name: str
    label: str
    module: str
    summary: str
    clusters: Clusters
    batches: Batches = "neighbourhood"
    searched: tuple[str, ...]
    ranges: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if ":" not in self.module:
            raise ConfigError(f"loss {self.name!r}: module {self.module!r} is not 'module:Class'")
        object.__setattr__(self, "ranges", MappingProxyType(dict(self.ranges)))
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def learns_representatives(self) -> bool:
        """True when the loss has learnable representatives with their own optimiser."""
        return self.clusters == "representatives"

    def load(self) -> type:
        """The loss's ``nn.Module`` class (imports its module, and with it torch)."""
        module_name, _, class_name = self.module.partition(":")
        return getattr(importlib.import_module(module_name), class_name)

    def report_notes(self, config: Mapping[str, Any]) -> list[str]:
        """The entry's notes filled in with a trial's configuration."""
        return [note.format(label=self.label, **config) for note in self.notes]


T = TypeVar("T")


class Catalogue(Registry[T]):
    """A registry whose first look-up imports the plugins of ``$REPMET_PLUGINS`` (the losses
    here, the metrics of :mod:`repmet.metrics`)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self._plugins_imported = False

    def _import_plugins(self) -> None:
        if not self._plugins_imported:
            self._plugins_imported = True  # set first: a plugin registers through this object
            import_plugins()

    def get(self, name: str) -> T:
        self._import_plugins()
        return super().get(name)

    def names(self) -> list[str]:
        self._import_plugins()
        return super().names()

    def in_order(self) -> list[str]:
        self._import_plugins()
        return super().in_order()

    def __contains__(self, name: object) -> bool:
        self._import_plugins()
        return super().__contains__(name)


#: Every loss by name; :meth:`Catalogue.in_order` gives the table order.
LOSSES: Catalogue[LossEntry] = Catalogue("loss")


def register(entry: LossEntry) -> LossEntry:
    """Adds ``entry`` to :data:`LOSSES` (a name can be registered once)."""
    LOSSES.add(entry.name, entry)
    return entry


#: Squared distances against a fixed sigma only mean something at a fixed scale: unnormalised, a
#: network meets every margin by growing its embeddings while the representatives, one parameter
#: each, cannot follow, and they stop being class modes. The RepMet paper and its code work on the
#: unit sphere; on it sigma = 0.5 is a fixed temperature (log-densities 2 (cos - 1) in [-8, 0]).
#: Normalisation is therefore part of these losses, not searched: searched, the degenerate
#: unnormalised variant sometimes won on validation noise and lost on test.
_ON_THE_SPHERE = {"normalize_embeddings": True, "normalize_representatives": True}
_REPRESENTATIVE_SEARCH = (
    "k", "m", "d", "embedding_dim", "lr", "refresh_every", "sigma", "rep_lr", "alpha",
)  # fmt: skip

register(
    LossEntry(
        name="magnet",
        label="Magnet Loss",
        module="repmet.losses.modules:MagnetLoss",
        summary="Magnet loss (Rippel et al., ICLR 2016, eq. 4-5): batch cluster means, batch "
        "variance",
        clusters="k-means",
        searched=(
            "k",
            "m",
            "d",
            "embedding_dim",
            "normalize_embeddings",
            "lr",
            "refresh_every",
            "alpha",
        ),  # fmt: skip
        # Its variance is the batch's own, so the loss does not depend on the embedding scale; but
        # its hinge saturates early on easy data, and the margin alpha sets how much is learnt
        # before it does (3 was best on digits and digits-distorted over 12 seeds).
        ranges={"alpha": (0.5, 10.0)},
        defaults={"alpha": 3.0},
    )
)
register(
    LossEntry(
        name="repmet-v1",
        label="RepMet.v1",
        module="repmet.losses.modules:RepMetV1Loss",
        summary="RepMet v1 (2018 code): nearest own representative against all others",
        clusters="representatives",
        defaults=_ON_THE_SPHERE,
        searched=_REPRESENTATIVE_SEARCH,
    )
)
register(
    LossEntry(
        name="repmet-v2",
        label="RepMet.v2",
        module="repmet.losses.modules:RepMetV2Loss",
        summary="RepMet v2 (2018 code): -log of the own-class share of the mixture, plus alpha",
        clusters="representatives",
        defaults=_ON_THE_SPHERE,
        # [-log(own / all) + alpha]_+ has a log term that is never negative: the hinge is always
        # active and alpha shifts the loss by a constant without changing a gradient.
        searched=tuple(name for name in _REPRESENTATIVE_SEARCH if name != "alpha"),
        notes=(
            "{label}: its loss never goes below alpha = {alpha:g} (the own-class share of the "
            "mixture is at most 1, so -log of it is >= 0); a training loss at alpha is its floor, "
            "not a failure to learn.",
        ),
    )
)
register(
    LossEntry(
        name="repmet-v3",
        label="RepMet.v3",
        module="repmet.losses.modules:RepMetV3Loss",
        summary="RepMet v3 (2018 code): -log of own-class over other-class mixture mass",
        clusters="representatives",
        defaults=_ON_THE_SPHERE,
        searched=_REPRESENTATIVE_SEARCH,
    )
)
register(
    LossEntry(
        name="repmet-cvpr",
        label="RepMet (CVPR)",
        module="repmet.losses.modules:RepMetCVPRLoss",
        summary="RepMet as published (Karlinsky et al., CVPR 2019, eq. 3-5)",
        clusters="representatives",
        defaults=_ON_THE_SPHERE,
        searched=_REPRESENTATIVE_SEARCH,
    )
)
register(
    LossEntry(
        name="cluster-margin",
        label="My Loss (cluster margin)",
        module="repmet.losses.modules:ClusterMarginLoss",
        summary="cluster-margin loss ('My Loss' of the 2018 code) on squared distances",
        clusters="representatives",
        defaults=_ON_THE_SPHERE,
        searched=_REPRESENTATIVE_SEARCH,
    )
)
register(
    LossEntry(
        name="cluster-margin-v1",
        label="My Loss v1 (plain distances)",
        module="repmet.losses.modules:ClusterMarginV1Loss",
        summary="cluster-margin loss on plain Euclidean distances",
        clusters="representatives",
        # Plain distances on the unit sphere are at most 2: a margin of 1 would keep the hinge on
        # for every example.
        ranges={"alpha": (0.05, 2.0)},
        defaults={**_ON_THE_SPHERE, "alpha": 0.5},
        searched=_REPRESENTATIVE_SEARCH,
    )
)


register(
    LossEntry(
        name="softmax",
        label="Softmax (cross-entropy baseline)",
        module="repmet.losses.softmax:SoftmaxLoss",
        summary="softmax cross-entropy of a linear classifier on the embedding, the baseline of "
        "both papers",
        clusters="k-means",
        batches="uniform",
        # K sets the clusters its Magnet and RepMet accuracies are measured with; M * D is its
        # batch size.
        searched=("k", "m", "d", "embedding_dim", "normalize_embeddings", "lr", "weight_decay"),
        # The index only feeds neighbourhood batches, so it is never rebuilt.
        defaults={"refresh_every": 0, "weight_decay": 1e-4},
        notes=(
            "{label}: a linear classifier on the embedding trained with cross-entropy on uniform "
            "batches of m x d = {m} x {d} examples; its accuracies are measured on the "
            "embedding alone, against per-class k-means centroids and their fitted variance.",
        ),
    )
)


def import_plugins() -> list[str]:
    """Imports the modules named in ``$REPMET_PLUGINS``, which register their own losses with
    :func:`register`; returns their names."""
    names = [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ConfigError(
                f"cannot import the plugin {name!r} named in ${PLUGINS_ENV}: {error}"
            ) from None
    return names
