"""The training data: the competition folder (layout), the crop cache (cache, prepare), the PyTorch dataset,
augmentation, samplers, person-grouped folds and the data-loader benchmark."""
