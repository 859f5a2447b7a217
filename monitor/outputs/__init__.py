"""The monitor's outputs: each one a Sink (base.py) fed every processed frame and every event."""
