"""DICOM TLS and Storage Commitment against a real Orthanc: a run sent over TLS with the
station's certificate and committed by Orthanc's report on the station's own TLS listener; a
report that never comes is asked for again, and an instance the PACS lost is sent again; a plain
or untrusted peer is one line and loses nothing."""

from __future__ import annotations

import pytest
import test_dicom_send
from certs import authority, needs_openssl, signed
from orthanc import AE_TITLE, Orthanc, Tls, needs_orthanc
from test_dicom_send import STATION, _files, _held, _run, _worklist_entry, petdaq

from infra.ports import free_port_block

pytestmark = [needs_orthanc(), needs_openssl()]
home = test_dicom_send.home  # the same BEDSIDE_PET_HOME fixture


@pytest.fixture
def site(tmp_path):
    """The site's CA, Orthanc's certificate and the station's (in HOME/certs)."""
    ca = authority(tmp_path / "home" / "certs")
    return ca, signed(ca, "orthanc"), signed(ca, "station")


def _configure(home, server: Orthanc, tls: bool, commitment_port: int | None = None,
               ca: str = "certs/site-ca.crt", me: str = "station", extra: str = "") -> None:
    station = f'[station]\nae_title = "{STATION}"\n'
    if tls:
        station += (f'tls_cert = "certs/{me}.crt"\ntls_key = "certs/{me}.key"\n'
                    f'tls_ca = "{ca}"\n')
    if commitment_port:
        station += f"commitment_port = {commitment_port}\n"
    (home / "dicom.toml").write_text(
        f'{station}\n[[pacs]]\nname = "pacs"\nae_title = "{AE_TITLE}"\nhost = "127.0.0.1"\n'
        f'port = {server.dicom_port}\ntls = {"true" if tls else "false"}\n{extra}')


def test_a_run_sent_over_tls_is_committed_by_the_pacs(tmp_path, home, site):
    """Orthanc takes DICOM TLS only, with a certificate of the site's CA: the station's echo,
    worklist query and send go over TLS, and Orthanc's commitment report reaches the station's
    TLS listener."""
    ca, (cert, key), _ = site
    port = free_port_block(1)
    server = Orthanc(tmp_path / "orthanc", STATION, Tls(cert, key, ca), port).start()
    try:
        _configure(home, server, tls=True, commitment_port=port, extra=(
            f'\n[worklist]\nae_title = "{AE_TITLE}"\nhost = "127.0.0.1"\n'
            f"port = {server.dicom_port}\ntls = true\n"))
        r = petdaq(home, "send", "--echo")
        assert r.returncode == 0 and "TLS): C-ECHO ok" in r.stdout, r.stdout + r.stderr
        _worklist_entry(server.worklists, "ACC0042", "P0042", "20261126")
        r = petdaq(home, "worklist", "--date", "any")
        assert r.returncode == 0 and "ACC0042" in r.stdout, r.stdout + r.stderr
        run = _run(tmp_path)
        r = petdaq(home, "send", str(run))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "12 sent (12 committed), 0 queued, 0 failed" in r.stdout, r.stdout
        assert set(_held(server)) == set(_files(run))
        r = petdaq(home, "send", "--status")
        assert "   12        12      0      0" in r.stdout, r.stdout
    finally:
        server.stop()


def test_a_plain_or_untrusted_peer_is_one_line_and_keeps_the_queue(tmp_path, home, site):
    ca, (cert, key), _ = site
    server = Orthanc(tmp_path / "orthanc", STATION, Tls(cert, key, ca)).start()
    try:
        run = _run(tmp_path)
        _configure(home, server, tls=False)
        r = petdaq(home, "send", str(run))
        assert r.returncode == 1 and "does it take DICOM TLS only? then tls = true" in r.stdout
        stranger = authority(tmp_path / "home" / "certs", "stranger-ca")
        _configure(home, server, tls=True, ca="certs/stranger-ca.crt")
        r = petdaq(home, "send", "--flush")
        assert r.returncode == 1 and "certificate verify failed" in r.stdout, r.stdout
        signed(stranger, "outsider")  # a station Orthanc does not trust
        _configure(home, server, tls=True, me="outsider")
        r = petdaq(home, "send", "--flush")
        assert r.returncode == 1 and "unknown ca" in r.stdout, r.stdout
        assert server.get("/instances") == []
        _configure(home, server, tls=True)
        r = petdaq(home, "send", "--flush")
        assert r.returncode == 0 and "12 sent, 0 queued" in r.stdout, r.stdout + r.stderr
        assert set(_held(server)) == set(_files(run))
    finally:
        server.stop()


def test_no_report_is_asked_again_and_a_lost_instance_is_sent_again(tmp_path, home):
    """Orthanc's reports go to a dead port: the objects stay stored, awaiting commitment. The
    reports then reach the station, but the PACS lost one instance meanwhile: it fails the
    commitment, is queued, sent again, and committed."""
    port, dead = free_port_block(1), free_port_block(1)
    server = Orthanc(tmp_path / "orthanc", STATION, commitment_port=dead).start()
    try:
        _configure(home, server, tls=False, commitment_port=port,
                   extra="\n[send]\ncommit_wait_s = 2\n")
        run = _run(tmp_path)
        r = petdaq(home, "send", str(run))
        assert r.returncode == 1 and "12 sent (0 committed), 0 queued" in r.stdout, r.stdout
        assert "12 object(s) stored but not yet committed" in r.stdout
        r = petdaq(home, "send", "--status")
        assert "   12         0      0      0" in r.stdout and "no Storage Commitment report" \
            in r.stdout, r.stdout
        lost = sorted(_files(run))[3]
        server.delete(lost)
        server.set_commitment_port(STATION, port, tls=False)
        r = petdaq(home, "send", "--flush")
        assert r.returncode == 1 and "11 sent (11 committed), 1 queued" in r.stdout, r.stdout
        assert "not committed by the node (failure reason 0x0112)" in r.stdout
        r = petdaq(home, "send", "--flush")
        assert r.returncode == 0 and "12 sent (12 committed), 0 queued" in r.stdout, r.stdout
        assert set(_held(server)) == set(_files(run))
    finally:
        server.stop()


@pytest.mark.parametrize(("toml", "said"), [
    ('[station]\ncommitment_port = 11113\ncommitment_host = "0.0.0.0"\n',
     "station.commitment_host '0.0.0.0' listens beyond loopback: give station.tls_cert"),
    ('[[pacs]]\nname = "p"\nae_title = "P"\nhost = "h"\nport = 104\ntls = true\n',
     "p: tls = true needs station.tls_cert, tls_key and tls_ca"),
    ('[station]\ntls_cert = "a.crt"\ntls_key = "a.key"\n',
     "station.tls_ca is missing: TLS needs tls_cert, tls_key, tls_ca"),
    ('[station]\ntls_cert = "nowhere.crt"\ntls_key = "a.key"\ntls_ca = "ca.crt"\n',
     "station.tls_cert: no file"),
    ('[send]\ncommit_wait_s = -1\n', "send.commit_wait_s must be seconds from 0 to 600"),
])
def test_bad_tls_and_commitment_keys_are_one_line(home, capsys, toml, said):
    from petdaq.cli import main

    (home / "dicom.toml").write_text(toml)
    assert main(["send", "--echo"]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err
