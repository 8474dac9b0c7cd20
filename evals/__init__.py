"""Offline evaluations anyone can rerun (`slot eval ...`); tools around the product, never
imported by it."""
