"""Test-only fault injector for the farmer: the k-th filesystem call fails, or kills its caller.

Put on ``PYTHONPATH`` (this directory first) by :mod:`faultsweep`; Python imports it at start-up
in every farmer process (workers are forked from the main process and inherit it). It wraps
the ``os``/``io`` calls the farmer makes on its workdir and lock files and acts only on paths
under ``FAULT_ROOT``, so the interpreter's own imports are not counted. Environment:

``FAULT_ROOT``
    Directory prefix of the paths (or descriptors' paths) that count.
``FAULT_MODE``
    ``count``: append one line per call to ``FAULT_LOG``; ``fail``: the ``FAULT_K``-th call
    raises ``OSError(FAULT_ERRNO)`` (``FAULT_PERSIST=1``: that call and every later one; a
    write failing with ENOSPC first writes half its data, as on a filling disk);
    ``kill``: the ``FAULT_K``-th call SIGKILLs its process (``killgroup``: its process
    group, every process of the farmer, as when its node dies).
``FAULT_SITE``
    If set, only calls from this call site count (``FAULT_K=1``: its first call).
``FAULT_AFTER``
    If set, only calls made once this path exists count (a task creates it: the calls of
    what that task sets off, such as recording a result whose lease was taken over).
``FAULT_COUNTER``
    The counter shared by every process of the run (an 8-byte file, changed under ``flock``).
``FAULT_LOG``
    Where lines ``N PID OP SITE PATH`` go (count mode: every call; else the faulted one).

A call's site is the innermost ``taskfarmer`` frame calling it (``module:function:line``).
"""

from __future__ import annotations

import builtins
import errno as errno_names
import fcntl
import io
import os
import re
import signal
import sys
from typing import Any, Callable

_ROOT = os.environ.get("FAULT_ROOT", "")
_MODE = os.environ.get("FAULT_MODE", "")
_K = int(os.environ.get("FAULT_K", "0") or 0)
_ERRNO = getattr(errno_names, os.environ.get("FAULT_ERRNO", "EIO"))
_PERSIST = os.environ.get("FAULT_PERSIST") == "1"
_COUNTER = os.environ.get("FAULT_COUNTER", "")
_LOG = os.environ.get("FAULT_LOG", "")
_SITE = os.environ.get("FAULT_SITE", "")
_AFTER = os.environ.get("FAULT_AFTER", "")

_real_open = os.open
_real_close = os.close
_real_write = os.write
_real_readlink = os.readlink
_busy = False  # our own bookkeeping calls are not counted


def _path_of(target: Any) -> str | None:
    """The path a call acts on, or None if it is not under ``FAULT_ROOT``."""
    if isinstance(target, int):
        try:
            target = _real_readlink(f"/proc/self/fd/{target}")
        except OSError:
            return None
        if not target.startswith("/"):
            return None  # a pipe or socket
    try:
        path = os.fsdecode(target)
    except TypeError:
        return None
    path = os.path.abspath(path)
    return path if path == _ROOT or path.startswith(_ROOT + os.sep) else None


def _file_kind(path: str) -> str:
    """``path`` relative to the root, without what differs between runs (IDs, PIDs, names)."""
    parts = os.path.relpath(path, _ROOT).split(os.sep)
    if len(parts) > 2 and parts[1] in ("leases", "logs", "farmers"):
        parts[2:] = ["*"]
    elif parts[0] == "scratch" and len(parts) > 1:
        parts[1:] = ["*"]
    return re.sub(r"\.tmp\..*|(?<=\.lease-).*|(?<=\.task-).*",
                  lambda m: ".tmp" if m[0][:1] == "." else "*", "/".join(parts))


def _site(path: str) -> str:
    """Where the call comes from: the innermost ``taskfarmer`` frame, and on which file
    (``lines.append`` serves every state file: each is a site of its own)."""
    frame = sys._getframe(3)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("taskfarmer"):
            return f"{name}:{frame.f_code.co_name}:{frame.f_lineno}@{_file_kind(path)}"
        frame = frame.f_back
    return "?@" + _file_kind(path)


def _next_count() -> int:
    fd = _real_open(_COUNTER, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 8, 0)
        count = (int.from_bytes(raw, "little") if len(raw) == 8 else 0) + 1
        os.pwrite(fd, count.to_bytes(8, "little"), 0)
        return count
    finally:
        _real_close(fd)


def _after_fork_in_child() -> None:
    """A worker forked while another thread of its parent (the heartbeat) was inside
    :func:`_check` inherits ``_busy`` set, and none of its calls would ever count; it may
    also inherit that thread's descriptor of the counter, whose ``flock`` belongs to the open
    file, not to a process: as long as the worker kept its copy, the lock would outlive the
    parent's ``close`` and every later count would wait for ever. The worker's only thread
    was in ``fork``, not counting, so every counter descriptor it has is such a copy."""
    global _busy
    _busy = False
    counter = os.path.realpath(_COUNTER)
    for name in os.listdir("/proc/self/fd"):
        try:
            if _real_readlink(f"/proc/self/fd/{name}") == counter:
                _real_close(int(name))
        except OSError:
            pass  # the descriptor listdir itself used, closed since


