"""Teams credentials both ways, on the Microsoft 365 Agents SDK.

In: the SDK's `JwtTokenValidator` checks the token on every activity (signature against
the issuer's published keys, expiry, audience = the bot's app id, issuer allow-list of
the Bot Framework and the bot's own Entra tenant, tid bound to the issuer). Out: the
SDK's `MsalAuth` gets the bot's token for the connector, with a client secret, a
certificate, a user-assigned managed identity or federated credentials.

Two things are added to the SDK here, both about where and how long: the signing keys and
the token authority may live at `LIAISON_TEAMS_AUTH_URL` instead of Microsoft's hosts (a
private cloud, or the tests' local stand-in), and every fetch of either times out.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from jwt import PyJWKClient, PyJWKClientConnectionError
from microsoft_agents.authentication.msal import MsalAuth
from microsoft_agents.hosting.core.authorization import (
    AgentAuthConfiguration,
    AuthTypes,
    ClaimsIdentity,
    JwtTokenValidator,
)
from microsoft_agents.hosting.core.authorization.jwt.jwt_token_validator import (
    _JwkClientCacheEntry,
    _JwkClientManager,
)
from msal import (  # type: ignore[import-untyped]
    ConfidentialClientApplication,
    ManagedIdentityClient,
    UserAssignedManagedIdentity,
)

if TYPE_CHECKING:
    from bot.core.settings import Settings

BOT_FRAMEWORK = "https://api.botframework.com"  # the connector's audience
BOT_FRAMEWORK_SCOPE = f"{BOT_FRAMEWORK}/.default"
# The hosts the SDK fetches signing keys from and asks for tokens (public cloud).
MICROSOFT_KEY_HOSTS = ("https://login.botframework.com", "https://login.microsoftonline.com")


class KeysUnavailable(Exception):
    """The issuer's signing keys could not be fetched (unreachable, slow, or not keys)."""


class TimedSession(requests.Session):
    """A requests session whose every call times out (MSAL's managed-identity and
    federated-credential clients take a session and pass no timeout)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(*args, **kwargs)


@dataclass(frozen=True)
class Where:
    """Where tokens and signing keys come from, and how long a fetch may take."""

    timeout: float
    auth_url: str = ""  # "" = Microsoft's public cloud

    def keys_url(self, jwks_uri: str) -> str:
        """The SDK's JWKS URL, moved under `auth_url` when one is configured."""
        if not self.auth_url:
            return jwks_uri
        for host in MICROSOFT_KEY_HOSTS:
            if jwks_uri.startswith(host + "/"):
                return self.auth_url + jwks_uri[len(host) :]
        return jwks_uri


class SigningKeys(_JwkClientManager):
    """The SDK's signing-key cache, fetching from `where` with its timeout (the SDK's own
    clients wait 30 s, whatever the operator set). Fetches run in a thread, as the SDK's."""

    def __init__(self, where: Where) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.where = where

    def _get_jwk_client(self, jwks_uri: str) -> _JwkClientCacheEntry:
        if jwks_uri not in self._cache:
            client = PyJWKClient(
                self.where.keys_url(jwks_uri),
                timeout=self.where.timeout,
                ssl_context=ssl.create_default_context(),
            )
            self._cache[jwks_uri] = _JwkClientCacheEntry(client, threading.Lock())
        return self._cache[jwks_uri]

    async def get_signing_key(self, jwks_uri: str, header: dict[str, Any]) -> Any:
        try:
            return await super().get_signing_key(jwks_uri, header)
        except PyJWKClientConnectionError as unreachable:
            raise KeysUnavailable(str(unreachable)) from None


class TokenCheck(JwtTokenValidator):
    """The SDK's JWT validation with the keys from `SigningKeys`."""

    def __init__(self, configuration: AgentAuthConfiguration, keys: SigningKeys) -> None:
        super().__init__(configuration)
        self._jwk_client_manager = keys

    async def check(self, token: str) -> ClaimsIdentity:
        """The token's claims; ValueError or a PyJWTError when it is not one Teams sends,
        KeysUnavailable when the signing keys cannot be read right now."""
        identity: ClaimsIdentity = await self.validate_token(token)
        return identity


