"""The training run: state round trips, measurement, end-to-end learning and the CLI."""

from __future__ import annotations

import pytest
import torch

from repmet.catalogue import LOSSES
from repmet.clusters import ClusterIndex
from repmet.config import TrainingConfig
from repmet.errors import ArgumentError, ConfigError
from repmet.train import main as train_main
from repmet.training import TrainingRun

METRIC_KEYS = {
    "error_simple", "error_magnet", "error_repmet", "error_unsupervised",
    "p_at_1", "r_precision", "map_at_r", "nmi", "ami",
}  # fmt: skip


def _losses_per_iteration(trial: TrainingRun, iterations: int) -> list[float]:
    return [trial.train(1).loss for _ in range(iterations)]


@pytest.mark.parametrize("loss", ["magnet", "repmet-v2", "cluster-margin"])
def test_state_round_trip_continues_bit_for_bit(loss: str, digits, tmp_path) -> None:
    # refresh_every=4 puts index refreshes (k-means on the trial's generator) on both sides of the
    # save point, so the test also covers the index and generator state.
    config = TrainingConfig(loss=loss, iterations=20, refresh_every=4, m=6, d=4, k=2, seed=3)
    uninterrupted = TrainingRun(config, splits=digits)
    expected = _losses_per_iteration(uninterrupted, 14)

    first = TrainingRun(config, splits=digits)
    before = _losses_per_iteration(first, 6)
    path = first.save(tmp_path / "trial.pt")
    _losses_per_iteration(first, 3)  # moves on past the save point; must not leak into the copy

    resumed = TrainingRun.load(path, splits=digits)
    assert resumed.iteration == 6
    after = _losses_per_iteration(resumed, 8)
    assert before + after == expected
    assert torch.equal(resumed.loss_table.losses.isnan(), uninterrupted.loss_table.losses.isnan())
    for name, tensor in uninterrupted.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_evaluation_does_not_change_the_course_of_training(digits) -> None:
    config = TrainingConfig(loss="magnet", iterations=10, refresh_every=3, m=4, d=4, k=2)
    plain = TrainingRun(config, splits=digits)
    evaluated = TrainingRun(config, splits=digits)
    expected = _losses_per_iteration(plain, 6)
    got = _losses_per_iteration(evaluated, 3)
    evaluated.measure("train", "val")
    got += _losses_per_iteration(evaluated, 3)
    assert got == expected


def test_measure_reports_every_metric_per_split(digits) -> None:
    trial = TrainingRun(TrainingConfig(loss="repmet-v1", k=2, m=4), splits=digits)
    metrics = trial.measure("train", "val", "test").metrics
    assert set(metrics) == {"train", "val", "test"}
    for values in metrics.values():
        assert set(values) == METRIC_KEYS
        assert all(-1.0 <= value <= 1.0 for value in values.values())
    measurement = trial.measure("train", "test")
    assert measurement.metrics == {split: metrics[split] for split in ("train", "test")}
    assert torch.equal(measurement.embedded["test"][0], trial.embed("test")[0])
    assert torch.equal(measurement.centroids, trial.centroids().centroids)
    with pytest.raises(ArgumentError, match="split = 'dev' is not one of"):
        trial.measure("dev")


@pytest.mark.parametrize("loss", ["magnet", "repmet-v2", "softmax"])
def test_training_learns_an_embedding_on_digits(loss: str, digits) -> None:
    trial = TrainingRun(TrainingConfig(loss=loss, iterations=200), splits=digits)
    untrained = trial.measure("val").metrics["val"]["error_simple"]
    stats = trial.train(200)
    trained = trial.measure("val").metrics["val"]["error_simple"]
    assert stats.iterations == 200 and stats.examples_per_second > 0
    assert trained < 0.10
    assert trained < untrained / 2


def test_infeasible_k_fails_before_training(digits) -> None:
    smallest = int(torch.bincount(digits.train.labels).min())
    with pytest.raises(ConfigError, match=f"k = {smallest + 1} exceeds the smallest"):
        TrainingRun(TrainingConfig(k=smallest + 1), splits=digits)


