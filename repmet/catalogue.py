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
#: examples drawn uniformly without replacement. ``class-balanced``: D examples of each of M
#: different classes drawn uniformly (pytorch-metric-learning's ``MPerClassSampler`` with m = D).
Batches = Literal["neighbourhood", "uniform", "class-balanced"]
#: Which group of the report's tables a loss belongs to: ``seed``, Magnet, RepMet and the
#: cluster-margin losses with their softmax baseline; ``field``, the losses the field uses today,
#: from pytorch-metric-learning.
Family = Literal["seed", "field"]
#: The heading of each family's rows in the report's tables.
FAMILY_HEADINGS: Mapping[str, str] = MappingProxyType(
    {
        "seed": "Magnet, RepMet and the softmax baseline",
        "field": "The field's losses (pytorch-metric-learning)",
    }
)

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
        family: the group of the report's rows (see :data:`Family`).
        options: configuration fields passed to the module beyond the common ones (num_classes,
            k, embedding_dim, alpha, sigma).
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
    family: Family = "seed"
    options: tuple[str, ...] = ()

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


#: The loss every family space also searches, so that each study's table holds a tuned reference
#: row (both papers measure themselves against softmax); the report draws it as the reference.
REFERENCE = "softmax"

register(
    LossEntry(
        name=REFERENCE,
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


#: The field's losses (pytorch-metric-learning 2.9, its documentation and source). They compare
#: embeddings by cosine similarity or by distances of L2-normalised embeddings, so the network
#: normalises too: the accuracies then measure the geometry the loss trained. Their batches are
#: class-balanced, D examples of each of M classes, with the seed's batch size M x D = 12 x 4 = 48
#: as 8 classes x 6 examples (the digits sets have 10 classes). The index only labels the rows, so
#: it is never rebuilt.
_FIELD_DEFAULTS = {"normalize_embeddings": True, "refresh_every": 0, "m": 8, "d": 6}
#: K sets the per-class k-means centroids their seed accuracies are measured with (SoftTriple: its
#: centres per class); M * D is their batch size.
_FIELD_SEARCH = ("k", "m", "d", "embedding_dim", "lr")
#: The learned proxies, centres and class weights have the representatives' optimiser: Adam with
#: ``rep_lr`` (searched). Its default is 10x the network's, the 0.01 of the library's example
#: optimiser for a loss's parameters (pytorch-metric-learning docs, "Losses", losses with
#: trainable parameters); the ProxyAnchor and SoftTriple papers also give them a larger rate.
_LEARNED_DEFAULTS = {**_FIELD_DEFAULTS, "rep_lr": 1e-2}
_FIELD_NOTE = (
    "{label}: pytorch-metric-learning's loss on class-balanced batches of m classes x d "
    "examples = {m} x {d}; its accuracies are measured on the embedding alone, against per-class "
    "k-means centroids (k = {k}) and their fitted variance, as for softmax."
)
_LEARNED_NOTE = (
    "{label}: its learned centres, used as representatives, give the errors of the table "
    "'Errors against the learned centres'; the results table uses k-means centroids."
)

register(
    LossEntry(
        name="contrastive",
        label="Contrastive (Hadsell et al., CVPR 2006)",
        module="repmet.losses.field:ContrastiveLoss",
        summary="contrastive loss: [d_ap - m_pos]_+ over positive pairs, [m_neg - d_an]_+ over "
        "negative pairs (Hadsell et al. 2006, eq. 4), every pair of the batch",
        clusters="k-means",
        batches="class-balanced",
        family="field",
        options=("pos_margin",),
        searched=(*_FIELD_SEARCH, "alpha", "pos_margin"),
        # alpha is the negative margin. The library's defaults (pos 0, neg 1); powerful-benchmarker
        # (the Reality Check's code) searched both margins in [0, 1].
        ranges={"alpha": (0.05, 1.0)},
        defaults={**_FIELD_DEFAULTS, "alpha": 1.0, "pos_margin": 0.0},
        notes=(_FIELD_NOTE,),
    )
)
register(
    LossEntry(
        name="triplet",
        label="Triplet margin, semi-hard mining (Schroff et al., CVPR 2015)",
        module="repmet.losses.field:TripletLoss",
        summary="triplet margin loss [d_ap - d_an + alpha]_+ (FaceNet eq. 1) over the semi-hard "
        "triplets of the batch (TripletMarginMiner)",
        clusters="k-means",
        batches="class-balanced",
        family="field",
        searched=(*_FIELD_SEARCH, "alpha"),
        # alpha is the margin of the loss and its miner: 0.1, within the 0.05-0.12 the Reality
        # Check found best (the library's default is 0.05).
        ranges={"alpha": (0.01, 0.5)},
        defaults={**_FIELD_DEFAULTS, "alpha": 0.1},
        notes=(_FIELD_NOTE,),
    )
)
register(
    LossEntry(
        name="multi-similarity",
        label="Multi-similarity + miner (Wang et al., CVPR 2019)",
        module="repmet.losses.field:MultiSimilarityLoss",
        summary="multi-similarity loss (Wang et al. 2019, eq. 12) over the pairs its miner keeps "
        "(eq. 10-11, epsilon = alpha)",
        clusters="k-means",
        batches="class-balanced",
        family="field",
        options=("scale", "neg_scale", "base"),
        searched=(*_FIELD_SEARCH, "alpha", "scale", "neg_scale", "base"),
        # scale, neg_scale and base are the paper's alpha, beta and lambda: the Reality Check's
        # optimum on CUB200 (0.01, 50.6, 0.56) rather than the paper's (2, 50, 1) or the library's
        # (2, 50, 0.5); alpha is the miner's epsilon (0.1: the paper and the library).
        ranges={"alpha": (0.01, 1.0), "scale": (0.01, 100.0)},
        defaults={
            **_FIELD_DEFAULTS,
            "alpha": 0.1,
            "scale": 0.01,
            "neg_scale": 50.6,
            "base": 0.56,
        },
        notes=(_FIELD_NOTE,),
    )
)
register(
    LossEntry(
        name="proxy-anchor",
        label="ProxyAnchor (Kim et al., CVPR 2020)",
        module="repmet.losses.field:ProxyAnchorLoss",
        summary="Proxy-Anchor loss (Kim et al. 2020, eq. 4): one learned proxy per class as the "
        "anchor, cosine similarities with margin alpha and scale",
        clusters="k-means",
        batches="class-balanced",
        family="field",
        options=("scale",),
        searched=(*_FIELD_SEARCH, "rep_lr", "alpha", "scale"),
        # The paper's and the library's margin 0.1 and scale 32.
        ranges={"alpha": (0.01, 0.5)},
        defaults={**_LEARNED_DEFAULTS, "alpha": 0.1, "scale": 32.0},
        notes=(_FIELD_NOTE, _LEARNED_NOTE),
    )
)
register(
    LossEntry(
        name="soft-triple",
        label="SoftTriple (Qian et al., ICCV 2019)",
        module="repmet.losses.field:SoftTripleLoss",
        summary="SoftTriple loss (Qian et al. 2019, eq. 10): K learned centres per class, a "
        "softmax over them (1 / gamma) as the class similarity, cross-entropy with scale and "
        "margin alpha",
        clusters="k-means",
        batches="class-balanced",
        family="field",
        options=("scale", "gamma"),
        searched=(*_FIELD_SEARCH, "rep_lr", "alpha", "scale", "gamma"),
        # scale, gamma and alpha are the paper's lambda, gamma and delta (the library's la, gamma,
        # margin; its gamma is the paper's, the code multiplies by 1 / gamma): the Reality Check's
        # optimum on CUB200 (78, 59, 0.43) rather than the paper's (20, 0.1, 0.01). K is the
        # suite's k (the paper uses 10; the search caps K at 6). No centre regulariser (the
        # library's default; the paper adds one).
        ranges={"alpha": (0.01, 1.0)},
        defaults={**_LEARNED_DEFAULTS, "alpha": 0.43, "scale": 78.0, "gamma": 59.0},
        notes=(_FIELD_NOTE, _LEARNED_NOTE),
    )
)
register(
    LossEntry(
        name="arcface",
        label="ArcFace (Deng et al., CVPR 2019)",
        module="repmet.losses.field:ArcFaceLoss",
        summary="ArcFace (Deng et al. 2019, eq. 3): softmax cross-entropy of scaled cosines to "
        "learned class weights, with an additive angular margin alpha (degrees) on the own class",
        clusters="k-means",
        batches="class-balanced",
        family="field",
        options=("scale",),
        searched=(*_FIELD_SEARCH, "rep_lr", "alpha", "scale"),
        # The paper's m = 0.5 rad (the library's 28.6 degrees) and s = 64.
        ranges={"alpha": (5.0, 60.0)},
        defaults={**_LEARNED_DEFAULTS, "alpha": 28.6, "scale": 64.0},
        notes=(_FIELD_NOTE, _LEARNED_NOTE),
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
