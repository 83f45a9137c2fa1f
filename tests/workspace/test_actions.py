"""Acknowledging and resolving from the workspace's alert page, and the history it shows.

Real parts: the aiohttp application served by aiohttp's test server over a real SQLite or
PostgreSQL alert store (fixture ``site`` in conftest.py).
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from monitor.alerts.states import RESOLUTION_OUTCOMES
from monitor.workspace import OUTCOME_LABELS
from tests.workspace.conftest import _CSRF, CLAIRE, JONAS, RAW_PAN, Site


async def _csrf(client: TestClient, alert_id: str) -> str:
    page = await client.get(f"/workspace/alerts/{alert_id}")
    assert page.status == 200
    match = _CSRF.search(await page.text())
    assert match is not None
    return match.group(1)


async def test_a_manager_acknowledges_then_resolves_with_an_outcome(site: Site) -> None:
    """Acknowledge and resolve record the manager, via=workspace, the note and the outcome, and the page shows them."""
    alert_id = site.record(1)
    claire = await site.signed_in("RM-017")
    token = await _csrf(claire, alert_id)
    acked = await claire.post(f"/workspace/alerts/{alert_id}/acknowledge",
                              data={"csrf_token": token, "note": "On it"}, allow_redirects=False)
    assert acked.status == 303
    assert acked.headers["Location"] == f"/workspace/alerts/{alert_id}"
    assert site.store.state_of(alert_id) == "acknowledged"
    resolved = await claire.post(f"/workspace/alerts/{alert_id}/resolve", allow_redirects=False,
                                 data={"csrf_token": token, "outcome": "called_client",
                                       "note": "She will retry tomorrow"})
    assert resolved.status == 303
    assert site.store.state_of(alert_id) == "resolved"
    history = site.store.history(alert_id)
    mine = [h for h in history if h.via == "workspace"]
    assert [(h.action, h.actor, h.note, h.outcome) for h in mine] == [
        ("acknowledged", "RM-017", "On it", None),
        ("resolved", "RM-017", "She will retry tomorrow", "called_client"),
    ]
    page = await (await claire.get(f"/workspace/alerts/{alert_id}")).text()
    assert "Called the client" in page and "She will retry tomorrow" in page and "On it" in page
    assert "workspace" in page and "RM-017" in page
    assert 'action="/workspace/alerts/' not in page  # nothing left to do: no forms
    assert RAW_PAN not in page


async def test_acknowledging_twice_changes_nothing_the_second_time(site: Site) -> None:
    """A second acknowledgement (e.g. a double click) is a no-op: one history row."""
    alert_id = site.record(1)
    claire = await site.signed_in("RM-017")
    token = await _csrf(claire, alert_id)
    for _ in range(2):
        response = await claire.post(f"/workspace/alerts/{alert_id}/acknowledge",
                                     data={"csrf_token": token}, allow_redirects=False)
        assert response.status == 303
    assert [h.action for h in site.store.history(alert_id)].count("acknowledged") == 1


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_another_managers_alert_answers_404_and_nothing_changes(site: Site, action: str) -> None:
    """Jonas cannot acknowledge or resolve Claire's alert (404), nor an alert that does not exist."""
    alert_id = site.record(1, CLAIRE)
    if action == "resolve":
        site.store.acknowledge(alert_id, by="RM-017", via="api")
    own = site.record(2, JONAS)
    jonas = await site.signed_in("RM-042")
    token = await _csrf(jonas, own)
    before = site.store.history(alert_id)
    for target in (alert_id, "no-such-alert"):
        response = await jonas.post(f"/workspace/alerts/{target}/{action}", allow_redirects=False,
                                    data={"csrf_token": token, "outcome": "no_action_needed",
                                          "note": "not mine"})
        assert response.status == 404
    assert site.store.history(alert_id) == before


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_actions_need_the_csrf_token(site: Site, action: str) -> None:
    """A form without (or with another session's) CSRF token is refused (403) and nothing changes."""
    alert_id = site.record(1)
    if action == "resolve":
        site.store.acknowledge(alert_id, by="RM-017", via="api")
    claire = await site.signed_in("RM-017")
    other = await site.signed_in("RM-017")
    wrong = await _csrf(other, alert_id)
    before = site.store.history(alert_id)
    for data in ({}, {"csrf_token": wrong}, {"csrf_token": ""}):
        response = await claire.post(f"/workspace/alerts/{alert_id}/{action}", allow_redirects=False,
                                     data={**data, "outcome": "called_client"})
        assert response.status == 403
    assert site.store.history(alert_id) == before


