#!/usr/bin/env python3
"""Writes deploy/helm/agentsec/values.schema.json (JSON Schema draft-07).

Every object is closed (`additionalProperties: false`), so an unknown key
or a value of the wrong type fails `helm lint/template/install/upgrade`.
Each service's `config` accepts only the TOML keys the chart does not wire
itself, with the ranges the services' config validation enforces
(*/src/config.rs, common/src/config.rs, common/src/audit/client/config.rs,
common/src/admin_token.rs, common/src/upstream.rs).

    python3 scripts/helm_values_schema.py          # rewrite the file
    python3 scripts/helm_values_schema.py --check  # fail when it differs
"""

import json
import sys
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "deploy/helm/agentsec/values.schema.json"


def obj(properties, required=(), description=None):
    out = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def string(description=None, **extra):
    out = {"type": "string", **extra}
    if description:
        out["description"] = description
    return out


def integer(minimum=None, maximum=None, description=None):
    out = {"type": "integer"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    if description:
        out["description"] = description
    return out


BOOL = {"type": "boolean"}
ANY_MAP = {"type": "object"}
ANY_LIST = {"type": "array"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
INT_OR_PERCENT = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": "^[0-9]+%$"},
    ]
}
HTTP_URL = string(pattern="^https?://[^/]+.*[^/]$")
OPTIONAL_HTTP_URL = {"anyOf": [{"type": "string", "maxLength": 0}, HTTP_URL]}
SECRET_NAME = string(
    "Name of a Secret in the release namespace (empty: none).",
    pattern="^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
    maxLength=253,
)
SECRET_KEY = string("Key in the Secret.", pattern="^[-._a-zA-Z0-9]+$")


def secret_ref(extra=None):
    props = {"existingSecret": SECRET_NAME, "key": SECRET_KEY}
    props.update(extra or {})
    return obj(props)


ALGORITHMS = {
    "type": "array",
    "minItems": 1,
    "items": {"enum": ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]},
}

# External issuers (identity-svc [[trusted_issuers]], exchange-svc [[user_issuers]]):
# common/src/issuer_config.rs.
def issuer_entry(with_audience):
    props = {
        "issuer": string(maxLength=512, pattern="^https?://"),
        "jwks": string("The key set as a JSON string (exactly one of jwks and jwks_uri)."),
        "jwks_uri": string(pattern="^https?://"),
        "algorithms": ALGORITHMS,
        "jwks_cache_secs": integer(10, 86400),
    }
    required = ["issuer"]
    if with_audience:
        props["audience"] = string(minLength=1, maxLength=256)
        required.append("audience")
    return obj(props, required)


