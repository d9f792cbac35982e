"""Waiting on a condition in tests: a test fails on the condition, never on a duration."""
import time

# Upper bound on waiting for a process or a page; generous for a loaded 2-core machine.
PATIENCE_S = 60


def wait_for(what, predicate, patience=PATIENCE_S):
    """Returns the first truthy value of `predicate()`; fails after `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)