async def test_actions_without_a_session_go_to_sign_in(site: Site) -> None:
    """Without a session, an action redirects to the sign-in form and changes nothing."""
    alert_id = site.record(1)
    client = await site.client()
    response = await client.post(f"/workspace/alerts/{alert_id}/acknowledge", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/workspace/sign-in"
    assert site.store.state_of(alert_id) != "acknowledged"


@pytest.mark.parametrize("outcome", [None, "", "fixed_it", "called_client "])
async def test_resolve_needs_an_outcome_from_the_vocabulary(site: Site, outcome: str | None) -> None:
    """A resolution without a known outcome is refused (400) and the alert stays acknowledged."""
    alert_id = site.record(1)
    claire = await site.signed_in("RM-017")
    token = await _csrf(claire, alert_id)
    await claire.post(f"/workspace/alerts/{alert_id}/acknowledge", data={"csrf_token": token})
    data = {"csrf_token": token, "note": "done"} | ({} if outcome is None else {"outcome": outcome})
    response = await claire.post(f"/workspace/alerts/{alert_id}/resolve", data=data,
                                 allow_redirects=False)
    assert response.status == 400
    assert site.store.state_of(alert_id) == "acknowledged"


async def test_resolving_before_acknowledging_answers_409(site: Site) -> None:
    """Resolve needs an acknowledgement first: 409 with the store's reason, nothing changes."""
    alert_id = site.record(1)
    claire = await site.signed_in("RM-017")
    token = await _csrf(claire, alert_id)
    response = await claire.post(f"/workspace/alerts/{alert_id}/resolve", allow_redirects=False,
                                 data={"csrf_token": token, "outcome": "called_client"})
    assert response.status == 409
    assert site.store.state_of(alert_id) != "resolved"


async def test_a_too_long_note_is_refused(site: Site) -> None:
    """A note over 1,000 characters is refused (400), not silently cut."""
    alert_id = site.record(1)
    claire = await site.signed_in("RM-017")
    token = await _csrf(claire, alert_id)
    response = await claire.post(f"/workspace/alerts/{alert_id}/acknowledge", allow_redirects=False,
                                 data={"csrf_token": token, "note": "x" * 1001})
    assert response.status == 400
    assert site.store.state_of(alert_id) != "acknowledged"


async def test_notes_are_escaped_and_pan_scrubbed_on_the_page(site: Site) -> None:
    """A note with markup and a PAN shows escaped, with the PAN masked by the store."""
    alert_id = site.record(1)
    claire = await site.signed_in("RM-017")
    token = await _csrf(claire, alert_id)
    await claire.post(f"/workspace/alerts/{alert_id}/acknowledge",
                      data={"csrf_token": token, "note": f"<script>x</script> card {RAW_PAN}"})
    page = await (await claire.get(f"/workspace/alerts/{alert_id}")).text()
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert RAW_PAN not in page


async def test_an_outcome_alone_resolves(site: Site) -> None:
    """The outcome says what was done, so the resolution's note may be left empty."""
    alert_id = site.record(1)
    claire = await site.signed_in("RM-017")
    token = await _csrf(claire, alert_id)
    await claire.post(f"/workspace/alerts/{alert_id}/acknowledge", data={"csrf_token": token})
    response = await claire.post(f"/workspace/alerts/{alert_id}/resolve", allow_redirects=False,
                                 data={"csrf_token": token, "outcome": "client_unreachable", "note": ""})
    assert response.status == 303
    entry = site.store.history(alert_id)[-1]
    assert (entry.action, entry.outcome, entry.note) == ("resolved", "client_unreachable", None)
    assert "Could not reach the client" in await (await claire.get(f"/workspace/alerts/{alert_id}")).text()


def test_every_outcome_has_a_label() -> None:
    """The page labels exactly the store's vocabulary, in its order."""
    assert tuple(OUTCOME_LABELS) == RESOLUTION_OUTCOMES
