"""Approximate-time pairing of colour and depth images (what message_filters'
ApproximateTimeSynchronizer does for two topics, in a few lines).

Each image waits in a short queue for a partner of the other kind whose stamp
is within ``slop``; the closest one is taken, and everything older than the
pair in both queues is given up, since a later image can never pair with it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass
class Pair:
    stamp_ns: int            # the colour image's stamp
    color: object
    depth: object


class ApproximateTimeSync:
    def __init__(self, slop_ns: int = 20_000_000, queue_size: int = 10) -> None:
        self.slop_ns = slop_ns
        self._queues: dict[str, deque[tuple[int, object]]] = {
            "color": deque(maxlen=queue_size), "depth": deque(maxlen=queue_size)}
        self._lock = threading.Lock()
        self.unpaired = 0          # images given up without a partner

    def flush(self) -> int:
        """Give up every image still waiting for a partner; how many there were
        (a closing revisit counts them, so none pairs into the next one)."""
        with self._lock:
            waiting = sum(len(q) for q in self._queues.values())
            for q in self._queues.values():
                q.clear()
            self.unpaired += waiting
        return waiting

    def add(self, kind: str, stamp_ns: int, image: object) -> Pair | None:
        """Offer one image; returns the pair it completes, if any."""
        other = "depth" if kind == "color" else "color"
        with self._lock:
            waiting = self._queues[other]
            best = min(range(len(waiting)), key=lambda i: abs(waiting[i][0] - stamp_ns),
                       default=None)
            if best is None or abs(waiting[best][0] - stamp_ns) > self.slop_ns:
                own = self._queues[kind]
                if len(own) == own.maxlen:
                    self.unpaired += 1
                own.append((stamp_ns, image))
                return None
            partner_stamp, partner = waiting[best]
            for _ in range(best + 1):            # the partner and everything older
                waiting.popleft()
            self.unpaired += best
            own = self._queues[kind]
            while own and own[0][0] < stamp_ns:  # own images older than this pair
                own.popleft()
                self.unpaired += 1
        if kind == "color":
            return Pair(stamp_ns, image, partner)
        return Pair(partner_stamp, partner, image)
