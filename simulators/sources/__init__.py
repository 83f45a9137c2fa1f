"""Where simulated transactions come from: recorded files and synthetic fleets.

* ``tabformer``: an IBM TabFormer card-transaction CSV mapped onto contract v1;
* ``replay``: recorded canonical-schema traffic (JSON lines, CSV, Parquet), looped and jittered;
* ``synthetic``: the seeded traffic of a :class:`simulators.fleet.Fleet`, with faults;
* ``terminal_status``: device status events (cassettes, components, host link) of a fleet.

Each yields contract-v1 event dicts for :func:`simulators.producer.produce`. Importing
this package loads nothing; import the module you need.
"""
