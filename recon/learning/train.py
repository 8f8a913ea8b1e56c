"""Train the learned SPECT mu-map on a population of virtual patients and write it as ONNX with
its model card.

Each patient of the population (``petdaq phantoms population --body torso``) gives one pair by
the fast path (:mod:`recon.learning.fastpath`, kept beside the patient for the next run); the
first ``--chain`` of them also one through the emulated chain (:mod:`recon.learning.chainpath`:
minutes a patient, the scan kept beside it), which counts :data:`CHAIN_REPEAT` times in each
epoch; the last ``--held-out`` patients are kept out of training for the loss curve. The network
(:mod:`recon.learning.unet`) learns each transaxial slice's map (1/cm) from the image without
correction by Adam on the mean absolute error; shuffling and the initial weights come from
``--seed`` (as does the fast path's noise).

Run: ``python -m recon.learning.train POPULATION [--n 150] [--chain 0] [--epochs 8] [--seed 7]
[--camera spect-general] [--out spect-general.onnx]``; the card is ``<out>.md``, the loss
curve ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.scanner import load_scanner
from infra.errors import UserError
from recon.learning import chainpath, fastpath
from recon.spect import learnedmap
from recon.validation.runs import patients
from recon.validation.spectruns import windows_of

#: The model's version, written in its metadata and the outputs that use it.
VERSION = "2"
#: An emulated chain's pair counts this many times in each epoch (they are few and the ones
#: a scan's image is like).
CHAIN_REPEAT = 3


@dataclass(frozen=True)
class TrainSettings:
    """The training run's settings, typed at the command's door."""

    population: Path
    n: int = 150
    chain: int = 0
    held_out: int = 10
    epochs: int = 8
    seed: int = 7
    camera: str = "spect-general"
    width: int = 8
    levels: int = 3
    batch: int = 16
    learning_rate: float = 1e-3
    out: Path = Path("spect-general.onnx")


@dataclass
class Curve:
    """The loss (mean absolute error, 1/cm) after each epoch on the training and held-out
    slices, and the seconds each took."""

    train: list[float] = field(default_factory=list)
    held_out: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def slices(pairs: list[fastpath.Pair]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [slice, channel, x, y], targets [slice, 1, x, y] in 1/cm) of the slices that
    hold some body."""
    xs, ys = [], []
    for p in pairs:
        x = learnedmap.features(p.without_attenuation)
        y = (p.mu_per_mm / learnedmap.PER_CM_IN_PER_MM).transpose(2, 0, 1)[:, None]
        keep = y.reshape(len(y), -1).max(axis=1) > 0
        xs.append(x[keep])
        ys.append(y[keep].astype(np.float32))
    return np.concatenate(xs), np.concatenate(ys)