TOKEN_ISSUER = obj(
    {
        "issuer": string(minLength=1, maxLength=256),
        "jwks_uri": string(pattern="^https?://"),
        "jwks": string(),
        "algorithms": {
            "type": "array",
            "minItems": 1,
            "items": {"enum": ["EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]},
        },
    },
    ["issuer"],
)

TARGET = obj(
    {
        "audience": string(minLength=1, maxLength=256, pattern="^\\S+$"),
        "allow_impersonation": BOOL,
    },
    ["audience"],
)

# TOML sections the services share (the keys the chart does not wire).
SERVER = obj({"shutdown_grace_secs": integer(0, 300)})
DATABASE = obj(
    {
        "max_connections": integer(1, 1000),
        "connect_timeout_secs": integer(1, 300),
        "acquire_timeout_ms": integer(50, 60_000),
    }
)
AUDIT_CLIENT = obj(
    {
        "queue_capacity": integer(1, 1_000_000),
        "max_batch": integer(1, 1000),
        "flush_interval_ms": integer(0, 60_000),
        "when_full": {"enum": ["wait", "fail"]},
        "retry_initial_backoff_ms": integer(1, 60_000),
        "retry_max_backoff_ms": integer(1, 600_000),
        "shutdown_flush_timeout_secs": integer(1, 3600),
    }
)
ADMIN = obj({"jwks_cache_ttl_secs": integer(1, 86400), "leeway_secs": integer(0, 300)})
IDENTITY_CLIENT = obj({"timeout_ms": integer(10, 60_000)})

CONFIG = {
    "identity": obj(
        {
            "server": SERVER,
            "database": DATABASE,
            "signing": obj({"algorithm": {"enum": ["EdDSA", "ES256"]}}),
            "tokens": obj(
                {
                    "lifetime_secs": integer(1, 86400),
                    "leeway_secs": integer(0, 300),
                    "max_assertion_lifetime_secs": integer(1, 3600),
                    "admin_audience": string(minLength=1, maxLength=256),
                }
            ),
            "audit": AUDIT_CLIENT,
        },
        description="identity-svc TOML keys not wired by the chart.",
    ),
    "policy": obj(
        {
            "server": SERVER,
            "database": DATABASE,
            "admin": ADMIN,
            "decisions": obj(
                {
                    "cache_ttl_secs": integer(0, 3600),
                    "audit_backlog": integer(1, 1_000_000),
                    "callers": {"enum": ["bearer", "any"]},
                    "caller_audience": string(minLength=1, maxLength=256),
                }
            ),
            "cache": obj(
                {
                    "enabled": BOOL,
                    "local_capacity": integer(1, 10_000_000),
                    "redis_timeout_ms": integer(1, 1000),
                    "entry_ttl_secs": integer(1, 86400),
                }
            ),
            "audit": AUDIT_CLIENT,
            "identity": IDENTITY_CLIENT,
            "revocations": obj({"max_staleness_ms": integer(500, 60_000), "timeout_ms": integer(10, 60_000)}),
            "authzen": obj({
                "pdp_url": string(pattern="^https?://[^/?#]+[^?#]*[^/?#]$"),
                "default_tenant": string(pattern="^[a-z0-9][a-z0-9_-]{0,63}$"),
            }),
        },
        description="policy-svc TOML keys not wired by the chart.",
    ),
    "exchange": obj(
        {
            "server": SERVER,
            "database": DATABASE,
            "signing": obj({"algorithm": {"enum": ["EdDSA", "ES256"]}}),
            "grants": obj(
                {
                    "max_lifetime_secs": integer(60, 31_622_400),
                    "max_chain_depth": integer(1, 16),
                    "leeway_secs": integer(0, 300),
                    "default_tenant": string(pattern="^[a-z0-9][a-z0-9_-]{0,63}$"),
                }
            ),
            "admin": ADMIN,
            "audit": AUDIT_CLIENT,
            "identity": IDENTITY_CLIENT,
            "policy": obj({"timeout_ms": integer(10, 60_000)}),
            "exchange": obj(
                {
                    "audience": string(maxLength=256),
                    "max_token_lifetime_secs": integer(60, 86400),
                    "max_chain_depth": integer(1, 16),
                }
            ),
        },
        description="exchange-svc TOML keys not wired by the chart.",
    ),
    "audit": obj(
        {
            "audience": string(minLength=1, maxLength=256),
            "server": SERVER,
            "database": DATABASE,
            "signing": obj({"algorithm": {"enum": ["EdDSA"]}}),
            "chain": obj(
                {
                    "checkpoint_every_events": integer(1, 1_000_000),
                    "checkpoint_every_secs": integer(1, 86400),
                    "max_group_events": integer(1, 100_000),
                    "queue_jobs": integer(1, 100_000),
                }
            ),
            "admin": ADMIN,
        },
        description="audit-svc TOML keys not wired by the chart.",
    ),
}

PROBE = obj(
    {
        "enabled": BOOL,
        "periodSeconds": integer(1),
        "timeoutSeconds": integer(1),
        "failureThreshold": integer(1),
        "handler": {
            "type": "object",
            "description": "Replaces the probe's handler (grpc, tcpSocket, exec or httpGet), e.g. an exec of grpc_health_probe -tls in an image that has it.",
        },
    }
)


def service(key):
    props = {
        "enabled": BOOL,
        "externalEndpoint": OPTIONAL_HTTP_URL,
        "replicaCount": integer(0),
        "config": CONFIG[key],
        "database": obj(
            {
                "schema": string(pattern="^[a-z_][a-z0-9_]{0,62}$"),
                "existingSecret": SECRET_NAME,
                "key": SECRET_KEY,
            }
        ),
        "service": obj(
            {
                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "annotations": STRING_MAP,
                "appProtocol": string(),
            }
        ),
        "serviceAccount": obj(
            {"create": BOOL, "name": string(), "annotations": STRING_MAP}
        ),
        "resources": ANY_MAP,
        "autoscaling": obj(
            {
                "enabled": BOOL,
                "minReplicas": integer(1),
                "maxReplicas": integer(1),
                "targetCPUUtilizationPercentage": {"type": ["integer", "null"], "minimum": 1},
                "targetMemoryUtilizationPercentage": {"type": ["integer", "null"], "minimum": 1},
                "behavior": ANY_MAP,
            }
        ),
        "pdb": obj(
            {
                "enabled": BOOL,
                "minAvailable": {"anyOf": [{"type": "null"}, INT_OR_PERCENT]},
                "maxUnavailable": {"anyOf": [{"type": "null"}, INT_OR_PERCENT]},
            }
        ),
        "probes": obj({"startup": PROBE, "readiness": PROBE, "liveness": PROBE}),
        "strategy": ANY_MAP,
        "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "podAnnotations": STRING_MAP,
        "podLabels": STRING_MAP,
        "nodeSelector": STRING_MAP,
        "tolerations": ANY_LIST,
        "affinity": ANY_MAP,
        "topologySpreadConstraints": ANY_LIST,
        "priorityClassName": string(),
        "networkPolicyFrom": ANY_LIST,
    }
    if key in ("identity", "exchange"):
        props["issuer"] = OPTIONAL_HTTP_URL
    if key in ("identity", "exchange", "audit"):
        props["signingKey"] = secret_ref()
    if key == "identity":
        props["trustedIssuers"] = {"type": "array", "items": issuer_entry(False)}
        props["bootstrapAdmin"] = secret_ref(
            {
                "enabled": BOOL,
                "clientId": {**string(minLength=1, maxLength=128), "not": {"pattern": "^agt_"}},
            }
        )
        props["credentials"] = secret_ref()
    if key == "policy":
        props["extraTokenIssuers"] = {"type": "array", "items": TOKEN_ISSUER}
    if key == "exchange":
        props["targets"] = {"type": "array", "items": TARGET}
        props["userIssuers"] = {"type": "array", "items": issuer_entry(True)}
    return obj(props)


CLIENT_ID = {**string(pattern="^[a-z0-9_]{1,64}$"), "not": {"pattern": "^agt_"}}

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "AgentSec Helm chart values",
    **obj(
        {
            "global": obj(
                {
                    "imageRegistry": string(),
                    "imagePullSecrets": {"type": "array", "items": obj({"name": string()}, ["name"])},
                }
            ),
            "nameOverride": string(),
            "fullnameOverride": string(),
            "commonLabels": STRING_MAP,
            "image": obj(
                {
                    "registry": string(),
                    "repository": string(minLength=1),
                    "tag": string(),
                    "digest": string(pattern="^(sha256:[a-f0-9]{64})?$"),
                    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                }
            ),
            "database": secret_ref(),
            "redis": secret_ref({"keyPrefix": string()}),
            "secrets": obj({"generate": BOOL}),
            "telemetry": obj(
                {
                    "logFormat": {"enum": ["json", "text"]},
                    "logFilter": string(minLength=1),
                    "otlp": obj({"endpoint": OPTIONAL_HTTP_URL}),
                }
            ),
            "tls": obj(
                {
                    "enabled": BOOL,
                    "clientAuth": {"enum": ["none", "optional", "required"]},
                    "reloadIntervalSecs": integer(1, 3600),
                    "existingSecrets": obj({k: SECRET_NAME for k in ("identity", "policy", "exchange", "audit")}),
                    "ca": secret_ref(),
                    "certManager": obj(
                        {
                            "enabled": BOOL,
                            "issuerRef": obj({"name": string(), "kind": string(), "group": string()}),
                            "duration": string(pattern="^[0-9hms.]+$"),
                            "renewBefore": string(pattern="^[0-9hms.]+$"),
                            "privateKey": obj(
                                {
                                    "algorithm": {"enum": ["ECDSA", "RSA", "Ed25519"]},
                                    "size": integer(256),
                                    "rotationPolicy": {"enum": ["Always", "Never"]},
                                }
                            ),
                            "extraDnsNames": obj(
                                {k: {"type": "array", "items": string()} for k in ("identity", "policy", "exchange", "audit")}
                            ),
                        }
                    ),
                }
            ),
            "serviceClients": obj(
                {
                    k: secret_ref({"clientId": CLIENT_ID})
                    for k in ("exchange", "policy")
                }
            ),
            "migrations": obj(
                {
                    "mode": {
                        "enum": ["job", "initContainer", "startup"],
                        "description": "Who runs `<service> --migrate`: a Job per service, an init container per pod, or each replica as it starts.",
                    },
                    "hooks": BOOL,
                    "annotations": STRING_MAP,
                    "backoffLimit": integer(0, 100),
                    "activeDeadlineSeconds": integer(1),
                    "resources": ANY_MAP,
                }
            ),
            "configCheck": obj(
                {
                    "enabled": BOOL,
                    "mode": {"enum": ["hook", "job"]},
                    "activeDeadlineSeconds": integer(1),
                    "resources": ANY_MAP,
                }
            ),
            "defaults": obj(
                {
                    "podSecurityContext": ANY_MAP,
                    "containerSecurityContext": ANY_MAP,
                    "nodeSelector": STRING_MAP,
                    "tolerations": ANY_LIST,
                    "affinity": ANY_MAP,
                    "topologySpreadConstraints": ANY_LIST,
                    "priorityClassName": string(),
                    "podAnnotations": STRING_MAP,
                    "podLabels": STRING_MAP,
                    "terminationGracePeriodSeconds": integer(0),
                    "preStopSleepSeconds": integer(0),
                    "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                }
            ),
            "identity": service("identity"),
            "policy": service("policy"),
            "exchange": service("exchange"),
            "audit": service("audit"),
            "networkPolicy": obj(
                {
                    "enabled": BOOL,
                    "dns": ANY_LIST,
                    "database": obj({"to": ANY_LIST, "port": integer(1, 65535)}),
                    "redis": obj({"to": ANY_LIST, "port": integer(1, 65535)}),
                    "otlp": obj({"to": ANY_LIST, "port": integer(1, 65535)}),
                    "metricsFrom": ANY_LIST,
                    "extraEgress": ANY_LIST,
                }
            ),
            "serviceMonitor": obj(
                {
                    "enabled": BOOL,
                    "labels": STRING_MAP,
                    "interval": string(),
                    "scrapeTimeout": string(),
                    "scheme": {"enum": ["", "http", "https"]},
                    "tlsConfig": ANY_MAP,
                    "relabelings": ANY_LIST,
                    "metricRelabelings": ANY_LIST,
                }
            ),
        }
    ),
}


def main():
    text = json.dumps(SCHEMA, indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} differs from scripts/helm_values_schema.py; run it", file=sys.stderr)
            return 1
        print(f"{SCHEMA_PATH.name} matches scripts/helm_values_schema.py")
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
