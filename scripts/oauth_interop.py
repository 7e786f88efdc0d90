#!/usr/bin/env python3
"""Interop check: identity-svc tokens from third-party OAuth clients verify with PyJWT.

Reads RFC 8414 metadata from `<issuer>/.well-known/oauth-authorization-server`,
then gets a token with the client_credentials grant twice: with Authlib
(client_secret_basic) and with requests-oauthlib (client_secret_post). Each
access token is verified by PyJWT against the published `jwks_uri` (key chosen
by `kid`, EdDSA or ES256), and its claims are checked. Negative checks: a
tampered token must fail verification, and a wrong secret must get HTTP 401
with `invalid_client`.

Usage: oauth_interop.py --issuer http://127.0.0.1:PORT --client-id ID
           --client-secret SECRET --audience AUD [--scope "a b"]
Needs: pip install authlib requests requests-oauthlib 'pyjwt[crypto]'
Prints {"ok": true, "checks": N, "claims": {...}} and exits 0, or names the
failed check on stderr and exits 1. Never prints the secret or whole tokens.
"""
import argparse
import contextlib
import json
import os
import sys

# Plain http is expected here (loopback); both client libraries refuse it otherwise.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

import jwt  # noqa: E402
import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession  # noqa: E402
from oauthlib.oauth2 import BackendApplicationClient  # noqa: E402
from requests_oauthlib import OAuth2Session as OAuthlibSession  # noqa: E402

TIMEOUT = 10
ALGORITHMS = ["EdDSA", "ES256"]
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "jti", "sub", "aud", "iss"]


class CheckFailed(Exception):
    """A named check failed; the message is `check: detail`."""


class Checks:
    """Counts passed checks; turns a failed condition or an exception into CheckFailed."""

    def __init__(self):
        self.passed = 0

    def expect(self, check, ok, detail=""):
        if not ok:
            raise CheckFailed(f"{check}: {detail}" if detail else check)
        self.passed += 1

    @contextlib.contextmanager
    def step(self, check):
        try:
            yield
        except Exception as exc:  # any library or HTTP error fails this check
            raise CheckFailed(f"{check}: {type(exc).__name__}: {exc}") from None
        self.passed += 1


def fetch_with_authlib(args, token_endpoint):
    with AuthlibSession(args.client_id, args.client_secret,
                        token_endpoint_auth_method="client_secret_basic", scope=args.scope) as session:
        return dict(session.fetch_token(token_endpoint, grant_type="client_credentials",
                                        audience=args.audience, timeout=TIMEOUT))


def fetch_with_oauthlib(args, token_endpoint):
    client = BackendApplicationClient(client_id=args.client_id, scope=args.scope.split() if args.scope else None)
    with OAuthlibSession(client=client) as session:
        return dict(session.fetch_token(token_url=token_endpoint, client_id=args.client_id,
                                        client_secret=args.client_secret, include_client_id=True,
                                        audience=args.audience, timeout=TIMEOUT))


def verify(token, jwks, args):
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwks.get_signing_key(kid).key
    return jwt.decode(token, key, algorithms=ALGORITHMS, audience=args.audience, issuer=args.issuer,
                      options={"require": REQUIRED_CLAIMS})


def check_token(checks, label, response, jwks, args):
    token = response.get("access_token")
    checks.expect(f"{label}: access_token present", isinstance(token, str) and token.count(".") == 2)
    checks.expect(f"{label}: token_type is Bearer", str(response.get("token_type", "")).lower() == "bearer",
                  repr(response.get("token_type")))
    expires_in = response.get("expires_in")
    checks.expect(f"{label}: expires_in > 0", isinstance(expires_in, (int, float))
                  and not isinstance(expires_in, bool) and expires_in > 0, repr(expires_in))
    with checks.step(f"{label}: PyJWT verifies the token against jwks_uri"):
        claims = verify(token, jwks, args)
    checks.expect(f"{label}: client_id claim == client id == sub",
                  claims.get("client_id") == args.client_id == claims.get("sub"),
                  f"client_id={claims.get('client_id')!r} sub={claims.get('sub')!r}")
    if args.scope is not None:
        scope = claims.get("scope")
        checks.expect(f"{label}: scope claim matches the request",
                      isinstance(scope, str) and set(scope.split()) == set(args.scope.split()), repr(scope))
    return token, claims


def run(args, checks, secrets):
    with checks.step("discovery: fetch oauth-authorization-server metadata"):
        url = args.issuer.rstrip("/") + "/.well-known/oauth-authorization-server"
        response = requests.get(url, timeout=TIMEOUT)
        response.raise_for_status()
        metadata = response.json()
    checks.expect("discovery: issuer matches", metadata.get("issuer") == args.issuer, repr(metadata.get("issuer")))
    token_endpoint, jwks_uri = metadata.get("token_endpoint"), metadata.get("jwks_uri")
    checks.expect("discovery: token_endpoint and jwks_uri present", token_endpoint and jwks_uri)
    jwks = jwt.PyJWKClient(jwks_uri, timeout=TIMEOUT)

    results = []
    for label, fetch in [("authlib client_secret_basic", fetch_with_authlib),
                         ("requests-oauthlib client_secret_post", fetch_with_oauthlib)]:
        with checks.step(f"{label}: token request"):
            response = fetch(args, token_endpoint)
        secrets.append(str(response.get("access_token") or ""))
        results.append(check_token(checks, label, response, jwks, args))

    token, claims = results[0]
    header, payload, signature = token.split(".")
    i = len(payload) // 2
    tampered = ".".join([header, payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:], signature])
    try:
        verify(tampered, jwks, args)
        outcome = "it verified"
    except Exception as exc:  # only a signature failure is the right outcome
        outcome = type(exc).__name__
    checks.expect("tampered token fails with InvalidSignatureError",
                  outcome == "InvalidSignatureError", f"got {outcome}")

    with checks.step("wrong secret: token request answered"):
        response = requests.post(token_endpoint, auth=(args.client_id, args.client_secret + "-wrong"),
                                 data={"grant_type": "client_credentials", "audience": args.audience},
                                 timeout=TIMEOUT)
    checks.expect("wrong secret: HTTP 401", response.status_code == 401, f"got HTTP {response.status_code}")
    with checks.step("wrong secret: JSON error body"):
        error = response.json().get("error")
    checks.expect("wrong secret: error is invalid_client", error == "invalid_client", repr(error))
    return claims


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--issuer", "--client-id", "--client-secret", "--audience"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--scope", help="space-separated scopes to request")
    args = parser.parse_args()
    checks, secrets = Checks(), [args.client_secret]
    try:
        claims = run(args, checks, secrets)
    except CheckFailed as failure:
        message = str(failure)
        for secret in filter(None, secrets):
            message = message.replace(secret, "<redacted>")
        print(f"oauth_interop: FAILED {message}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "checks": checks.passed, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