def train(s: TrainSettings, say=print) -> tuple[list, Curve]:
    """The trained parameters and the loss curve."""
    import jax
    import jax.numpy as jnp
    import optax

    from recon.learning import unet

    scanner = load_scanner(s.camera)
    energy = float(np.mean(windows_of(scanner).peak))
    folders = patients(s.population, s.n + s.held_out)
    if len(folders) < s.n + s.held_out or s.n < 1:
        raise UserError(f"{s.population} holds {len(folders)} patients; training asks "
                        f"{s.n} + {s.held_out} held out")
    if not 0 <= s.chain <= s.n:
        raise UserError(f"--chain {s.chain}: between 0 and --n ({s.n}) patients")
    t0 = time.perf_counter()
    pairs = []
    for i, folder in enumerate(folders):
        pairs.append(fastpath.cached_pair(folder, scanner, energy, s.seed))
        say(f"fast path: {i + 1}/{len(folders)} patients, "
            f"{time.perf_counter() - t0:.0f} s elapsed", end="\r")
    say("")
    chain = []
    for i, folder in enumerate(folders[:s.chain]):
        say(f"emulated chain: {i + 1}/{s.chain} patients (a scan not kept yet: minutes), "
            f"{time.perf_counter() - t0:.0f} s elapsed", end="\r")
        chain.append(chainpath.pair(folder, scanner, energy))
    say("")
    x_fast, y_fast = slices(pairs[:s.n])
    x_chain, y_chain = slices(chain) if chain else (x_fast[:0], y_fast[:0])
    x_train, y_train = np.concatenate([x_fast, x_chain]), np.concatenate([y_fast, y_chain])
    index = np.concatenate([np.arange(len(x_fast)),
                            np.repeat(np.arange(len(x_fast), len(x_train)), CHAIN_REPEAT)])
    del x_fast, y_fast, x_chain, y_chain
    x_held, y_held = slices(pairs[s.n:])
    shape = unet.Shape(x_train.shape[1], s.width, s.levels)
    params = unet.init(shape, jax.random.PRNGKey(s.seed))
    optimiser = optax.adam(optax.cosine_decay_schedule(
        s.learning_rate, s.epochs * max(len(index) // s.batch, 1)))
    state = optimiser.init(params)

    def loss(p, x, y):
        return jnp.mean(jnp.abs(unet.apply(p, x, s.levels) - y))

    @jax.jit
    def step(p, st, x, y):
        value, grads = jax.value_and_grad(loss)(p, x, y)
        updates, st = optimiser.update(grads, st, p)
        return optax.apply_updates(p, updates), st, value

    evaluate = jax.jit(loss)
    rng = np.random.default_rng(s.seed)
    curve = Curve()
    for epoch in range(s.epochs):
        t = time.perf_counter()
        order = rng.permutation(index)
        batches = [order[k:k + s.batch] for k in range(0, len(order) - s.batch + 1, s.batch)]
        total = 0.0
        for b in batches:
            params, state, value = step(params, state, x_train[b], y_train[b])
            total += float(value)
        held = float(np.mean([evaluate(params, x_held[k:k + 64], y_held[k:k + 64])
                              for k in range(0, len(x_held), 64)]))
        curve.train.append(total / max(len(batches), 1))
        curve.held_out.append(held)
        curve.seconds.append(time.perf_counter() - t)
        say(f"epoch {epoch + 1}/{s.epochs}: train {curve.train[-1]:.4f} 1/cm, held out "
            f"{held:.4f} 1/cm, {curve.seconds[-1]:.0f} s")
    return params, curve


def metadata(s: TrainSettings, scanner_name: str) -> dict[str, object]:
    """The model's metadata (see :func:`recon.spect.learnedmap.load`)."""
    from recon.grid import default_grid

    scanner = load_scanner(scanner_name)
    grid = default_grid(scanner)
    return {"camera": scanner_name, "version": VERSION,
            "energy_kev": float(np.mean(windows_of(scanner).peak)),
            "grid_shape": list(grid.shape), "voxel_mm": list(grid.voxel_mm),
            "trained_on": f"{s.population.name}: {s.n} patients, seed {s.seed}, "
                          f"{s.epochs} epochs (fast path; emulated chain: {s.chain})"}


def card(s: TrainSettings, curve: Curve, size_bytes: int, n_params: int) -> str:
    """The model card (Markdown)."""
    rows = "\n".join(f"| {k + 1} | {a:.4f} | {b:.4f} | {t:.0f} |" for k, (a, b, t) in
                     enumerate(zip(curve.train, curve.held_out, curve.seconds, strict=True)))
    return f"""# Learned mu-map model: {s.camera}, version {VERSION}

- **Task**: the mu-map (1/cm at the photopeak) of a SPECT scan without a CT, slice by slice,
  from the OSEM image without attenuation correction ({learnedmap.CONTEXT_SLICES} neighbouring
  slices, each image scaled by its {learnedmap.SCALE_PERCENTILE}th percentile and
  square-rooted).
- **Network**: 2-D U-Net, {s.levels} levels below the first, first width {s.width},
  {n_params} parameters, ONNX {size_bytes / 1e6:.2f} MB.
- **Data**: population `{s.population.name}`, {s.n} patients for training and {s.held_out}
  held out for the curve; pairs by the fast path (the reconstruction's projector with the
  patient's true map, collimator blur, the energy windows' scatter by the camera's fitted model
  (`recon/learning/scatter/{s.camera}.json`), Poisson noise at
  {fastpath.COUNTS_RANGE[0]:.0e}-{fastpath.COUNTS_RANGE[1]:.0e} photopeak counts, TEW);
  the first {s.chain} of them also through the emulated chain (Tc-99m,
  {chainpath.ACTIVITY_MBQ:g} MBq, {chainpath.SECONDS:g} s: Compton scatter, the camera's windows,
  TEW), each counted {CHAIN_REPEAT} times an epoch.
- **Training**: Adam, cosine decay from {s.learning_rate:g}, batch {s.batch}, {s.epochs}
  epochs, seed {s.seed}; `python -m recon.learning.train {s.population.name} --n {s.n}
  --chain {s.chain} --held-out {s.held_out} --epochs {s.epochs} --seed {s.seed} --camera {s.camera}`.
- **Figures on the emulated chain's images**: docs/cardiac.md
  (`python -m recon.validation.learnedmap`).

| epoch | train MAE (1/cm) | held-out MAE (1/cm) | s |
|---|---|---|---|
{rows}
"""


def parse(argv: list[str] | None) -> TrainSettings:
    p = argparse.ArgumentParser(prog="python -m recon.learning.train",
                                description=__doc__.splitlines()[0])
    d = TrainSettings(Path("."))
    p.add_argument("population", type=Path, help="a folder of petdaq phantoms population")
    p.add_argument("--n", type=int, default=d.n, help="patients to train on")
    p.add_argument("--chain", type=int, default=d.chain,
                   help="the first of them also through the emulated chain (minutes each)")
    p.add_argument("--held-out", type=int, default=d.held_out,
                   help="the population's next patients, for the loss curve")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--camera", default=d.camera)
    p.add_argument("--width", type=int, default=d.width, help="first level's channels")
    p.add_argument("--levels", type=int, default=d.levels)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--out", type=Path, default=None, help="the model (default <camera>.onnx)")
    a = p.parse_args(argv)
    if not a.population.is_dir():
        p.error(f"{a.population}: no such population folder")
    return TrainSettings(a.population, a.n, a.chain, a.held_out, a.epochs, a.seed, a.camera, a.width,
                         a.levels, a.batch, a.learning_rate,
                         a.out or Path(f"{a.camera}.onnx"))


def main(argv: list[str] | None = None) -> int:
    from recon.learning import onnxgraph

    s = parse(argv)
    try:
        params, curve = train(s, lambda *a, **k: print(*a, **k, flush=True))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    blob = onnxgraph.graph_bytes(params, s.levels, metadata(s, s.camera))
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_bytes(blob)
    n_params = int(sum(np.asarray(w).size + np.asarray(b).size for w, b in params))
    s.out.with_suffix(".md").write_text(card(s, curve, len(blob), n_params))
    s.out.with_suffix(".json").write_text(json.dumps(
        {"train_mae_per_cm": curve.train, "held_out_mae_per_cm": curve.held_out,
         "seconds": curve.seconds}, indent=1) + "\n")
    print(f"{s.out}: {len(blob) / 1e6:.2f} MB, held-out MAE {curve.held_out[-1]:.4f} 1/cm; "
          f"card {s.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
