"""The study driver: runs a Ray Tune experiment with Optuna search and ASHA early stopping over a
named search space (``python study/run.py --space repmet``) and stores the results.

Study folder layout
-------------------
``<storage>/<name>/`` is the study folder (``--storage`` defaults to ``results``, ``--name`` to the
space name). Everything the report needs is in it; no Ray cluster is needed to read it::

    <storage>/<name>/
        study.json                  the manifest (below), rewritten atomically on every change
        optuna.db                   SQLite, one Optuna study per loss, study_name = the loss name
        <loss>/                     one Ray Tune experiment per loss (Tune's experiment folder)
            tuner.pkl, experiment_state-*.json, searcher-state-*.pkl, search_gen_state-*.json
                                    Tune's own state, used by ``--resume``
            trial_<NNN>_<trial id>/ one folder per trial, NNN = creation order (001 = baseline)
                params.json         the trial config: a flat TrialConfig dict (fixed + sampled)
                result.json         one JSON object per step (every ``eval_every`` iterations)
                                    with the metrics of ``trainables.metrics``, Tune's
                                    ``training_iteration`` and ``done``
                progress.csv        the same rows as CSV
                events.out.tfevents.*  Ray's TensorBoard logger (tags ``ray/tune/...``)
                tensorboard/        the trainable's own TensorBoard events (``train/loss``,
                                    ``val/error_simple``, ... against iterations, HParams, and
                                    a projector snapshot of validation embeddings at the end)
                checkpoint_<NNNNNN>/trial.pt (+ config.json)
                                    the best checkpoint by the selection metric and the latest;
                                    with one checkpoint per step, checkpoint_<k> holds the state
                                    after step k + 1 (training_iteration = k + 1)
                error.txt, error.pkl   only if the trial failed

``study.json`` fields:

- ``version``: 1.
- ``space``: search space name; ``losses``: the losses searched, in order.
- ``fixed``: the trial settings shared by every trial (dataset, data_root as an absolute path,
  model, iterations, eval_every, device, num_threads, seed); ``dataset`` is ``fixed["dataset"]``.
- ``num_samples``: trials per loss (the same for every loss).
- ``metric``, ``mode``: the selection metric (``val/error_simple``) and ``"min"``.
- ``seed``: seed of the Optuna samplers (trials use ``fixed["seed"]``).
- ``sampler``: ``"tpe"`` or ``"random"``; ``scheduler``: ``"asha"`` or ``"none"``.
- ``cpus_per_trial``, ``gpus_per_trial``, ``max_concurrent`` (null: as resources allow),
  ``max_failures``, ``batch_budget`` (max M * D).
- ``baseline``: per loss, the 2018 seed point evaluated as the first trial;
  ``baseline_notes``: per loss, how it was clipped to fit the data (usually empty).
- ``status``: per loss, ``"pending"``, ``"running"``, ``"finished"`` or ``"interrupted"``.
- ``started``, ``finished``: UTC ISO 8601 times (``finished`` is null until every loss finished).
- ``command``: the command line of the latest run (``--resume`` updates it).
"""
