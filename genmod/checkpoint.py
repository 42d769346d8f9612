"""Orbax wrapper: one CheckpointManager per stage with two named items, ``state`` (the
TrainState, restored into a sharded target for bit-exact resume) and ``meta`` (JSON).

Integrity: once Orbax has committed a checkpoint, process 0 writes ``genmod_integrity.json``
into its directory (sha256 of every file). A restore checks it first; a checkpoint whose files
no longer match, that cannot be read, or that restores non-finite values is *bad*: the previous
one is used and the bad ones are moved aside (``corrupt_<step>_<time>``, never deleted). A
checkpoint whose tree (names, shapes, dtypes) differs from what the config builds is not bad:
that is a config change, a ConfigError, and nothing is moved. A checkpoint committed just
before a crash may lack the hash file: it is still checked for non-finite values.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

import jax
import orbax.checkpoint as ocp

INTEGRITY = "genmod_integrity.json"


class CheckpointError(RuntimeError):
    """No usable checkpoint (one clear line)."""


def _first_line(e: BaseException, n: int = 160) -> str:
    s = str(e)
    return f"{type(e).__name__}: {s.splitlines()[0][:n] if s else ''}"


def file_hashes(directory: str) -> dict:
    """{relative path: sha256} of every file under ``directory`` but the integrity record."""
    out = {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, directory)
            if rel == INTEGRITY or rel.startswith(INTEGRITY + "."):
                continue
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


def tree_signature(tree) -> dict:
    """{path: (shape, dtype)} of a state (abstract, restored or Orbax metadata) by leaf names,
    so a saved checkpoint can be compared with what a config builds before restoring it."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        k = "/".join(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)
        out[k] = (tuple(getattr(leaf, "shape", ())), str(getattr(leaf, "dtype", type(leaf).__name__)))
    return out


