"""Train: ``python -m genmod.launch --config NAME[:preset] [--workdir DIR] [--config.a.b=v]``.

Re-running the same command resumes from the workdir's latest checkpoint; SIGTERM saves and
exits 0. ``--dry_run`` prints the resolved config and runs every start-up check (devices, the
workdir's config, the data source opened, the teacher loaded, the initial state traced)
without writing or compiling; ``--list_configs`` lists the configs with their descriptions.
The workdir defaults to ``checkpoints/NAME``; a ``:smoke`` run gets its own,
``checkpoints/NAME[_PRESET...]_smoke``, so it never blocks the real run's.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m genmod.launch", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="NAME[:preset,...] from configs/ (or a .py path)")
    p.add_argument("--workdir", help="default: checkpoints/NAME (smoke runs: checkpoints/NAME_smoke)")
    p.add_argument("--dry_run", action="store_true",
                   help="print the resolved config, open the data and the teacher, check everything, write nothing")
    p.add_argument("--force", action="store_true", help="resume even if the workdir's config differs")
    p.add_argument("--list_configs", action="store_true")
    p.add_argument("--allow_module", action="append", default=[], metavar="MODULE",
                   help="let a teacher workdir's config.json import this module (outside genmod)")
    g = p.add_argument_group("multi-host (jax.distributed); also GENMOD_COORDINATOR etc.")
    g.add_argument("--coordinator", default=os.environ.get("GENMOD_COORDINATOR"), help="host:port of process 0")
    g.add_argument("--num_processes", type=int, default=int(os.environ.get("GENMOD_NUM_PROCESSES", 0)) or None)
    g.add_argument("--process_id", type=int, default=int(os.environ.get("GENMOD_PROCESS_ID", -1)))
    g.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                   help="auto: initialise when --coordinator is given or SLURM/TPU-pod variables say "
                        "so; on: jax.distributed.initialize() with JAX's own cluster detection")
    args, rest = p.parse_known_args(argv)
    overrides = []
    for a in rest:
        if not a.startswith("--config.") or "=" not in a:
            p.error(f"unrecognised argument {a!r} (overrides look like --config.key=value)")
        k, _, v = a[len("--config."):].partition("=")
        overrides.append((k, v))
    if not args.list_configs and not args.config:
        p.error("--config is required")
    return args, overrides


def default_workdir(spec: str) -> str:
    """``checkpoints/NAME``; with the ``smoke`` preset ``checkpoints/NAME[_OTHER_PRESETS]_smoke``
    (a smoke run's config differs, so sharing the real run's workdir would block it)."""
    name, _, arg = spec.partition(":")
    name = os.path.basename(name).removesuffix(".py")
    presets = [p for p in arg.split(",") if p]
    if "smoke" in presets:
        name = "_".join([name, *(p for p in presets if p != "smoke"), "smoke"])
    return os.path.join("checkpoints", name)


def list_configs() -> str:
    from genmod import config_lib

    names = config_lib.available()
    w = max(map(len, names), default=0)
    return "\n".join(f"{n:<{w}}  {config_lib.description(n)}".rstrip() for n in names)


def init_distributed(args) -> bool:
    """``jax.distributed.initialize`` before anything touches devices: explicit flags, or JAX's
    cluster auto-detection (SLURM, Cloud TPU, MPI) when a multi-process job is detected."""
    multi = int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "TPU_WORKER_HOSTNAMES" in os.environ
    if args.distributed == "off" or (args.distributed == "auto" and not args.coordinator and not multi):
        return False
    import jax

    if args.coordinator:
        if args.num_processes is None or args.process_id < 0:
            raise SystemExit("error: --coordinator needs --num_processes and --process_id")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    else:
        jax.distributed.initialize()
    return True


def main(argv=None) -> int:
    from genmod import config_lib

    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    if args.list_configs:
        print(list_configs())
        return 0
    try:
        config = config_lib.load(args.config)
        for k, v in overrides:
            config_lib.override(config, k, v)
        config_lib.validate(config)  # the device-dependent checks follow in train.train
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Modules this run's own config names (the user chose it: a packaged config, an explicit
    # .py path, --config.* overrides) may also be imported from a teacher workdir's config.json.
    config_lib.trust_modules(*config_lib.external_modules(config), *args.allow_module)
    workdir = args.workdir or default_workdir(args.config)
    if args.dry_run:
        print(config.to_json(indent=2), flush=True)
    init_distributed(args)
    from genmod import checkpoint, data, lock, train  # imports jax: after argument checks, so errors are fast

    if args.dry_run:  # the config on stdout; the checks (and their one error line) on stderr
        try:
            train.dry_run(config, workdir, force=args.force, log=lambda m: print(m, file=sys.stderr, flush=True))
        except (config_lib.ConfigError, data.DataError, FileNotFoundError, ValueError,
                checkpoint.CheckpointError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("dry run: all checks passed, nothing written", file=sys.stderr)
        return 0

    try:
        status = train.train(config, workdir, force=args.force)
    except (config_lib.ConfigError, data.DataError, FileNotFoundError, FloatingPointError,
            checkpoint.CheckpointError, lock.LockError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import jax

    if jax.process_index() == 0:
        print(f"{status}: {os.path.abspath(workdir)}")
    return 0


if __name__ == "__main__":
    from genmod import hugepages

    hugepages.reexec()  # glibc tunables are read at start-up only
    sys.exit(main())
