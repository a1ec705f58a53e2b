"""`svdx report`: one static HTML page summarising a detector, its explanations and its exports.

`write_report(out_dir, detector_run=..., explain_out=...)` writes `out_dir/index.html` and
`out_dir/assets/` (matplotlib figures, the explanations' spectrogram PNGs and WAVs, copied in), all
linked relatively, so the folder can be opened from disk, zipped or served by any static server.
The page is built in a hidden temporary folder beside `out_dir` and renamed into place: a killed
report never leaves a half-written page under the final name.

Sections: the header (config and data fingerprints, when generated); the detector's evaluation
(`<detector_run>/evaluation.json`); the ranked hyper-parameter table (`results.json`, selected rows
highlighted); FID heat maps over (lr, λ, iterations) per direction; the selected, median and worst
explanations (spectrograms, playable audio); activation trajectories and the explanations'
activations against the real data's distribution (`explanations/activations.npz`); the
TF-Serving exports and their signatures; the GAN's training curves (its TensorBoard events).
Anything missing is reported as such ("not evaluated", "not exported", ...), never an error.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np

from tf_svdx.errors import ConfigError
from tf_svdx.io import atomic_path

DIRECTIONS = ("maximise", "minimise")
ROLES = ("selected", "median", "worst")
ROLE_COLOURS = {"selected": "#1b7837", "median": "#2166ac", "worst": "#b2182b"}
METRICS = (("error", "error", True), ("precision", "precision", False),
           ("recall", "recall", False), ("specificity", "specificity", False),
           ("f1", "F1", False), ("auroc", "AUROC", False), ("threshold", "threshold", False),
           ("frames", "frames", False))
GAN_TAGS = ("gan/wasserstein", "gan/frechet_fc8")


def write_report(out_dir: str | Path, *, detector_run: str | Path, explain_out: str | Path,
                 saved_models: str | Path | None = None, gan_run: str | Path | None = None,
                 config=None) -> Path:
    """Write the report into `out_dir` (replacing an earlier report there); returns the path
    of its index.html."""
    out_dir = Path(out_dir)
    _check_out(out_dir)
    explain_out = Path(explain_out)
    results = _read_json(explain_out / "results.json")
    if results is None:
        raise ConfigError(f"{explain_out / 'results.json'}: missing or unreadable "
                          f"(run `svdx explain` first)")
    with atomic_path(out_dir, directory=True) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; a static server must read it
        assets = tmp / "assets"
        assets.mkdir()
        context = _context(assets, results, Path(detector_run), explain_out,
                           None if saved_models is None else Path(saved_models),
                           None if gan_run is None else Path(gan_run), config)
        (tmp / "index.html").write_text(_render(context), encoding="utf-8")
    return out_dir / "index.html"


def _check_out(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier report (it would be deleted)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: not a folder")
    names = {p.name for p in out_dir.iterdir()}
    if names and not names <= {"index.html", "assets"}:
        raise ConfigError(f"{out_dir}: exists and is not a report folder (holds "
                          f"{', '.join(sorted(names - {'index.html', 'assets'})[:3])}); "
                          f"choose another --out")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix or "(root)"]
    out = []
    for key in sorted(set(a) | set(b)):
        out += _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ----------------------------------------------------------------------------- the page's data


def _context(assets: Path, results: dict, detector_run: Path, explain_out: Path,
             saved_models: Path | None, gan_run: Path | None, config) -> dict:
    settings = results.get("settings", [])
    directions = [d for d in DIRECTIONS if any(s["direction"] == d for s in settings)]
    evaluation = _read_json(detector_run / "evaluation.json")
    activations = _load_activations(explain_out / "explanations" / "activations.npz")
    fingerprints = {"config": results.get("config_fingerprint"),
                    "data": results.get("data_fingerprint")}
    notes = []
    if config is not None and config.fingerprint() != fingerprints["config"]:
        changed = _differences(json.loads(json.dumps(config.to_dict())),
                               results.get("config") or {})
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more"
                                          if len(changed) > 6 else "")
        notes.append(f"the report's configuration (fingerprint {config.fingerprint()}) is not "
                     f"the one the explanations were made with ({fingerprints['config']})"
                     + (f"; it differs in {shown}" if changed else ""))
    if evaluation and evaluation.get("data_fingerprint") not in (None, fingerprints["data"]):
        notes.append(f"the detector was evaluated on other data (fingerprint "
                     f"{evaluation['data_fingerprint']})")
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "fingerprints": fingerprints,
        "notes": notes,
        "target": results.get("target", {}),
        "space": results.get("space", "latent"),
        "reference": results.get("reference", {}),
        "detector_info": results.get("detector") or {"folder": str(detector_run)},
        "generator_info": results.get("generator"),
        "explain_out": str(explain_out),
        "evaluation": _evaluation(evaluation, detector_run),
        "table": _table(settings, results),
        "directions": directions,
        "heatmaps": {d: _heatmap(assets, settings, results, d) for d in directions},
        "explanations": _explanations(assets, results, explain_out, directions),
        "trajectories": {d: _trajectory(assets, activations, d) for d in directions},
        "distribution": _distribution(assets, activations, results),
        "has_activations": activations is not None,
        "exports": _exports(saved_models),
        "gan": _gan_curves(assets, gan_run, (results.get("generator") or {}).get("weights")),
    }


def _evaluation(evaluation: dict | None, detector_run: Path) -> dict:
    if not evaluation:
        return {"available": False, "path": str(detector_run / "evaluation.json")}
    rows = []
    for key, label, percent in METRICS:
        row = {"label": label}
        for split in ("test", "valid"):
            v = (evaluation.get(split) or {}).get(key)
            if key == "frames" and _finite(v):
                row[split] = f"{int(v):,}"
            elif _finite(v):
                row[split] = f"{100 * v:.2f} %" if percent else f"{v:.3f}"
            else:
                row[split] = "n/a"
        rows.append(row)
    return {"available": True, "rows": rows, "path": str(detector_run / "evaluation.json"),
            "pitch_shifts": evaluation.get("pitch_shifts"),
            "median_filter_frames": evaluation.get("median_filter_frames")}


def _table(settings: list[dict], results: dict) -> list[dict]:
    roles = {}
    for role in ROLES:
        for direction, entry in (results.get(role) or {}).items():
            roles.setdefault(entry.get("name"), []).append(role)
    rows = []
    for s in sorted(settings, key=lambda s: (DIRECTIONS.index(s["direction"])
                                             if s["direction"] in DIRECTIONS else 9,
                                             s.get("rank", 1e9))):
        act = s.get("activation") or {}
        rows.append({"name": s["name"], "direction": s["direction"], "lr": s["lr"],
                     "lambda": s["lambda"], "iterations": s["iterations"],
                     "fid_1d": s.get("fid_1d"), "fid_layer": s.get("fid_layer"),
                     "fid_layer_name": s.get("fid_layer_name", ""),
                     "diagonal_only": bool(s.get("fid_layer_diagonal_only")),
                     "kid": s.get("kid_layer"), "activation": act.get("mean"),
                     "activation_std": act.get("std"), "rank": s.get("rank"),
                     "roles": roles.get(s["name"], [])})
    return rows


def _load_activations(path: Path) -> dict | None:
    try:
        with np.load(path) as f:
            return {k: np.asarray(f[k], np.float64) for k in f.files}
    except (OSError, ValueError):
        return None


def _copy(src: Path, assets: Path, name: str) -> str | None:
    if not src.is_file():
        return None
    dest = assets / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return f"assets/{name}"


def _explanations(assets: Path, results: dict, explain_out: Path, directions) -> dict:
    shown = {}
    for direction in directions:
        for role in ROLES:
            entry = (results.get(role) or {}).get(direction)
            if entry is None:
                continue
            png = entry.get("png")
            audio = []
            for wav in entry.get("wav", []):
                src = _copy(explain_out / wav, assets, wav)
                label = Path(wav).stem.rsplit("-", 1)[-1].replace("seed", "seed ")
                audio.append({"src": src, "label": label, "name": wav})
            shown[(direction, role)] = {
                **entry, "role": role,
                "png_src": _copy(explain_out / png, assets, png) if png else None,
                "audio": audio}
    return {d: [shown[(d, r)] for r in ROLES if (d, r) in shown] for d in directions}


# ----------------------------------------------------------------------------- figures


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, assets: Path, name: str) -> str:
    plt = _plt()
    fig.savefig(assets / name, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f"assets/{name}"


def _heatmap(assets: Path, settings: list[dict], results: dict, direction: str) -> str | None:
    """fid_1d over the (lr, λ) grid, one panel per iteration count; log colour scale shared by
    the panels, every cell annotated, the selected setting boxed."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle
    plt = _plt()
    own = [s for s in settings if s["direction"] == direction]
    if not own:
        return None
    lrs = sorted({s["lr"] for s in own}, reverse=True)
    lams = sorted({s["lambda"] for s in own}, reverse=True)
    its = sorted({s["iterations"] for s in own})
    grid = np.full((len(its), len(lrs), len(lams)), np.nan)
    for s in own:
        v = s.get("fid_1d")
        if _finite(v):
            grid[its.index(s["iterations"]), lrs.index(s["lr"]), lams.index(s["lambda"])] = v
    finite = grid[np.isfinite(grid)]
    positive = finite[finite > 0]
    if positive.size:
        lo, hi = positive.min(), positive.max()
        norm = LogNorm(lo, hi if hi > lo else lo * 10)
        shown = np.where(grid > 0, grid, lo)
    else:
        norm, shown = None, grid
    selected = (results.get("selected") or {}).get(direction) or {}
    fig, axes = plt.subplots(1, len(its), figsize=(3.3 * len(its) + 1.2, 3.3), squeeze=False,
                             layout="constrained")
    image = None
    for k, (ax, it) in enumerate(zip(axes[0], its)):
        image = ax.imshow(np.ma.masked_invalid(shown[k]), cmap="viridis_r", norm=norm,
                          aspect="auto")
        ax.set_title(f"{it} iterations", fontsize=10)
        ax.set_xticks(range(len(lams)), [f"{v:g}" for v in lams])
        if k == 0:
            ax.set_yticks(range(len(lrs)), [f"{v:g}" for v in lrs])
        else:
            ax.set_yticks([])
        ax.set_xlabel("λ")
        if k == 0:
            ax.set_ylabel("learning rate")
        for i in range(len(lrs)):
            for j in range(len(lams)):
                v = grid[k, i, j]
                text = _compact(v)
                dark = np.isfinite(v) and norm is not None and norm(max(v, norm.vmin)) > 0.55
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        if selected.get("iterations") == it and selected.get("lr") in lrs \
                and selected.get("lambda") in lams:
            i, j = lrs.index(selected["lr"]), lams.index(selected["lambda"])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728",
                                   linewidth=2.5))
    if image is not None and norm is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.95, label="FID (1-D), log scale")
    fig.suptitle(f"{direction}: FID (1-D) per setting (red box: selected)", fontsize=11)
    return _save(fig, assets, f"heatmap-{direction}.png")