class TimedMsalAuth(MsalAuth):
    """The SDK's MSAL token provider, with MSAL clients whose requests time out and that
    are built off the event loop (building one asks the authority for its metadata). With
    a private token service, MSAL is told it is not an Entra host to discover."""

    def __init__(self, configuration: AgentAuthConfiguration, where: Where) -> None:
        super().__init__(configuration)
        self.where = where

    async def get_access_token(
        self, resource_url: str, scopes: list[str], force_refresh: bool = False
    ) -> str:
        await asyncio.to_thread(self._get_client)  # cached: built once, in a thread
        token: str = await asyncio.wait_for(
            super().get_access_token(resource_url, scopes, force_refresh),
            self.where.timeout + 1,
        )
        return token

    def _create_client_application(self, tenant_id: str | None = None) -> Any:
        config = self._msal_configuration
        http = TimedSession(self.where.timeout)
        credential: Any
        match config.AUTH_TYPE:
            case AuthTypes.user_managed_identity:
                identity = UserAssignedManagedIdentity(client_id=config.CLIENT_ID)
                return ManagedIdentityClient(identity, http_client=http)
            case AuthTypes.certificate:
                credential = {"private_key_pfx_path": config.CERT_PFX_FILE}
                if config.SEND_X5C:
                    credential["public_certificate"] = True
            case AuthTypes.federated_credentials:
                credential = {"client_assertion": self._managed_identity_assertion(http)}
            case AuthTypes.workload_identity:
                credential = {"client_assertion": self._token_file_assertion()}
            case _:
                credential = config.CLIENT_SECRET
        return ConfidentialClientApplication(
            client_id=config.CLIENT_ID,
            authority=MsalAuth._resolve_authority(config, tenant_id),
            client_credential=credential,
            http_client=http,
            instance_discovery=not self.where.auth_url,
        )

    def _managed_identity_assertion(self, http: TimedSession) -> Any:
        """Federated credentials: the app's token is asked for with a user-assigned managed
        identity's token (the credential trusted by the app registration)."""
        client_id = self._msal_configuration.FEDERATED_CLIENT_ID
        client = ManagedIdentityClient(
            UserAssignedManagedIdentity(client_id=client_id), http_client=http
        )

        def assertion() -> str:
            result = client.acquire_token_for_client(resource="api://AzureADTokenExchange")
            if "access_token" not in result:
                raise ValueError("the managed identity gave no token for the federated credential")
            return str(result["access_token"])

        return assertion

    def _token_file_assertion(self) -> Any:
        """Workload identity (e.g. Kubernetes): the assertion is a token file the platform
        keeps fresh, read at each token request."""
        path = self._msal_configuration.FEDERATED_TOKEN_FILE or ""

        def assertion() -> str:
            with open(path, encoding="utf-8") as token_file:
                return token_file.read().strip()

        return assertion


def auth_type(settings: Settings) -> AuthTypes:
    """The credential the settings name: a managed identity for `UserAssignedMSI`, else a
    certificate, federated credentials, a workload-identity token file, or the secret."""
    if settings.microsoft_app_type == "UserAssignedMSI":
        return AuthTypes.user_managed_identity
    if settings.teams_certificate_file:
        return AuthTypes.certificate
    if settings.teams_federated_client_id:
        return AuthTypes.federated_credentials
    if settings.teams_federated_token_file:
        return AuthTypes.workload_identity
    return AuthTypes.client_secret


def configuration(settings: Settings) -> AgentAuthConfiguration:
    """The SDK's auth configuration for the bot's app registration.

    Single-tenant and managed-identity bots get tokens from their own tenant and accept
    Entra tokens issued by it only; a multi-tenant bot asks the Bot Framework's tenant.
    Issuer checking is on (the SDK leaves it off unless asked).
    """
    tenant = settings.microsoft_app_tenant_id.strip() or "botframework.com"
    where = settings.teams_auth_url.rstrip("/")
    return AgentAuthConfiguration(
        auth_type=auth_type(settings),
        client_id=settings.microsoft_app_id,
        tenant_id=tenant,
        client_secret=settings.microsoft_app_password.get_secret_value() or None,
        cert_pfx_file=settings.teams_certificate_file or None,
        send_x5c=settings.teams_certificate_send_x5c,
        federated_client_id=settings.teams_federated_client_id or None,
        federated_token_file=settings.teams_federated_token_file or None,
        authority=f"{where}/{tenant}" if where else None,
        scopes=[BOT_FRAMEWORK_SCOPE],
        validate_issuer=True,
        anonymous_allowed=False,
    )
