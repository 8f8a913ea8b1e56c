"""``petdaq import``: other digitizers' and simulators' files (ABCD, PETsys, CoMPASS, GATE) into a
run."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from daq.pipeline.digitizers.importer import (
    ImportSettings,
    SourceCalibration,
    check_files,
    import_into,
    keep_sources,
    map_file_of,
)
from daq.pipeline.digitizers.pairs import POLICY as PAIRS_POLICY
from hw import channelmap, formats
from hw.formats import gate
from hw.formats.petsys_layout import LAYOUTS
from hw.formats.records import GROUP_RULES
from hw.scanner import Scanner, load_scanner
from infra.atomic import replacing
from infra.errors import UserError
from infra.progress import Progress
from petdaq.options import (
    add_digitizer_options,
    add_out_options,
    add_sort_options,
    digitizer_settings,
    sort_settings,
)
from petdaq.summary import finish_records_run
from runstore.listmode import read_listmode
from runstore.rundir import RunDir

#: Our coincidences against a GATE file's own.
GATE_COMPARISON = "gate_comparison.json"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``import``."""
    p = sub.add_parser("import", help="other digitizers' and simulators' event files (ABCD .ade, "
                                      "PETsys singles, groups or coincidences, CoMPASS .BIN, "
                                      "GATE ROOT singles or coincidences) into a run")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--format", required=True,
                   help=f"the files' format: {', '.join(sorted(formats.readers()))}")
    p.add_argument("--scanner", default="bedside-brain", help="scanner name or .toml")
    add_digitizer_options(p)
    p.add_argument("--gate-repeaters", default=None, metavar="R,M,S,C[,L]",
                   help="GATE 9 cylindricalPET: the copies of rsector, module, submodule, "
                        "crystal (and layer); the singles' volume IDs then place them "
                        "(default: the crystal nearest each single's position)")
    petsys = p.add_argument_group("PETsys files")
    petsys.add_argument("--layout", default=None, choices=LAYOUTS,
                        help="the files' layout (default: told from each file; binary or text "
                             "always is)")
    petsys.add_argument("--group", dest="group_rule", default="sum", choices=GROUP_RULES,
                        help="a group of hits as singles: its first hit with the group's summed "
                             "energy (sum, PETsys' convention), its first hit alone (first), "
                             "or every hit (all); default sum")
    petsys.add_argument("--resort", action="store_true",
                        help="coincidence files: sort their singles again with our sorter "
                             "(default: their own pairs are the run's prompts)")
    p.add_argument("--gate-coincidences", dest="gate_pairs", action="store_true",
                   help="GATE: the file's own Coincidences and delay trees as the run's prompts "
                        "and delayeds, even where it has singles (default: its singles, sorted "
                        "by our sorter and compared with GATE's)")
    p.add_argument("--no-recon", dest="recon", action="store_false")
    add_out_options(p)
    add_sort_options(p)
    p.set_defaults(func=cmd_import)


def _settings(args: argparse.Namespace) -> ImportSettings:
    if args.format not in formats.readers():
        raise UserError(f"unknown format {args.format!r}: choose one of "
                        f"{', '.join(sorted(formats.readers()))}")
    settings = digitizer_settings(args, args.format)
    given = [o for o, v in (("--layout", args.layout), ("--group", args.group_rule != "sum"),
                            ("--resort", args.resort)) if v]
    if given and args.format != "petsys":
        raise UserError(f"{', '.join(given)}: for --format petsys")
    if args.gate_pairs and args.format != "gate":
        raise UserError("--gate-coincidences: for --format gate")
    settings = replace(settings, layout=args.layout, group_rule=args.group_rule,
                       resort=args.resort, gate_pairs=args.gate_pairs)
    if args.gate_repeaters is None:
        return settings
    if args.format != "gate":
        raise UserError("--gate-repeaters is for --format gate")
    return replace(settings, gate_repeaters=gate.parse_repeaters(args.gate_repeaters))


def _map_file(args: argparse.Namespace, settings: ImportSettings, scanner: Scanner
              ) -> Path | None:
    """``--map`` (else the scanner's ``[readout] map``) read and checked now; None: the
    scanner's wiring (GATE: its singles' positions, or volume IDs, place them)."""
    if args.format == "gate":
        if settings.gate_repeaters is None and args.map is not None:
            raise UserError("GATE singles are placed on the crystal nearest their position: "
                            "leave out --map (a map takes --gate-repeaters' volume IDs)")
        if settings.gate_repeaters is None:
            return None
        if args.map is None:
            channelmap.gate_ids(scanner, settings.gate_repeaters)
            return None
    map_file = map_file_of(args.map, scanner)
    if map_file is not None:
        channelmap.load(map_file, scanner)
    return map_file


def cmd_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    scanner = load_scanner(args.scanner)
    map_file = _map_file(args, settings, scanner)
    sort = sort_settings(args)
    sort.resolved(scanner)
    check_files(args.files, settings, scanner)
    run = RunDir.create(args.out, args.name)
    try:
        kept, named = keep_sources(run.path, args.files, map_file)
        progress = Progress(f"import {run.path.name}", unit="records")
        result = import_into(run, kept, settings, scanner, named, sort, progress.update)
        progress.close(result["counts"]["records"])
    except UserError as exc:
        shutil.rmtree(run.path, ignore_errors=True)  # nothing written half
        said = str(exc)
        for copy, given in zip(kept, args.files, strict=True):  # the user's file, not our copy
            said = said.replace(str(copy), str(given))
        raise UserError(said) from None
    except OSError:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    if settings.format == "gate" and result["settings"].get("policy") != PAIRS_POLICY:
        _compare_with_gate(run, kept, scanner)  # sorted from its singles: against GATE's own
    _say_units(result, settings, scanner)
    return finish_records_run(run, scanner, result, args.recon)


#: The medians of pairs' energies (keV) that read as keV: a photopeak's sides and their scatter.
KEV_MEDIAN_RANGE = (200.0, 1000.0)


def _say_units(result: dict, settings: ImportSettings, scanner: Scanner) -> None:
    """One line where imported pairs' energies, not calibrated, do not read as keV."""
    median = result.get("energy_median")
    calibrated = (settings.kev_per_unit is not None
                  or SourceCalibration.of(settings, scanner).units is not None)
    if median is not None and not calibrated and not (
            KEV_MEDIAN_RANGE[0] <= median <= KEV_MEDIAN_RANGE[1]):
        print(f"note     the pairs' energies do not read as keV (median {median:.4g}): the "
              "file's own units, not calibrated; the pairs are kept as the file chose them "
              "(--kev-per-unit or petdaq calibrate to read them in keV)")


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
