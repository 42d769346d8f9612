"""Train: ``python -m genmod.launch --config NAME[:preset] [--workdir DIR] [--config.a.b=v]``.

Re-running the same command resumes from the workdir's latest checkpoint; SIGTERM saves and
exits 0. ``--dry_run`` prints the resolved config; ``--list_configs`` lists the configs.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m genmod.launch", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="NAME[:preset,...] from configs/ (or a .py path)")
    p.add_argument("--workdir", help="default: checkpoints/NAME")
    p.add_argument("--dry_run", action="store_true", help="print the resolved config and exit")
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
        print("\n".join(config_lib.available()))
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
    if args.dry_run:
        print(config.to_json(indent=2))
        return 0
    name = os.path.basename(args.config.partition(":")[0]).removesuffix(".py")
    workdir = args.workdir or os.path.join("checkpoints", name)
    init_distributed(args)
    from genmod import checkpoint, data, lock, train  # imports jax: after argument checks, so errors are fast

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
    sys.exit(main())
