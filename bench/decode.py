"""Decode micro-benchmark: :func:`monitor.pipeline.decoder.decode_frame` on synthetic batches.

One run (``python -m bench.decode``) encodes ``--events`` synthetic ATM/POS events
(:func:`simulators.sources.synthetic.synthetic_events`, the fleet of ``bench.throughput``) into
JSON message values once, then decodes them ``--repeat`` times in batches of
``--batch`` (the consumer's ``getmany`` bound) and prints the best rate in events per
second. No broker, no store: only the decoder, so a change to it is measured alone.

``--suspect-share`` turns that share of the events into messages the column checks
must send through the exact Python path (a descriptive field with a line break, a
merchant name with a dotted card number), to see the cost of the slow path.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from monitor.pipeline.decoder import decode_frame
from simulators.fleet import build_fleet
from simulators.sources.synthetic import synthetic_events

__all__ = ["main", "make_values", "measure"]

_START: Final = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# Merchant names as acquirers send them (ISO 8583 field 43: name, city, country).
_MERCHANTS: Final = ("CARREFOUR CITY LYON 3 FR", "Boulangerie Paul, Lille FR",
                     "SNCF GARE DE LYON PARIS FR", "Café de Flore Paris FR")


def make_values(events: int, *, suspect_share: float = 0.0, merchant_names: bool = True,
                seed: int = 7) -> list[bytes]:
    """``events`` encoded contract-v1 messages (a share of them made suspect, see the module doc)."""
    fleet = build_fleet(terminals=500, customers=20_000, vips=1_000, managers=25, seed=seed)
    rng = random.Random(seed)
    values = []
    for event in synthetic_events(fleet, start=_START, rate=500.0, seed=seed):
        if merchant_names and event["channel"] == "POS":
            event["merchant_name"] = rng.choice(_MERCHANTS)
        if suspect_share and rng.random() < suspect_share:
            event["city"] = event["city"] + "\n"
            event["merchant_name"] = "SHOP 4111.1111.1111.1111 FR"
        values.append(msgspec.json.encode(event))
        if len(values) == events:
            return values
    raise AssertionError("unreachable: the generator never stops")


def measure(values: Sequence[bytes], *, batch: int, repeat: int) -> tuple[float, int]:
    """Best rate (events/s) over ``repeat`` decodes of ``values``, and the rows decoded."""
    best = float("inf")
    rows = 0
    for _ in range(repeat):
        rows = 0
        started = time.perf_counter()
        for first in range(0, len(values), batch):
            rows += decode_frame(list(values[first:first + batch])).frame.height
        best = min(best, time.perf_counter() - started)
    return len(values) / best, rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its rates; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--suspect-share", type=float, default=0.0)
    parser.add_argument("--no-merchant-names", action="store_true",
                        help="leave merchant_name out (to compare with a decoder that lacks it)")
    args = parser.parse_args(argv)
    values = make_values(args.events, suspect_share=args.suspect_share,
                         merchant_names=not args.no_merchant_names)
    rate, rows = measure(values, batch=args.batch, repeat=args.repeat)
    report: dict[str, Any] = {"events": len(values), "rows": rows, "batch": args.batch,
                              "suspect_share": args.suspect_share, "events_per_second": round(rate)}
    print(" ".join(f"{key}={value}" for key, value in report.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
