"""The one training loop. It knows nothing about methods: it shards, steps the rule that
``method.schedule(step)`` names, logs, previews, checkpoints and resumes."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from genmod import config_lib, data as data_lib, metrics as metrics_lib, sharding, writers
from genmod.checkpoint import CheckpointError, Checkpoints, abstract_with_shardings
from genmod.lock import WorkdirLock
from genmod.method import get_method


class Preemption:
    """SIGTERM sets a flag; the loop saves a checkpoint at the next step and exits 0."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, *_):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def max_inflight() -> int:
    """Steps dispatched ahead of the host. Simulated multi-device CPU runs keep it at 2: a deep
    queue of collective programs starves XLA:CPU's thread pool (a rendezvous deadlock seen
    with 4 simulated devices on 2 cores)."""
    multi_cpu = jax.default_backend() == "cpu" and jax.local_device_count() > 1
    return 2 if multi_cpu else 8


def seed_keys(seeds) -> jax.Array:
    """One PRNG key per sample seed (sample i of seed s is the same in any batch)."""
    return jax.vmap(jax.random.PRNGKey)(jnp.asarray(np.asarray(seeds), jnp.uint32))


class StageRun:
    """A stage's method with its abstract state, shardings, jitted rules and checkpoints."""

    def __init__(self, config, workdir, index, stage, method, mesh, pipeline_spec, async_save=True):
        self.config, self.stage, self.method, self.mesh = config, stage, method, mesh
        self.ckpt = Checkpoints(os.path.join(workdir, "ckpt", stage.name), config.keep, async_save)
        example = {k: np.zeros((1,) + v.shape[1:], v.dtype) for k, v in pipeline_spec.items()}
        self.rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), index)
        self.init = lambda rng: method.init(rng, example)
        abstract = jax.eval_shape(self.init, self.rng)
        sh = config.get("sharding") or {}
        self.shardings = sharding.state_shardings(abstract, mesh, sh.get("fsdp_min_size", 2**14),
                                                  tuple(sh.get("replicate", ())))
        self.abstract = abstract_with_shardings(abstract, self.shardings)
        repl = sharding.replicated(mesh)
        self.frozen = jax.device_put(method.frozen, repl)
        floats = lambda s: [x for x in jax.tree.leaves(s) if jnp.issubdtype(x.dtype, jnp.floating)]  # noqa: E731
        self._finite = jax.jit(lambda s: jnp.all(jnp.stack([jnp.isfinite(x).all() for x in floats(s)])),
                               out_shardings=sharding.replicated(mesh))

    def finite(self, state) -> bool:
        return bool(self._finite(state))

    def load(self, log=print, move_bad=True):
        """(state, step, finished, meta): the newest good checkpoint (checked against this
        config, its integrity record and for non-finite values), or a fresh init (meta None)."""
        if self.ckpt.latest() is not None:
            state, meta = self.ckpt.restore_latest_good(self.abstract, log, self.finite, move_bad)
            return state, int(meta["step"]), bool(meta.get("finished")), meta
        aside = self.ckpt.set_aside()
        if aside:  # every checkpoint was moved aside (by an older genmod): never silently start over
            raise CheckpointError(f"{self.ckpt.dir} holds no checkpoint, only ones set aside as bad "
                                  f"({', '.join(aside[:3])}); inspect them, or move them away to train "
                                  f"from step 0")
        state = jax.jit(self.init, out_shardings=self.shardings)(self.rng)
        return state, 0, False, None

    def save(self, state, step, finished=False, force=False, **extra_meta):
        """Async save; refuses a non-finite state, so a good checkpoint is never followed by a
        NaN one (skipped steps leave params finite; this catches anything else)."""
        if not bool(self._finite(state)):
            raise FloatingPointError(f"[{self.stage.name}] non-finite values in the state at step {step}; not "
                                     f"saving (last good checkpoint: step {self.ckpt.latest()})")
        meta = {"stage": self.stage.name, "step": step, "finished": finished,
                "data_position": step * self.config.batch_size, **extra_meta}
        self.ckpt.save(step, state, meta, force=force)


def iter_stages(config, workdir, mesh, spec, async_save=True):
    """Yield a StageRun per stage; each later stage is built from the finished earlier ones."""
    root = get_method(config)
    prior = {}
    stages = root.stages()
    for i, stage in enumerate(stages):
        run = StageRun(config, workdir, i, stage, stage.make(prior), mesh, spec, async_save)
        run.is_last = i == len(stages) - 1
        state = yield run
        prior = {**prior, stage.name: state}


