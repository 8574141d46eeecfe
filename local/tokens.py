"""A local token issuer: a test RSA key, its certificate served on loopback, and minted tokens.

Stands in for Firebase Auth and Google's OIDC issuer in the local stack and in tests, so the same
google-auth verification code runs with no network: point `FIREBASE_CERTS_URL` and
`GOOGLE_CERTS_URL` at `issuer.certs_url`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

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


class TokenIssuer:
    """Mints RS256 ID tokens and serves the matching certificate map on 127.0.0.1."""

    def __init__(self) -> None:
        key_pem, cert_pem = _make_key_and_cert()
        self.signer = crypt.RSASigner.from_string(key_pem, KEY_ID)
        body = json.dumps({KEY_ID: cert_pem.decode()}).encode()

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
        self.server.shutdown()
        self.server.server_close()

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
