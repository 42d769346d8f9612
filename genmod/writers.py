"""Host-side I/O: TensorBoard event files without TensorFlow (tensorboardX), a JSONL metrics
log, PNG sample grids, and a progress line whose ETA excludes compile time."""
from __future__ import annotations

import json
import os
import time

import numpy as np
from PIL import Image


def to_uint8(x):
    """[-1, 1] floats -> uint8 by rounding (the same quantisation FID and saved samples use)."""
    return np.clip(np.round((np.asarray(x, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, cols: int | None = None, scale: int = 1) -> np.ndarray:
    """(N, H, W, C) uint8 -> one (rows*H, cols*W, C) grid with a 1-px border."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    pad = np.zeros((rows * cols, h + 1, w + 1, c), np.uint8)
    pad[:n, 1:, 1:] = images
    g = pad.reshape(rows, cols, h + 1, w + 1, c).transpose(0, 2, 1, 3, 4).reshape(rows * (h + 1), cols * (w + 1), c)
    g = np.pad(g, ((0, 1), (0, 1), (0, 0)))
    return g.repeat(scale, 0).repeat(scale, 1) if scale > 1 else g


def scatter_image(points: np.ndarray, size: int = 256, lim: float = 1.5) -> np.ndarray:
    """2-D points -> a (size, size, 1) uint8 density picture (white background)."""
    p = np.asarray(points, np.float64)[:, :2]
    h, _, _ = np.histogram2d(-p[:, 1], p[:, 0], bins=size, range=[[-lim, lim], [-lim, lim]])
    h = np.clip(h / max(np.percentile(h[h > 0], 95) if (h > 0).any() else 1, 1), 0, 1)
    return (255 * (1 - h))[..., None].astype(np.uint8)


def preview(samples: np.ndarray) -> np.ndarray:
    """Samples in data space -> an HWC uint8 picture (grid for images, density for points)."""
    if samples.ndim == 4:
        imgs = to_uint8(samples)
        return image_grid(imgs, scale=max(1, 128 // imgs.shape[1]))
    return scatter_image(samples)


def save_png(path: str, img: np.ndarray):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(path)


class Writer:
    """TensorBoard + ``metrics.jsonl``; a no-op on processes other than 0. The files are opened
    at the first write, so a run refused at start-up leaves the workdir as it was."""

    def __init__(self, workdir: str, active: bool = True):
        self.active, self.workdir = active, workdir
        self.tb = self.jsonl = None

    def _open(self):
        if self.tb is None:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(self.workdir, "tb"), flush_secs=30)
            self.jsonl = open(os.path.join(self.workdir, "metrics.jsonl"), "a")

    def scalars(self, step: int, scalars: dict):
        if not self.active:
            return
        self._open()
        for k, v in scalars.items():
            self.tb.add_scalar(k, float(v), step)
        self.jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")
        self.jsonl.flush()

    def offset(self) -> int | None:
        """Bytes of ``metrics.jsonl`` written so far (saved with each checkpoint)."""
        if not self.active:
            return None
        self._open()
        self.jsonl.flush()
        return self.jsonl.tell()

    def truncate(self, offset: int | None):
        """Cut ``metrics.jsonl`` back to ``offset`` bytes: on resume, the entries a killed run
        logged after its last checkpoint are dropped instead of repeated."""
        if not self.active or offset is None:
            return
        self._open()
        self.jsonl.flush()
        if 0 <= offset < os.fstat(self.jsonl.fileno()).st_size:
            self.jsonl.truncate(offset)
            self.jsonl.seek(offset)

    def image(self, step: int, tag: str, img: np.ndarray):
        if self.active:
            self._open()
            self.tb.add_image(tag, img, step, dataformats="HWC")

    def text(self, tag: str, text: str):
        if self.active:
            self._open()
            self.tb.add_text(tag, text, 0)

    def close(self):
        if self.tb is not None:
            self.tb.close()
            self.jsonl.close()
            self.tb = self.jsonl = None


class Progress:
    """Progress from steps after the first of this run (which includes compilation):
    ``steps_per_sec`` is the training rate with pauses (checkpoints, previews) subtracted, like
    big_vision's Chrono (what throughput benchmarks read); ``wall_steps_per_sec`` includes the
    pauses, and the ETA is the remaining steps at the mean wall rate since the clock started,
    so checkpoint and preview time is in it."""

    def __init__(self, first_step: int, total: int):
        self.total, self.t0, self.s0 = total, None, first_step
        self.paused = 0.0
        self.last_t, self.last_s = None, first_step

    def tick(self, step: int):
        """Call after ``step`` is done; the first call (post-compile) starts the clock."""
        if self.t0 is None:
            self.t0, self.s0 = time.perf_counter(), step
            self.last_t, self.last_s = self.t0, step

    def pause(self, seconds: float):
        self.paused += seconds

    def report(self, step: int) -> dict:
        now = time.perf_counter()
        if self.t0 is None or step <= self.last_s:
            return {}
        rate = (step - self.last_s) / max(now - self.last_t - self.paused, 1e-9)
        wall = (step - self.last_s) / max(now - self.last_t, 1e-9)
        mean_wall = (step - self.s0) / max(now - self.t0, 1e-9)
        self.last_t, self.last_s, self.paused = now, step, 0.0
        return {"steps_per_sec": rate, "wall_steps_per_sec": wall,
                "eta_sec": (self.total - step) / max(mean_wall, 1e-9)}


def fmt_eta(sec: float) -> str:
    sec = int(sec)
    return f"{sec // 3600}h{sec % 3600 // 60:02d}m{sec % 60:02d}s"