def check_data(pipeline, config, log=print):
    """Dataset problems the pipeline would only meet mid-run: arrays of different lengths
    (labels shorter than images), labels outside ``0..num_classes-1``; and a warning when a
    batch is larger than the dataset (each batch then repeats rows)."""
    src, where = pipeline.src, config.data.source
    arrays = getattr(src, "arrays", None)
    if isinstance(arrays, dict) and arrays:
        lens = {k: len(v) for k, v in arrays.items()}
        if len(set(lens.values())) > 1:
            raise data_lib.DataError(f"{where}: arrays of different lengths ("
                                     f"{', '.join(f'{k} {n}' for k, n in lens.items())})")
        nc = pipeline.num_classes
        if nc and "label" in arrays and len(arrays["label"]):
            lab = np.asarray(arrays["label"])
            lo, hi = int(lab.min()), int(lab.max())
            if lo < 0 or hi >= nc:
                raise data_lib.DataError(f"{where}: labels span {lo}..{hi}, outside 0..{nc - 1} "
                                         f"(data.num_classes={nc})")
    if pipeline.n < config.batch_size:
        log(f"warning: {where} has {pipeline.n} rows, fewer than batch_size {config.batch_size}: "
            f"every batch repeats rows (epochs wrap inside a batch)")


def fmt_count(n: int) -> str:
    """Parameter counts as people write them: 812, 75.3K, 55.7M, 1.2B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def param_counts(tree) -> dict:
    """{network name: number of parameters} of a {name: pytree} dict (abstract or concrete)."""
    return {k: int(sum(np.prod(np.shape(x), dtype=np.int64) for x in jax.tree.leaves(v))) for k, v in tree.items()}


def banner(config, workdir, mesh, pipeline, log=print):
    """What a run is about to do, before anything is compiled: workdir, devices and mesh, data."""
    new = not os.path.exists(os.path.join(workdir, "config.json"))
    log(f"workdir {os.path.abspath(workdir)} ({'new run' if new else 'resuming'})")
    d = jax.devices()[0]
    log(f"devices: {jax.device_count()} x {d.platform} ({d.device_kind}), {jax.process_count()} process"
        f"{'es' if jax.process_count() > 1 else ''}; mesh {' x '.join(f'{k}={v}' for k, v in mesh.shape.items())}")
    dc = config.data
    what = "images" if pipeline.is_image else "points"
    classes = f", {pipeline.num_classes} classes" if pipeline.num_classes else ""
    log(f"data: {dc.source} ({dc.get('split', 'train')}): {pipeline.n:,} {what} of "
        f"{'x'.join(map(str, pipeline.shape))}{classes}; batch {config.batch_size}, method {config.method}")


def log_params(stage_name, abstract_params, frozen, log=print):
    counts = {k: fmt_count(n) for k, n in param_counts(abstract_params).items()}
    fz = {k: fmt_count(n) for k, n in param_counts(frozen or {}).items() if n}
    log(f"[{stage_name}] parameters: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        + "".join(f", {k} {v} (frozen)" for k, v in fz.items()))


class CompileNotice:
    """``[stage] compiling ...`` before the first step, a line every ``every`` seconds while it
    compiles, and the time it took once the first step is done."""

    def __init__(self, stage_name, rules, log=print, every: float = 20.0):
        self.stage, self.log, self.every = stage_name, log, every
        self.t0 = time.perf_counter()
        self._done = threading.Event()
        log(f"[{stage_name}] compiling {', '.join(rules)} (the first step includes compilation) ...")
        self._thread = threading.Thread(target=self._beat, daemon=True, name="genmod-compile-notice")
        self._thread.start()

    def _beat(self):
        while not self._done.wait(self.every):
            self.log(f"[{self.stage}] still compiling ({time.perf_counter() - self.t0:.0f} s)")

    def done(self, step=None):
        if not self._done.is_set():
            self._done.set()
            if step is not None:
                self.log(f"[{self.stage}] step {step} done, compile included: {time.perf_counter() - self.t0:.1f} s")


CPU_DAY_S = 86400.0  # a CPU run projected past this is told about the smaller routes
MEASURE_STEPS = 3  # steps after the compiled first one that the projection is measured on


def cpu_notice(stage: str, sec_per_step: float, steps: int, backend: str | None = None) -> str | None:
    """One line when a run without an accelerator would take more than a day (None otherwise):
    the projection and the routes sized for a CPU. The run carries on either way."""
    sec = sec_per_step * steps
    if (backend or jax.default_backend()) != "cpu" or sec <= CPU_DAY_S:
        return None
    when = f"{sec / 86400:.1f} days" if sec < 100 * 86400 else f"{sec / 86400 / 365:.1f} years"
    small = [n for n in config_lib.available() if n.endswith("_digits") or n == "quickstart"]
    return (f"[{stage}] note: no accelerator: at {sec_per_step:.2f} s/step, {steps:,} steps take ~{when} on "
            f"this CPU; sized for a CPU: the :smoke preset, the digits configs ({', '.join(small)}); carrying on")


def _snapshot(workdir: str) -> set | None:
    """Relative paths of everything under ``workdir`` (None when it does not exist)."""
    if not os.path.isdir(workdir):
        return None
    out = set()
    for root, dirs, files in os.walk(workdir):
        out.update(os.path.relpath(os.path.join(root, n), workdir) for n in dirs + files)
    return out


def _remove_new(workdir: str, before: set | None, keep=("lock",)):
    """Remove what is under ``workdir`` but not in ``before`` (a run that failed before its
    first step leaves nothing of its own behind); ``keep``: paths handled by others. Checkpoints
    moved aside as bad (``corrupt_*``) are never removed: they are old data under a new name."""
    before = before or set()
    for root, dirs, files in os.walk(workdir):
        for n in list(dirs):
            rel = os.path.relpath(os.path.join(root, n), workdir)
            if n.startswith("corrupt_"):
                dirs.remove(n)
            elif rel not in before:
                shutil.rmtree(os.path.join(root, n), ignore_errors=True)
                dirs.remove(n)
        for n in files:
            rel = os.path.relpath(os.path.join(root, n), workdir)
            if rel not in before and rel not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(root, n))


def _missing_root(path: str) -> str | None:
    """The outermost directory of ``path`` (itself included) that does not exist yet."""
    path, top = os.path.abspath(path), None
    while not os.path.exists(path):
        top, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return top


def _remove_empty_dirs(path: str, top: str):
    """rmdir ``path`` and its parents up to ``top`` while they are empty."""
    path = os.path.abspath(path)
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == top:
            return
        path = os.path.dirname(path)


def _start(config, workdir: str, force: bool, log):
    """(mesh, pipeline) after the checks ``train`` and ``dry_run`` share, in this order, so a
    dry run fails exactly where the run would: the config against the devices and the workdir,
    the data opened and checked; then the banner."""
    config_lib.validate(config, jax.device_count(), jax.process_count())
    config_lib.check_workdir(config, workdir, force)
    mesh = sharding.make_mesh(config.mesh)
    pipeline = data_lib.Pipeline(config.data, config.batch_size, sharding.batch_sharding(mesh), config.seed)
    check_data(pipeline, config, log)
    banner(config, workdir, mesh, pipeline, log)
    return mesh, pipeline


def dry_run(config, workdir: str, force: bool = False, log=print) -> dict:
    """Every start-up check of ``train`` without writing, locking or compiling anything: the
    config against the devices and the workdir, the data opened and checked, the method built
    (its teacher loaded) and its first stage's initial state traced (e.g. a teacher whose
    network differs from ``config.net``). Returns {network: parameters} of that stage."""
    _, pipeline = _start(config, workdir, force, log)
    if config.get("teacher") is not None:
        log(f"teacher: {config.teacher.get('workdir')}")
    stage = get_method(config).stages()[0]
    m = stage.make({})
    example = {k: np.zeros((1,) + v.shape[1:], v.dtype) for k, v in pipeline.spec().items()}
    abstract = jax.eval_shape(lambda r: m.init(r, example), jax.random.PRNGKey(config.seed))
    log_params(stage.name, abstract.params, m.frozen, log)
    return param_counts(abstract.params)


def train(config, workdir: str, *, stop_after: int | None = None, force: bool = False, log=print) -> str:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint. Returns "done",
    or "preempted" after SIGTERM (or ``stop_after`` steps in this call, for tests) once a
    checkpoint is committed.

    Order (nothing in the workdir is changed before the config has been checked against it):
    validate the config (types, ranges, mesh), compare it with the workdir's config.json, open
    the data, take the workdir lock, restore (a checkpoint of another shape is a ConfigError),
    and only then write config.json. A run that fails (raises) before its first step removes
    every file and directory it created (a new workdir disappears entirely); what was there
    before is kept."""
    if jax.process_index() != 0:
        log = lambda *_: None  # noqa: E731  (one progress log per job)
    mesh, pipeline = _start(config, workdir, force, log)
    is_main = jax.process_index() == 0
    started = [False]  # set once a step ran or a checkpoint was accepted in this call
    new_root, before = _missing_root(workdir), _snapshot(workdir)
    try:
        with WorkdirLock(workdir) if is_main else contextlib.nullcontext():
            config_lib.check_workdir(config, workdir, force)  # again, now that no one else can write it
            try:
                return _train_locked(config, workdir, mesh, pipeline, stop_after, log, started)
            except BaseException:
                if is_main and not started[0]:
                    _remove_new(workdir, before)
                raise
    except BaseException:
        if is_main and not started[0] and new_root is not None:
            _remove_empty_dirs(workdir, new_root)
        raise


