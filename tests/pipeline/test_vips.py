"""The VIP registry: CSV and Parquet files, vectorised lookups, errors, reloads."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import polars as pl
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.domain import Manager
from monitor.pipeline import vips
from monitor.pipeline.vips import RegistryError, RegistryLoader, VipRegistry, read_registry
from monitor.testing.fixtures import wait_until
from tests.helpers import write_registry

MANAGERS_CSV = """
manager_id,name,email,phone,webhook_url,backup_manager_id,timezone
M1,Alice Martin,alice@bank.example,+33 1 23 45 67 89,,M2,Europe/Paris
M2,Bob Chen,bob@bank.example,,https://hooks.bank.example/bob,,Asia/Singapore
M3,Carla Diaz,,,,,
"""

CUSTOMERS_CSV = """
customer_id,name,tier,manager_id,card_refs
C-001,Ada Lovelace,private,M1,tok_ada1;tok_ada2
C-002,Blaise Pascal,gold,M2,tok_blaise
C-003,Carl Gauss,platinum,M3,
"""


def lookup_frame(rows: list[tuple[str | None, str | None]]) -> pl.DataFrame:
    """A batch frame with only the two key columns a lookup needs."""
    return pl.DataFrame(rows, schema={"customer_id": pl.String, "card_ref": pl.String}, orient="row")


def looked_up(registry: VipRegistry, rows: list[tuple[str | None, str | None]]) -> list[tuple]:
    """``(vip_customer_id, customer_name, tier, manager_id)`` per input row."""
    frame = registry.lookup(lookup_frame(rows))
    return frame.select("vip_customer_id", "customer_name", "tier", "manager_id").rows()


@pytest.fixture
def csv_registry(tmp_path: Path) -> tuple[Path, Path]:
    """customers.csv and managers.csv of three VIP clients and three managers."""
    return write_registry(tmp_path, CUSTOMERS_CSV, MANAGERS_CSV)


ADA = ("C-001", "Ada Lovelace", "private", "M1")
BLAISE = ("C-002", "Blaise Pascal", "gold", "M2")
CARL = ("C-003", "Carl Gauss", "platinum", "M3")
NOBODY = (None, None, None, None)


def test_csv_lookup_by_customer_id_and_by_card_ref(csv_registry: tuple[Path, Path]) -> None:
    """Events find their client by customer_id, else by card_ref; others get nulls, in row order."""
    registry = read_registry(*csv_registry)
    assert len(registry) == 3
    rows = [
        ("C-002", None),            # by customer_id
        (None, "tok_ada2"),         # by the second card of Ada
        ("C-999", "tok_blaise"),    # unknown customer_id falls back to the card
        (None, "tok_unknown"),      # non-VIP
        ("C-003", "tok_whatever"),  # client without cards, by customer_id
        (None, None),
    ]
    assert looked_up(registry, rows) == [BLAISE, ADA, BLAISE, NOBODY, CARL, NOBODY]


def test_customer_id_wins_over_card_ref(csv_registry: tuple[Path, Path]) -> None:
    """When customer_id and card_ref point to different clients, the customer_id's client is used."""
    registry = read_registry(*csv_registry)
    assert looked_up(registry, [("C-003", "tok_ada1"), ("C-001", "tok_blaise")]) == [CARL, ADA]


def test_lookup_keeps_the_frame_and_adds_four_columns(csv_registry: tuple[Path, Path]) -> None:
    """A lookup keeps every input column and row and adds exactly the four client columns."""
    registry = read_registry(*csv_registry)
    frame = lookup_frame([("C-001", "x"), (None, "y")]).with_columns(pl.Series("event_id", ["e1", "e2"]))
    result = registry.lookup(frame)
    assert result.columns == ["customer_id", "card_ref", "event_id",
                              "vip_customer_id", "customer_name", "tier", "manager_id"]
    assert result.get_column("event_id").to_list() == ["e1", "e2"]


def test_a_second_lookup_replaces_the_client_columns(csv_registry: tuple[Path, Path]) -> None:
    """Looking up a frame that already has the client columns replaces them in place, as the first lookup gives them."""
    registry = read_registry(*csv_registry)
    once = registry.lookup(lookup_frame([("C-001", "x"), (None, "tok_blaise"), (None, None)]))
    twice = registry.lookup(once)
    assert twice.equals(once)
    assert looked_up(registry, [("C-001", "x"), (None, "tok_blaise")]) == [ADA, BLAISE]  # the snapshot's plan, reused


