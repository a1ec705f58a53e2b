"""The hyper-parameter grid as rows of one batched engine (SPEC §5): memory-bounded, resumable.

A row is (direction, lr, λ, seed); the iteration counts are snapshots of the same row, so the
paper's 27 settings × 50 seeds × 2 directions (2,700 optimisations) are 900 rows of one
1000-step run. Rows are cut into chunks of `chunk_rows`; each chunk's results are written
atomically to `<out>/chunks/` under a key of everything that determines them, so a killed grid
resumes at the first missing chunk and a changed model or setting never reuses a stale chunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_svdx.config import Explain
from tf_svdx.errors import ConfigError
from tf_svdx.explain.engine import DIRECTIONS, Explainer
from tf_svdx.io import atomic_path

# What a chunk file holds, per snapshot S and row R (or per iteration T + 1 for trajectories).
ARRAYS = ("log_mel", "activation", "final_activation", "z", "z_norm", "trajectory_activation",
          "trajectory_norm", "trajectory_grad_norm")
TRAJECTORIES = ARRAYS[5:]


@dataclasses.dataclass(frozen=True)
class Row:
    direction: str
    lr: float
    lam: float
    seed: int


@dataclasses.dataclass(frozen=True)
class Setting:
    direction: str
    lr: float
    lam: float
    iterations: int

    @property
    def name(self) -> str:
        return f"{self.direction}-lr{self.lr:g}-lambda{self.lam:g}-it{self.iterations}"


def check_grid(opts: Explain) -> None:
    """Config errors name the key, before any model is loaded."""
    for d in opts.directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"explain.directions: unknown direction {d!r} "
                              f"(valid: {', '.join(DIRECTIONS)})")
    for key in ("directions", "learning_rates", "lambdas", "iterations"):
        values = getattr(opts, key)
        if not values:
            raise ConfigError(f"explain.{key}: empty")
        if len(set(values)) != len(values):
            raise ConfigError(f"explain.{key}: repeated values {list(values)}")
    if any(v <= 0 for v in opts.learning_rates):
        raise ConfigError("explain.learning_rates: must be > 0")
    if any(v < 0 for v in opts.lambdas):
        raise ConfigError("explain.lambdas: must be ≥ 0")
    if any(v < 1 for v in opts.iterations):
        raise ConfigError("explain.iterations: must be ≥ 1")
    if opts.seeds < 2:
        raise ConfigError("explain.seeds: need at least 2 (a Fréchet distance needs a variance)")
    if opts.chunk_rows < 1:
        raise ConfigError("explain.chunk_rows: must be ≥ 1")
    if opts.precision not in ("float32", "bfloat16"):
        raise ConfigError(f"explain.precision: {opts.precision!r} is not float32 or bfloat16")


def rows(opts: Explain) -> list[Row]:
    """Every optimisation to run, ordered direction → lr → λ → seed."""
    return [Row(d, float(lr), float(lam), s) for d in opts.directions
            for lr in opts.learning_rates for lam in opts.lambdas for s in range(opts.seeds)]


def settings(opts: Explain) -> list[Setting]:
    return [Setting(d, float(lr), float(lam), int(it)) for d in opts.directions
            for lr in opts.learning_rates for lam in opts.lambdas
            for it in sorted(opts.iterations)]


@dataclasses.dataclass
class GridResult:
    """All rows' results: arrays[name] is [S, R, ...] (snapshots × rows) or [T + 1, R]."""

    rows: list[Row]
    snapshots: list[int]
    arrays: dict

    def select(self, setting: Setting) -> dict:
        """The `seeds` results of one setting: {name: [seeds, ...]} at its snapshot, plus the
        trajectories up to its iteration count ([iterations + 1, seeds])."""
        idx = [i for i, r in enumerate(self.rows) if (r.direction, r.lr, r.lam) ==
               (setting.direction, setting.lr, setting.lam)]
        s = self.snapshots.index(setting.iterations)
        out = {k: self.arrays[k][s, idx] for k in ARRAYS if k not in TRAJECTORIES}
        for k in TRAJECTORIES:
            out[k] = self.arrays[k][:setting.iterations + 1, idx]
        out["seeds"] = np.array([self.rows[i].seed for i in idx])
        return out


def chunk_key(opts: Explain, identity: dict, base_seed: int) -> str:
    """Everything that determines a chunk's numbers: models (by fingerprint), target, space,
    grid and seeds. Output-only options (show, reference) do not enter."""
    fields = {k: v for k, v in dataclasses.asdict(opts).items()
              if k in ("space", "layer", "unit", "directions", "learning_rates", "lambdas",
                       "iterations", "seeds", "improvement", "input_init_scale", "chunk_rows",
                        "precision")}
    blob = json.dumps({"options": fields, "models": identity, "seed": base_seed},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_grid(explainer: Explainer, opts: Explain, out: str | Path, *, identity: dict,
             base_seed: int, progress: bool = True) -> GridResult:
    """Run (or resume) every row of the grid in chunks; returns all rows' results."""
    from tqdm import tqdm

    check_grid(opts)
    all_rows = rows(opts)
    snapshots = sorted(int(i) for i in opts.iterations)
    key = chunk_key(opts, identity, base_seed)
    folder = Path(out) / "chunks"
    folder.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(all_rows), opts.chunk_rows)
    parts = []
    bar = tqdm(total=len(all_rows), unit="row", desc=f"explain ({explainer.space})",
               disable=not progress)
    for number, start in enumerate(starts):
        chunk = all_rows[start:start + opts.chunk_rows]
        path = folder / f"{key}-{number:04d}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as f:
                parts.append({k: f[k] for k in ARRAYS})
        else:
            parts.append(_run_chunk(explainer, chunk, snapshots, opts, base_seed))
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **parts[-1])
        bar.update(len(chunk))
    bar.close()
    arrays = {k: np.concatenate([p[k] for p in parts], axis=1) for k in ARRAYS}
    return GridResult(all_rows, snapshots, arrays)


def _run_chunk(explainer: Explainer, chunk: list[Row], snapshots: list[int], opts: Explain,
               base_seed: int) -> dict:
    scale = opts.input_init_scale if explainer.space == "input" else 1.0
    x0 = explainer.initial([r.seed for r in chunk], base_seed, scale)
    out = explainer.run(x0, tf.constant([DIRECTIONS[r.direction] for r in chunk], tf.float32),
                        tf.constant([r.lr for r in chunk], tf.float32),
                        tf.constant([r.lam for r in chunk], tf.float32),
                        tf.constant(snapshots, tf.int32))
    z = out["z"].numpy()
    result = {"log_mel": out["log_mel"].numpy()[..., 0],
              "activation": out["activation"].numpy(),
              "final_activation": out["final_activation"].numpy(), "z": z,
              "z_norm": np.sqrt(np.sum(np.square(z.reshape(*z.shape[:2], -1)), axis=-1))}
    for k in TRAJECTORIES:
        result[k] = out[k].numpy() if explainer.trajectories else \
            np.zeros((0, len(chunk)), np.float32)
    return result