def _train_locked(config, workdir, mesh, pipeline, stop_after, log, started=None):
    started = [False] if started is None else started
    is_main = jax.process_index() == 0
    writer = writers.Writer(workdir, is_main)
    steps_run = 0
    status = "done"
    saved_config = [False]

    def save_config():  # once the first stage's checkpoint has been accepted for this config
        if is_main and not saved_config[0]:
            config_lib.save_json(config, workdir)
            writer.text("config", "```\n" + config.to_json(indent=2) + "\n```")
        saved_config[0] = True

    metrics_offset = 0  # metrics.jsonl length when the latest restored checkpoint was saved
    with Preemption() as pre, contextlib.closing(writer):
        stages = iter_stages(config, workdir, mesh, pipeline.spec())
        run = next(stages)
        while True:
            log_params(run.stage.name, run.abstract.params, run.frozen, log)
            state, status, ran, metrics_offset = _run_stage(config, workdir, run, pipeline, writer, pre, stop_after,
                                                            steps_run, log, save_config, metrics_offset, started)
            steps_run += ran
            run.ckpt.close()
            if status != "done":
                break
            try:
                run = stages.send(state)
            except StopIteration:
                break
        save_config()
    return status


def _run_stage(config, workdir, run, pipeline, writer, pre, stop_after, steps_run, log, save_config,
               metrics_offset=0, started=None):
    stage, method = run.stage, run.method
    state, step, finished, meta = run.load(log)
    save_config()
    # metrics.jsonl: drop what was logged after the restored checkpoint (a killed run's steps
    # that are about to be trained again); a fresh stage keeps what earlier stages logged.
    offset = meta.get("metrics_offset") if meta else metrics_offset
    total = stage.num_steps
    if step >= total:  # (a longer total_steps on resume continues a "finished" run)
        if started is not None:
            started[0] = True
        if not finished:
            run.save(state, step, finished=True, force=True, metrics_offset=writer.offset())
            run.ckpt.wait()
        log(f"[{stage.name}] complete at step {step}")
        return state, "done", 0, (offset if offset is not None else writer.offset())
    if offset is not None:
        writer.truncate(offset)
    if step:
        log(f"[{stage.name}] resuming from step {step}")
    repl = sharding.replicated(run.mesh)

    def host_step(step, state):
        frozen = method.host_step(step, state, workdir)
        if frozen is not None:
            run.frozen = jax.device_put(frozen, repl)

    host_step(step, state)
    rules = {k: jax.jit(fn, donate_argnums=0, out_shardings=(run.shardings, repl))
             for k, fn in method.rules().items()}
    preview = jax.jit(method.sample, out_shardings=repl) if config.sample_every and config.num_preview else None
    keys = seed_keys(range(config.num_preview)) if preview else None
    progress = writers.Progress(step, total)
    prefetch = data_lib.Prefetch(pipeline.batch, step, total)
    history, status, ran, inflight = [], "done", 0, max_inflight()
    compiling = CompileNotice(stage.name, list(rules), log)
    try:
        while step < total:
            batch = prefetch.get(step)
            state, m = rules[method.schedule(step)](state, batch, run.frozen)
            history.append(m)
            if len(history) > inflight:  # bound the async queue (see max_inflight)
                jax.block_until_ready(history[-inflight - 1])
            step += 1
            ran += 1
            host_step(step, state)
            if ran == 1:
                jax.block_until_ready(state)
                progress.tick(step)
                compiling.done(step)
                t_first = time.perf_counter()
                if started is not None:
                    started[0] = True
            elif ran == 1 + MEASURE_STEPS:
                jax.block_until_ready(state)
                note = cpu_notice(stage.name, (time.perf_counter() - t_first) / MEASURE_STEPS, total)
                if note:
                    log(note)
            stop = pre.requested or (stop_after is not None and steps_run + ran >= stop_after)
            if step % config.log_every == 0 or step == total:
                jax.block_until_ready(state)
                p = progress.report(step)
                s = metrics_lib.summarize(history)
                history = []
                if p:
                    s.update(p, img_per_sec=p["steps_per_sec"] * config.batch_size)
                writer.scalars(step, s)
                losses = " ".join(f"{k}={v:.4g}" for k, v in s.items() if k.endswith("loss"))
                eta = (f" {s['steps_per_sec']:.1f} steps/s ({s['wall_steps_per_sec']:.1f} with checkpoints) "
                       f"ETA {writers.fmt_eta(s['eta_sec'])}") if p else ""
                log(f"[{stage.name}] step {step}/{total} ({100 * step / total:.0f}%) {losses}{eta}")
                streak = max([v for k, v in s.items() if k.endswith("bad_streak")], default=0)
                if streak >= config.max_bad_steps:
                    raise FloatingPointError(
                        f"[{stage.name}] {int(streak)} consecutive non-finite steps (skipped) by step {step}; "
                        f"stopping. Last good checkpoint: step {run.ckpt.latest()} (lower the lr or check the data)")
            t0 = time.perf_counter()
            if preview and (step % config.sample_every == 0 or step == total):
                x = sharding.to_host(preview(method.sample_params(state), keys, run.frozen))
                img = writers.preview(x)
                if jax.process_index() == 0:
                    writers.save_png(os.path.join(workdir, "samples", f"{stage.name}_{step:08d}.png"), img)
                    writer.image(step, f"samples/{stage.name}", img)
            if step % config.ckpt_every == 0 or step == total or stop:
                run.save(state, step, finished=step == total, force=stop, metrics_offset=writer.offset())
            progress.pause(time.perf_counter() - t0)
            if stop and step < total:
                status = "preempted"
                log(f"[{stage.name}] preempted at step {step}: checkpoint saved")
                break
    finally:
        compiling.done()
        prefetch.close()
        run.ckpt.wait()
    return state, status, ran, writer.offset()


