"""Transaction sources for cardmon: recorded files, synthetic fleets, scenarios, and a Kafka producer.

* :mod:`simulators.fleet`: a fleet of ATMs and POS terminals, its clients and managers,
  drawn from a seed (:func:`build_fleet`), and its VIP registry (:func:`write_registry`);
* :mod:`simulators.faults`: what goes wrong (:class:`TerminalFault`, :class:`IssuerOutage`...),
  one definition for the synthetic fleet and the scenario files;
* :mod:`simulators.traffic`: the one traffic mix every generator draws from;
* :mod:`simulators.sources`: TabFormer and recorded-file replay, the synthetic fleet's
  traffic (:func:`synthetic_events`), device status events;
* :mod:`simulators.scenario`: fault scenarios with a known answer (schema, generation,
  running, checking); the library is ``simulators/scenarios/*.yaml``;
* :mod:`simulators.whatif`: a recording replayed offline through the current and a
  proposed ``rules/``, compared per manager (``cardmon simulate what-if``);
* :mod:`simulators.producer`: send event dicts to Kafka, paced or as fast as possible;
* :mod:`simulators.demo` and :mod:`simulators.cli`: ``cardmon demo`` and ``cardmon simulate``.

Names resolve on first use, so importing one module does not load the others.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "faults": ["IssuerOutage", "TerminalFault"],
        "fleet": ["Fleet", "build_fleet", "write_registry"],
        "producer": ["produce"],
        "sources.synthetic": ["default_faults", "synthetic_events"],
        "sources.tabformer": ["read_tabformer", "tabformer_events"],
    },
)
