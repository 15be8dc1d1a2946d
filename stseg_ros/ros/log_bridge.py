"""Route the core library's Python logging into a node's ROS logger, so its
warnings (skipped frames, refused registrations) reach /rosout and the console."""

from __future__ import annotations

import logging

from rclpy.node import Node


class _RosHandler(logging.Handler):
    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(text)
        elif record.levelno >= logging.INFO:
            self._logger.info(text)
        else:
            self._logger.debug(text)


def forward_logs(node: Node, *names: str) -> None:
    """Log records of the named Python loggers (and their children) through ``node``."""
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, _RosHandler)]
        logger.addHandler(_RosHandler(node))
        logger.setLevel(logging.INFO)
        logger.propagate = False
