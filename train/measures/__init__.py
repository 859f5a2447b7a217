"""What a model's predictions measure up to and the pictures of it: the competition's metrics, calibration
(ECE, NLL, reliability), confusion matrices and charts. Below fitting and evaluation, which both use them;
imports nothing of train but train.data."""
