"""The study driver: runs a Ray Tune experiment with Optuna search and ASHA early stopping over a
named search space (``python study/run.py --space repmet``) and stores the results."""