def test_managers_are_read_with_their_contacts_and_zone(csv_registry: tuple[Path, Path]) -> None:
    """Managers keep e-mail, phone, webhook, backup and IANA zone; a blank zone means UTC."""
    registry = read_registry(*csv_registry)
    assert registry.manager("M1") == Manager(
        manager_id="M1", name="Alice Martin", email="alice@bank.example", phone="+33 1 23 45 67 89",
        webhook_url=None, backup_manager_id="M2", timezone="Europe/Paris")
    assert registry.manager("M2") is not None
    assert registry.manager("M2").webhook_url == "https://hooks.bank.example/bob"  # type: ignore[union-attr]
    assert registry.manager("M3") == Manager(manager_id="M3", name="Carla Diaz", timezone="UTC")
    assert registry.manager("M9") is None


def test_parquet_registry_with_a_list_of_card_refs(tmp_path: Path) -> None:
    """A Parquet customers file with card_refs as a list column looks up like the CSV one."""
    customers = tmp_path / "customers.parquet"
    pl.DataFrame(
        {
            "customer_id": ["C-002", "C-001", "C-003"],
            "name": ["Blaise Pascal", "Ada Lovelace", "Carl Gauss"],
            "tier": ["gold", "private", "platinum"],
            "manager_id": ["M2", "M1", "M3"],
            "card_refs": [["tok_blaise"], ["tok_ada1", "tok_ada2"], None],
        },
        schema_overrides={"card_refs": pl.List(pl.String)},
    ).write_parquet(customers)
    managers = tmp_path / "managers.parquet"
    pl.read_csv(MANAGERS_CSV.strip().encode(), infer_schema=False).write_parquet(managers)
    registry = read_registry(customers, managers)
    assert looked_up(registry, [(None, "tok_ada2"), ("C-002", None), (None, "tok_ada3"), ("C-003", None)]) \
        == [ADA, BLAISE, NOBODY, CARL]
    assert registry.manager("M1").timezone == "Europe/Paris"  # type: ignore[union-attr]


def test_empty_registry_leaves_every_event_non_vip() -> None:
    """The empty registry (no files configured) adds null client columns to every row."""
    registry = RegistryLoader(None, None).current
    assert len(registry) == 0
    assert looked_up(registry, [("C-001", "tok_ada1")]) == [NOBODY]


@pytest.mark.parametrize(
    ("customers", "managers", "bad_file", "message"),
    [
        ("customer_id,name,manager_id\nC-1,A,M1", MANAGERS_CSV, "customers.csv", "missing column(s) tier"),
        ("customer_id,name,tier,manager_id\nC-1,A,gold,M1\nC-1,B,gold,M1", MANAGERS_CSV,
         "customers.csv", "customer_id 'C-1' repeats"),
        ("customer_id,name,tier,manager_id\nC-1,A,gold,M1\nC-2,B,gold,M7", MANAGERS_CSV,
         "customers.csv", "customer 'C-2' → manager 'M7'"),
        ("customer_id,name,tier,manager_id\nC-1,A,gold,M1", "manager_id,name,timezone\nM1,A,Mars/Olympus",
         "managers.csv", "unknown time zone 'Mars/Olympus'"),
        ("customer_id,name,tier,manager_id\nC-1,A,gold,M1", "manager_id,name\nM1,A\nM1,B",
         "managers.csv", "manager_id 'M1' repeats"),
        ("customer_id,name,tier,manager_id\nC-1,A,gold,M1", "name,timezone\nA,UTC",
         "managers.csv", "missing column(s) manager_id"),
        ("customer_id,name,tier,manager_id\nC-1,A,,M1", MANAGERS_CSV, "customers.csv", "have no tier"),
        ("customer_id,name,tier,manager_id\nC-1,A,gold,", MANAGERS_CSV, "customers.csv", "have no manager_id"),
    ],
    ids=["missing-column", "duplicate-customer", "unknown-manager", "bad-time-zone",
         "duplicate-manager", "managers-missing-column", "no-tier", "no-manager"],
)
def test_broken_registry_raises_naming_the_file(tmp_path: Path, customers: str, managers: str,
                                                bad_file: str, message: str) -> None:
    """A broken registry raises RegistryError whose message names the bad file and the problem."""
    customers_path, managers_path = write_registry(tmp_path, customers, managers)
    with pytest.raises(RegistryError) as caught:
        read_registry(customers_path, managers_path)
    assert str(tmp_path / bad_file) in str(caught.value)
    assert message in str(caught.value)


