"""Risky image decodes in worker processes that can be stopped, so the decode time limit is real.

A thread cannot be stopped: a request that timed out used to answer 503 while its decode ran on
and kept its slot (four slow TIFFs held every slot for a minute). Here the decode runs in one of
a few worker processes; at ``decode_timeout_s`` the worker is killed, the caller gets
``media.decode_timeout`` and frees its slot at once, and a fresh worker is started in the
background. Only the bytes go in and only the upright RGB pixels (plus the small facts of
:class:`~dignity.media.Media`, as JSON: never a pickle) come back. Which decodes go here is
:func:`risky`: everything but baseline JPEGs, whose cost is linear in their bytes and whose
pixels are usually reduced in the DCT domain, so the common photo pays nothing. A worker that
grew past ``RECYCLE_RSS`` (glibc keeps freed arenas) is replaced after its job, so a big decode
does not leave memory held.

The pool is installed per server process (:func:`install`, from the app's lifespan); without
one (the CLI, tests) :func:`dignity.hashing.signals.decode_upload` decodes in the caller.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from PIL import Image

from dignity.errors import MediaError, MediaRefused, MediaTooLarge, error_class
from dignity.media import Media

__all__ = ["DecodePool", "active", "install", "risky"]

RECYCLE_RSS: Final = 256 * 1024 * 1024
_PAGE = 4096
_active: DecodePool | None = None


def install(pool: DecodePool | None) -> None:
    """Make ``pool`` the one :func:`active` returns (None: decode in the caller)."""
    global _active
    _active = pool


def active() -> DecodePool | None:
    return _active


def risky(data: bytes) -> bool:
    """Whether ``data`` should be decoded where it can be stopped: anything but a baseline
    (sequential) JPEG. A progressive JPEG runs one pass over the whole image per scan, and a
    file can declare thousands of scans."""
    if data[:3] != b"\xff\xd8\xff":
        return True
    return _jpeg_sof(data) not in (0xC0, 0xC1)


def _jpeg_sof(data: bytes) -> int | None:
    """The start-of-frame marker of a JPEG, walking its segments (None if none is found)."""
    pos = 2
    size = len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        if marker == 0xD9 or marker == 0xDA:  # image end, or scan data before any SOF
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


class _Worker:
    """One worker: ``python -m dignity.decode_pool FD``, talking over a socket pair. A plain
    subprocess rather than multiprocessing's spawn, which re-imports the parent's ``__main__``
    (the ``dignity`` script, a test runner) in every worker; fork would copy the server's
    threads' locks mid-use."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The worker imports the very dignity this process runs (a worktree, a checkout).
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dignity.decode_pool", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.conn = Connection(ours.detach())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.conn.close()


