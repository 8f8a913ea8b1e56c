"""``petdaq phantoms``: list the built-in phantoms, write one as a phantom file, show a phantom, draw
a population of virtual patients.

Every user mistake raises :class:`infra.errors.UserError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emulator import phantoms
from emulator.phantoms.io.writer import write_shapes, write_voxels
from emulator.phantoms.kinetic import painted_volumes_ml
from emulator.phantoms.model import Phantom
from emulator.phantoms.rasterize import VOXEL_MM
from hw.scanner import load_scanner
from infra.errors import UserError, make_folder
from infra.progress import Progress


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``phantoms`` and its sub-commands."""
    p = sub.add_parser("phantoms", help="phantom files: write a built-in phantom as one, show "
                       "one, draw a population of virtual patients (docs/phantoms.md)")
    inner = p.add_subparsers(dest="phantoms_command", metavar="ACTION")
    q = inner.add_parser("list", help="the built-in phantoms")
    q.add_argument("--scanner", default="bedside-brain", help="the scanner they are sized to")
    q.set_defaults(func=cmd_list)

    q = inner.add_parser("write", help="a built-in phantom as a phantom file (voxels by "
                         "default: activity, density and labels NIfTI beside phantom.toml)")
    q.add_argument("name", help="a built-in phantom (petdaq phantoms list)")
    q.add_argument("--out", type=Path, required=True, help="the folder to write (made)")
    q.add_argument("--scanner", default="bedside-brain", help="the scanner it is sized to")
    q.add_argument("--voxel-mm", type=float, default=VOXEL_MM, help="voxel edge (mm)")
    q.add_argument("--shapes", action="store_true", help="write its shapes (TOML alone), "
                   "not voxels")
    q.set_defaults(func=cmd_write)

    q = inner.add_parser("show", help="a phantom's summary, and a picture of three orthogonal "
                         "slices of its activity and density")
    q.add_argument("phantom", help="a phantom file (FILE.toml or its folder) or a built-in name")
    q.add_argument("--scanner", default=None,
                   help="check it fits this scanner's bore (a built-in phantom is sized to "
                        "it; default bedside-brain for those)")
    q.add_argument("--picture", type=Path, default=None,
                   help="the PNG to write (default: beside the file, phantom.png; a built-in "
                        "phantom: NAME.png here)")
    q.set_defaults(func=cmd_show)

    q = inner.add_parser("population", help="N virtual patients as voxel phantom files, and "
                         "population.csv of their parameters, reproducible from the seed")
    q.add_argument("--body", choices=("torso", "head"), required=True)
    q.add_argument("--n", type=int, required=True, help="how many patients")
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--out", type=Path, required=True, help="the folder (made; one folder a "
                   "patient, NAME/phantom.toml)")
    q.add_argument("--voxel-mm", type=float, default=None,
                   help="voxel edge (mm; default 3 for a torso, 2 for a head)")
    q.add_argument("--quiet", action="store_true", help="no progress line")
    q.set_defaults(func=cmd_population)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_list(args: argparse.Namespace) -> int:
    scanner = load_scanner(args.scanner)
    for name in phantoms.names():
        print(f"{name:12s} {phantoms.get(name, scanner).description}")
    return 0


