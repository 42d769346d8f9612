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
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(config.to_json(indent=2))
        return 0
    name = os.path.basename(args.config.partition(":")[0]).removesuffix(".py")
    workdir = args.workdir or os.path.join("checkpoints", name)
    from genmod import data, train  # imports jax: after argument checks, so errors are fast

    try:
        status = train.train(config, workdir, force=args.force)
    except (config_lib.ConfigError, data.DataError, FileNotFoundError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{status}: {os.path.abspath(workdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
