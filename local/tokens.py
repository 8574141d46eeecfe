"""A local token issuer: a test RSA key, its certificate served on loopback, and minted tokens.

Stands in for Firebase Auth and Google's OIDC issuer in the local stack and in tests, so the same
google-auth verification code runs with no network: point `FIREBASE_CERTS_URL` and
`GOOGLE_CERTS_URL` at `issuer.certs_url`.

Separate processes share one issuer through a key file (JSON: key id, private key PEM, certificate
PEM; mode 0600): the local stack creates it with `TokenIssuer(key_file=path)` and serves the
certificate; the operator CLI and the local Cloud Tasks path (`LOCAL_TOKEN_KEY_FILE`) load it with
`serve=False` and only mint. The key is a throwaway made on this machine and never leaves it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

KEY_ID = "local-test-key"


def _make_key_and_cert() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cvplus-local-issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def save_key_file(path: Path, key_pem: bytes, cert_pem: bytes) -> None:
    """Write the issuer's key material, readable by this user only (written whole, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"keyId": KEY_ID, "privateKeyPem": key_pem.decode(), "certificatePem": cert_pem.decode()}
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out)
    os.replace(partial, path)


def load_key_file(path: Path) -> tuple[bytes, bytes]:
    """(private key PEM, certificate PEM) from a key file written by `save_key_file`."""
    try:
        body = json.loads(Path(path).read_text())
        return body["privateKeyPem"].encode(), body["certificatePem"].encode()
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path} is not a local token key file ({type(exc).__name__})") from None


class TokenIssuer:
    """Mints RS256 ID tokens and (unless `serve=False`) serves the certificate map on 127.0.0.1.

    With `key_file`, the key is loaded from that file, or made and saved there when it is missing.
    """

    def __init__(self, key_file: Path | None = None, *, serve: bool = True) -> None:
        if key_file is not None and Path(key_file).is_file():
            key_pem, cert_pem = load_key_file(Path(key_file))
        else:
            key_pem, cert_pem = _make_key_and_cert()
            if key_file is not None:
                save_key_file(Path(key_file), key_pem, cert_pem)
        self.key_file = key_file
        self.signer = crypt.RSASigner.from_string(key_pem, KEY_ID)
        self.server: ThreadingHTTPServer | None = None
        self.certs_url: str | None = None
        if serve:
            self._serve(json.dumps({KEY_ID: cert_pem.decode()}).encode())

    def _serve(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.certs_url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _mint(self, claims: dict, lifetime_s: int) -> str:
        now = int(time.time())
        payload = {"iat": now, "exp": now + lifetime_s, **claims}
        return jwt.encode(self.signer, payload).decode()

    def user_token(self, uid: str, project: str, *, lifetime_s: int = 3600, **extra: object) -> str:
        """A Firebase ID token for `uid` in `project`."""
        claims = {
            "iss": f"https://securetoken.google.com/{project}",
            "aud": project,
            "sub": uid,
            "user_id": uid,
            "auth_time": int(time.time()),
            **extra,
        }
        return self._mint(claims, lifetime_s)

    def service_token(self, email: str, audience: str, *, lifetime_s: int = 3600, **extra: object) -> str:
        """A Google OIDC token for a service account, minted for `audience` (a function URL)."""
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "sub": "1" + str(abs(hash(email)))[:20],
            "email": email,
            "email_verified": True,
            **extra,
        }
        return self._mint(claims, lifetime_s)


@functools.lru_cache(maxsize=4)
def _minting_issuer(path: str, mtime_ns: int) -> TokenIssuer:
    return TokenIssuer(Path(path), serve=False)


def task_auth_headers(settings: Any) -> Callable[[str], dict[str, str]] | None:
    """With a Cloud Tasks emulator and a local key file: the `Authorization` header Cloud Tasks would
    send to a task's URL (an OIDC token of TASKS_SERVICE_ACCOUNT), which the emulator does not add."""
    if not (settings.tasks_emulator_host and settings.local_token_key_file):
        return None
    account = settings.require("tasks_service_account")

    def headers(url: str) -> dict[str, str]:
        audience = url.split("?", 1)[0]
        token = service_token_from_key_file(settings.local_token_key_file, account, audience)
        return {"Authorization": f"Bearer {token}"}

    return headers


def service_token_from_key_file(key_file: str | Path, email: str, audience: str) -> str:
    """A service-account OIDC token signed with the key in `key_file` (local stack only)."""
    path = Path(key_file)
    if not path.is_file():
        raise ValueError(f"local token key file {path} does not exist; is the local stack running?")
    return _minting_issuer(str(path), path.stat().st_mtime_ns).service_token(email, audience)
