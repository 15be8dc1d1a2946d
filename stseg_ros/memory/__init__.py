"""Persistent object memory (SQLite): what the map knows across revisits and restarts."""

from stseg_ros.memory.store import (
    EpochEntry,
    EpochPoints,
    MemoryFileError,
    ObjectMemory,
)

__all__ = ["EpochEntry", "EpochPoints", "MemoryFileError", "ObjectMemory"]
