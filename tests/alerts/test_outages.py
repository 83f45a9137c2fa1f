"""Delivery through outages, with short settings: a relay down then back, the fallback, re-sending, a store lock."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from typer.testing import CliRunner

from monitor.alerts.delivery.channels import EmailChannel, JsonLinesChannel, WebhookChannel
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.store import AlertStore
from monitor.cli import app as cli_app
from monitor.domain import Manager, VipFailure
from monitor.testing.fixtures import wait_until
from monitor.testing.smtp import SmtpSink

MakeFailure = Callable[..., VipFailure]
FAST = {"backoff_initial": 0.05, "backoff_max": 0.3, "backoff_jitter": 0.05, "poll_interval": 0.02}
MANAGERS = [Manager(manager_id=f"RM-{n:03d}", name=f"Manager {n}", email=f"rm{n}@bank.example",
                    timezone="Europe/Paris") for n in range(1, 4)]


def _email(relay: SmtpSink) -> EmailChannel:
    return EmailChannel(relay.host, relay.port, sender="cardmon@bank.example", timeout=2)


def _failures(make_failure: MakeFailure, at: datetime, prefix: str) -> list[VipFailure]:
    """Two clients of each of three managers fail once."""
    return [make_failure(f"{prefix}-{m}-{c}", at, customer_id=f"{prefix}-C{m}{c}", manager=manager)
            for m, manager in enumerate(MANAGERS) for c in range(2)]


async def _running(worker: DeliveryWorker) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(worker.run(stop))


async def test_an_smtp_relay_down_then_back_delivers_every_message_once_and_tells_the_fallback_once(
        tmp_path: Path, make_failure: MakeFailure) -> None:
    """The relay is down for seconds: alerts stay open (the jsonl sink is no notification), the fallback is told once per e-mail after its delay, and every e-mail arrives exactly once when the relay is back."""
    relay = SmtpSink().start()
    fallback_file = tmp_path / "undelivered.jsonl"
    with AlertStore(tmp_path / "alerts.db") as store:
        worker = DeliveryWorker(
            store, {"email": _email(relay), "jsonl": JsonLinesChannel(tmp_path / "alerts.jsonl")},
            retry_for=120, fallback=JsonLinesChannel(fallback_file), fallback_after=1.0, **FAST)
        stop, task = await _running(worker)
        try:
            now = datetime.now(UTC)
            before = store.record(_failures(make_failure, now, "up"), sinks=["jsonl"], now=now)
            worker.wake()
            await wait_until(lambda: len(relay.messages()) == 6, timeout=20, what="six e-mails before")
            relay.stop()
            outage_began = time.monotonic()
            now = datetime.now(UTC)
            during = store.record(_failures(make_failure, now, "down"), sinks=["jsonl"], now=now)
            worker.wake()
            ids = during.new_alert_ids
            await wait_until(lambda: all(d.status == "sent" for a in ids
                                         for d in store.get_alert(a).deliveries  # type: ignore[union-attr]
                                         if d.channel == "jsonl"), timeout=20, what="the jsonl sink")
            assert {store.state_of(a) for a in ids} == {"open"}
            assert {store.get_alert(a).status for a in ids} == {"pending"}  # type: ignore[union-attr]
            await wait_until(lambda: fallback_file.exists()
                             and len(fallback_file.read_text().splitlines()) == 6,
                             timeout=20, what="the fallback told of six e-mails")
            assert time.monotonic() - outage_began >= 1.0
            assert {store.state_of(a) for a in ids} == {"open"}
            await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - outage_began)))  # down 3 s
            relay.start()
            await wait_until(lambda: len(relay.messages()) == 12, timeout=20, what="six e-mails after")
            await asyncio.sleep(1.0)  # a duplicate or a second fallback would arrive now
        finally:
            stop.set()
            await task
            relay.stop()
        alerts = {a.alert_id: a for a in store.list_alerts()}
        histories = {a: [h.action for h in store.history(a)] for a in ids}
    expected = {f"<{a}.email@bank.example>" for a in (*before.new_alert_ids, *ids)}
    assert relay.message_ids() == {message_id: 1 for message_id in expected}
    assert {alerts[a].status for a in alerts} == {"notified"}
    assert all(h == ["opened", "fallback", "notified"] for h in histories.values()), histories
    told = [json.loads(line) for line in fallback_file.read_text().splitlines()]
    assert sorted(t["alert_id"] for t in told) == sorted(ids)
    assert all(t["undelivered"]["final"] is False and "SMTPConnectError" in t["undelivered"]["error"]
               and t["undelivered"]["channel"] == "email" for t in told)
    for alert_id in ids:
        (email_row,) = [d for d in alerts[alert_id].deliveries if d.channel == "email"]
        assert email_row.attempts >= 2 and email_row.fallback_at is not None


async def test_the_backup_manager_is_told_when_the_managers_channel_keeps_failing(
        tmp_path: Path, make_failure: MakeFailure, unused_port: int,
        http_receiver: Callable[[list[int]], Any]) -> None:
    """The manager's relay refuses; after the delay the backup (from the registry) gets one [BACKUP] webhook, the alert is notified by them, and the manager's e-mail keeps retrying."""
    hook = await http_receiver([200])
    own = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                  backup_manager_id="RM-042", timezone="Europe/Paris")
    backup = Manager(manager_id="RM-042", name="Jonas Weber", webhook_url=hook.url,
                     timezone="Europe/Berlin")
    registry = {m.manager_id: m for m in (own, backup)}
    with AlertStore(tmp_path / "alerts.db") as store:
        alert_id = store.record([make_failure("ev-1", datetime.now(UTC), manager=own)]).new_alert_ids[0]
        dead = EmailChannel("127.0.0.1", unused_port, sender="cardmon@bank.example", timeout=2)
        worker = DeliveryWorker(store, {"email": dead, "webhook": WebhookChannel(timeout=5)},
                                retry_for=600, fallback_after=0.5, backup_to_registry=True,
                                managers=registry.get, manager_channels=["email", "webhook"], **FAST)
        stop, task = await _running(worker)
        try:
            await wait_until(lambda: len(hook.requests) == 1, timeout=20, what="the backup's webhook")
            await asyncio.sleep(1.0)  # the e-mail keeps failing; the backup hears once
        finally:
            stop.set()
            await task
        alert = store.get_alert(alert_id)
        history = store.history(alert_id)
        state = store.state_of(alert_id)
    assert len(hook.requests) == 1
    headers, body = hook.requests[0]
    assert body["subject"].startswith("[HIGH][BACKUP] Ada Lovelace")
    assert "Sent to you as backup: cardmon cannot reach Claire Martin" in body["text"]
    assert headers["Idempotency-Key"] == f"{alert_id}:webhook:RM-042"
    assert state == "notified"
    fallback = next(h for h in history if h.action == "fallback")
    assert "not delivered to RM-017 via email" in (fallback.note or "")
    assert "told backup RM-042" in (fallback.note or "")
    assert [(h.action, h.actor, h.via) for h in history][-1] == ("notified", "RM-042", "webhook")
    assert alert is not None
    email_row = next(d for d in alert.deliveries if d.channel == "email")
    assert email_row.status == "pending" and email_row.fallback_at is not None


async def test_a_failed_alert_is_resent_from_the_command_line_and_delivered(
        tmp_path: Path, make_failure: MakeFailure, unused_port: int) -> None:
    """An alert failed for good: `cardmon alerts resend` (by a named operator) re-queues it, a later pass delivers it, and the history says who."""
    path = tmp_path / "alerts.db"
    relay = SmtpSink().start()
    try:
        with AlertStore(path) as store:
            alert_id = store.record([make_failure("ev-1", datetime.now(UTC))]).new_alert_ids[0]
            dead = EmailChannel("127.0.0.1", unused_port, sender="cardmon@bank.example", timeout=2)
            assert await DeliveryWorker(store, {"email": dead}, retry_for=0, **FAST).deliver_due() == 0
            assert store.state_of(alert_id) == "failed"
        listed = CliRunner().invoke(cli_app, ["alerts", "list", "--state", "failed", "--store", str(path)])
        assert listed.exit_code == 0 and alert_id in listed.stdout
        resent = CliRunner().invoke(cli_app, ["alerts", "resend", alert_id, "--by", "Ops Desk",
                                              "--store", str(path)])
        assert resent.exit_code == 0, resent.output
        assert f"re-queued 1 failed deliveries of {alert_id}" in resent.stdout
        nothing = CliRunner().invoke(cli_app, ["alerts", "resend", "--all-failed", "--store", str(path)])
        assert nothing.stdout.strip() == "the store has no failed delivery; nothing changed"
        with AlertStore(path) as store:
            assert store.state_of(alert_id) == "open"
            assert await DeliveryWorker(store, {"email": _email(relay)}, **FAST).deliver_due() == 1
            alert = store.get_alert(alert_id)
            history = store.history(alert_id)
            state = store.state_of(alert_id)
    finally:
        relay.stop()
    assert state == "notified" and relay.message_ids() == {f"<{alert_id}.email@bank.example>": 1}
    assert [(h.action, h.actor, h.via, h.to_state) for h in history][-2:] == [
        ("resent", "Ops Desk", "cli", "open"), ("notified", "RM-017", "email", "notified")]
    assert alert is not None and alert.deliveries[0].resent_by == "Ops Desk"
    usage = CliRunner().invoke(cli_app, ["alerts", "resend", "--store", str(path)])
    assert usage.exit_code == 2


async def test_a_store_lock_while_marking_a_row_sent_lets_no_other_lease_lapse(
        tmp_path: Path, make_failure: MakeFailure) -> None:
    """Another process holds the SQLite write lock past the busy timeout while one row is being marked sent: the mark is retried, the slow row's lease is still renewed, and a second instance never sends it again."""
    arrived: dict[str, int] = {"fast": 0, "slow": 0}
    delays = {"fast": 0.5, "slow": 10.0}

    async def answer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        arrived[name] += 1
        await asyncio.sleep(delays[name])
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks/{name}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    path = tmp_path / "alerts.db"
    managers = {name: Manager(manager_id=f"RM-{name}", name=name, webhook_url=f"{base}/{name}")
                for name in delays}
    lock_holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def hold_the_lock(seconds: float) -> None:
        lock_holder.execute("BEGIN IMMEDIATE")  # a writer in another connection, as another process
        time.sleep(seconds)
        lock_holder.execute("COMMIT")

    try:
        with AlertStore(path) as store, AlertStore(path) as other_instance:
            store.record([make_failure(f"ev-{name}", datetime.now(UTC), customer_id=f"C-{name}",
                                       manager=manager) for name, manager in managers.items()],
                         channels=["webhook"])
            worker = DeliveryWorker(store, {"webhook": WebhookChannel(timeout=30)}, lease_seconds=6,
                                    send_timeout=30, **FAST)
            other = DeliveryWorker(other_instance, {"webhook": WebhookChannel(timeout=30)},
                                   lease_seconds=6, send_timeout=30, **FAST)
            passing = asyncio.create_task(worker.deliver_due())
            await wait_until(lambda: arrived["fast"] == arrived["slow"] == 1, timeout=10,
                             what="both sends in flight")
            # 5.8 s: longer than the store's 5 s busy timeout, so marking the fast row fails once.
            locked = asyncio.create_task(asyncio.to_thread(hold_the_lock, 5.8))
            while not passing.done():  # the other instance keeps passing, as it would
                try:
                    await other.deliver_due()
                except sqlite3.OperationalError:
                    pass  # the lock: its claim waits, then gives up, like the first worker's writes
                await asyncio.sleep(0.1)
            await locked
            assert await passing == 2
            rows = {d.alert_id: d for a in store.list_alerts() for d in a.deliveries}
    finally:
        lock_holder.close()
        await runner.cleanup()
    assert arrived == {"fast": 1, "slow": 1}
    assert {(d.status, d.attempts) for d in rows.values()} == {("sent", 1)}
