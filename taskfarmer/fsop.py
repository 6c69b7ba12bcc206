"""Name the file and the operation of a failed filesystem call.

An ``OSError`` from a descriptor (``write``, ``pread``, ``fstat``...) carries no file name,
and none carries what the farmer was doing. Methods that work on one file say which and
what with :func:`operation`; their ``OSError`` becomes a
:class:`~taskfarmer.errors.FilesystemError` (``wd/timeline.json: cannot append: No space left
on device``), which stops the farm cleanly (:mod:`taskfarmer.farm_end`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import FilesystemError

F = TypeVar("F", bound=Callable[..., Any])


def operation(what: str, path: Callable[..., Path]) -> Callable[[F], F]:
    """Decorate a method: its ``OSError`` becomes ``FilesystemError(file, what)``.

    Args:
        what: the operation, as a verb ("append", "read", "update").
        path: called with the method's arguments (``self`` first): the file worked on. The
            error's own file name, where it has one, wins (a directory, a temporary file).
    """
    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except OSError as error:
                where = Path(error.filename) if error.filename else path(*args, **kwargs)
                raise FilesystemError.from_oserror(where, what, error) from None
        return wrapper  # type: ignore[return-value]
    return decorate
