"""One training process (job) per workdir: ``WORKDIR/lock`` records the holder's host, pid and
start time. A second ``genmod.launch`` on the same workdir exits with one line naming the
holder instead of racing it inside Orbax.

A lock is stale, and taken over, when its holder is gone: on this host, its pid no longer
exists (or is this very process, e.g. a container restarted with the same pid); on another
host (a shared filesystem), it has not been refreshed for ``GENMOD_LOCK_STALE_S`` seconds
(default 600: the holder touches the file every 60 s). The lock is created with O_EXCL and
taken over with an atomic rename, so two starters cannot both win.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

NAME = "lock"
REFRESH_S = 60.0
_HELD: set[str] = set()  # lock paths held by this process


class LockError(RuntimeError):
    """The workdir is in use (one clear line)."""


def _stale_after() -> float:
    return float(os.environ.get("GENMOD_LOCK_STALE_S", "600"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def read(path: str) -> dict | None:
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written or damaged: judged by its age below


def holder_is_gone(path: str, info: dict) -> bool:
    host, pid = info.get("host"), info.get("pid")
    if host == socket.gethostname() and isinstance(pid, int):
        if pid == os.getpid():
            return os.path.abspath(path) not in _HELD
        return not _pid_alive(pid)
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return True
    return age > _stale_after()


def describe(info: dict, path: str) -> str:
    if not info:
        return f"an unreadable lock file {path}"
    start = info.get("start")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)) if isinstance(start, (int, float)) else "?"
    return f"pid {info.get('pid')} on host {info.get('host')} (since {since})"


class WorkdirLock:
    """``with WorkdirLock(workdir): ...`` holds ``workdir/lock`` (LockError when in use)."""

    def __init__(self, workdir: str):
        self.path = os.path.abspath(os.path.join(workdir, NAME))
        self._stop = threading.Event()
        self._thread = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start": time.time()}
        body = json.dumps(me)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = read(self.path)
                if info is None:
                    continue  # released meanwhile: try again
                if not holder_is_gone(self.path, info):
                    raise LockError(f"workdir {os.path.dirname(self.path)} is in use by {describe(info, self.path)}; "
                                    f"wait for it, or if that run is dead delete {self.path}") from None
                # take over a stale lock atomically: write ours aside, rename over it, re-read
                tmp = f"{self.path}.{me['host']}.{me['pid']}"
                with open(tmp, "w") as f:
                    f.write(body)
                os.replace(tmp, self.path)
                time.sleep(0.05)  # a rival taking over the same stale lock renames last and wins
                if read(self.path) == me:
                    break
                continue
            with os.fdopen(fd, "w") as f:
                f.write(body)
            break
        else:
            raise LockError(f"could not take the lock {self.path} (another process keeps changing it)")
        _HELD.add(self.path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh, daemon=True, name="genmod-workdir-lock")
        self._thread.start()
        return self

    def _refresh(self):
        while not self._stop.wait(REFRESH_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        _HELD.discard(self.path)
        info = read(self.path)
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
