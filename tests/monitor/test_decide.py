"""monitor.decisions.decide: a track's votes -> a settled state, and one flag per person and state."""

from __future__ import annotations

import numpy as np
import pytest

from engines.labels import encode, marginals
from monitor.decisions.decide import Decider, vote
from tests.monitor.fakes import probs_for


def test_marginals_and_vote():
    p = probs_for(2, gender=1, age=2, p=0.7)
    m, g, a = marginals(p)
    assert m.argmax() == 2 and g.argmax() == 1 and a.argmax() == 2
    assert m.sum() == pytest.approx(1.0)
    s = vote(np.stack([probs_for(2), probs_for(2), probs_for(0)]), min_votes=3)
    assert s.mask == 2 and s.settled and s.votes == 3 and 0.5 < s.confidence < 0.8
    assert s.cls == encode(2, 0, 1)
    assert not vote(np.stack([probs_for(2), probs_for(2)]), min_votes=3).settled  # too few
    assert not vote(np.stack([probs_for(2), probs_for(0), probs_for(1)]), min_votes=3).settled  # no majority


def test_flag_once_per_person_and_state():
    d = Decider(vote_window=5, min_votes=3)
    flags = []
    seq = [2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    for m in seq:
        d.add(7, probs_for(m))
        f = d.new_flag(7)
        if f is not None:
            flags.append(f.mask_name)
    # no mask -> flagged once; mask -> nothing; no mask again -> not again; incorrect -> a new flag
    assert flags == ["not_wear", "incorrect"]
    assert d.settled_state(7).mask == 1
    d.forget(7)
    assert d.state(7) is None and d.settled_state(7) is None
    assert d.add(7, probs_for(2)).votes == 1  # the votes before forget() are gone


def test_flag_states_are_configurable():
    d = Decider(vote_window=3, min_votes=1, flag_states=("not_wear",))
    d.add(1, probs_for(1))
    assert d.new_flag(1) is None
    d2 = Decider(vote_window=3, min_votes=1, flag_states=("wear",))
    d2.add(1, probs_for(0))
    assert d2.new_flag(1).mask_name == "wear"
    with pytest.raises(ValueError):
        d.add(1, np.ones(5))
