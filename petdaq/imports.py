"""``petdaq import``: other digitizers' and simulators' files (ABCD, PETsys, CoMPASS, GATE) into a
run."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from daq.pipeline.importer import (
    ImportSettings,
    check_files,
    import_into,
    keep_sources,
)
from hw import channelmap, formats
from hw.formats import gate
from hw.scanner import Scanner, load_scanner
from infra.atomic import replacing
from infra.errors import UserError
from infra.progress import Progress
from petdaq.commands import (
    add_digitizer_options,
    add_out_options,
    add_sort_options,
    digitizer_settings,
    finish_records_run,
    sort_settings,
)
from runstore.listmode import read_listmode
from runstore.rundir import RunDir

#: Our coincidences against a GATE file's own.
GATE_COMPARISON = "gate_comparison.json"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``import``."""
    p = sub.add_parser("import", help="other digitizers' and simulators' event files (ABCD .ade, "
                                      "PETsys singles, CoMPASS .BIN, GATE ROOT) into a run")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--format", required=True,
                   help=f"the files' format: {', '.join(sorted(formats.readers()))}")
    p.add_argument("--scanner", default="bedside-brain", help="scanner name or .toml")
    add_digitizer_options(p)
    p.add_argument("--no-recon", dest="recon", action="store_false")
    add_out_options(p)
    add_sort_options(p)
    p.set_defaults(func=cmd_import)


def _settings(args: argparse.Namespace) -> ImportSettings:
    if args.format not in formats.readers():
        raise UserError(f"unknown format {args.format!r}: choose one of "
                        f"{', '.join(sorted(formats.readers()))}")
    return digitizer_settings(args, args.format)


def _check_map(args: argparse.Namespace, scanner: Scanner) -> None:
    """``--map`` read and checked now (a simulation's singles are on crystals already)."""
    if args.format == "gate":
        if args.map is not None:
            raise UserError("GATE singles are placed on the scanner's crystals: leave out --map")
    elif args.map is not None:
        channelmap.load(args.map, scanner)


def cmd_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    scanner = load_scanner(args.scanner)
    _check_map(args, scanner)
    sort = sort_settings(args)
    sort.resolved(scanner)
    check_files(args.files, settings, scanner)
    run = RunDir.create(args.out, args.name)
    try:
        kept, named = keep_sources(run.path, args.files, args.map)
        progress = Progress(f"import {run.path.name}", unit="records")
        result = import_into(run, kept, settings, scanner, named, sort, progress.update)
        progress.close(result["counts"]["records"])
    except (UserError, OSError):
        shutil.rmtree(run.path, ignore_errors=True)  # nothing written half
        raise
    if settings.format == "gate":
        _compare_with_gate(run, kept, scanner)
    return finish_records_run(run, scanner, result, args.recon)


def _compare_with_gate(run: RunDir, files: list[Path], scanner: Scanner) -> None:
    """Where a GATE file has its own ``Coincidences``, how ours compare (printed, and kept in
    ``RUN/gate_comparison.json``): run with GATE's window and policy, they should match."""
    theirs = [c for c in (gate.coincidences(f, scanner.crystal_centres) for f in files)
              if c is not None]
    if not theirs:
        return
    found = gate.compare(read_listmode(run.listmode)[0], np.concatenate(theirs))
    with replacing(run.path / GATE_COMPARISON) as tmp:
        tmp.write_text(json.dumps(found, indent=2) + "\n")
    print(f"GATE's own coincidences {found['gate']}, ours {found['ours']} prompts, "
          f"{found['matched']} pairs in both")