class DecodePool:
    """At most ``size`` worker processes, started on first use; ``decode`` blocks its caller
    (a heavy-work thread holding a slot, so with ``size`` >= the slots a worker is always free
    or about to be)."""

    def __init__(self, size: int, timeout_s: float) -> None:
        self.size = size
        self.timeout_s = timeout_s
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._closed = False
        self.killed = 0  # workers stopped at the deadline, for tests and metrics

    def start(self, count: int = 1) -> None:
        """Start ``count`` workers now, in the background, so the first risky upload does not
        wait for a Python process to start (~0.3 s of CPU, a second on a busy machine, ~60 MB
        each); the others start when concurrent decodes first need them."""

        def fill() -> None:
            while not self._closed:
                with self._lock:
                    if self._started >= min(count, self.size):
                        return
                    self._started += 1
                try:
                    self._idle.put(_Worker())
                except Exception:
                    with self._lock:
                        self._started -= 1
                    return

        threading.Thread(target=fill, name="decode-pool-fill", daemon=True).start()

    def decode(self, data: bytes, **options: Any) -> Media:
        worker = self._take()
        replace = True
        try:
            worker.conn.send_bytes(json.dumps(options).encode())
            worker.conn.send_bytes(data)
            if not worker.conn.poll(self.timeout_s):
                self.killed += 1
                raise MediaTooLarge(
                    f"Decoding took longer than {self.timeout_s:g} s and was stopped.",
                    code="media.decode_timeout",
                    limit=self.timeout_s,
                )
            head = json.loads(worker.conn.recv_bytes())
            pixels = worker.conn.recv_bytes() if head.get("kind") == "ok" else b""
            replace = not isinstance(head.get("rss"), int) or head["rss"] > RECYCLE_RSS
        except (EOFError, OSError) as exc:  # the worker died: killed by the kernel for memory
            raise MediaTooLarge(
                "Decoding this image took more memory than the process may use.",
                code="media.too_costly",
            ) from exc
        finally:
            if replace:
                self._replace(worker)
            else:
                self._idle.put(worker)
        return _media(head, pixels, data)

    def _take(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._started < self.size:
                self._started += 1
                start = True
            else:
                start = False
        if start:
            try:
                return _Worker()
            except BaseException:
                with self._lock:
                    self._started -= 1
                raise
        return self._idle.get()

    def _replace(self, worker: _Worker) -> None:
        worker.stop()

        def start() -> None:
            if self._closed:
                with self._lock:
                    self._started -= 1
                return
            try:
                self._idle.put(_Worker())
            except Exception:
                with self._lock:
                    self._started -= 1

        # In the background: starting a process takes a while and the caller is answering.
        threading.Thread(target=start, name="decode-pool-start", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return


def _media(head: dict[str, Any], pixels: bytes, data: bytes) -> Media:
    """The worker's answer as a Media, or its refusal raised. The answer is JSON plus raw
    pixels, never a pickle: a worker that a hostile file had taken over could otherwise run
    code in the server by what it sends back."""
    try:
        if head["kind"] == "error":
            cls = error_class(str(head["code"]))
            if not issubclass(cls, MediaError):
                raise LookupError(head["code"])
            raise cls(str(head["message"]), code=str(head["code"]), **dict(head["detail"]))
        width, height = (int(v) for v in head["size"])
        image = Image.frombytes("RGB", (width, height), pixels)
        return Media(
            image=image,
            width=int(head["width"]),
            height=int(head["height"]),
            format=str(head["format"]),
            mode=str(head["mode"]),
            orientation=int(head["orientation"]),
            frames=int(head["frames"]),
            reduced=bool(head["reduced"]),
            data=data,
            info={str(k): _untag(v) for k, v in head["info"]},
        )
    except MediaError:
        raise
    except Exception as exc:  # a malformed answer: treated as a damaged file, not trusted
        raise MediaRefused(
            "The image could not be decoded.", code="media.corrupt", format="unknown"
        ) from exc


def _tag(value: Any) -> list[Any] | None:
    """A metadata value as JSON with its type (None: it does not cross, e.g. Pillow's IFDs)."""
    if isinstance(value, bool):
        return ["?", value]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, bytes):
        return ["b", base64.b64encode(value).decode()]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value]
    if value is None:
        return ["n", None]
    if isinstance(value, tuple):
        items = [_tag(v) for v in value]
        return None if any(i is None for i in items) else ["t", items]
    return None


def _untag(tagged: list[Any]) -> Any:
    kind, value = tagged
    if kind == "b":
        return base64.b64decode(value)
    if kind == "t":
        return tuple(_untag(v) for v in value)
    if kind == "?":
        return bool(value)
    if kind == "i":
        return int(value)
    if kind == "f":
        return float(value)
    if kind == "n":
        return None
    return str(value)


def _serve(conn: Connection) -> None:
    """A worker's loop: options and bytes in, a JSON head (and the RGB pixels) out, until the
    pipe closes."""
    from dignity.media import decode

    while True:
        try:
            options = json.loads(conn.recv_bytes())
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        pixels = b""
        try:
            media = decode(data, **options)
            info = [[k, t] for k, v in media.info.items() if (t := _tag(v)) is not None]
            head: dict[str, Any] = {
                "kind": "ok",
                "size": list(media.image.size),
                "width": media.width,
                "height": media.height,
                "format": media.format,
                "mode": media.mode,
                "orientation": media.orientation,
                "frames": media.frames,
                "reduced": media.reduced,
                "info": info,
            }
            pixels = media.image.tobytes()
            del media
        except MediaError as exc:
            head = {"kind": "error", "code": exc.code, "message": exc.message, "detail": exc.detail}
        except MemoryError:
            head = {"kind": "error", "code": "media.too_costly", "message": "Out of memory."}
            head["detail"] = {}
        except Exception:  # decode() raises MediaError for bad input; anything else is a bug
            head = {"kind": "error", "code": "media.corrupt", "message": "Undecodable image."}
            head["detail"] = {}
        head["rss"] = _rss()
        conn.send_bytes(json.dumps(head).encode())
        if pixels:
            conn.send_bytes(pixels)
        del pixels


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
