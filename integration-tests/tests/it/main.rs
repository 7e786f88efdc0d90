//! End-to-end tests: one binary, one module per area (each extra test
//! binary would be another slow link).

mod audit;
mod audit_access;
mod audit_client;
mod audit_replicas;
mod config_errors;
mod example_configs;
mod exchange_grants;
mod exchange_tokens;
mod health_and_reflection;
mod http_errors;
mod identity_credentials;
mod identity_federation;
mod identity_http;
mod identity_keys_and_replicas;
mod identity_registry;
mod identity_support;
mod identity_tokens;
mod metrics;
mod migrations;
mod policy_authzen;
mod policy_cache;
mod policy_check_token;
mod policy_decisions;
mod policy_ext_authz;
mod policy_sets;
mod readiness;
mod revocation;
mod service_clients;
mod signing_keys;
mod telemetry;
mod tls;
mod token_conformance;
