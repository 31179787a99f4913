"""The nodes' web UI: server-rendered pages with our own small script and styles.

Each node serves its own pages at ``/ui`` (``/`` redirects there), next to its
JSON API: the data owner's (:mod:`.owner_pages`) and the buyer's
(:mod:`.buyer_pages`) behind a login with the node's password
(:mod:`.sessions`), and the aggregator's read-only status pages
(:mod:`.aggregator_pages`), public like the views they show. Nothing is loaded
from another origin: it works without a network.

Each role's pages are an ``APIRouter`` of small handlers that get the UI, the
login session, the posted form (CSRF-checked) and the node as dependencies
(:mod:`.web`); what a page shows is built by plain functions of the node
(:mod:`.buyer_view`, :mod:`.owner_view`); the request form reads the one request
spec (:mod:`.forms`, :mod:`deltaml.protocol.spec`).
"""

from deltaml.services.ui.aggregator_pages import aggregator_ui
from deltaml.services.ui.buyer_pages import buyer_ui
from deltaml.services.ui.owner_pages import owner_ui
from deltaml.services.ui.sessions import LoginConfig
from deltaml.services.ui.web import UI_PREFIX, WebUI, mount

__all__ = ["UI_PREFIX", "LoginConfig", "WebUI", "aggregator_ui", "buyer_ui", "mount", "owner_ui"]