# -- reading a finished workdir (sampling, teachers, evaluation) ---------------------------------
def load_workdir(workdir: str, step: int | None = None, mesh=None, log=None):
    """(config, StageRun, state, step) of a workdir's final stage: the latest good checkpoint
    (a bad newer one is skipped with a warning, never moved: this is a reader), or the one at
    ``step`` (an error if it is bad). Earlier stages are restored and fed forward as the loop
    does. This is also how teachers are loaded (read-only) from another run's workdir. A
    config.json naming a module outside genmod is refused unless the user allowed it
    (``config_lib.trust_modules``, ``--allow_module``)."""
    import sys

    log = log or (lambda m: print(m, file=sys.stderr))
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no config.json in {workdir}: not a genmod workdir")
    config = config_lib.from_json(path)
    config_lib.check_modules(config, path)
    mesh = mesh or sharding.make_mesh(config.mesh if jax.process_count() > 1 else {"data": -1})
    spec = _spec(config)
    stages = iter_stages(config, workdir, mesh, spec, async_save=False)
    run = next(stages)
    while True:  # walk to the last stage, feeding each finished stage's state forward
        if run.ckpt.latest() is None:
            raise FileNotFoundError(f"no checkpoint for stage {run.stage.name!r} in {workdir}")
        if run.is_last:
            break
        state = run.ckpt.restore_latest_good(run.abstract, log, run.finite, move_bad=False)[0]
        run.ckpt.close()
        run = stages.send(state)
    steps = run.ckpt.all_steps()
    if step is not None and step not in steps:
        raise FileNotFoundError(f"no checkpoint at step {step} in {run.ckpt.dir}; available: {steps}")
    if step is None:
        state, meta = run.ckpt.restore_latest_good(run.abstract, log, run.finite, move_bad=False)
    else:
        state, meta, problem = run.ckpt.restore_checked(run.abstract, step, run.finite)
        if problem:
            raise CheckpointError(f"checkpoint {run.ckpt.dir}/{step} {problem}; available: {steps}")
    run.ckpt.close()
    return config, run, state, int(meta["step"])


