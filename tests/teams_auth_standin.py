"""A local stand-in for Microsoft's token services, on HTTPS in its own thread.

Two halves, as in Microsoft's cloud:
- Entra ID (login.microsoftonline.com): OpenID discovery and the OAuth 2.0 client-credentials
  token endpoint MSAL gets the bot's outgoing token from. It hands out opaque tokens only
  for the right client id, secret and Bot Framework scope; `valid` says whether a bearer
  token is one of them (the connector stand-in asks it on every call).
- The Bot Framework (login.botframework.com): OpenID metadata and the signing keys
  incoming activities are checked with (`/v1/.well-known/keys`, where the Agents SDK
  fetches them); `sign` makes the token Teams would send.
- Entra's own signing keys for the tenant (`/<tenant>/discovery/v2.0/keys`), for tokens
  Entra issues to the channel (`sign` with `entra=True`).

The Agents SDK goes to the key URLs directly (it reads no OpenID metadata); Liaison points
it here with LIAISON_TEAMS_AUTH_URL. It runs in a thread because MSAL and PyJWT fetch
synchronously. HTTPS with a self-signed certificate: point REQUESTS_CA_BUNDLE (MSAL) and
SSL_CERT_FILE (the key fetches) at `ca_file` (MSAL refuses plain-HTTP authorities).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
KID = "liaison-test-key"
ENTRA_KID = "liaison-test-entra-key"


def _certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


class MicrosoftAuthStandIn:
    """Entra's token endpoint for `app_id`/`secret` in `tenant`, and the channel's keys."""

    def __init__(self, directory: Path, *, app_id: str, secret: str, tenant: str) -> None:
        self.app_id, self.secret, self.tenant = app_id, secret, tenant
        self.issued: set[str] = set()
        self.requests: list[str] = []  # "METHOD path" of every request, in order
        # The app registration's uploaded certificate (`trust_certificate`): a client
        # assertion signed with its key stands for the secret.
        self.certificate: x509.Certificate | None = None
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.entra_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca_file = directory / "auth-standin.pem"
        key_file = directory / "auth-standin.key"
        self.ca_file.write_bytes(_certificate(tls_key).public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> MicrosoftAuthStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def valid(self, token: str) -> bool:
        return token in self.issued

    def revoke(self) -> None:
        self.issued.clear()

    def sign(self, service_url: str, *, entra: bool = False, **claims: Any) -> str:
        """The `Authorization` header the Bot Framework sends with an activity; `entra`:
        a token Entra issued in the bot's tenant instead (v2 issuer, `tid`, Entra's key)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": self.app_id,
            "serviceurl": service_url,
            "nbf": now - 5,
            "exp": now + 3600,
        }
        key, kid = self.signing_key, KID
        if entra:
            payload.update(
                iss=f"https://login.microsoftonline.com/{self.tenant}/v2.0", tid=self.tenant
            )
            key, kid = self.entra_key, ENTRA_KID
        payload.update(claims)
        token = jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})
        return f"Bearer {token}"

    def _keys(self, key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        return {"keys": [{**jwk, "kid": kid, "use": "sig"}]}

    # -------------------------------------------------------------- the HTTP side

    def _answer(self, method: str, path: str, form: dict[str, str]) -> tuple[int, Any]:
        self.requests.append(f"{method} {path}")
        tenant_base = f"{self.url}/{self.tenant}"
        if method == "GET" and path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            return 200, {
                "issuer": f"{tenant_base}/v2.0",
                "authorization_endpoint": f"{tenant_base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{tenant_base}/oauth2/v2.0/token",
            }
        if method == "POST" and path == f"/{self.tenant}/oauth2/v2.0/token":
            return self._token(form)
        if method == "GET" and path == "/v1/.well-known/openidconfiguration":
            return 200, {"issuer": ISSUER, "jwks_uri": f"{self.url}/v1/.well-known/keys"}
        if method == "GET" and path == "/v1/.well-known/keys":
            return 200, self._keys(self.signing_key, KID)
        if method == "GET" and path == f"/{self.tenant}/discovery/v2.0/keys":
            return 200, self._keys(self.entra_key, ENTRA_KID)
        return 404, {"error": "not_found"}

    def trust_certificate(self, certificate: x509.Certificate) -> None:
        """Upload a certificate to the app registration (certificate credentials)."""
        self.certificate = certificate

    def _assertion_valid(self, assertion: str) -> bool:
        """A client assertion (RFC 7523) signed with the uploaded certificate's key, for this
        app and this token endpoint, as Entra checks it."""
        if self.certificate is None:
            return False
        try:
            claims = jwt.decode(
                assertion,
                self.certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=f"{self.url}/{self.tenant}/oauth2/v2.0/token",
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == claims.get("sub") == self.app_id)

    def _token(self, form: dict[str, str]) -> tuple[int, Any]:
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if "client_assertion" in form:
            known = self._assertion_valid(form["client_assertion"])
        else:
            known = form.get("client_secret") == self.secret
        if form.get("client_id") != self.app_id or not known:
            return 401, {"error": "invalid_client", "error_description": "bad credentials"}
        if form.get("scope", "").split() != [SCOPE]:
            return 400, {"error": "invalid_scope", "error_description": form.get("scope")}
        token = f"tok-{uuid.uuid4().hex}"
        self.issued.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                status, body = standin._answer(method, self.path.split("?")[0], form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply("GET")

            def do_POST(self) -> None:
                self._reply("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
