"""Independent check of `agentctl dev`: Python grpcio asks each default port
for grpc.health.v1 status and lists services over reflection.

Usage: python smoke_health.py [host] ; exits non-zero on any failure.
"""

import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVICES = {
    7401: "agentsec.identity.v1.IdentityService",
    7402: "agentsec.policy.v1.PolicyService",
    7403: "agentsec.exchange.v1.ExchangeService",
    7404: "agentsec.audit.v1.AuditService",
}


def check(host: str, port: int, service: str, deadline: float) -> None:
    channel = grpc.insecure_channel(f"{host}:{port}")
    grpc.channel_ready_future(channel).result(timeout=max(deadline - time.time(), 0.1))
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", service):
        # The service name is readiness: NOT_SERVING until the service can
        # answer (e.g. policy-svc's first revocation load), polled as a
        # readiness probe polls it.
        while True:
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            if time.time() > deadline:
                raise SystemExit(f"{port} {name or '<server>'}: status {status}")
            time.sleep(0.2)
    print(f"{host}:{port} {service}: SERVING")


def main() -> None:
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    deadline = time.time() + 120
    for port, service in SERVICES.items():
        check(host, port, service, deadline)


if __name__ == "__main__":
    main()
