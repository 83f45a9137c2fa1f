"""What tests of cardmon, and of a bank's own code around it, share.

``broker`` is the embedded Kafka-compatible broker (Tansu) on 127.0.0.1. Importing this
package loads nothing; import the module you need.
"""
