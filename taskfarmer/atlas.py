"""PyTaskFarmer's ATLAS tasklist handlers, which taskfarmer does not provide.

``taskfarmer.atlas.TransformTaskList`` and ``AthenaTaskList`` built ATLAS transform and Athena
command lines (splitting inputs by event count with PyROOT) for ATLAS software set up in the
job. They resolve here so that an INI file naming them stops with a one-line error saying why,
rather than an import error.
"""

from __future__ import annotations

from typing import NoReturn

from .errors import ConfigError


class _AtlasHandler:
    """Refuses to be built: it needs ATLAS software that taskfarmer does not ship."""

    def __init__(self, *args: object, **kwargs: object) -> NoReturn:
        raise ConfigError(
            f"taskfarmer.atlas.{type(self).__name__} (PyTaskFarmer's ATLAS handler) needs ATLAS "
            "software and is not part of taskfarmer: run it with PyTaskFarmer in its own "
            "environment, or write the commands with a TemplateTaskList (docs/migrating.md)")


class TransformTaskList(_AtlasHandler):
    """PyTaskFarmer's handler running an ATLAS transform (``Reco_tf.py`` ...) per input."""


class AthenaTaskList(_AtlasHandler):
    """PyTaskFarmer's handler running ``athena`` job options per input."""
