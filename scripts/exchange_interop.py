#!/usr/bin/env python3
"""Interop check: an RFC 8693 token exchange performed by Authlib against exchange-svc.

The agent gets its actor token from identity-svc with Authlib (client_credentials,
client_secret_basic, audience = exchange-svc). Then Authlib's OAuth2Session, as a
public client, performs the token exchange at the token endpoint that exchange-svc's
RFC 8414 metadata names: the person's token as subject_token, the agent's token as
actor_token. PyJWT verifies the issued token against exchange-svc's `jwks_uri` and
the claims are checked (sub = the person, act.sub = the agent, one aud, the scope).
RFC 7662 introspection (with the actor token as the caller's bearer) must show it
active with its grant and chain. Negative checks: asking beyond the grant must be
`invalid_scope`, and a tampered subject token `invalid_request`, both HTTP 400.

Usage: exchange_interop.py --identity URL --exchange URL --client-id ID
           --client-secret SECRET --person-token JWT --person SUB
           --audience AUD --scope "a"
Needs: pip install authlib requests 'pyjwt[crypto]'
Prints {"ok": true, "checks": N} and exits 0, or names the failed check on stderr
and exits 1. Never prints secrets or whole tokens.
"""
import argparse
import json
import os
import sys

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # loopback http

import jwt  # noqa: E402
import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oauth_interop import CheckFailed, Checks  # noqa: E402

TIMEOUT = 10
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def metadata(base):
    response = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


def actor_token(args, identity):
    with OAuth2Session(args.client_id, args.client_secret,
                       token_endpoint_auth_method="client_secret_basic") as session:
        return session.fetch_token(identity["token_endpoint"], grant_type="client_credentials",
                                   audience=args.exchange, timeout=TIMEOUT)["access_token"]


def exchange(token_endpoint, subject, actor, audience, scope):
    # A public client: the actor token, not a client secret, identifies the agent.
    with OAuth2Session("interop-public-client", token_endpoint_auth_method="none") as session:
        return dict(session.fetch_token(
            token_endpoint, grant_type=TOKEN_EXCHANGE,
            subject_token=subject, subject_token_type=JWT_TYPE,
            actor_token=actor, actor_token_type=ACCESS_TOKEN,
            audience=audience, scope=scope, timeout=TIMEOUT))


def raw_exchange(token_endpoint, subject, actor, audience, scope):
    return requests.post(token_endpoint, timeout=TIMEOUT, data={
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject, "subject_token_type": JWT_TYPE,
        "actor_token": actor, "actor_token_type": ACCESS_TOKEN,
        "audience": audience, "scope": scope})


def run(args, checks):
    identity = metadata(args.identity)
    server = metadata(args.exchange)
    checks.expect("metadata names the token-exchange grant",
                  TOKEN_EXCHANGE in server.get("grant_types_supported", []))
    with checks.step("actor token from identity-svc (Authlib, client_secret_basic)"):
        actor = actor_token(args, identity)

    with checks.step("token exchange (Authlib OAuth2Session, public client)"):
        issued = exchange(server["token_endpoint"], args.person_token, actor, args.audience, args.scope)
    checks.expect("issued_token_type", issued.get("issued_token_type") == ACCESS_TOKEN, str(issued.get("issued_token_type")))
    checks.expect("token_type Bearer", issued.get("token_type") == "Bearer")
    checks.expect("scope as asked", issued.get("scope") == args.scope, str(issued.get("scope")))
    token = issued["access_token"]

    jwks = jwt.PyJWKClient(server["jwks_uri"])
    with checks.step("PyJWT verifies the issued token against exchange-svc's JWKS"):
        claims = jwt.decode(token, jwks.get_signing_key_from_jwt(token).key, algorithms=["EdDSA", "ES256"],
                            audience=args.audience, issuer=server["issuer"])
    checks.expect("sub is the person", claims.get("sub") == args.person)
    checks.expect("act.sub is the agent", claims.get("act", {}).get("sub") == args.client_id)
    checks.expect("azp is the agent", claims.get("azp") == args.client_id)
    checks.expect("one audience", claims.get("aud") == args.audience)
    checks.expect("grant id", str(claims.get("grant_id", "")).startswith("grt_"))
    with checks.step("a tampered token fails verification"):
        header, payload, signature = token.split(".")
        forged = ".".join([header, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature])
        try:
            jwt.decode(forged, jwks.get_signing_key_from_jwt(token).key, algorithms=["EdDSA", "ES256"],
                       audience=args.audience)
        except jwt.InvalidTokenError:
            pass
        else:
            raise AssertionError("a tampered token verified")

    response = requests.post(server["introspection_endpoint"], data={"token": token}, timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {actor}"})
    checks.expect("introspection answers 200", response.status_code == 200, str(response.status_code))
    body = response.json()
    checks.expect("introspection: active", body.get("active") is True)
    checks.expect("introspection: act chain", body.get("act", {}).get("sub") == args.client_id)
    checks.expect("introspection: grant", body.get("grant_id") == claims.get("grant_id"))

    beyond = raw_exchange(server["token_endpoint"], args.person_token, actor, args.audience, args.scope + " admin")
    checks.expect("scope beyond the grant: 400 invalid_scope",
                  beyond.status_code == 400 and beyond.json().get("error") == "invalid_scope", beyond.text[:200])
    tampered = args.person_token[:-6] + ("AAAAAA" if not args.person_token.endswith("AAAAAA") else "BBBBBB")
    refused = raw_exchange(server["token_endpoint"], tampered, actor, args.audience, args.scope)
    checks.expect("tampered subject token: 400 invalid_request",
                  refused.status_code == 400 and refused.json().get("error") == "invalid_request", refused.text[:200])
    checks.expect("no token in refusals", "access_token" not in beyond.json() and "access_token" not in refused.json())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ["--identity", "--exchange", "--client-id", "--client-secret", "--person-token",
                 "--person", "--audience", "--scope"]:
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    checks = Checks()
    try:
        run(args, checks)
    except CheckFailed as failure:
        print(f"exchange interop FAILED at check {checks.passed + 1}: {failure}", file=sys.stderr)
        return 1
    except Exception as exc:  # setup failures (metadata, network)
        print(f"exchange interop FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "checks": checks.passed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
