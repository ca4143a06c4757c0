"""What TensorBoard shows of a folder of trial records, read through TensorBoard's own code (used
by ``tests/study/test_records.py`` and ``tests/e2e/test_study_records.py``)."""

from __future__ import annotations

import json
from pathlib import Path


def tensorboard_view(logdir: Path) -> dict:
    """What TensorBoard serves for ``logdir``: its runs with their scalar tags, and the HParams
    plugin's answers (the experiment and the session groups), through the plugin's own routes."""
    from tensorboard import context
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams.hparams_plugin import HParamsPlugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = HParamsPlugin(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    routes = plugin.get_plugin_apps()

    def post(route: str, body: dict) -> dict:
        def app(environ, start_response):
            context.set_in_environ(environ, context.RequestContext())
            return routes[route](environ, start_response)

        response = Client(app, Response).post("/", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return json.loads(response.get_data())

    scalars = multiplexer.PluginRunToTagToContent("scalars")
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    groups = post(
        "/session_groups",
        {"experimentName": "", "allowedStatuses": statuses, "startIndex": 0, "sliceSize": 1000},
    )["sessionGroups"]
    return {
        "runs": {run: set(scalars.get(run, {})) for run in multiplexer.Runs()},
        "experiment": post("/experiment", {"experimentName": ""}),
        "sessions": {
            group["name"]: {
                "hparams": dict(group["hparams"]),
                "metrics": {m["name"]["tag"]: m["value"] for m in group["metricValues"]},
            }
            for group in groups
        },
    }


def projector(folder: Path) -> tuple[str, list[list[str]], int]:
    """The tensor name, the metadata rows (header first) and the row count of the tensors of a
    run's projector snapshot."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    metadata = (folder / embedding.metadata_path).read_text().splitlines()
    tensors = (folder / embedding.tensor_path).read_text().splitlines()
    assert list(embedding.tensor_shape) == [len(tensors), len(tensors[0].split("\t"))]
    return embedding.tensor_name, [line.split("\t") for line in metadata], len(tensors)