def _spec(config):
    """Batch shapes from the config alone (no need to open the dataset to sample)."""
    s = {"x": jax.ShapeDtypeStruct((config.batch_size,) + tuple(config.data.shape), np.float32)}
    if config.data.get("num_classes"):
        s["label"] = jax.ShapeDtypeStruct((config.batch_size,), np.int32)
    return s


class Sampler:
    """Loads a workdir's final stage (or the checkpoint at ``step``) once; samples by seeds.
    ``steps``: every checkpoint step of that stage."""

    def __init__(self, workdir: str, step: int | None = None, nfe: int | None = None):
        self.config, run, state, self.step = load_workdir(workdir, step)
        self.run, self.nfe = run, nfe
        self.steps = sorted(int(d) for d in os.listdir(run.ckpt.dir) if d.isdigit())  # the stage's checkpoints
        self.params = run.method.sample_params(state)
        self.fn = jax.jit(lambda p, k, f: run.method.sample(p, k, f, nfe=nfe))

    def __call__(self, seeds) -> np.ndarray:
        """Samples in data space (float32) for ``seeds``."""
        return np.asarray(self.fn(self.params, seed_keys(seeds), self.run.frozen))

    def compiled(self, seeds):
        """``() -> samples`` for ``seeds``, compiled ahead of time: each call is one sampling
        and nothing else, so it can be timed without a warm-up sampling."""
        args = (self.params, seed_keys(seeds), self.run.frozen)
        exe = self.fn.lower(*args).compile()
        return lambda: np.asarray(exe(*args))

    def nfe_used(self) -> tuple[int, str]:
        """What one sample costs at this ``nfe`` and what that counts (``Method.nfe_used``)."""
        return self.run.method.nfe_used(self.nfe)


