"""What the parties agree on, once: the request spec, the public rules, statuses and roles.

This layer sits under every other package and imports none of them but
:mod:`deltaml.errors`: the CLI, the web form, the aggregator service and the
simulation all check a request with :mod:`deltaml.protocol.spec`, and the
aggregator, the simulation and the verifier all apply :mod:`deltaml.protocol.rules`;
the aggregator posts, the seats prove and the verifier recomputes the Merkle roots
of :mod:`deltaml.protocol.merkle`.
"""
