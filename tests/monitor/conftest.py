"""Fixtures of the monitor's tests: a real MQTT broker (amqtt) on a free loopback port."""

from __future__ import annotations

import contextlib

import pytest


@pytest.fixture()
def broker():
    from tests.monitor.test_mqtt import BrokerThread, _free_port

    b = BrokerThread(_free_port())
    b.start()
    yield b
    with contextlib.suppress(Exception):  # a broker that failed to stop is still closed
        b.stop()
    b.close()