def test_missing_registry_file_raises_naming_it(tmp_path: Path) -> None:
    """A registry file that does not exist raises RegistryError naming the path."""
    _, managers = write_registry(tmp_path, CUSTOMERS_CSV, MANAGERS_CSV)
    with pytest.raises(RegistryError, match="registry file not found: .*nope.parquet"):
        read_registry(tmp_path / "nope.parquet", managers)


def test_parquet_card_refs_of_an_unusable_type_raise(tmp_path: Path) -> None:
    """A Parquet card_refs column holding structs raises RegistryError, not a polars error."""
    customers = tmp_path / "customers.parquet"
    pl.DataFrame({"customer_id": ["C-1"], "name": ["A"], "tier": ["gold"], "manager_id": ["M1"],
                  "card_refs": [{"token": "tok_a"}]}).write_parquet(customers)
    _, managers = write_registry(tmp_path, CUSTOMERS_CSV, MANAGERS_CSV)
    with pytest.raises(RegistryError, match=r"customers.parquet: card_refs must be text"):
        read_registry(customers, managers)


def _rewrite(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward so a change is visible even on coarse clocks."""
    before = path.stat().st_mtime_ns
    path.write_text(text.strip() + "\n", encoding="utf-8")
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def test_reload_picks_up_a_changed_file(csv_registry: tuple[Path, Path]) -> None:
    """reload_if_changed does nothing for unchanged files and swaps in a rewritten customers file."""
    loader = RegistryLoader(*csv_registry)
    first = loader.load()
    assert loader.reload_if_changed() is False
    assert loader.current is first
    _rewrite(csv_registry[0], CUSTOMERS_CSV + "C-004,Dora Maar,gold,M1,tok_dora\n")
    assert loader.reload_if_changed() is True
    assert len(loader.current) == 4
    assert looked_up(loader.current, [(None, "tok_dora")]) == [("C-004", "Dora Maar", "gold", "M1")]
    assert looked_up(first, [(None, "tok_dora")]) == [NOBODY]  # old snapshot untouched


def test_broken_reload_keeps_the_previous_snapshot(csv_registry: tuple[Path, Path]) -> None:
    """A reload of a broken file keeps the previous snapshot, counts the failure and never raises."""
    loader = RegistryLoader(*csv_registry)
    first = loader.load()
    _rewrite(csv_registry[0], "customer_id,name,tier,manager_id\nC-1,A,gold,M-UNKNOWN")
    assert loader.reload_if_changed() is False
    assert loader.current is first
    assert loader.reload_failures == 1
    csv_registry[1].unlink()
    assert loader.reload_if_changed() is False
    assert loader.current is first
    assert loader.reload_failures == 2
    assert looked_up(loader.current, [("C-001", None)]) == [ADA]


def test_load_of_a_broken_file_raises(csv_registry: tuple[Path, Path]) -> None:
    """load() (used at start-up) raises RegistryError instead of starting with a broken registry."""
    _rewrite(csv_registry[1], "manager_id,name,timezone\nM1,A,Not/AZone")
    with pytest.raises(RegistryError, match="managers.csv"):
        RegistryLoader(*csv_registry).load()


TIERS = ("private", "platinum", "gold")
N_CLIENTS = 1_000_000


def test_one_million_clients_batch_lookup(tmp_path: Path) -> None:
    """With 1,000,000 clients in Parquet, a 5,000-event batch of hits and misses finds exactly the right clients."""
    managers_path = tmp_path / "managers.csv"
    managers_path.write_text("manager_id,name,timezone\n" + "".join(
        f"M{m:02d},Manager {m},Europe/Paris\n" for m in range(50)), encoding="utf-8")
    index = pl.int_range(0, N_CLIENTS, eager=True).alias("i")
    customers = (
        pl.DataFrame(index)
        .with_columns(
            ("C" + pl.col("i").cast(pl.String).str.zfill(7)).alias("customer_id"),
            ("Client " + pl.col("i").cast(pl.String)).alias("name"),
            pl.col("i").mod(3).replace_strict(list(range(3)), list(TIERS), return_dtype=pl.String).alias("tier"),
            ("M" + pl.col("i").mod(50).cast(pl.String).str.zfill(2)).alias("manager_id"),
            pl.concat_list("t" + pl.col("i").cast(pl.String) + "a",
                           "t" + pl.col("i").cast(pl.String) + "b").alias("card_refs"),
        )
        .drop("i")
        .sample(fraction=1.0, shuffle=True, seed=11)  # unsorted file: the loader must sort
    )
    customers_path = tmp_path / "customers.parquet"
    customers.write_parquet(customers_path)
    del customers

    registry = read_registry(customers_path, managers_path)
    assert len(registry) == N_CLIENTS
    assert registry.cards.height == 2 * N_CLIENTS

    rng = random.Random(5)
    keys: list[tuple[str | None, str | None]] = []
    expected: list[tuple[str | None, ...]] = []
    for _ in range(5_000):
        i = rng.randrange(N_CLIENTS)
        client = (f"C{i:07d}", f"Client {i}", TIERS[i % 3], f"M{i % 50:02d}")
        kind = rng.randrange(5)
        if kind == 0:
            keys.append((client[0], None))
        elif kind == 1:
            keys.append((None, f"t{i}{rng.choice('ab')}"))
        elif kind == 2:  # an unknown customer_id with a known card still finds the card's owner
            keys.append((f"X{i}", f"t{i}b"))
        elif kind == 3:  # misses: ids just outside the range and cards of unknown shape
            keys.append((f"C{N_CLIENTS + i:07d}", f"t{i}c"))
            client = NOBODY
        else:
            keys.append((None, f"t{N_CLIENTS + i}a"))
            client = NOBODY
        expected.append(client)
    assert looked_up(registry, keys) == expected
    assert sum(row != NOBODY for row in expected) > 2_500


async def test_scheduler_job_reloads_a_rewritten_file(csv_registry: tuple[Path, Path]) -> None:
    """An APScheduler 3 interval job calling reload_if_changed (as the app runs it) picks up a rewrite within seconds."""
    loader = RegistryLoader(*csv_registry)
    loader.load()
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(loader.reload_if_changed, "interval", seconds=0.2,
                      id="registry-reload", max_instances=1, coalesce=True)
    scheduler.start()
    try:
        await asyncio.sleep(0.3)
        _rewrite(csv_registry[0], CUSTOMERS_CSV + "C-004,Dora Maar,gold,M1,tok_dora\n")
        await wait_until(lambda: len(loader.current) == 4, timeout=5.0, what="the scheduled reload")
    finally:
        scheduler.shutdown(wait=False)
    assert looked_up(loader.current, [("C-004", None)]) == [("C-004", "Dora Maar", "gold", "M1")]
    assert loader.reload_failures == 0


def test_half_configured_registry_is_an_error(csv_registry: tuple[Path, Path]) -> None:
    """Configuring only the customers file (or only managers) fails at load instead of silently never alerting."""
    customers, managers = csv_registry
    with pytest.raises(RegistryError, match="needs both customers_path and managers_path"):
        RegistryLoader(customers, None).load()
    with pytest.raises(RegistryError, match="needs both"):
        RegistryLoader(None, managers).load()
    assert RegistryLoader(customers, None).reload_if_changed() is False


@pytest.fixture
def sorted_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes every registry, however small, use the binary-search look-up of large registries."""
    monkeypatch.setattr(vips, "_HASHED_LOOKUP_MAX", 0)


def test_large_registry_lookup_finds_the_same_clients(csv_registry: tuple[Path, Path], sorted_lookup: None) -> None:
    """The binary-search look-up of a large registry finds clients by customer_id, else by card_ref, as the hashed one does."""
    test_csv_lookup_by_customer_id_and_by_card_ref(csv_registry)
    test_customer_id_wins_over_card_ref(csv_registry)
    test_lookup_keeps_the_frame_and_adds_four_columns(csv_registry)


def test_both_lookups_agree_on_random_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On random keys (known, unknown, null, a card of another client) both look-ups give the same columns."""
    rng = random.Random(5)
    customers = "customer_id,name,tier,manager_id,card_refs\n" + "".join(
        f"C{n:04d},Client {n},{rng.choice(['gold', 'private'])},M1,{'tok_a' + str(n) if n % 3 else ''}\n"
        for n in range(0, 400, 2))
    registry = read_registry(*write_registry(tmp_path, customers, MANAGERS_CSV))
    keys = [None, "", *(f"C{n:04d}" for n in range(60))]
    cards = [None, "", *(f"tok_a{n}" for n in range(60))]
    rows = [(rng.choice(keys), rng.choice(cards)) for _ in range(500)]
    hashed = looked_up(registry, rows)
    monkeypatch.setattr(vips, "_HASHED_LOOKUP_MAX", 0)
    assert looked_up(registry, rows) == hashed
    assert any(row != NOBODY for row in hashed) and NOBODY in hashed
