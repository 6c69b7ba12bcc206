"""``timeline.json`` for the Perfetto UI: the file (:mod:`.file`), its events
(:mod:`.events`) and the shared task counts (:mod:`.counts`)."""

from .file import Timeline

__all__ = ["Timeline"]
