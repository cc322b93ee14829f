"""An app the worker finds only through ``Outbox(apps=[...])``: its ``ready()`` connects a
durable receiver (tests/outbox/test_cli.py)."""
