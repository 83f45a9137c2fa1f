"""How often sign-in links are mailed: per person named and per client address, the answer page unchanged."""

from __future__ import annotations

from monitor.workspace.throttle import PER_ADDRESS, PER_PERSON, SignInThrottle
from tests.workspace.conftest import CLAIRE, Site


def test_a_person_gets_three_links_per_window_however_the_form_spells_them() -> None:
    """The fourth request for one person is refused, whatever the case or spaces; another person is not affected."""
    throttle = SignInThrottle()
    assert PER_PERSON.amount == 3
    spellings = ["RM-017", " rm-017 ", "Rm-017", "RM-017"]
    assert [throttle.allow(who, f"10.0.0.{n}") for n, who in enumerate(spellings)] == [True, True, True, False]
    assert throttle.allow("RM-042", "10.0.0.9")


def test_one_address_asks_at_most_thirty_times_per_window() -> None:
    """Requests from one address beyond its limit are refused even for new people; another address still may ask."""
    throttle = SignInThrottle()
    allowed = [throttle.allow(f"RM-{n:03d}", "192.0.2.7") for n in range(PER_ADDRESS.amount + 1)]
    assert allowed == [True] * PER_ADDRESS.amount + [False]
    assert throttle.allow("RM-999", "192.0.2.8")


async def test_over_the_limit_the_form_answers_the_same_page_and_sends_nothing(site: Site) -> None:
    """Five requests for Claire: three mails leave, and all five answers are the same page."""
    client = await site.client()
    answers = []
    for _ in range(5):
        response = await client.post("/workspace/sign-in", data={"who": CLAIRE.manager_id})
        answers.append((response.status, await response.text()))
    assert len(set(answers)) == 1 and answers[0][0] == 200
    await site.workspace.close()  # every background send has finished
    assert [recipients for recipients, _ in site.sink.messages()] == [[CLAIRE.email]] * 3


async def test_asking_by_id_and_by_address_counts_for_the_same_person(site: Site) -> None:
    """Two requests by ID and two by address for Claire: three mails leave, not four."""
    client = await site.client()
    for who in (CLAIRE.manager_id, CLAIRE.email, CLAIRE.manager_id, (CLAIRE.email or "").upper()):
        response = await client.post("/workspace/sign-in", data={"who": who})
        assert response.status == 200
    await site.workspace.close()
    assert len(site.sink.messages()) == 3