def _note(count: int, op: str, site: str, path: str) -> None:
    fd = _real_open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _real_write(fd, f"{count} {os.getpid()} {op} {site} {path}\n".encode())
    finally:
        _real_close(fd)


def _check(op: str, target: Any) -> None:
    """Count a call on ``target``; fail or kill if it is the chosen one."""
    global _busy
    if _busy or not _MODE:
        return
    _busy = True
    try:
        path = _path_of(target)
        if path is None:
            return
        site = _site(path)
        if _SITE and site != _SITE:
            return
        if _AFTER and not os.path.exists(_AFTER):
            return
        count = _next_count()
        if _MODE == "count":
            _note(count, op, site, path)
            return
        if count == _K or (_PERSIST and count > _K):
            if count == _K:
                _note(count, op, site, path)
            if _MODE == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if _MODE == "killgroup":  # the node dies: every process of the farmer at once
                os.killpg(os.getpgrp(), signal.SIGKILL)
            raise OSError(_ERRNO, os.strerror(_ERRNO), path)
    finally:
        _busy = False


def _wrap(name: str, fd_arg: bool = False) -> None:
    real: Callable[..., Any] = getattr(os, name)

    def wrapper(target: Any, *args: Any, **kwargs: Any) -> Any:
        _check(name, target)
        return real(target, *args, **kwargs)

    wrapper.__name__ = name
    wrapper.__wrapped__ = real  # type: ignore[attr-defined]
    setattr(os, name, wrapper)


def _wrap_two(name: str) -> None:
    real: Callable[..., Any] = getattr(os, name)

    def wrapper(source: Any, destination: Any, *args: Any, **kwargs: Any) -> Any:
        _check(name, source)
        return real(source, destination, *args, **kwargs)

    wrapper.__name__ = name
    setattr(os, name, wrapper)


def _wrap_write() -> None:
    """``os.write``: an ENOSPC fault first writes half the data, as a filling disk does."""
    real = os.write

    def write(fd: int, data: Any) -> int:
        try:
            _check("write", fd)
        except OSError as error:
            if error.errno == errno_names.ENOSPC and len(data) > 1:
                real(fd, bytes(data)[: len(data) // 2])
            raise
        return real(fd, data)

    os.write = write


def _wrap_close() -> None:
    def close(fd: int) -> None:
        path = None if _busy else _path_of(fd)
        _real_close(fd)  # closed in any case, as the system does when close(2) fails
        if path is not None:
            _check("close", path)

    os.close = close


class _FaultFileIO(io.FileIO):
    """A raw file whose reads, writes and truncations count."""

    def write(self, data: Any) -> int | None:  # type: ignore[override]
        try:
            _check("write", self.name)
        except OSError as error:
            if error.errno == errno_names.ENOSPC and len(data) > 1:
                super().write(bytes(data)[: len(data) // 2])
            raise
        return super().write(data)

    def readinto(self, buffer: Any) -> int | None:  # type: ignore[override]
        _check("read", self.name)
        return super().readinto(buffer)

    def truncate(self, size: int | None = None) -> int:
        _check("ftruncate", self.name)
        return super().truncate(size)


_real_io_open = io.open


def _open(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
          errors: str | None = None, newline: str | None = None, closefd: bool = True,
          opener: Any = None) -> Any:
    if isinstance(file, int) or _busy or not _MODE or _path_of(file) is None:
        return _real_io_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    _check("open", file)
    raw_mode = mode.replace("t", "").replace("b", "")
    raw = _FaultFileIO(os.fspath(file), raw_mode, closefd, opener)
    raw.name = os.fspath(file)
    if buffering == 0:
        return raw
    size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
    if "+" in raw_mode:
        buffered: Any = io.BufferedRandom(raw, size)
    elif raw_mode.startswith("r"):
        buffered = io.BufferedReader(raw, size)
    else:
        buffered = io.BufferedWriter(raw, size)
    if "b" in mode:
        return buffered
    text = io.TextIOWrapper(buffered, encoding, errors, newline, line_buffering=buffering == 1)
    text.mode = mode
    return text


if _MODE:
    os.register_at_fork(after_in_child=_after_fork_in_child)
    for _name in ("open", "pwrite", "read", "pread", "ftruncate", "truncate", "fsync",
                  "utime", "mkdir", "unlink", "remove", "rmdir", "fstat", "stat", "listdir",
                  "scandir"):
        _wrap(_name)
    for _name in ("rename", "replace", "link"):
        _wrap_two(_name)
    _wrap_write()
    _wrap_close()
    io.open = _open
    builtins.open = _open
