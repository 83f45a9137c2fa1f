"""A resolution's outcome (schema 7): recorded in the history, checked against the vocabulary, exported."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.alerts.export import history_record
from monitor.alerts.states import RESOLUTION_OUTCOMES
from monitor.alerts.store import AlertStore
from tests.alerts.conftest import _make_failure


def _acknowledged(store: AlertStore) -> str:
    [alert_id] = store.record([_make_failure("ev-1", datetime(2026, 12, 7, 9, 0, tzinfo=UTC))]).new_alert_ids
    store.acknowledge(alert_id, by="RM-017", via="api")
    return alert_id


@pytest.mark.parametrize("outcome", RESOLUTION_OUTCOMES)
def test_each_outcome_is_recorded_and_read_back(store_location: Path | str, outcome: str) -> None:
    """Resolving with an outcome stores it on the resolved row; history and export show it."""
    with AlertStore(store_location) as store:
        alert_id = _acknowledged(store)
        result = store.resolve(alert_id, by="RM-017", via="api", note="done", outcome=outcome)
        assert result.entry is not None and result.entry.outcome == outcome
        entry = store.history(alert_id)[-1]
        assert (entry.action, entry.outcome, entry.note) == ("resolved", outcome, "done")
        assert history_record(entry)["outcome"] == outcome
        assert all(h.outcome is None for h in store.history(alert_id)[:-1])


def test_an_unknown_outcome_or_nothing_said_is_refused(store_location: Path | str) -> None:
    """An outcome outside the vocabulary, or neither note nor outcome, raises and changes nothing."""
    with AlertStore(store_location) as store:
        alert_id = _acknowledged(store)
        with pytest.raises(ValueError, match="outcome must be one of"):
            store.resolve(alert_id, by="RM-017", via="api", note="done", outcome="fixed_it")
        with pytest.raises(ValueError, match="needs a note"):
            store.resolve(alert_id, by="RM-017", via="api", note="  ", outcome=None)
        assert store.state_of(alert_id) == "acknowledged"


def test_a_note_alone_still_resolves_without_an_outcome(store_location: Path | str) -> None:
    """The API's and CLI's resolutions (a note, no outcome) work as before, with outcome None."""
    with AlertStore(store_location) as store:
        alert_id = _acknowledged(store)
        store.resolve(alert_id, by="ops", via="cli", note="refund arranged")
        assert store.history(alert_id)[-1].outcome is None
