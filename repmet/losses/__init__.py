"""Magnet, RepMet and cluster-margin losses: plain functions and ``nn.Module`` forms.

Formulas: the spec's "Losses" section; every function cites its paper equation.
"""

from repmet.losses.base import LossInputError, LossOutput
from repmet.losses.cluster_margin import cluster_margin_loss
from repmet.losses.magnet import magnet_loss
from repmet.losses.modules import (
    ClusterLoss,
    ClusterMarginLoss,
    ClusterMarginV1Loss,
    MagnetLoss,
    RepMetCVPRLoss,
    RepMetV1Loss,
    RepMetV2Loss,
    RepMetV3Loss,
    RepresentativeLoss,
    build_loss,
)
from repmet.losses.repmet_cvpr import repmet_cvpr_loss
from repmet.losses.repmet_v1 import repmet_v1_loss
from repmet.losses.repmet_v2 import repmet_v2_loss
from repmet.losses.repmet_v3 import repmet_v3_loss

__all__ = [
    "ClusterLoss",
    "ClusterMarginLoss",
    "ClusterMarginV1Loss",
    "LossInputError",
    "LossOutput",
    "MagnetLoss",
    "RepMetCVPRLoss",
    "RepMetV1Loss",
    "RepMetV2Loss",
    "RepMetV3Loss",
    "RepresentativeLoss",
    "build_loss",
    "cluster_margin_loss",
    "magnet_loss",
    "repmet_cvpr_loss",
    "repmet_v1_loss",
    "repmet_v2_loss",
    "repmet_v3_loss",
]