class Checkpoints:
    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
        if not isinstance(max_to_keep, int) or max_to_keep < 1:  # 0 would delete every checkpoint
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep!r}")
        self.dir = os.path.abspath(directory)
        self.mngr = ocp.CheckpointManager(
            self.dir,
            item_names=("state", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=async_save),
        )
        self._unsealed = []  # steps saved by this object whose integrity record is not written yet

    def latest(self):
        return self.mngr.latest_step()

    def all_steps(self):
        return list(self.mngr.all_steps())

    def set_aside(self) -> list[str]:
        """Checkpoints moved aside as bad (``corrupt_*``), oldest name first."""
        return sorted(n for n in os.listdir(self.dir) if n.startswith("corrupt_")) if os.path.isdir(self.dir) else []

    def save(self, step: int, state, meta: dict, force: bool = False):
        self._seal()  # the previous save has committed by now (Orbax waits for it anyway)
        saved = self.mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)
        if saved:
            self._unsealed.append(step)
        return saved

    def _seal(self):
        """Write the integrity record of every committed checkpoint this object saved."""
        self.mngr.wait_until_finished()
        pending, self._unsealed = self._unsealed, []
        if jax.process_index() != 0:
            return
        committed = set(self.all_steps())
        for step in pending:
            d = os.path.join(self.dir, str(step))
            if step not in committed or not os.path.isdir(d):  # already rotated out by max_to_keep
                continue
            tmp = os.path.join(d, INTEGRITY + ".tmp")
            with open(tmp, "w") as f:
                json.dump({"step": step, "sha256": file_hashes(d)}, f, indent=0)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(d, INTEGRITY))

    def integrity_problem(self, step: int) -> str | None:
        """Why checkpoint ``step``'s files do not match its integrity record (None: they do, or
        it has none, e.g. committed just before a crash)."""
        d = os.path.join(self.dir, str(step))
        path = os.path.join(d, INTEGRITY)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                want = json.load(f)["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"has an unreadable integrity record ({_first_line(e)})"
        got = file_hashes(d)
        missing = sorted(set(want) - set(got))
        changed = sorted(k for k in want if k in got and got[k] != want[k])
        if missing:
            return f"failed its integrity check (missing {missing[0]}{' ...' if len(missing) > 1 else ''})"
        if changed:
            return f"failed its integrity check ({changed[0]} changed{' ...' if len(changed) > 1 else ''})"
        return None

    def mismatch(self, abstract_state, step: int) -> str | None:
        """How checkpoint ``step``'s tree (names, shapes, dtypes) differs from ``abstract_state``
        (None: it matches, or its metadata is unreadable: damage, reported by the restore)."""
        try:
            from etils import epath

            md = ocp.StandardCheckpointHandler().metadata(epath.Path(self.dir) / str(step) / "state")
            saved = tree_signature(getattr(md, "tree", md))
        except Exception:  # noqa: BLE001
            return None
        if not saved:
            return None
        want = tree_signature(abstract_state)
        if saved == want:
            return None
        gone, new = sorted(set(saved) - set(want)), sorted(set(want) - set(saved))
        differ = sorted(k for k in set(saved) & set(want) if saved[k] != want[k])
        if differ:
            k = differ[0]
            return f"{k}: saved {saved[k][0]} {saved[k][1]}, the config builds {want[k][0]} {want[k][1]}"
        if new:
            return f"the config builds {new[0]}, which the checkpoint lacks"
        return f"the checkpoint holds {gone[0]}, which the config does not build"

    def _config_error(self, step, what):
        from genmod.config_lib import ConfigError

        return ConfigError(f"checkpoint {self.dir}/{step} was made by a different config ({what}); the "
                           f"network/method changed: use the old config or a fresh --workdir (nothing was changed)")

    def meta(self, step=None):
        step = self.latest() if step is None else step
        return self.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, abstract_state, step=None):
        """Restore into ``abstract_state`` (ShapeDtypeStructs with shardings): exact dtypes,
        optax namedtuples and shardings come back as they were saved. No checks."""
        step = self.latest() if step is None else step
        r = self.mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return r.state, r.meta

    def restore_checked(self, abstract_state, step: int, check=None):
        """(state, meta, None), or (None, None, why checkpoint ``step`` is bad). A checkpoint
        that verifies against its integrity record but holds another tree than the config
        builds raises ConfigError. ``check(state) -> bool``: False means non-finite values."""
        problem = self.integrity_problem(step)
        if problem:
            return None, None, problem
        what = self.mismatch(abstract_state, step)
        if what:
            if os.path.exists(os.path.join(self.dir, str(step), INTEGRITY)):
                raise self._config_error(step, what)  # intact files: the config changed
            return None, None, f"does not match the config ({what})"
        try:
            state, meta = self.restore(abstract_state, step)
        except Exception as e:  # noqa: BLE001  orbax/tensorstore raise many types for damaged files
            return None, None, f"is unreadable ({_first_line(e)})"
        if check is not None and not check(state):
            return None, None, "restores non-finite values"
        return state, meta, None

    def restore_latest_good(self, abstract_state, warn=print, check=None, move_bad: bool = True):
        """Restore the newest good checkpoint. Newer bad ones (see the module docstring) are
        named in a warning and, with ``move_bad``, moved to ``corrupt_<step>_<time>`` (kept).
        If none is good, nothing is moved and CheckpointError lists why (ConfigError when no
        checkpoint matches the config's tree): a run never silently starts over."""
        bad = []
        for step in sorted(self.all_steps(), reverse=True):
            state, meta, problem = self.restore_checked(abstract_state, step, check)
            if problem is None:
                for s, p in bad:
                    where = f"{self.dir}/{s}"
                    if move_bad:
                        aside = f"corrupt_{s}_{int(time.time())}"
                        if jax.process_index() == 0:
                            os.replace(where, os.path.join(self.dir, aside))
                        warn(f"warning: checkpoint {where} {p}; moved aside to {aside}; using step {step}")
                    else:
                        warn(f"warning: checkpoint {where} {p}; using step {step}")
                if bad and move_bad:
                    self.mngr.reload()
                return state, meta
            bad.append((step, problem))
        if not bad:
            raise CheckpointError(f"no checkpoint in {self.dir}")
        if all(p.startswith("does not match the config") for _, p in bad):  # none matches: the config changed
            s, p = bad[0]
            raise self._config_error(s, p[len("does not match the config ("):-1])
        why = "; ".join(f"step {s} {p}" for s, p in bad[:3])
        raise CheckpointError(f"no usable checkpoint in {self.dir} ({why}); nothing was moved or deleted: "
                              f"inspect them, or use a fresh --workdir")

    def wait(self):
        self._seal()

    def close(self):
        self._seal()
        self.mngr.close()


def abstract_with_shardings(abstract, shardings):
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
