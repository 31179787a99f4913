"""The nodes' web UI: server-rendered pages with our own small script and styles.

Each node serves its own pages at ``/ui`` (``/`` redirects there), next to its
JSON API: the data owner's (:mod:`.owner_pages`) and the buyer's
(:mod:`.buyer_pages`) behind a login with the node's password
(:mod:`.sessions`), and the aggregator's read-only status pages
(:mod:`.aggregator_pages`), public like the views they show. Nothing is loaded
from another origin: it works without a network.
"""

from deltaml.services.ui.aggregator_pages import aggregator_ui
from deltaml.services.ui.buyer_pages import buyer_ui
from deltaml.services.ui.owner_pages import owner_ui
from deltaml.services.ui.sessions import LoginConfig
from deltaml.services.ui.web import UI_PREFIX, WebUI, mount

__all__ = ["UI_PREFIX", "LoginConfig", "WebUI", "aggregator_ui", "buyer_ui", "mount", "owner_ui"]
