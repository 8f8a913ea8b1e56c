"""CURVE keys of the product's ZeroMQ links: a key folder, its identities, and sockets made secure.

A key folder (``petdaq keys DIR``) holds::

    server.key, server.key_secret      the identity of whatever binds (DAQ service, monitor, boards)
    clients/NAME.key, NAME.key_secret  identities made here for the peers that connect
    authorized/NAME.key                the public keys the binding side accepts

Files are ZeroMQ certificates (``zmq.auth``); secret ones are readable by their owner only. A
peer on another machine needs ``server.key`` and its own ``clients/NAME.key_secret``, in the
same layout. A socket that binds beyond loopback must have keys (:func:`needs_keys`): anyone
who reaches its port could otherwise drive the scanner, read its monitor or take its events.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from infra.errors import UserError

DEFAULT_CLIENT = "console"
DEFAULT_CLIENTS = ("console", "daq")
"""Identities ``petdaq keys`` makes: the console's (towards the DAQ) and the DAQ's (towards
boards that need keys)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class KeyFolder:
    """A key folder: where the server's identity, the clients' and the authorised keys are."""

    path: Path

    @property
    def server_secret(self) -> Path:
        return self.path / "server.key_secret"

    @property
    def server_public(self) -> Path:
        return self.path / "server.key"

    @property
    def authorized(self) -> Path:
        return self.path / "authorized"

    def client_secret(self, name: str) -> Path:
        return self.path / "clients" / f"{_checked_name(name)}.key_secret"

    def clients(self) -> list[str]:
        """Names of the authorised clients."""
        return sorted(p.stem for p in self.authorized.glob("*.key"))


def _checked_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UserError(f"key name {name!r}: use letters, digits, '_', '.', '-' (1-64)")
    return name


def create(path: str | Path, clients: list[str]) -> KeyFolder:
    """Make the folder's server identity (once) and a client identity, authorised, per name."""
    keys = KeyFolder(Path(path))
    keys.path.mkdir(parents=True, exist_ok=True)
    os.chmod(keys.path, 0o700)
    if not keys.server_secret.exists():
        zmq.auth.create_certificates(keys.path, "server")
    for name in clients:
        authorise(keys, name)
    for p in keys.path.rglob("*.key_secret"):
        os.chmod(p, 0o600)
    return keys


def authorise(keys: KeyFolder, name: str) -> Path:
    """A client identity ``name`` (made unless it exists), its public key authorised."""
    secret = keys.client_secret(name)
    secret.parent.mkdir(exist_ok=True)
    if not secret.exists():
        zmq.auth.create_certificates(secret.parent, name)
    keys.authorized.mkdir(exist_ok=True)
    shutil.copy(secret.with_suffix(".key"), keys.authorized / f"{name}.key")
    return secret


def open_folder(path: str | Path) -> KeyFolder:
    """An existing key folder, or a one-line error saying what is missing."""
    keys = KeyFolder(Path(path))
    if not keys.path.is_dir():
        raise UserError(f"key folder {path} does not exist (petdaq keys {path} makes one)")
    if not keys.server_public.is_file():
        raise UserError(f"key folder {path} has no server.key (petdaq keys {path} makes one)")
    return keys


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise UserError(f"key {path} does not exist (petdaq keys FOLDER --client NAME makes "
                        f"one)")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read key {path}: {exc}") from None
    if secret and not secret_key:
        raise UserError(f"{path} holds no secret key")
    return public, secret_key


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, ``localhost``, ``*`` or a name) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", 0.0.0.0, an interface or host name: beyond loopback


def needs_keys(host: str, keys: KeyFolder | None, what: str) -> None:
    """Refuse to bind ``what`` on ``host`` beyond loopback without keys."""
    if keys is None and not is_loopback(host):
        raise UserError(f"{what} on {host} is reachable from other machines: give --keys DIR "
                        f"(petdaq keys DIR makes one), or bind 127.0.0.1")


class Guard:
    """A ZeroMQ context of its own with a ZAP authenticator: the sockets made in
    :attr:`context` and :meth:`serve`-d accept only the folder's authorised keys (the
    authenticator governs its context only, so other sockets of the process are untouched)."""

    def __init__(self, keys: KeyFolder) -> None:
        self.keys = keys
        self.public, self.secret = _load(keys.server_secret, secret=True)
        if not keys.clients():
            raise UserError(f"key folder {keys.path} authorises no client "
                            f"(petdaq keys {keys.path} --client NAME)")
        self.context = zmq.Context()
        self._auth = ThreadAuthenticator(self.context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(keys.authorized))

    def serve(self, sock: zmq.Socket) -> zmq.Socket:
        """Make ``sock`` (before it binds) a CURVE server."""
        sock.curve_secretkey, sock.curve_publickey = self.secret, self.public
        sock.curve_server = True
        return sock

    def close(self) -> None:
        """Stop the authenticator and end the context (its sockets closed first)."""
        self._auth.stop()
        self.context.term()


Secure = Callable[[zmq.Socket], zmq.Socket]
"""What makes a socket a CURVE client before it connects (:func:`client`)."""


def client(path: str | Path, name: str = DEFAULT_CLIENT) -> Secure:
    """The identity ``name`` of key folder ``path`` (checked now, with a one-line error), as a
    function that makes a socket, before it connects, a CURVE client of the folder's server."""
    keys = open_folder(path)
    public, secret = _load(keys.client_secret(name), secret=True)
    server = _load(keys.server_public, secret=False)[0]

    def secure(sock: zmq.Socket) -> zmq.Socket:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server
        return sock

    return secure
