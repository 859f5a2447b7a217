from types import SimpleNamespace

from train.fitting.trainer import Trainer


def _improves(best, score, loss):
    return Trainer._improves(SimpleNamespace(best=best), score, loss)


def test_best_checkpoint_is_by_f1_then_by_validation_loss():
    assert _improves({"score": None, "loss": None}, 0.2, 9.0)  # first epoch is always best
    assert _improves({"score": 0.8, "loss": 0.1}, 0.9, 5.0)  # higher F1 wins, whatever the loss
    assert not _improves({"score": 0.9, "loss": 0.1}, 0.8, 0.01)  # lower F1 loses, whatever the loss
    assert _improves({"score": 1.0, "loss": 0.012}, 1.0, 0.004)  # a tie on F1: the lower loss wins
    assert not _improves({"score": 1.0, "loss": 0.004}, 1.0, 0.012)
    assert not _improves({"score": 1.0, "loss": 0.004}, 1.0, 0.004)
