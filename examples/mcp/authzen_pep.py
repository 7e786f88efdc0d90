"""The policy enforcement point: asks policy-svc (AuthZEN 1.0) before each MCP request.

Follows the AuthZEN COAZ-MCP binding's default mappings: the person (`sub` of
the validated delegated token) is the subject, the agent is `context.agent`,
and each method maps to an action and a resource (`mcp_server` for methods on
the whole server, the tool, resource, prompt or task otherwise). Beyond the
binding's default, `context` also carries `actor_chain` (every agent in the
token's `act`, outermost first) and `audience` (this server), so policies can
scope by server and by chain, and `subject.properties.tenant` names the policy
set. `tools/list` is filtered to the tools whose AuthZEN action search includes
`tools/call`. Refusals are JSON-RPC errors as the binding's "Error Handling"
section says: -32001 for a denial, -32602 when no request can be built, -32603
when policy-svc cannot give a decision. Every failure refuses (fail closed).
"""

import logging
from typing import Any

import httpx2
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

logger = logging.getLogger("agentsec.mcp.pep")

AUTHORIZATION_DENIED = -32001  # COAZ-MCP "Authorization Denial"
MAPPING_ERROR = -32602  # COAZ-MCP "Mapping Errors" (JSON-RPC invalid params)
PDP_ERROR = -32603  # COAZ-MCP "PDP Communication Errors" (JSON-RPC internal error)

# COAZ-MCP "Pass-through Operations": never sent to the PDP.
PASS_THROUGH = {"ping"}

# COAZ-MCP "Default Mappings" for methods on one item: resource type and the
# `params` field naming it. Methods on the server as a whole are listed below.
ITEM_METHODS = {
    "tools/call": ("tool", "name"),
    "resources/read": ("resource", "uri"),
    "resources/subscribe": ("resource", "uri"),
    "resources/unsubscribe": ("resource", "uri"),
    "prompts/get": ("prompt", "name"),
    "tasks/get": ("task", "taskId"),
    "tasks/result": ("task", "taskId"),
    "tasks/cancel": ("task", "taskId"),
}
SERVER_METHODS = {
    "initialize",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "logging/setLevel",
    "tasks/list",
}
# Extra `context` entries the binding adds for some methods: context key -> params field.
METHOD_CONTEXT = {
    "initialize": {"protocol_version": "protocolVersion"},
    "logging/setLevel": {"level": "level"},
}

SEARCH_PAGE_LIMIT = 50
# A bound on action-search pages per tool, so a PDP that never ends its paging cannot hang tools/list.
SEARCH_MAX_PAGES = 20


class PolicyUnavailable(Exception):
    """policy-svc did not answer with a decision."""


