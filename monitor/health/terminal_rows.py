"""One row per terminal, folded batch by batch: latest event, technical-failure run, chip, attributes.

Per terminal: the latest event time, the run of consecutive technical failures at the
end of its event stream (outcome ``technical`` or ``terminal``; any other outcome resets
it), whether it has ever read a chip, and the latest non-null ``merchant_id``,
``region``, ``branch_id`` and ``channel`` it reported. "Latest" and "end" are in the
order the terminal's events are read: its Kafka partition's order (the key is the
terminal ID), the same whatever the batches.
"""

from __future__ import annotations

from typing import Final

import polars as pl

__all__ = ["ATTRIBUTES", "TECHNICAL_CLASSES", "TERMINAL_ROW_SCHEMA", "fold_terminal_rows"]

#: Outcome classes of the consecutive-failure run and of ``technical_ratio``: the host,
#: switch, issuer or the terminal itself failed (not the card or the customer).
TECHNICAL_CLASSES: Final[tuple[str, ...]] = ("technical", "terminal")
#: Event columns kept per terminal (latest non-null value) for aggregation.
ATTRIBUTES: Final[tuple[str, ...]] = ("channel", "merchant_id", "region", "branch_id")
#: terminal_id, last_us (latest occurred_at, µs), run (consecutive technical failures at
#: the end of its stream), chip_seen, and the ATTRIBUTES.
TERMINAL_ROW_SCHEMA: Final[dict[str, pl.DataType]] = {
    "terminal_id": pl.String(), "last_us": pl.Int64(), "run": pl.UInt32(), "chip_seen": pl.Boolean(),
    **{name: pl.String() for name in ATTRIBUTES},
}


def fold_terminal_rows(terminals: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Fold one batch into the per-terminal rows: latest time, run, chip seen, attributes.

    Args:
        terminals: the rows so far (:data:`TERMINAL_ROW_SCHEMA`).
        events: the batch in the order read: ``terminal_id``, ``t`` (µs), ``outcome``,
            ``entry_mode`` and the :data:`ATTRIBUTES`.

    Returns:
        The new rows, one per terminal (those of the batch added or updated).
    """
    technical = pl.col("outcome").is_in(TECHNICAL_CLASSES)
    # In the order read (each terminal's partition order), not sorted by event time:
    # a sort inside each batch would make the run depend on where batches split.
    batch = events.group_by("terminal_id", maintain_order=True).agg(
        pl.col("t").max().alias("b_last"),
        technical.all().alias("b_all_technical"),
        # Technical failures after the last non-technical event of the batch.
        (technical.cast(pl.UInt32).reverse().cum_min() .sum()).cast(pl.UInt32).alias("b_run"),
        (pl.col("entry_mode") == "chip").any().alias("b_chip"),
        *[pl.col(a).drop_nulls().last().alias(f"b_{a}") for a in ATTRIBUTES],
    )
    merged = terminals.join(batch, on="terminal_id", how="full", coalesce=True)
    touched = pl.col("b_last").is_not_null()
    run = (pl.when(pl.col("b_all_technical")).then(pl.col("run").fill_null(0) + pl.col("b_run"))
           .otherwise(pl.col("b_run")))
    return merged.select(
        "terminal_id",
        pl.max_horizontal("last_us", "b_last").alias("last_us"),
        pl.when(touched).then(run).otherwise(pl.col("run")).cast(pl.UInt32).alias("run"),
        (pl.col("chip_seen").fill_null(False) | pl.col("b_chip").fill_null(False)).alias("chip_seen"),
        *[pl.coalesce(f"b_{a}", a).alias(a) for a in ATTRIBUTES],
    )
