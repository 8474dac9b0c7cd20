"""Offline evaluations anyone can rerun (`slot eval ...`)."""
