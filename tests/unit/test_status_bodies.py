"""The per-process store of rendered status bodies: a body only for the version it was
rendered from, never an older one over a newer, and a bounded number of jobs."""

from __future__ import annotations

from app.jobs.status import Bodies


def test_a_body_is_found_only_under_the_version_it_was_rendered_from() -> None:
    bodies = Bodies()
    bodies.put("j", 3, b"v3")
    assert bodies.get("j", 3) == b"v3"
    assert bodies.get("j", 4) is None
    assert bodies.get("j", 2) is None
    assert bodies.get("k", 3) is None


def test_a_slow_poll_s_older_version_does_not_replace_a_newer_body() -> None:
    bodies = Bodies()
    bodies.put("j", 5, b"v5")
    bodies.put("j", 4, b"v4")  # read before the change, rendered after
    assert bodies.get("j", 5) == b"v5"
    assert bodies.get("j", 4) is None
    bodies.put("j", 6, b"v6")
    assert (bodies.get("j", 6), bodies.get("j", 5)) == (b"v6", None)


def test_the_least_recently_polled_jobs_go_first() -> None:
    bodies = Bodies(size=2)
    bodies.put("a", 1, b"a")
    bodies.put("b", 1, b"b")
    assert bodies.get("a", 1) == b"a"  # a is now the most recent
    bodies.put("c", 1, b"c")
    assert len(bodies) == 2
    assert (bodies.get("a", 1), bodies.get("b", 1), bodies.get("c", 1)) == (b"a", None, b"c")
