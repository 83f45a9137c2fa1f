"""What-if for rules: replay a recording through two alert policies, offline, and compare.

``cardmon simulate what-if --recording FILE --rules DIR`` runs the monitor's own batch
processor and alert store twice over the same recording — once with the current rule
files, once with the proposed ones — with no broker and no channel, and says per
manager what each policy would have sent. The modules, bottom up:

* :mod:`~simulators.whatif.traffic`: the recording, read and cut into batches;
* :mod:`~simulators.whatif.rules`: which rule files a run uses, and its settings;
* :mod:`~simulators.whatif.outcome`: what one run's throwaway store holds, counted;
* :mod:`~simulators.whatif.running`: one policy run → a frozen :class:`PolicyRun`;
* :mod:`~simulators.whatif.comparing`: two runs → a :class:`WhatIf`;
* :mod:`~simulators.whatif.rendering`: the comparison as text and as JSON.

See ``docs/what-if.md``.
"""

from __future__ import annotations

from simulators.whatif.comparing import AlertChange, ManagerDifference, WhatIf, compare, what_if
from simulators.whatif.outcome import AlertRow, IncidentRow, ManagerCounts
from simulators.whatif.rendering import render_json, render_text
from simulators.whatif.rules import RuleFiles, current_rules, proposed_rules
from simulators.whatif.running import PolicyReplay, PolicyRun, run_policy
from simulators.whatif.traffic import Batch, batches, read_traffic

__all__ = [
    "AlertChange",
    "AlertRow",
    "Batch",
    "IncidentRow",
    "ManagerCounts",
    "ManagerDifference",
    "PolicyReplay",
    "PolicyRun",
    "RuleFiles",
    "WhatIf",
    "batches",
    "compare",
    "current_rules",
    "proposed_rules",
    "read_traffic",
    "render_json",
    "render_text",
    "run_policy",
    "what_if",
]