class AuthZenPdp:
    """AuthZEN 1.0 Access Evaluation and Action Search over HTTP."""

    def __init__(self, base_url: str, timeout_seconds: float = 5.0):
        self.http = httpx2.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_seconds)

    async def evaluate(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self.post("/access/v1/evaluation", request)
        if not isinstance(answer.get("decision"), bool):
            raise PolicyUnavailable("evaluation answer has no boolean `decision`")
        return answer

    async def search_actions(self, request: dict[str, Any]) -> set[str]:
        """Every action the subject may take on the resource, all pages followed."""
        actions: set[str] = set()
        page: dict[str, Any] = {"limit": SEARCH_PAGE_LIMIT}
        for _ in range(SEARCH_MAX_PAGES):
            answer = await self.post("/access/v1/search/action", {**request, "page": page})
            results = answer.get("results")
            if not isinstance(results, list):
                raise PolicyUnavailable("action search answer has no `results` list")
            actions.update(
                item["name"] for item in results if isinstance(item, dict) and isinstance(item.get("name"), str)
            )
            next_token = (answer.get("page") or {}).get("next_token", "")
            if not next_token:
                return actions
            page = {"limit": SEARCH_PAGE_LIMIT, "token": next_token}
        raise PolicyUnavailable(f"action search did not end within {SEARCH_MAX_PAGES} pages")

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.http.post(path, json=body)
        except httpx2.HTTPError as failure:
            raise PolicyUnavailable(f"{path}: {type(failure).__name__}") from failure
        if response.status_code != 200:
            # A 400 means policy-svc could not evaluate the request: no decision, so no access.
            raise PolicyUnavailable(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            answer = response.json()
        except ValueError as failure:
            raise PolicyUnavailable(f"{path}: answer is not JSON") from failure
        if not isinstance(answer, dict):
            raise PolicyUnavailable(f"{path}: answer is not a JSON object")
        return answer


class CoazPep:
    """MCP server middleware (`async (ctx, call_next)`) enforcing policy-svc's decisions."""

    def __init__(self, pdp: AuthZenPdp, resource_id: str):
        self.pdp = pdp
        # The binding lets a PEP that knows its resource identifier use it for `$token.aud`.
        self.resource_id = resource_id

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        # Notifications carry no id and expect no answer: pass-through, as is ping.
        if ctx.request_id is None or ctx.method in PASS_THROUGH:
            return await call_next(ctx)
        token = validated_token(ctx)
        params = dict(ctx.params or {})
        await self.authorize(ctx.method, params, token)
        result = await call_next(ctx)
        if ctx.method == "tools/list":
            return await self.callable_tools_only(result, token)
        return result

    async def authorize(self, method: str, params: dict[str, Any], token: AccessToken) -> None:
        request = self.evaluation_request(method, params, token)
        try:
            answer = await self.pdp.evaluate(request)
        except PolicyUnavailable as failure:
            logger.warning("no decision for %s: %s", method, failure)
            raise MCPError(code=PDP_ERROR, message="Authorization service unavailable") from failure
        decision_context = answer.get("context") or {}
        logger.info(
            "%s %s on %s %s by %s for %s (decision %s)",
            "allow" if answer["decision"] else "deny",
            method,
            request["resource"]["type"],
            request["resource"]["id"],
            token.client_id,
            token.subject,
            decision_context.get("id", "-"),
        )
        if not answer["decision"]:
            raise MCPError(
                code=AUTHORIZATION_DENIED,
                message=f"Access denied: {denial_reason(decision_context)}",
                data={"decision_id": decision_context.get("id")},
            )

    def evaluation_request(self, method: str, params: dict[str, Any], token: AccessToken) -> dict[str, Any]:
        if method in ITEM_METHODS:
            resource_type, field = ITEM_METHODS[method]
            item = params.get(field)
            if not isinstance(item, str) or not item:
                raise MCPError(
                    code=MAPPING_ERROR, message=f"COAZ mapping error: params.{field} is missing for {method}"
                )
            resource = {"type": resource_type, "id": item}
        elif method == "completion/complete":
            resource = completion_resource(params)
        elif method in SERVER_METHODS:
            resource = {"type": "mcp_server", "id": self.resource_id}
        else:
            # COAZ-MCP "Unknown Methods": no mapping means no access, never a silent pass.
            raise MCPError(code=AUTHORIZATION_DENIED, message=f"Access denied: no authorization mapping for {method}")
        context = self.decision_context(token)
        for key, field in METHOD_CONTEXT.get(method, {}).items():
            if field in params:
                context[key] = params[field]
        return {
            "subject": subject_of(token),
            "action": {"name": method},
            "resource": resource,
            "context": context,
        }

    def decision_context(self, token: AccessToken) -> dict[str, Any]:
        claims = token.claims or {}
        return {
            "agent": token.client_id,
            "actor_chain": list(claims["actor_chain"]),
            "audience": self.resource_id,
        }

    async def callable_tools_only(self, result: Any, token: AccessToken) -> Any:
        """The listing without the tools policy would refuse to call."""
        tools = result.tools if isinstance(result, BaseModel) else result["tools"]
        allowed = []
        for tool in tools:
            name = tool.name if isinstance(tool, BaseModel) else tool["name"]
            if await self.may_call(name, token):
                allowed.append(tool)
        if isinstance(result, BaseModel):
            return result.model_copy(update={"tools": allowed})
        return {**result, "tools": allowed}

    async def may_call(self, tool_name: str, token: AccessToken) -> bool:
        request = {
            "subject": subject_of(token),
            "resource": {"type": "tool", "id": tool_name},
            "context": self.decision_context(token),
        }
        try:
            return "tools/call" in await self.pdp.search_actions(request)
        except PolicyUnavailable as failure:
            logger.warning("no action search for tool %s: %s", tool_name, failure)
            raise MCPError(code=PDP_ERROR, message="Authorization service unavailable") from failure


def validated_token(ctx: Any) -> AccessToken:
    """The access token the SDK's bearer middleware validated for this HTTP request."""
    request = getattr(ctx, "request", None)
    user = request.scope.get("user") if request is not None else None
    if not isinstance(user, AuthenticatedUser):
        # Unreachable behind RequireAuthMiddleware; refuse rather than decide without a subject.
        raise MCPError(code=MAPPING_ERROR, message="COAZ mapping error: no validated access token")
    return user.access_token


def subject_of(token: AccessToken) -> dict[str, Any]:
    claims = token.claims or {}
    # COAZ-MCP "The Subject-Identity Claim": `sub`, the person the agent acts for.
    return {"type": "identity", "id": token.subject, "properties": {"tenant": claims["tenant"]}}


def completion_resource(params: dict[str, Any]) -> dict[str, str]:
    reference = params.get("ref") or {}
    if reference.get("type") == "ref/prompt" and isinstance(reference.get("name"), str):
        return {"type": "prompt", "id": reference["name"]}
    if isinstance(reference.get("uri"), str):
        return {"type": "resource", "id": reference["uri"]}
    raise MCPError(code=MAPPING_ERROR, message="COAZ mapping error: params.ref names no prompt or resource")


def denial_reason(decision_context: dict[str, Any]) -> str:
    # AuthZEN defines no standard reason key (the binding says not to assume one); these are policy-svc's.
    for key in ("reason_user", "reason_admin"):
        reason = decision_context.get(key)
        if isinstance(reason, dict) and isinstance(reason.get("en"), str):
            return reason["en"]
        if isinstance(reason, str):
            return reason
    return "denied by policy"
