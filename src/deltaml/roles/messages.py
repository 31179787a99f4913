"""The messages moved to :mod:`deltaml.protocol.messages`; this name stays for old imports."""

from deltaml.protocol.messages import *  # noqa: F403