class SampleStream:
    """Iterable of (seeds_chunk, uint8 NHWC images) in seed order, ``batch_size`` at a time
    (the last chunk is padded to the compiled shape and cut back). The checkpoint is loaded
    when iteration starts; ``.step`` then says which one."""

    def __init__(self, workdir, seeds, batch_size, step=None, nfe=None):
        self.workdir, self.seeds, self.batch_size, self.step, self.nfe = workdir, np.asarray(seeds), batch_size, step, nfe

    def __iter__(self):
        s = Sampler(self.workdir, self.step, self.nfe)
        self.step = s.step
        for i in range(0, len(self.seeds), self.batch_size):
            chunk = self.seeds[i:i + self.batch_size]
            padded = np.concatenate([chunk, np.full(self.batch_size - len(chunk), chunk[-1])])
            yield chunk, writers.to_uint8(s(padded)[: len(chunk)])


iter_samples = SampleStream

MAX_SEED = 2**32 - 1  # seeds become uint32 PRNG keys (seed_keys)
MAX_SEEDS = 2**31


def parse_seeds(s: str) -> np.ndarray:
    """'0-63' or '1,5,9' or '0-9,20-29'; ValueError (with the reason) for a malformed part, a
    descending range, a seed outside 0..2**32-1 or more than 2**31 seeds."""
    parts, count = [], 0
    for part in s.split(","):
        a, dash, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b) if dash else int(a)
        except ValueError:
            raise ValueError(f"bad --seeds {s!r}: {part!r} is not N or A-B (seeds are >= 0)") from None
        if hi < lo:
            raise ValueError(f"bad --seeds {s!r}: the range {part!r} is descending")
        if lo < 0 or hi > MAX_SEED:
            raise ValueError(f"bad --seeds {s!r}: seeds are 0..{MAX_SEED}")
        count += hi - lo + 1
        if count > MAX_SEEDS:
            raise ValueError(f"bad --seeds {s!r}: more than {MAX_SEEDS} seeds")
        parts.append((lo, hi))
    return np.concatenate([np.arange(lo, hi + 1, dtype=np.int64) for lo, hi in parts])