def _compact(v: float) -> str:
    """A short label for a heat-map cell: 3 significant digits, k/M for thousands/millions."""
    if not np.isfinite(v):
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _trajectory(assets: Path, activations: dict | None, direction: str) -> str | None:
    """The target activation over the iterations of the selected, median and worst settings:
    the mean over seeds, and each seed faintly."""
    if activations is None:
        return None
    curves = {r: activations.get(f"{direction}/{r}/trajectory") for r in ROLES}
    curves = {r: c for r, c in curves.items() if c is not None and c.size}
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for role, traj in curves.items():
        traj = traj.reshape(len(traj), -1)
        steps = np.arange(len(traj))
        ax.plot(steps, traj, color=ROLE_COLOURS[role], alpha=0.15, linewidth=0.8)
        ax.plot(steps, np.nanmean(traj, axis=1), color=ROLE_COLOURS[role], linewidth=2.2,
                label=f"{role} (mean of {traj.shape[1]} seeds)")
    for key, style in (("real/top", "--"), ("real/bottom", ":")):
        ref = activations.get(key)
        if ref is not None and ref.size and (key == "real/top") == (direction == "maximise"):
            ax.axhline(float(np.mean(ref)), color="0.3", linestyle=style, linewidth=1,
                       label=f"mean of the real {key.split('/')[1]}-{ref.size}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("target activation")
    ax.set_title(f"{direction}: activation over the iterations", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, assets, f"trajectory-{direction}.png")


def _distribution(assets: Path, activations: dict | None, results: dict) -> str | None:
    """Histogram of the target activation over every scanned real excerpt, the top-N and
    bottom-N marked, and the selected explanations' activations as markers."""
    if activations is None or activations.get("real/all") is None:
        return None
    plt = _plt()
    real = activations["real/all"]
    real = real[np.isfinite(real)]
    if not real.size:
        return None
    marks = {d: activations.get(f"{d}/selected/activation") for d in DIRECTIONS}
    marks = {d: m[np.isfinite(m)] for d, m in marks.items()
             if m is not None and np.isfinite(m).any()}
    lo = min([real.min()] + [m.min() for m in marks.values() if m.size])
    hi = max([real.max()] + [m.max() for m in marks.values() if m.size])
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    fig, (ax, rug) = plt.subplots(2, 1, figsize=(8.5, 4.4), sharex=True, layout="constrained",
                                  gridspec_kw={"height_ratios": [5, 1]})
    ax.hist(real, bins=bins, color="0.75", label=f"real excerpts ({real.size:,})")
    for key, colour in (("real/top", "#fdae61"), ("real/bottom", "#74add1")):
        ref = activations.get(key)
        if ref is not None and ref.size:
            ax.hist(ref, bins=bins, color=colour,
                    label=f"real {key.split('/')[1]}-{ref.size} (FID reference)")
    colours = {"maximise": "#d62728", "minimise": "#1f77b4"}
    rows = [d for d in DIRECTIONS if d in marks]
    for y, direction in enumerate(rows):
        m = marks[direction]
        rug.plot(m, np.full(m.shape, y), "|", color=colours[direction], markersize=14,
                 markeredgewidth=2)
        rug.plot([float(np.mean(m))], [y], "D", color=colours[direction], markersize=6)
        ax.axvline(float(np.mean(m)), color=colours[direction], linestyle="--", linewidth=1.2,
                   label=f"mean of the selected {direction} explanations ({m.size})")
    rug.set_yticks(range(len(rows)), [f"selected {d}" for d in rows], fontsize=8)
    rug.set_ylim(-0.7, len(rows) - 0.3)
    rug.grid(axis="x", alpha=0.3)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylabel("excerpts (symlog)")
    ax.set_title("selected explanations against the real data", fontsize=11)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    rug.set_xlabel(f"target activation ({_target_name(results)})")
    return _save(fig, assets, "distribution.png")


def _target_name(results: dict) -> str:
    t = results.get("target") or {}
    return f"{t.get('layer', 'fc9')}, unit {t.get('unit', 0)}"


def _gan_curves(assets: Path, gan_run: Path | None, weights: str | None = None) -> dict:
    """gan/wasserstein and gan/frechet_fc8 over the generator steps; the generator weights the explanations used are marked."""
    if gan_run is None:
        return {"available": False, "why": "no GAN run given"}
    logdir = gan_run / "tb" if (gan_run / "tb").is_dir() else gan_run
    if not any(logdir.glob("events.out.tfevents.*")):
        return {"available": False, "why": f"no TensorBoard events in {logdir}"}
    from tf_svdx.report.tensorboard import read_scalars
    series = read_scalars(logdir, GAN_TAGS)
    series = {k: v for k, v in series.items() if v}
    if not series:
        return {"available": False, "why": f"no {' or '.join(GAN_TAGS)} in {logdir}"}
    plt = _plt()
    match = re.fullmatch(r"ckpt-(\d+)", weights or "")
    used = int(match.group(1)) if match else None
    if weights == "generator.weights.h5":  # the final weights: the run's last step
        used = (_read_json(gan_run / "summary.json") or {}).get("steps")
    fig, axes = plt.subplots(1, len(series), figsize=(5.2 * len(series), 3.4), squeeze=False)
    for ax, (tag, points) in zip(axes[0], series.items()):
        steps, values = zip(*sorted(points))
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3,
                color="#5e3c99")
        if used is not None:
            ax.axvline(used, color="#e08214", linestyle="--", linewidth=1.2,
                       label=f"explanations' generator ({weights})")
            ax.legend(fontsize=8)
        ax.set_title(tag, fontsize=10)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    last = {tag: {"step": max(p)[0], "value": max(p)[1]} for tag, p in series.items()}
    return {"available": True, "src": _save(fig, assets, "gan-curves.png"), "last": last,
            "logdir": str(logdir)}


