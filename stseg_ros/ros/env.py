"""ROS environment defaults for processes the CLI starts itself."""

from __future__ import annotations

import os


def localhost_ros_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Copy of the environment where DDS discovery stays on this machine unless
    the user chose otherwise (multicast discovery otherwise leaks off the host),
    and large messages are published asynchronously."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # Fast DDS sends large messages (camera images, clouds) from the writer's own
    # thread instead of the publishing call: synchronous sends of 1 MB images
    # stalled small topics (/tf) by seconds and lost images when replayed.
    env.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")
    return env