def cmd_write(args: argparse.Namespace) -> int:
    if phantoms.is_file(args.name):
        raise UserError(f"{args.name} is a phantom file already: petdaq phantoms write takes a "
                        f"built-in phantom ({', '.join(phantoms.names())})")
    if not (np.isfinite(args.voxel_mm) and 0.2 <= args.voxel_mm <= 20):
        raise UserError(f"--voxel-mm must be from 0.2 to 20 mm, got {args.voxel_mm:g}")
    scanner = load_scanner(args.scanner)
    phantom = phantoms.get(args.name, scanner)
    if phantom.blank:
        raise UserError("the blank phantom holds nothing to write")
    make_folder(args.out)
    path = (write_shapes(phantom, args.out) if args.shapes
            else write_voxels(phantom, args.out, args.voxel_mm))
    print(f"{path} ({'shapes' if args.shapes else f'voxels of {args.voxel_mm:g} mm'}, "
          f"{phantom.name} sized for {scanner.name})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from recon.outputs.phantomview import write_picture

    if phantoms.is_file(args.phantom) and args.scanner is None:
        phantom = phantoms.read(args.phantom)   # no scanner named: no bore to fit
    else:
        phantom = phantoms.get(args.phantom, load_scanner(args.scanner or "bedside-brain"))
    if phantom.blank:
        raise UserError("the blank phantom holds nothing to show")
    for line in summary(phantom):
        print(line)
    picture = args.picture or (Path(phantom.source).with_name("phantom.png") if phantom.source
                               else Path(f"{phantom.name}.png"))
    print(f"picture  {write_picture(phantom, picture)} (activity above, density below: axial, "
          f"coronal, sagittal)")
    return 0


def _regions(phantom: Phantom) -> list[tuple[str, float, float, float]]:
    """(name, volume mL, mean activity, mean density) of each region or label."""
    v = phantom.volume
    if v is not None:
        if v.labels is None:
            return []
        out = []
        for k, name in sorted(v.label_names.items()):
            inside = v.labels == k
            if inside.any():
                out.append((name, float(inside.sum()) * v.voxel_ml,
                            float(v.activity[inside].mean()), float(v.density[inside].mean())))
        return out
    named = [r for r in phantom.parts if r.activity is not None]
    volumes = painted_volumes_ml(phantom.parts, {r.name: k + 1 for k, r in enumerate(named)})
    return [(r.name, float(volumes[k + 1]), r.activity, r.density if r.density is not None
             else float("nan")) for k, r in enumerate(named)]


def summary(phantom: Phantom) -> list[str]:
    """A phantom in a few lines."""
    lines = [f"phantom  {phantom.name}" + (f" ({phantom.source})" if phantom.source else
                                            " (built in)"),
             f"         {phantom.description}"]
    v = phantom.volume
    if v is not None:
        lo, hi = v.box_mm()
        turned = not np.allclose(np.abs(v.affine[:3, :3]), np.diag(v.voxel_mm), atol=1e-6)
        lines.append(f"voxels   {' x '.join(map(str, v.shape))} of "
                     f"{' x '.join(f'{e:.2f}' for e in v.voxel_mm)} mm"
                     f"{' (turned)' if turned else ''}, box "
                     + ", ".join(f"{a} {lo[k]:.0f}..{hi[k]:.0f}" for k, a in enumerate("xyz"))
                     + " mm")
    else:
        lines.append(f"shapes   {len(phantom.parts)} regions, {len(phantom.sources)} sources")
    units = (f"Bq/mL, {phantom.activity_mbq:.4g} MBq in all" if phantom.activity_mbq
             is not None else "relative (the scan's --activity-mbq sets the total)")
    lines.append(f"activity {units}" + (f"; body part {phantom.body_part}" if phantom.body_part
                                          else "") + ("; kinetic" if phantom.kinetics else ""))
    regions = _regions(phantom)
    if regions:
        lines.append(f"regions  {'name':20s} {'mL':>9s} {'activity':>10s} {'density':>8s}")
        lines += [f"         {n:20s} {ml:9.1f} {a:10.4g} {d:8.3f}" for n, ml, a, d in regions]
    t = phantom.truth
    if t is not None and t.lv_axis is not None:
        lines.append(f"truth    LV apex {tuple(round(c, 1) for c in t.lv_axis.apex_mm)} mm, base "
                     f"{tuple(round(c, 1) for c in t.lv_axis.base_mm)} mm")
    if t is not None and t.defect is not None:
        d = t.defect
        lines.append(f"truth    defect {d.territory}, {d.extent_percent:.1f} % of the LV, "
                     f"severity {d.severity:.2f}, segments {sorted(d.segments)}")
    return lines


def cmd_population(args: argparse.Namespace) -> int:
    from emulator.population import draw

    if not 1 <= args.n <= 100_000:
        raise UserError(f"--n must be from 1 to 100000, got {args.n}")
    voxel = args.voxel_mm if args.voxel_mm is not None else draw.DEFAULT_VOXEL_MM[args.body]
    if not (np.isfinite(voxel) and 1.0 <= voxel <= 8.0):
        raise UserError(f"--voxel-mm must be from 1 to 8 mm, got {voxel:g}")
    make_folder(args.out)
    progress = Progress(f"population {args.body}", total=args.n, unit="patients",
                        enabled=not args.quiet)
    csv = draw.population(args.body, args.n, args.seed, args.out, voxel,
                          on_patient=lambda k: progress.update(k, ""))
    progress.close(args.n, f"{csv}")
    print(f"{args.n} {args.body} phantoms in {args.out}, parameters in {csv}",
          file=sys.stderr)
    return 0
