"""Transaction sources for cardmon: recorded files, synthetic fleets, and a Kafka producer.

* :mod:`simulators.tabformer`: replay an IBM TabFormer card-transaction CSV;
* :mod:`simulators.synthetic`: a seeded fleet of ATMs and POS terminals, its VIP
  registry, and injected faults (:class:`TerminalFault`, :class:`IssuerOutage`);
* :mod:`simulators.producer`: send event dicts to Kafka, paced or as fast as possible;
* :mod:`simulators.cli`: the ``cardmon simulate`` commands.
"""

from simulators.producer import produce
from simulators.synthetic import (
    Fleet,
    IssuerOutage,
    TerminalFault,
    build_fleet,
    default_faults,
    synthetic_events,
    write_registry,
)
from simulators.tabformer import read_tabformer, tabformer_events

__all__ = [
    "Fleet",
    "IssuerOutage",
    "TerminalFault",
    "build_fleet",
    "default_faults",
    "produce",
    "read_tabformer",
    "synthetic_events",
    "tabformer_events",
    "write_registry",
]