# ----------------------------------------------------------------------------- exports


def _exports(saved_models: Path | None) -> dict:
    if saved_models is None or not saved_models.is_dir():
        return {"available": False, "root": None if saved_models is None else str(saved_models)}
    models = []
    for folder in sorted(p for p in saved_models.iterdir() if p.is_dir()):
        versions = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
        if not versions:
            continue
        path = folder / str(max(versions))
        models.append({"name": folder.name, "version": max(versions), "path": str(path),
                       "signatures": _signatures(path),
                       "extra": sorted(p.name for p in (path / "assets.extra").glob("*"))})
    config_path = saved_models / "models.config"
    return {"available": bool(models), "root": str(saved_models), "models": models,
            "models_config": str(config_path) if config_path.is_file() else None}


def _signatures(path: Path) -> list[dict] | str:
    """Every signature of a SavedModel with its inputs' and outputs' dtypes and shapes, read
    from saved_model.pb (the SignatureDefs TF-Serving answers /metadata with; no graph is
    loaded)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    try:
        proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    except (OSError, ValueError) as e:
        return f"unreadable: {e}"
    if not proto.meta_graphs:
        return "no meta graph"
    defs = proto.meta_graphs[0].signature_def

    def tensors(mapping):
        out = []
        for key in sorted(mapping):
            info = mapping[key]
            if info.tensor_shape.unknown_rank:
                shape = "unknown rank"
            else:
                shape = "[" + ", ".join("N" if d.size == -1 else str(d.size)
                                        for d in info.tensor_shape.dim) + "]"
            out.append({"name": key, "dtype": tf.dtypes.as_dtype(info.dtype).name,
                        "shape": shape if shape != "[]" else "scalar"})
        return out
    signatures = []
    for key in sorted(defs, key=lambda k: (k != "serving_default", k)):
        if key.startswith("__"):  # __saved_model_init_op
            continue
        inputs, outputs = tensors(defs[key].inputs), tensors(defs[key].outputs)
        rows = [{"kind": "input", **t} for t in inputs] + \
            [{"kind": "output", **t} for t in outputs]
        signatures.append({"name": key, "inputs": inputs, "outputs": outputs,
                           "rows": rows or [{"kind": "", "name": "–", "dtype": "", "shape": ""}]})
    return signatures


# ----------------------------------------------------------------------------- rendering


def _num(value, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "–"
    if isinstance(value, int):
        return str(value)
    if not _finite(value):
        return "NaN" if value != value else ("∞" if value > 0 else "−∞")
    return f"{value:.{digits}g}"


def _render(context: dict) -> str:
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("tf_svdx.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    return env.get_template("index.html.j2").render(**context, role_colours=ROLE_COLOURS)
