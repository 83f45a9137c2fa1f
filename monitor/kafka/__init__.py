"""Kafka plumbing under the consumer: reading record batches, their headers, dead letters.

``batches`` (record-batch metadata, including batches aiokafka cannot decode) →
``reader`` (per-partition fetch that holds an unreadable batch instead of losing it) →
``dead_letters`` (bounded dead-letter records with a reason); ``clients`` (the clients'
connection options, creating the topics). Importing this package
loads nothing; import the module you need.
"""
