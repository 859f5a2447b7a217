"""`mask-train tune`: the search space, one trial as a `fit` process, the Optuna study and its reports."""
