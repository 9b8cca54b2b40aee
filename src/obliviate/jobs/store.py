"""A content-addressed job store: finished jobs live under the sha256 of their spec, written atomically.

``root/<key[:2]>/<key>/`` holds ``result.json``, ``spec.json``, extra files and a ``DONE`` manifest (every other
file's sha256 and the key), built whole in ``root/.tmp-<key>-<uuid>``, fsynced and renamed into place: a kill -9
leaves at most a temp dir (removed on the next open). ``get`` still checks every hash: a truncated, edited or
half-copied job is treated as not done and removed, never read. Files and dirs get ``open()``/``mkdir`` default
modes, i.e. 0666/0777 minus the umask (no mkstemp 0600, no umask read-and-restore racing other threads).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError

RESULT = "result.json"
SPEC = "spec.json"
MANIFEST = "DONE"
FORMAT = "obliviate-job/1"
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_RESERVED = {RESULT, SPEC, MANIFEST}


def job_key(spec: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``spec`` (sorted keys, no spaces, ASCII): equal specs -> equal keys.

    Floats are written as json writes them, so ``1`` and ``1.0`` give different keys. NaN/inf, non-string dict keys
    and non-JSON types are refused (they have no canonical form) with the path of the bad value."""
    if not isinstance(spec, Mapping):
        raise ObliviateError(f"a job spec must be a mapping, got {type(spec).__name__}")
    text = json.dumps(_plain(spec, "spec"), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _plain(x: Any, path: str) -> Any:
    """``x`` as plain JSON types (tuples -> lists, subclasses -> base types), or ObliviateError naming ``path``."""
    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, (str, int)):
        return str(x) if isinstance(x, str) else int(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ObliviateError(f"job spec value {path} is {x!r}: NaN and inf have no JSON form")
        return float(x)
    if isinstance(x, Mapping):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise ObliviateError(f"job spec key {bad[0]!r} in {path} is a {type(bad[0]).__name__}; keys must be str")
        return {k: _plain(v, f"{path}[{k!r}]") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(x)]
    raise ObliviateError(f"job spec value {path} is a {type(x).__name__}, which is not JSON "
                         "(use str, int, float, bool, None, list or dict)")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ObliviateError(f"{key!r} is not a job key (64 lowercase hex digits from job_key)")
    return key


def _check_name(name: str) -> str:
    """Extra file names are plain names: no directories, no dot-files (temp names), not a reserved file."""
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\0" in name:
        raise ObliviateError(f"job file name {name!r} must be a plain file name (no '/', not starting with '.')")
    if name in _RESERVED:
        raise ObliviateError(f"job file name {name!r} is reserved by the store ({', '.join(sorted(_RESERVED))})")
    return name


def _write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (exclusively; mode 0666 minus umask) with ``data`` and fsync it."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename/creation in ``path`` durable (best effort: some filesystems refuse fsync on dirs)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on dir ``path``; None if another process holds it or it is gone.

    Writers hold this lock on their temp dir, so ``cleanup_temp`` in another process never deletes a live write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # no flock on this filesystem: best effort
        pass
    return fd


def _dumps_result(result: Mapping[str, Any]) -> bytes:
    """JSON of a result; NaN/inf are kept (Python reads them back), so ``get`` returns what ``put`` got."""
    if not isinstance(result, Mapping):
        raise ObliviateError(f"a job result must be a mapping, got {type(result).__name__}")
    try:
        return json.dumps(result, indent=1, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ObliviateError(f"job result is not JSON: {exc}") from None


def _json_default(x: Any) -> Any:
    """Tensors/arrays and numpy scalars (duck-typed: no torch import here); anything else is an error."""
    for convert in ("tolist", "item"):
        if hasattr(x, convert):
            return getattr(x, convert)()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


class JobStore:
    """Finished jobs by key. Safe against kill -9 at any point and against several writers of the same key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObliviateError(f"job store {str(self.root)!r} cannot be created: {exc.strerror or exc}") from None
        self.cleanup_temp()

    def job_dir(self, key: str) -> Path:
        return self.root / _check_key(key)[:2] / key

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored result, or None when the job is missing or not intact (a broken dir is removed)."""
        manifest = self._verified(key)
        if manifest is None:
            return None
        try:  # the hash matched, so this is the JSON of the dict put() got
            return json.loads((self.job_dir(key) / RESULT).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # removed by another process between the check and the read
            return None

    def file_path(self, key: str, name: str) -> Path:
        """Path of extra file ``name`` of the complete job ``key`` (ObliviateError if there is no such file)."""
        manifest = self._verified(key)
        if manifest is None:
            raise ObliviateError(f"job {key} is not in the store {str(self.root)!r} (or was broken and removed)")
        if name not in manifest["files"] or name in _RESERVED:
            extras = sorted(set(manifest["files"]) - _RESERVED)
            raise ObliviateError(f"job {key} has no file {name!r} (its files: {', '.join(extras) or 'none'})")
        return self.job_dir(key) / name

    def keys(self) -> list[str]:
        """Keys of all complete jobs, sorted (broken job dirs found on the way are removed)."""
        found = []
        for shard in sorted(p for p in self.root.iterdir() if len(p.name) == 2 and p.name[0] != "." and p.is_dir()):
            for d in sorted(shard.iterdir()):
                if _KEY_RE.fullmatch(d.name) and d.name[:2] == shard.name and self._verified(d.name) is not None:
                    found.append(d.name)
        return found

    def _verified(self, key: str) -> dict[str, Any] | None:
        """The job's manifest if the dir is complete and every listed file hashes right; else discard -> None."""
        d = self.job_dir(key)
        if not d.is_dir():
            return None
        manifest = _read_manifest(d, key)
        if manifest is None or not all(_file_ok(d / n, h) for n, h in manifest["files"].items()):
            self._discard(key)
            return None
        return manifest

    def _discard(self, key: str) -> None:
        """Move a broken job dir aside (atomic: the key is free at once), then delete it."""
        aside = self.root / f".tmp-{key}-{uuid.uuid4().hex}"
        try:
            os.rename(self.job_dir(key), aside)
        except FileNotFoundError:
            return  # someone else removed it
        shutil.rmtree(aside, ignore_errors=True)

    def put(self, key: str, spec: Mapping[str, Any], result: Mapping[str, Any],
            files: Mapping[str, bytes] | None = None) -> bool:
        """Store a finished job atomically. False (and nothing written) when a complete job already holds ``key``:
        the first writer wins, so concurrent or repeated runs of one spec cannot replace each other's files."""
        if job_key(spec) != _check_key(key):
            raise ObliviateError(f"key {key} is not job_key(spec) = {job_key(spec)}")
        payload = {_check_name(n): bytes(b) for n, b in (files or {}).items()}
        payload[SPEC] = (json.dumps(_plain(spec, "spec"), indent=1, sort_keys=True) + "\n").encode("ascii")
        payload[RESULT] = _dumps_result(result)
        if self._verified(key) is not None:  # checked before writing: a rerun does not rewrite big files
            return False
        tmp, lock = self._new_temp(key)
        try:
            _fill(tmp, key, payload)
            return self._publish(tmp, key)
        finally:
            os.close(lock)
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when published

    def _new_temp(self, key: str) -> tuple[Path, int]:
        """A fresh, locked temp dir; retried if a concurrent ``cleanup_temp`` took it between mkdir and lock."""
        for _ in range(5):
            tmp = self.root / f".tmp-{key}-{uuid.uuid4().hex}"
            os.mkdir(tmp, 0o777)
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
            with contextlib.suppress(OSError):  # no flock on this filesystem: unlocked, best effort
                fcntl.flock(fd, fcntl.LOCK_EX)
            if tmp.is_dir():
                return tmp, fd
            os.close(fd)
        raise ObliviateError(f"could not create a temp dir in job store {str(self.root)!r}")

    def _publish(self, tmp: Path, key: str) -> bool:
        """Rename the finished temp dir to the job dir. A complete job already there wins; a broken one is replaced."""
        dst = self.job_dir(key)
        dst.parent.mkdir(exist_ok=True)
        for _ in range(5):
            try:
                os.rename(tmp, dst)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if self._verified(key) is not None:  # else it was broken, and is discarded now: retry
                    return False
            else:
                _fsync_dir(dst.parent)
                _fsync_dir(self.root)
                return True
        raise ObliviateError(f"could not publish job {key} in {str(self.root)!r}: its dir keeps reappearing")

    def cleanup_temp(self) -> int:
        """Remove leftover ``.tmp-*`` dirs (a writer killed mid-put); those a live writer holds are kept."""
        removed = 0
        for p in self.root.glob(".tmp-*"):
            fd = _try_lock(p) if p.is_dir() else None
            if fd is not None:
                shutil.rmtree(p, ignore_errors=True)
                os.close(fd)
                removed += 1
        return removed


def _fill(tmp: Path, key: str, payload: Mapping[str, bytes]) -> None:
    """Write every file, then the manifest LAST, each fsynced, then the dir itself."""
    hashes = {}
    for name, data in payload.items():
        _write_synced(tmp / name, data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    manifest = {"format": FORMAT, "key": key, "files": dict(sorted(hashes.items()))}
    _write_synced(tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("ascii"))
    _fsync_dir(tmp)


def _read_manifest(d: Path, key: str) -> dict[str, Any] | None:
    """The parsed manifest of job dir ``d`` when well-formed and for ``key``; None otherwise."""
    try:
        m = json.loads((d / MANIFEST).read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("key") != key:
        return None
    files = m.get("files")
    if not isinstance(files, dict) or RESULT not in files or MANIFEST in files:
        return None
    ok = all(isinstance(d, str) and "/" not in n and n not in ("", ".", "..") for n, d in files.items())
    return m if ok else None


def _file_ok(path: Path, digest: str) -> bool:
    """``path`` is a regular file (not a link) whose sha256 is ``digest``; read in 1 MiB chunks."""
    if path.is_symlink() or not path.is_file():
        return False
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return False
    return h.hexdigest() == digest
