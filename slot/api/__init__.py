"""Slot's HTTP API for sales teams: campaigns, leads, calls and the do-not-call list."""
