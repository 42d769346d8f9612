"""Mesh and shardings: batch along ('data', 'fsdp'); parameters replicated, or sharded along
'fsdp' on their largest divisible axis (FSDP/ZeRO-3 style) when the mesh has that axis > 1."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(mesh_cfg) -> Mesh:
    """``mesh_cfg``: {'data': -1, 'fsdp': 1}; one axis may be -1 (all remaining devices).
    A single process may use fewer devices than it has (e.g. {'data': 1} for a 1-device
    reference run); multi-process runs must use them all."""
    names = list(mesh_cfg.keys())
    sizes = [int(mesh_cfg[k]) for k in names]
    n = jax.device_count()
    if -1 not in sizes and jax.process_count() == 1 and int(np.prod(sizes)) < n:
        n = int(np.prod(sizes))
    known = int(np.prod([s for s in sizes if s != -1]))
    if sizes.count(-1) > 1 or n % known:
        raise ValueError(f"mesh {dict(zip(names, sizes))} does not fit {n} devices")
    sizes = [n // known if s == -1 else s for s in sizes]
    if int(np.prod(sizes)) != n:
        raise ValueError(f"mesh {dict(zip(names, sizes))} uses {int(np.prod(sizes))} of {n} devices")
    # Auto axes: XLA's sharding propagation places activations (the step code stays unannotated).
    return jax.make_mesh(tuple(sizes), tuple(names), devices=jax.devices()[:n],
                         axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def batch_axes(mesh: Mesh):
    return tuple(a for a in ("data", "fsdp") if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def leaf_spec(shape, fsdp: int, min_size: int = 2**14) -> P:
    """Shard the largest axis divisible by ``fsdp`` (big leaves only); else replicate."""
    if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for ax in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[ax] % fsdp == 0:
            return P(*([None] * ax + ["fsdp"]))
    return P()


def state_shardings(abstract_state, mesh: Mesh, min_size: int = 2**14, replicate=()):
    """Shardings for every leaf of an (abstract) state. With an 'fsdp' mesh axis > 1, big
    leaves are sharded on their largest divisible axis, except leaves whose path matches a
    regex in ``replicate`` (e.g. 'norm', 'emb'). The rule depends only on the leaf's shape
    and the path below the net name, so params, EMA and Adam moments always agree."""
    import re

    fsdp = mesh.shape.get("fsdp", 1)
    pats = [re.compile(p) for p in replicate]

    def spec(path, x):
        name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
        if any(p.search(name) for p in pats):
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, leaf_spec(x.shape, fsdp, min_size))

    return jax.tree_util.tree_map_with_path(spec, abstract_state)


def to_host(x):
    """A replicated (possibly multi-process) array as numpy, from this process's own copy."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)
