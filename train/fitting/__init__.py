"""Training one classifier: the Trainer and its epoch loop, losses, optimisers and schedules, checkpoints,
DDP, the temperature fit, and the fit-one-run logic that both `fit` and `kfold` use (session, kfold)."""