def test_cli_prints_error_table(capsys) -> None:
    assert train_main(["--loss", "magnet", "--iterations", "20", "--eval-every", "10"]) == 0
    out = capsys.readouterr().out
    errors = "| Simple Error | Magnet Error | RepMet Error | Unsup. Error |"
    assert "| split | batch error " + errors in out
    assert "| P@1 | R-Prec | MAP@R | NMI | AMI |" in out
    for split in ("train", "val", "test"):
        assert f"| {split} |" in out


def test_cli_bad_value_is_one_line_error(capsys) -> None:
    assert train_main(["--sigma", "0", "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "python -m repmet.train: error: sigma = 0.0 must be > 0"


def test_nan_loss_stops_with_a_clear_error(digits) -> None:
    from repmet.errors import TrainingDiverged

    trial = TrainingRun(TrainingConfig(loss="magnet", m=4, k=2), splits=digits)
    with torch.no_grad():
        trial.model.head.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="training diverged at iteration 1: the magnet loss"):
        trial.train(1)


def test_refresh_and_evaluation_embed_without_augmentation() -> None:
    trial = TrainingRun(TrainingConfig(loss="magnet", augment=True, m=4, k=2))
    assert trial.splits.train.augmented
    first, _ = trial.embed("train")
    second, _ = trial.embed("train")
    assert torch.equal(first, second)
    trial.train(2)  # the training batches themselves are augmented and still train


def test_loading_a_state_skips_the_initial_index_build(digits, tmp_path, monkeypatch) -> None:
    trial = TrainingRun(TrainingConfig(loss="magnet", m=4, k=2), splits=digits)
    trial.train(3)
    path = trial.save(tmp_path / "trial.pt")

    def no_build(self, *, initial: bool):
        raise AssertionError("the initial index was built although a state replaces it")

    monkeypatch.setattr(TrainingRun, "_build_index", no_build)
    loaded = TrainingRun.load(path, splits=digits)
    assert loaded.iteration == 3
    assert torch.equal(loaded.index.assignments, trial.index.assignments)


def test_a_failed_save_keeps_the_old_state_and_leaves_no_temporary_file(
    digits, tmp_path, monkeypatch
) -> None:
    trial = TrainingRun(TrainingConfig(loss="magnet", m=4, k=2), splits=digits)
    path = trial.save(tmp_path / "trial.pt")
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    trial.train(2)
    with pytest.raises(OSError, match="No space left"):
        trial.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["trial.pt"]
    assert path.read_bytes() == before


REPRESENTATIVE_LOSSES = [
    name for name in LOSSES.in_order() if LOSSES.get(name).learns_representatives
]


@pytest.mark.parametrize("loss", REPRESENTATIVE_LOSSES)
def test_representatives_move_to_the_modes_of_their_classes(loss: str, digits) -> None:
    """Each representative in use (the nearest own-class one of some training example) ends
    nearer, on average, to its own class's training embeddings than to any other class's, and
    every class has one in use. With unnormalised embeddings and a fixed sigma the network grew
    the embedding scale instead and most representatives failed this (ratios 1.5 to 2.2)."""
    run = TrainingRun(TrainingConfig(loss=loss, iterations=200, seed=0), splits=digits)
    run.train(200)
    embeddings, labels = run.embed("train")
    representatives = run.loss_fn.representatives.detach().cpu()
    classes = run.loss_fn.representative_classes.cpu()
    distances = torch.cdist(representatives.double(), embeddings.double()).pow(2)  # [J, N]
    members = torch.nn.functional.one_hot(labels).double()  # [N, C]
    mean_to_class = distances @ members / members.sum(dim=0)  # [J, C]
    index = ClusterIndex.from_representatives(embeddings, labels, representatives, k=run.config.k)
    in_use = index.cluster_sizes() > 0
    assert set(classes[in_use].tolist()) == set(range(digits.num_classes))
    own = mean_to_class[torch.arange(len(classes)), classes]
    others = mean_to_class.scatter(1, classes[:, None], torch.inf).amin(dim=1)
    assert bool((own[in_use] < others[in_use]).all()), (own / others)[in_use]
