"""Bad command-line values: one ``petdaq: error:`` line, exit status 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from petdaq.cli import main


def _petdaq(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    return status, capsys.readouterr().err.strip()


@pytest.mark.parametrize(("argv", "said"), [
    (["acquire", "--from", "tcp://127.0.0.1:5999", "--duration", "-5"],
     "--duration must be a finite number of seconds > 0, got -5.0"),
    (["acquire", "--from", "tcp://127.0.0.1:5999", "--duration", "nan"],
     "--duration must be a finite number of seconds > 0, got nan"),
    (["acquire", "--from", "tcp://127.0.0.1:5999", "--monitor-port", "99999"],
     "--monitor-port 99999: a TCP port is 1 to 65535"),
    (["acquire", "--from", "tcp://127.0.0.1:5999", "--recon-interval", "0"],
     "--recon-interval must be a finite number of seconds > 0"),
    (["run", "--activity-mbq", "nan"], "--activity-mbq must be a finite number of MBq > 0"),
    (["run", "--duration", "inf"], "--duration must be a finite number of seconds > 0"),
    (["run", "--phantom", "nope"], "unknown phantom 'nope': known phantoms are point"),
    (["run", "--nuclide", "Xx-1"], "unknown nuclide 'Xx-1': known nuclides are F-18"),
    (["run", "--weight-kg", "-70"], "weight_kg must be a number from 0.1 to 500"),
    (["run", "--injection-time", "yesterday"], "not an ISO 8601 time: 'yesterday'"),
    (["run", "--kinetic-time-scale", "0"], "kinetic_time_scale must be a finite number > 0"),
    (["run", "--phantom", "brain-fdg", "--injection-time", "2026-11-24T09:00:00Z"],
     "phantom brain-fdg is injected with its --activity-mbq at the scan's start"),
    (["acquire", "--from", "tcp://127.0.0.1:5999", "--patient-id", "a b"], "patient id must be"),
    (["run", "--frames", "4x5s"], "end at 20 s of acquisition but the scan lasts 10 s"),
    (["run", "--frames", "4xten"], "'4xten' is not COUNTxDURATION"),
    (["run", "--sphere", "a:0,0,0,10"], "--sphere gives the live curves' regions: it needs"),
    (["run", "--frames", "2x1s", "--sphere", "a:0,0"], "give NAME:X,Y,Z,R in mm"),
    (["run", "--scanner", "spect-dual-head", "--frames", "2x1s"], "live frames need a PET"),
    (["acquire", "--from", "tcp://127.0.0.1:5999", "--frames", "2x5s"],
     "live frames of detectors need regions for their curves: give --sphere"),
    (["run", "--scanner", "spect-dual-head", "--photopeaks-kev", "-5"],
     "--photopeaks-kev must be a finite number of keV > 0, got -5.0"),
    (["run", "--scanner", "spect-dual-head", "--photopeaks-kev", "140", "150"],
     "photopeak windows overlap"),
    (["run", "--scanner", "spect-dual-head", "--nuclide", "F-18"], "F-18 has no gamma line"),
    (["acquire", "--from", "tcp://127.0.0.1:5999", "--scanner", "spect-dual-head",
      "--duration", "10", "--photopeaks-kev", "140", "150"], "photopeak windows overlap"),
    (["serve", "--control-port", "0"], "--control-port 0: a TCP port is 1 to 65535"),
    (["emulate", "--to", "tcp://127.0.0.1:99999"], "a TCP port is 1 to 65535"),
    (["emulate", "--to", "tcp://127.0.0.1:65534"], "the 4 boards take ports 65534 to 65537"),
    (["emulate", "--to", "udp://127.0.0.1:5000"], "unknown scheme"),
])
def test_a_bad_value_is_refused_before_anything_is_created(capsys, tmp_path: Path, argv,
                                                           said) -> None:
    out = tmp_path / "runs"
    extra = ["--out", str(out)] if argv[0] in ("acquire", "run", "serve") else []
    status, err = _petdaq(capsys, *argv, *extra)
    assert status == 2 and err.startswith("petdaq: error: ") and said in err, err
    assert "\n" not in err and not out.exists()


def test_a_file_that_is_not_a_frames_file_is_refused(capsys, tmp_path: Path) -> None:
    text = tmp_path / "notes.frames"
    text.write_text("these are not frames\n" * 100)
    status, err = _petdaq(capsys, "acquire", "--from", str(text), "--out", str(tmp_path / "r"))
    assert status == 2 and "is not a frames file: no intact frame" in err
    assert not (tmp_path / "r").exists()


def test_replay_and_recover_refuse_a_run_without_a_usable_journal(capsys, tmp_path: Path) -> None:
    from runstore.rundir import RunDir

    run = RunDir.create(tmp_path, "run")
    run.new_start("bedside-brain", "d", {}, {})
    status, err = _petdaq(capsys, "replay", str(run.path))
    assert status == 2 and err == f"petdaq: error: {run.path} has no journal to replay"
    run.journal.write_bytes(bytes(range(256)) * 400)  # no block of a journal in it
    for command in ("replay", "recover"):
        status, err = _petdaq(capsys, command, str(run.path))
        assert status == 2 and "holds no intact journal block" in err, err
    assert not list(run.path.glob("replay-*"))  # no replay folder made


def test_a_scanner_file_that_is_not_text_is_refused(capsys, tmp_path: Path) -> None:
    binary = tmp_path / "scanner.toml"
    binary.write_bytes(bytes(range(128, 256)) * 20)
    status, err = _petdaq(capsys, "scanners", "show", str(binary))
    assert status == 2 and err == f"petdaq: error: scanner file {binary} is not text (a TOML " \
                                  "definition is UTF-8 text)"


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """``petdaq scanners show NAME --crystals | head -1``: the pipe closes under a long
    output; petdaq ends quietly."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "petdaq", "scanners", "show", "bedside-brain",
                          "--crystals"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().startswith(b"crystal,board")
    p.stdout.close()
    assert p.wait(timeout=60) == 0
    assert p.stderr.read() == b""


def test_each_command_is_registered_by_its_group_alone() -> None:
    """The table of groups names every sub-command once; a command's parser is its group's
    alone, with the options the full parser gives it; an unknown one gets the full list."""
    from petdaq.cli import GROUPS, build_parser

    def commands(parser) -> dict:
        (sub,) = [a for a in parser._actions if a.dest == "command"]
        return sub.choices

    full = commands(build_parser())
    named = [c for _, names in GROUPS for c in names]
    assert list(full) == named
    for group, names in GROUPS:
        for name in names:
            alone = commands(build_parser(name))
            assert list(alone) == list(names), group
            assert alone[name].format_help() == full[name].format_help()
    assert list(commands(build_parser("bogus"))) == named


def test_a_command_starts_without_the_other_commands_modules() -> None:
    """``petdaq emulate`` imports neither the run control nor the reconstruction's commands."""
    import subprocess
    import sys

    code = ("import sys; from petdaq.cli import build_parser; build_parser('emulate'); "
            "print(sorted(m for m in ('daq.control.runcontrol', 'petdaq.images.recon', "
            "'petdaq.acquisition.acquire') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       check=True)
    assert r.stdout.strip() == "[]", r.stdout
