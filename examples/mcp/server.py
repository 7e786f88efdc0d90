#!/usr/bin/env python3
"""An MCP server guarded by AgentSec (official MCP Python SDK, streamable HTTP).

It is an OAuth resource server as MCP authorization requires: it serves RFC 9728
protected-resource metadata naming exchange-svc (the authorization server that
issues delegated tokens) and answers a request without a valid delegated token
with 401 and a `WWW-Authenticate: Bearer resource_metadata="..."` challenge. It
asks policy-svc (AuthZEN, COAZ-MCP mapping) before every MCP request and lists
only the tools policy lets the caller call (authzen_pep.py).

Usage: server.py [--host 127.0.0.1] [--port 7410] [--exchange URL] [--policy URL]
The resource identifier is http://HOST:PORT/mcp; exchange-svc must list it
among its targets (`agentctl dev --target http://127.0.0.1:7410/mcp`).
"""

import argparse
import logging
import sys

import httpx2
import uvicorn
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from authzen_pep import AuthZenPdp, CoazPep
from delegated_token import DelegatedTokenVerifier

MCP_PATH = "/mcp"
logger = logging.getLogger("agentsec.mcp.server")


def build_server(resource: str, issuer: str, jwks_uri: str, pdp: AuthZenPdp) -> MCPServer:
    server = MCPServer(
        name="agentsec-example-github",
        instructions="Issue tools for a code host, guarded by AgentSec.",
        token_verifier=DelegatedTokenVerifier(issuer=issuer, jwks_uri=jwks_uri, resource=resource),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            # The verifier already requires `aud` = this resource; the SDK checks it once more.
            validate_token_resource=True,
        ),
        middleware=[CoazPep(pdp, resource_id=resource)],
    )

    @server.tool()
    def list_issues(repo: str) -> list[dict[str, str]]:
        """List the open issues of a repository."""
        return [
            {"number": "17", "title": f"{repo}: flaky integration test on CI"},
            {"number": "21", "title": f"{repo}: document the exchange flow"},
        ]

    @server.tool()
    def delete_repo(repo: str) -> str:
        """Delete a repository and all its history."""
        # Reached only if policy allowed it; the example's policy never does.
        return f"{repo} deleted"

    metadata_document = protected_resource_metadata(resource, issuer)

    # MCP authorization lets clients fall back to the root well-known URI, so
    # the document is served there too, besides RFC 9728 §3.1's path-suffixed one.
    @server.custom_route("/.well-known/oauth-protected-resource", methods=["GET"])
    async def root_protected_resource_metadata(_: Request) -> Response:
        return JSONResponse(metadata_document)

    return server


def protected_resource_metadata(resource: str, issuer: str) -> dict:
    # The same fields the SDK's RFC 9728 route serves at the path-suffixed URI.
    return {"resource": resource, "authorization_servers": [issuer], "bearer_methods_supported": ["header"]}


class BareChallengeWithoutCredentials:
    """RFC 6750 §3.1: a request with no credentials gets a challenge without an error code.

    The SDK answers every unauthenticated request with error="invalid_token";
    this answers the ones that carried no Authorization header at all before
    they reach it, so the error code is kept for tokens that were presented.
    """

    def __init__(self, app: ASGIApp, mcp_path: str, resource_metadata_url: str):
        self.app = app
        self.mcp_path = mcp_path
        self.challenge = f'Bearer resource_metadata="{resource_metadata_url}"'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.mcp_path or has_authorization(scope):
            await self.app(scope, receive, send)
            return
        body = b'{"error": "unauthorized", "error_description": "a bearer token is required"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", self.challenge),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def has_authorization(scope: Scope) -> bool:
    return any(name.lower() == b"authorization" for name, _ in scope["headers"])


def authorization_server_metadata(exchange_url: str) -> dict:
    """exchange-svc's RFC 8414 metadata, with its issuer checked (RFC 8414 §3.3)."""
    response = httpx2.get(f"{exchange_url.rstrip('/')}/.well-known/oauth-authorization-server", timeout=10)
    response.raise_for_status()
    metadata = response.json()
    if metadata.get("issuer") != exchange_url.rstrip("/"):
        raise SystemExit(
            f"exchange-svc's metadata names issuer {metadata.get('issuer')!r}, not {exchange_url!r}: pass its issuer URL"
        )
    return metadata


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7410)
    parser.add_argument("--exchange", default="http://127.0.0.1:7403", help="exchange-svc, the authorization server")
    parser.add_argument("--policy", default="http://127.0.0.1:7402", help="policy-svc, the AuthZEN PDP")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per decision is the log worth reading; every outgoing request is not.
    logging.getLogger("httpx2").setLevel(logging.WARNING)

    resource = f"http://{args.host}:{args.port}{MCP_PATH}"
    exchange = authorization_server_metadata(args.exchange)
    server = build_server(resource, exchange["issuer"], exchange["jwks_uri"], AuthZenPdp(args.policy))
    app = BareChallengeWithoutCredentials(
        server.streamable_http_app(streamable_http_path=MCP_PATH, host=args.host),
        MCP_PATH,
        str(build_resource_metadata_url(resource)),
    )
    logger.info("serving %s for issuer %s, policy at %s", resource, exchange["issuer"], args.policy)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
