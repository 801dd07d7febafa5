"""``compass serve``: durable query ingestion, background drift monitoring, adapter promotion.

A FastAPI app over the same Python API as the CLI. Ingested queries are committed to
the :class:`~compass.ecda.store.QueryStore` before the response is sent; the drift
monitor (slow: it embeds every query) runs in a background thread from the store's
cursor, so it never holds up ingestion and a restart resumes it. Write endpoints
need ``Authorization: Bearer <token>``, the token being ``$COMPASS_API_TOKEN`` on the
server; without one the server refuses every write.

Layout: :mod:`.app` builds the app from the routers (:mod:`.queries`, :mod:`.adapters`,
:mod:`.jobs`, :mod:`.pages`), which share one :class:`~.context.Service`;
:mod:`.background` holds the monitor thread and the worker process beside the API.
"""

from .app import create_app
from .background import MonitorWorker
from .context import MAX_BATCH, MAX_BODY, MAX_QUERY, TOKEN_ENV, PathScrubber

__all__ = ["MAX_BATCH", "MAX_BODY", "MAX_QUERY", "TOKEN_ENV", "MonitorWorker", "PathScrubber", "create_app"]
