#!/usr/bin/env python3
"""An agent using an AgentSec-guarded MCP server with the official MCP SDK's client.

Steps, each printed and checked; the first mismatch ends the run with exit 1:
  1. a request without a token is refused: 401 with a Bearer challenge naming
     the RFC 9728 metadata, and no error code (RFC 6750 §3.1);
  2. the metadata (at the URI the challenge names, and the same at the root
     well-known URI) names this server as `resource` and an authorization
     server, whose RFC 8414 metadata is fetched and its issuer checked;
  3. the agent's own token from identity-svc (client credentials), which the
     MCP server refuses: 401 with error="invalid_token";
  4. an RFC 8693 exchange of the person's token (subject_token) and the agent's
     (actor_token) for a token whose audience and resource is this server;
  5. an MCP session with that token (streamable HTTP + ClientSession): the tool
     list holds `list_issues` and not `delete_repo` (filtered by AuthZEN action
     search); `list_issues` answers; `delete_repo` called anyway is refused with
     JSON-RPC error -32001 (COAZ-MCP "Authorization Denial");
  6. a tools/call without a token is refused with 401 and the challenge.

Usage: client.py --server URL --identity URL --client-id ID --client-secret=SECRET
           --person-token JWT --person SUB [--scope "read"] [--wait-seconds 30]
Never prints secrets or whole tokens.
"""

import argparse
import asyncio
import re
import sys
import time

import httpx2
import jwt
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

TIMEOUT = 10
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
AUTHORIZATION_DENIED = -32001
ALLOWED_TOOL = "list_issues"
DENIED_TOOL = "delete_repo"
CHALLENGE_PARAMETER = re.compile(r'([a-zA-Z_]+)="([^"]*)"')


class CheckFailed(Exception):
    pass


PASSED: list[str] = []


def expect(name: str, condition: bool, detail: str = "") -> None:
    if not condition:
        raise CheckFailed(f"{name}{': ' + detail if detail else ''}")
    PASSED.append(name)
    print(f"  ok  {name}")


def step(title: str) -> None:
    print(f"\n--> {title}")


def bearer_challenge(response: httpx2.Response) -> dict[str, str]:
    """The parameters of the response's Bearer challenge (RFC 6750 §3), empty when there is none."""
    header = response.headers.get("www-authenticate", "")
    if not header.lower().startswith("bearer"):
        return {}
    return dict(CHALLENGE_PARAMETER.findall(header))


def jsonrpc(method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def post_mcp(http: httpx2.Client, server: str, body: dict, token: str | None = None) -> httpx2.Response:
    headers = dict(MCP_HEADERS)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return http.post(server, json=body, headers=headers)


def wait_until_serving(http: httpx2.Client, server: str, wait_seconds: float) -> httpx2.Response:
    """The first answer to an unauthenticated initialize, once the server accepts connections."""
    deadline = time.monotonic() + wait_seconds
    initialize = jsonrpc(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "agentsec-example-agent", "version": "1"},
        },
    )
    while True:
        try:
            return post_mcp(http, server, initialize)
        except httpx2.ConnectError:
            if time.monotonic() > deadline:
                raise CheckFailed(f"the MCP server at {server} did not accept connections within {wait_seconds}s")
            time.sleep(0.2)


def discover(http: httpx2.Client, args) -> tuple[dict, dict]:
    step("1. no token: the MCP server challenges (MCP authorization, RFC 9728 §5.1)")
    refused = wait_until_serving(http, args.server, args.wait_seconds)
    expect("HTTP 401", refused.status_code == 401, str(refused.status_code))
    challenge = bearer_challenge(refused)
    expect(
        "WWW-Authenticate: Bearer with resource_metadata",
        "resource_metadata" in challenge,
        refused.headers.get("www-authenticate", "(none)"),
    )
    expect("no error code without credentials (RFC 6750 §3.1)", "error" not in challenge, str(challenge))

    step("2. protected-resource metadata, then the authorization server's")
    resource = http.get(challenge["resource_metadata"]).json()
    expect(
        "resource is this server (RFC 9728 §3.3)",
        resource.get("resource") == args.server,
        str(resource.get("resource")),
    )
    expect("names an authorization server", bool(resource.get("authorization_servers")))
    expect("bearer tokens in the header", "header" in resource.get("bearer_methods_supported", ["header"]))
    origin = args.server.split("/", 3)[:3]
    root_document = http.get("/".join(origin) + "/.well-known/oauth-protected-resource").json()
    expect("the root well-known URI (MCP clients' fallback) serves the same", root_document == resource)
    issuer = resource["authorization_servers"][0]
    authorization_server = http.get(f"{issuer.rstrip('/')}/.well-known/oauth-authorization-server").json()
    expect(
        "issuer matches (RFC 8414 §3.3)",
        authorization_server.get("issuer") == issuer,
        str(authorization_server.get("issuer")),
    )
    expect("offers token exchange", TOKEN_EXCHANGE in authorization_server.get("grant_types_supported", []))
    return resource, authorization_server


def agent_token(http: httpx2.Client, args, audience: str) -> str:
    identity = http.get(f"{args.identity.rstrip('/')}/.well-known/oauth-authorization-server").json()
    response = http.post(
        identity["token_endpoint"],
        auth=(args.client_id, args.client_secret),
        data={"grant_type": "client_credentials", "audience": audience, "scope": args.scope},
    )
    expect(
        "identity-svc issues the agent's token",
        response.status_code == 200,
        f"HTTP {response.status_code}: {response.text[:200]}",
    )
    return response.json()["access_token"]


