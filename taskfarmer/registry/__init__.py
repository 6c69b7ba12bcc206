"""``--runner NAME`` / ``--tasklist NAME``: named definitions from INI files, built into
objects. :mod:`.catalog` reads the files; :mod:`.build` imports and constructs."""

from .build import Registry
from .catalog import RUNNERS, TASKLISTS, Catalog, Definition

__all__ = ["RUNNERS", "TASKLISTS", "Catalog", "Definition", "Registry"]
