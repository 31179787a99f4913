"""The parties as services: the aggregator's HTTP API, the owner and buyer nodes, the demo.

Modules: ``aggregator`` (the public endpoint), ``owner`` and ``buyer`` (the nodes
that connect out to it), ``party`` (their signed client and work loop),
``queue`` (the aggregator's work queue and transport), ``store`` (SQLAlchemy:
SQLite or PostgreSQL), ``wire`` (messages as JSON), ``auth`` (signed requests),
``serve`` (servers and child processes), ``demo`` and ``commands`` (the CLI),
``loopback`` (in-process parties over real local HTTP, for tests).
"""
