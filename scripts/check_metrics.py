#!/usr/bin/env python3
"""Metrics check: every service's `/metrics` parses with the Prometheus
project's own OpenMetrics parser, and its counters move.

Scrapes identity-svc, policy-svc, exchange-svc and audit-svc (`agentctl dev`
ports by default) and parses each with
`prometheus_client.openmetrics.parser`, which rejects anything that is not
valid OpenMetrics text (missing `# EOF`, a sample outside its family, a bad
value). Checks that each service has the request histograms, that no label
value holds an agent id, and that what CI's interop steps did before shows:
client_credentials tokens issued, an exchange issued, decisions answered,
audit events appended. Then asks identity-svc for a token with a wrong secret
and checks that exactly one client_credentials refusal with `invalid_client`
was counted.

Usage: check_metrics.py [--host 127.0.0.1] [--client-id ID]
Needs: pip install prometheus-client requests
Prints "metrics: N passed, 0 failed" and exits 0, or names the failed check
on stderr and exits 1.
"""
import argparse
import sys

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

TIMEOUT = 10
PORTS = {"identity-svc": 7401, "policy-svc": 7402, "exchange-svc": 7403, "audit-svc": 7404}


class CheckFailed(Exception):
    """A named check failed; the message is `check: detail`."""


def scrape(host, port):
    """The families of one service's /metrics, by name."""
    response = requests.get(f"http://{host}:{port}/metrics", timeout=TIMEOUT)
    if response.status_code != 200:
        raise CheckFailed(f"scrape {port}: HTTP {response.status_code}")
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("application/openmetrics-text"):
        raise CheckFailed(f"scrape {port}: content type {content_type!r}")
    try:
        families = list(text_string_to_metric_families(response.text))
    except ValueError as err:
        raise CheckFailed(f"parse {port}: {err}") from err
    return {family.name: family for family in families}


def value(families, family, sample, **labels):
    """The value of `sample` with exactly `labels` in `family`; 0 if absent."""
    if family not in families:
        raise CheckFailed(f"family {family}: missing")
    for found in families[family].samples:
        if found.name == sample and found.labels == labels:
            return found.value
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--client-id", default="agt_unknown_metrics_check")
    args = parser.parse_args()
    passed = 0
    try:
        # A labelled family appears with its first sample: the first scrape
        # makes sure every service has served an HTTP request.
        for port in PORTS.values():
            scrape(args.host, port)
        scraped = {name: scrape(args.host, port) for name, port in PORTS.items()}
        passed += len(scraped)
        for name, families in scraped.items():
            for family in (
                "agentsec_grpc_server_request_duration_seconds",
                "agentsec_http_server_request_duration_seconds",
            ):
                if families.get(family, None) is None or families[family].type != "histogram":
                    raise CheckFailed(f"{name}: no histogram {family}")
            for family in families.values():
                for sample in family.samples:
                    if any(v.startswith("agt_") for v in sample.labels.values()):
                        raise CheckFailed(f"{name}: an agent id in {sample.name}{sample.labels}")
            passed += 1

        identity = scraped["identity-svc"]
        issued = value(identity, "agentsec_identity_tokens_issued",
                       "agentsec_identity_tokens_issued_total", grant_type="client_credentials")
        if issued < 1:
            raise CheckFailed("identity-svc: no client_credentials token counted as issued")
        exchanged = value(scraped["exchange-svc"], "agentsec_exchange_exchanges",
                          "agentsec_exchange_exchanges_total", outcome="issued")
        if exchanged < 1:
            raise CheckFailed("exchange-svc: no exchange counted as issued")
        decisions = scraped["policy-svc"]["agentsec_policy_decisions"].samples
        if sum(sample.value for sample in decisions) < 1:
            raise CheckFailed("policy-svc: no decision counted")
        appended = value(scraped["audit-svc"], "agentsec_audit_events_appended",
                         "agentsec_audit_events_appended_total", duplicate="false")
        if appended < 1:
            raise CheckFailed("audit-svc: no event counted as appended")
        passed += 4

        refusal = {"grant_type": "client_credentials", "error": "invalid_client"}
        before = value(identity, "agentsec_identity_tokens_refused",
                       "agentsec_identity_tokens_refused_total", **refusal)
        response = requests.post(
            f"http://{args.host}:{PORTS['identity-svc']}/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": args.client_id,
                  "client_secret": "not-the-secret"},
            timeout=TIMEOUT,
        )
        if response.json().get("error") != "invalid_client":
            raise CheckFailed(f"refusal: answered {response.status_code} {response.text[:200]}")
        after = value(scrape(args.host, PORTS["identity-svc"]), "agentsec_identity_tokens_refused",
                      "agentsec_identity_tokens_refused_total", **refusal)
        if after - before != 1:
            raise CheckFailed(f"refusal: counted {after - before} refusals, not 1")
        passed += 1
    except (CheckFailed, requests.RequestException) as err:
        print(f"metrics check failed: {err}", file=sys.stderr)
        print(f"metrics: {passed} passed, 1 failed")
        return 1
    print(f"metrics: {passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
