"""The study-folder contract, one package that the study driver, the trainable and the report
all use: how a study is laid out on disk (:mod:`.layout`), its manifest and the one reader that
upgrades older formats (:mod:`.manifest`), its trials and how each ended (:mod:`.trials`), what a
study searched for a loss (:mod:`.searched`), ``trials.csv`` (:mod:`.trials_csv`) and the lock that
keeps a second run off a study (:mod:`.lock`). None of them spells a file or metric name of its
own.

The package imports neither torch nor Ray (a test checks it), so that a study folder copied to
another machine can be read there.

Study folder layout (``FORMAT_VERSION`` 3)::

    <storage>/<name>/
        study.json                  the manifest (:class:`.manifest.Manifest`), rewritten
                                    atomically; its per-loss ``status`` is set from the trials
                                    of each loss
        episodes/                   a class-disjoint study's few-shot episodes,
                                    ``<split>_<S>shot.pt`` (``EPISODES_DIR``)
        study.lock                  held (``flock``) by the run using the study (:mod:`.lock`);
                                    the file stays, an unlocked file means nothing
        optuna.db                   SQLite, one Optuna study per loss, study_name = the loss name
                                    (its metric named after the objective; a trial's user
                                    attribute ``trial_dir`` names its folder,
                                    ``trials/<loss>-trial_...``)
        trials.csv                  one row per trial of every loss (:mod:`.trials_csv`)
        trials/                     the one Ray Tune experiment of the study (``EXPERIMENT_DIR``):
                                    every loss's trials run side by side in it, each loss with
                                    its own Optuna study, its own ASHA bracket and its own budget
                                    of ``num_samples`` trials
            tuner.pkl, experiment_state-*.json, searcher-state-*.pkl, search_gen_state-*.json
                                    Tune's own state, used by ``--resume``
            <loss>-trial_<NNN>_<trial id>/
                                    one folder per trial (Tune allows no '/' in a trial's
                                    folder name, so the loss leads it); NNN = creation order
                                    within the loss (001 = the loss's baseline)
                params.json         the whole TrainingConfig of the trial (defaults included)
                result.json         one JSON object per step (every ``eval_every`` iterations)
                                    with the metrics below, Tune's ``training_iteration``, ``done``
                progress.csv        the same rows as CSV
                events.out.tfevents.*   TensorBoard events of the trial, from the trainable
                                    alone (``trainables.records``): ``tensorboard --logdir
                                    <study>`` shows one run per trial,
                                    ``trials/<loss>-trial_<NNN>_<id>``
                projector_config.pbtxt, projector/   its embedding projector snapshot
                checkpoint_<NNNNNN>/trial.pt
                                    the best checkpoint by the selection metric and the latest
                error.txt, error.pkl   only if the trial failed

Format 2 had one Tune experiment per loss, run one after another: ``<loss>/trial_<NNN>_<id>/``
(the same files in each). The reader finds the trial folders of a loss in either layout
(:func:`.trials.loss_trial_folders`).
"""
