"""The study driver: ``python study/run.py --space repmet`` runs one Ray Tune experiment for every
loss of a named search space, side by side, with an Optuna search and ASHA early stopping per loss,
and stores the results in a study folder whose layout and manifest are defined in
:mod:`repmet.study_folder`."""
