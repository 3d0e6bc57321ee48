"""Hyperparameter search (`ptuning tune`): the Optuna study (`search`) over the search spaces (`space`)."""
