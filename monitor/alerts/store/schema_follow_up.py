"""Schema 8's outbox parent check, widened to the recovery follow-ups (``rf-...``).

Every outbox row names its parent (``deliveries.alert_id``): an alert, a digest, an
incident notice or a summary, checked by a trigger on insert (schema 4). A recovery
follow-up (:mod:`monitor.alerts.store.follow_ups`) is one message per alert, named
``rf-`` + the alert ID's 20 characters (:func:`monitor.ids.follow_up_id_for`); its parent
is the alert's row of ``alert_recoveries`` (schema 8), found by turning the prefix back
into ``al-``. These statements are part of schema 8 on both databases: SQLite
rebuilds the trigger (it cannot be altered), PostgreSQL replaces the trigger function.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FOLLOW_UP_PARENT_PG", "FOLLOW_UP_PARENT_SQLITE"]

#: SQLite: the trigger of schema 4, plus "or an ``rf-`` row whose alert has a recovery watch".
FOLLOW_UP_PARENT_SQLITE: Final = (
    "DROP TRIGGER IF EXISTS deliveries_have_a_parent",
    """CREATE TRIGGER deliveries_have_a_parent BEFORE INSERT ON deliveries
        WHEN NOT EXISTS (SELECT 1 FROM alerts WHERE alert_id = NEW.alert_id)
         AND NOT EXISTS (SELECT 1 FROM digests WHERE digest_id = NEW.alert_id)
         AND NOT EXISTS (SELECT 1 FROM incident_notices WHERE notice_id = NEW.alert_id)
         AND NOT EXISTS (SELECT 1 FROM summaries WHERE summary_id = NEW.alert_id)
         AND NOT (substr(NEW.alert_id, 1, 3) = 'rf-' AND EXISTS (
             SELECT 1 FROM alert_recoveries WHERE alert_id = 'al-' || substr(NEW.alert_id, 4)))
        BEGIN
            SELECT RAISE(ABORT,
                'FOREIGN KEY constraint failed: a delivery needs an alert, a digest or a notice');
        END""",
)

#: PostgreSQL: the trigger function of schema 4, replaced with the same widening.
FOLLOW_UP_PARENT_PG: Final = (
    """CREATE OR REPLACE FUNCTION cardmon_delivery_has_a_parent() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM alerts WHERE alert_id = NEW.alert_id)
           AND NOT EXISTS (SELECT 1 FROM digests WHERE digest_id = NEW.alert_id)
           AND NOT EXISTS (SELECT 1 FROM incident_notices WHERE notice_id = NEW.alert_id)
           AND NOT EXISTS (SELECT 1 FROM summaries WHERE summary_id = NEW.alert_id)
           AND NOT (left(NEW.alert_id, 3) = 'rf-' AND EXISTS (
               SELECT 1 FROM alert_recoveries
               WHERE alert_id = 'al-' || substr(NEW.alert_id, 4))) THEN
            RAISE foreign_key_violation USING MESSAGE =
                'FOREIGN KEY constraint failed: a delivery needs an alert, a digest or a notice';
        END IF;
        RETURN NEW;
    END $$""",
)
