"""Scoring models on data: inference over crops (any model file, ensembles, TTA), evaluate's scoring,
predict's submission, the EDA checks, the monitor's detect-crop-classify path over frames and scenes, and
evaluate --compare (metrics and plots come from train.measures)."""
