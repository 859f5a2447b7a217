"""Decisions above single tracks: compliance over a rolling window and its alerts, zones."""