def exchange(http: httpx2.Client, args, authorization_server: dict, actor: str) -> str:
    # RFC 8707: MCP clients name the server as `resource`; exchange-svc takes
    # `audience` and `resource` together as one target.
    response = http.post(
        authorization_server["token_endpoint"],
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": args.person_token,
            "subject_token_type": JWT_TYPE,
            "actor_token": actor,
            "actor_token_type": ACCESS_TOKEN,
            "resource": args.server,
            "audience": args.server,
            "scope": args.scope,
        },
    )
    expect(
        "exchange-svc issues a delegated token",
        response.status_code == 200,
        f"HTTP {response.status_code}: {response.text[:200]}",
    )
    issued = response.json()
    expect("issued_token_type access_token", issued.get("issued_token_type") == ACCESS_TOKEN)
    token = issued["access_token"]
    # Read for display only; the MCP server is the one that verifies it.
    claims = jwt.decode(token, options={"verify_signature": False})
    expect("sub is the person", claims.get("sub") == args.person, str(claims.get("sub")))
    expect(
        "azp and act.sub are the agent",
        claims.get("azp") == args.client_id and (claims.get("act") or {}).get("sub") == args.client_id,
    )
    expect("aud is this server", claims.get("aud") == args.server, str(claims.get("aud")))
    return token


async def session_observations(args, token: str) -> dict:
    """What one MCP session with the token sees; checked afterwards, outside the SDK's task groups."""
    seen: dict = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        streamable_http_client(args.server, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        seen["server"] = (await session.initialize()).server_info.name
        seen["listed"] = [tool.name for tool in (await session.list_tools()).tools]
        seen["allowed"] = await session.call_tool(ALLOWED_TOOL, {"repo": "agentsec"})
        try:
            seen["denied"] = await session.call_tool(DENIED_TOOL, {"repo": "agentsec"})
        except MCPError as denial:
            seen["denied"] = denial
    return seen


def use_tools(args, token: str) -> None:
    step("5. an MCP session with the delegated token (SDK streamable HTTP client + ClientSession)")
    seen = asyncio.run(session_observations(args, token))
    expect("initialize allowed", seen["server"] == "agentsec-example-github", seen["server"])
    print(f"      tools listed: {seen['listed']}")
    expect(f"{ALLOWED_TOOL} is listed", ALLOWED_TOOL in seen["listed"])
    expect(f"{DENIED_TOOL} is not listed (AuthZEN action search)", DENIED_TOOL not in seen["listed"])
    answer = seen["allowed"]
    text = " ".join(getattr(part, "text", "") for part in answer.content)
    expect(f"{ALLOWED_TOOL} answers", not answer.is_error and "agentsec" in text, text[:200])
    denial = seen["denied"]
    if not isinstance(denial, MCPError):
        raise CheckFailed(f"{DENIED_TOOL} was called: {denial.content!r:.200}")
    print(f"      {DENIED_TOOL}: JSON-RPC error {denial.code} {denial.message!r}")
    expect(
        f"{DENIED_TOOL} refused with -32001 (COAZ-MCP Authorization Denial)",
        denial.code == AUTHORIZATION_DENIED,
        str(denial.code),
    )


def run(args) -> None:
    with httpx2.Client(timeout=TIMEOUT) as http:
        _, authorization_server = discover(http, args)

        step("3. the agent's own token (client credentials at identity-svc)")
        actor = agent_token(http, args, audience=authorization_server["issuer"])
        presented = post_mcp(http, args.server, jsonrpc("tools/list", {}), token=actor)
        expect(
            "the MCP server refuses a token that is not a delegation to it: 401",
            presented.status_code == 401,
            str(presented.status_code),
        )
        challenge = bearer_challenge(presented)
        expect(
            'challenge says error="invalid_token" and names the metadata',
            challenge.get("error") == "invalid_token" and "resource_metadata" in challenge,
            str(challenge),
        )

        step("4. token exchange (RFC 8693): the person's token + the agent's -> a token for this server")
        token = exchange(http, args, authorization_server, actor)

        use_tools(args, token)

        step("6. tools/call without a token")
        anonymous = post_mcp(
            http, args.server, jsonrpc("tools/call", {"name": ALLOWED_TOOL, "arguments": {"repo": "x"}})
        )
        expect("HTTP 401", anonymous.status_code == 401, str(anonymous.status_code))
        expect(
            "challenge names the metadata",
            "resource_metadata" in bearer_challenge(anonymous),
            anonymous.headers.get("www-authenticate", "(none)"),
        )


def root_causes(failure: BaseException) -> list[BaseException]:
    """The errors inside the SDK's task-group wrappers, which alone say what went wrong."""
    if isinstance(failure, BaseExceptionGroup):
        return [cause for inner in failure.exceptions for cause in root_causes(inner)]
    return [failure]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ["--server", "--identity", "--client-id", "--client-secret", "--person-token", "--person"]:
        parser.add_argument(name, required=True)
    parser.add_argument("--scope", default="read")
    parser.add_argument("--wait-seconds", type=float, default=30)
    args = parser.parse_args()
    try:
        run(args)
    except CheckFailed as failure:
        print(f"\nMCP example FAILED: {failure}", file=sys.stderr)
        print(f"mcp: {len(PASSED)} passed, 1 failed")
        return 1
    except Exception as failure:  # noqa: BLE001 -- the stack or the server did not answer as a protocol says
        for cause in root_causes(failure):
            print(f"\nMCP example FAILED: {type(cause).__name__}: {cause}", file=sys.stderr)
        print(f"mcp: {len(PASSED)} passed, 1 failed")
        return 1
    print(f"\nmcp: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
