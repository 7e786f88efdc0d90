"""Verifies the delegated tokens exchange-svc issues, as the MCP SDK's TokenVerifier.

A token is accepted only when it is a delegation to an agent for this server:
signed by exchange-svc (a key of its JWKS), `iss` = exchange-svc's issuer,
`aud` = this server's resource identifier (RFC 8707; MCP authorization,
"Token Handling"), unexpired, with `sub` (the person), `tenant`, and an RFC 8693
`act` chain whose outermost actor is `azp` (the agent presenting it). An agent's
own token from identity-svc has neither this issuer nor `act`, so it is refused.
"""

import logging
from typing import Any

import anyio.to_thread
import jwt
from mcp.server.auth.provider import AccessToken

logger = logging.getLogger("agentsec.mcp.token")

# exchange-svc signs with Ed25519; ES256 is the other algorithm AgentSec keys use.
ALGORITHMS = ["EdDSA", "ES256"]
LEEWAY_SECONDS = 30


class DelegatedTokenVerifier:
    """Checks signature, issuer, audience and expiry, then the delegation claims."""

    def __init__(self, issuer: str, jwks_uri: str, resource: str):
        self.issuer = issuer
        self.resource = resource
        # PyJWKClient caches the key set and refetches it when a token names an unknown `kid`.
        self.jwks = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=300)

    async def verify_token(self, token: str) -> AccessToken | None:
        # The JWKS fetch is blocking I/O; keep it off the event loop.
        return await anyio.to_thread.run_sync(self.verify_token_blocking, token)

    def verify_token_blocking(self, token: str) -> AccessToken | None:
        try:
            claims = self.decode(token)
            actor_chain = delegation_chain(claims)
        except (jwt.PyJWKClientError, jwt.InvalidTokenError, InvalidDelegation) as refusal:
            # The reason goes to the server log only; the client gets RFC 6750's invalid_token.
            logger.info("bearer token refused: %s", refusal)
            return None
        return AccessToken(
            token=token,
            client_id=claims["azp"],
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=claims["sub"],
            claims={**claims, "actor_chain": actor_chain},
        )

    def decode(self, token: str) -> dict[str, Any]:
        # A token of another issuer (an agent's own, from identity-svc) is refused
        # before its unknown `kid` makes the key set be fetched again.
        claimed_issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        if claimed_issuer != self.issuer:
            raise jwt.InvalidIssuerError(f"issued by {claimed_issuer!r}, not by exchange-svc")
        signing_key = self.jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            signing_key.key,
            algorithms=ALGORITHMS,
            issuer=self.issuer,
            audience=self.resource,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub", "azp"]},
        )


class InvalidDelegation(Exception):
    """The token verified but does not say who acts for whom."""


def delegation_chain(claims: dict[str, Any]) -> list[str]:
    """The acting agents, outermost (the one presenting the token) first.

    RFC 8693 §4.1: the outermost `act` is the current actor and each nested
    `act` an earlier one.
    """
    chain: list[str] = []
    actor = claims.get("act")
    while isinstance(actor, dict):
        subject = actor.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidDelegation("an `act` entry has no `sub`")
        chain.append(subject)
        actor = actor.get("act")
    if not chain:
        raise InvalidDelegation("no `act` claim: not a delegated token")
    if chain[0] != claims["azp"]:
        raise InvalidDelegation("`azp` is not the outermost actor")
    if not isinstance(claims.get("tenant"), str) or not claims["tenant"]:
        raise InvalidDelegation("no `tenant` claim")
    return chain
