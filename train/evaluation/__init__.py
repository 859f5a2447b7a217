"""Scoring models on data: inference over crops (any model file, ensembles, TTA), evaluate's scoring,
predict's submission, the EDA checks, and the plots they write."""
