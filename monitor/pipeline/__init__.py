"""The batch path, in flow order: one Kafka micro-batch in, VIP failures and metrics out.

``consumer`` (poll, commit, dead-letter; ``decode_pool`` decodes big batches in a child
process) → ``contract`` (which text fields identify and
which describe) → ``decoder`` (JSON to a polars frame, PANs masked; ``reference_decoder``
says what is valid, event by event, ``column_checks`` clears whole columns) → ``batch_frame`` (the
frame's schema) → ``classify`` (ISO 8583 field 39 to an outcome class) → ``vips`` (the
VIP registry and the join) → ``selection`` (which failures are worth an alert) →
``watermark`` (event-time progress per partition) → ``processor`` (the whole batch) →
``recorder`` (hand the batch's results to the store, isolating a bad one).

Importing this package loads nothing; import the module you need. The decoder and
everything before it load no Kafka, PostgreSQL or HTTP code.
"""
