"""The study driver: ``python study/run.py --space repmet`` runs one Ray Tune experiment per loss
of a named search space, with Optuna search and ASHA early stopping, and stores the results in a
study folder whose layout and manifest are defined in :mod:`repmet.study_folder`."""
