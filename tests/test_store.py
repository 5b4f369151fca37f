"""The results store: keys, immediate commits, reopening."""

from __future__ import annotations

import sqlite3

from sharpbench.store import ResultStore, measure_key

PROTOCOL = {"dataset": "digits", "n": 1024, "m": 128}


def test_the_key_depends_on_name_params_and_protocol_but_not_on_order():
    key = measure_key("sharpness", {"rho": 0.1, "steps": 20}, PROTOCOL)
    assert key == measure_key("sharpness", {"steps": 20, "rho": 0.1}, dict(reversed(PROTOCOL.items())))
    assert key != measure_key("sharpness", {"rho": 0.2, "steps": 20}, PROTOCOL)
    assert key != measure_key("other", {"rho": 0.1, "steps": 20}, PROTOCOL)
    assert key != measure_key("sharpness", {"rho": 0.1, "steps": 20}, {**PROTOCOL, "m": 256})


def test_a_value_is_visible_to_another_connection_as_soon_as_it_is_put(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.put("k", "sha-a", 1.5, 0.25, measure="m", params={}, protocol=PROTOCOL, device="cpu", version="0")
    other = sqlite3.connect(tmp_path / "results.sqlite")
    assert other.execute("SELECT value FROM results").fetchall() == [(1.5,)]
    store.close()
    reopened = ResultStore(tmp_path / "results.sqlite")
    stored = reopened.get_many("k")
    assert stored["sha-a"].value == 1.5 and stored["sha-a"].seconds == 0.25
    assert reopened.get_many("another key") == {}
