"""Turns shaking settings into measured numbers: data, private tuning accuracy, cost, leakage.

Does not import Optuna: a trial is a plain function from settings to measurements."""
