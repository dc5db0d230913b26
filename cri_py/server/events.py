"""GetContainerEvents: a server stream of the feed's events, in the order they were published."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.errors import ResourceExhausted
from cri_py.events import SubscriptionLagged
from cri_py.server.context import Context

if TYPE_CHECKING:
    from cri_py.services import Services

log = logging.getLogger("cri_py.events")


class EventHandlers:
    services: Services

    async def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: Context
    ) -> AsyncIterator[api_pb2.ContainerEventResponse]:
        feed = self.services.events_feed
        sub = feed.subscription()
        log.info("event stream opened", extra={"streams": feed.streams, "peer": str(context.peer())})
        try:
            async for item in sub:
                yield item.response
        except SubscriptionLagged as exc:
            # kubelet relists when its stream breaks, then subscribes again
            raise ResourceExhausted(f"GetContainerEvents: {exc}; relist and subscribe again") from None
        finally:
            feed.release(sub)
            log.info("event stream closed", extra={"streams": feed.streams, "dropped": sub.dropped})
