"""`slot bench --faults`: which fault a dropped call is counted for."""

from __future__ import annotations

from evals.bench_calls import CallSample
from evals.bench_faults import Fault, fault_figures


def test_a_call_dropped_by_the_later_kill_counts_for_it_not_for_the_earlier() -> None:
    """In flight at the worker kill, still talking when the edge was killed: its caller saw
    the stream close a moment before the bench stamped the edge's kill."""
    worker, edge = Fault("worker", killed_at=100.0), Fault("edge", killed_at=200.0)
    through_both = CallSample("call-both", started_at=90.0, ended_at=199.8)
    edge_only = CallSample("call-edge", started_at=150.0, ended_at=200.1)
    samples = [through_both, edge_only]
    statuses = {"call-both": "dropped", "call-edge": "dropped"}

    at_worker = fault_figures(worker, 195.0, samples, statuses, 0.0, next_kill=edge.killed_at)
    at_edge = fault_figures(edge, 300.0, samples, statuses, 0.0)

    assert at_worker["calls_in_flight"] == 1
    assert at_worker["calls_dropped"] == 0, "the worker kill dropped no call"
    assert at_edge["calls_in_flight"] == 2
    assert at_edge["calls_dropped"] == 2


def test_a_call_dropped_before_the_next_kill_counts_for_its_own() -> None:
    worker, edge = Fault("worker", killed_at=100.0), Fault("edge", killed_at=200.0)
    dropped = CallSample("call-1", started_at=90.0, ended_at=110.0)
    figures = fault_figures(
        worker, 195.0, [dropped], {"call-1": "dropped"}, 0.0, next_kill=edge.killed_at
    )
    assert figures["calls_dropped"] == 1
