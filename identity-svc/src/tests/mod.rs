//! Unit tests of the registry's rules through the in-memory stores, with a
//! real audit client (its endpoint unreachable, so every queued event stays
//! pending and is counted) and the in-process invalidation bus.

mod credentials;
mod registry;

use std::sync::Arc;

use agentsec_common::admin_token::AdminScope;
use agentsec_common::audit::client::{AuditClient, AuditClientConfig, AuditSender};
use agentsec_common::events::Events;
use agentsec_common::invalidation::{LocalBus, Publisher, ReceivedInvalidation};
use agentsec_common::keys::{Jwks, SigningAlgorithm, SigningKey};
use agentsec_common::store::MemoryTables;
use agentsec_common::tls::ClientTls;
use agentsec_proto::common::v1::PageRequest;
use tokio::sync::broadcast;

use crate::config::TrustedIssuerConfig;
use crate::domain::agent::{AgentInput, Ceiling, NewAgent};
use crate::domain::registry::Registry;
use crate::federation::Federation;
use crate::secrets::Pepper;
use crate::standing::Standing;
use crate::store::memory::{MemoryRegistryStore, Tables};

/// The one issuer the test registry trusts for federated credentials.
pub const TRUSTED_ISSUER: &str = "https://issuer.test";

pub struct Harness {
    pub registry: Registry<MemoryRegistryStore>,
    audit: AuditClient,
    _sender: AuditSender,
    bus: broadcast::Receiver<Arc<[u8]>>,
}

impl Harness {
    pub fn new() -> Self {
        let config = AuditClientConfig {
            endpoint: "http://127.0.0.1:1".to_owned(),
            ..AuditClientConfig::default()
        };
        let tls = ClientTls::public_roots().expect("client TLS");
        let (audit, sender) = AuditClient::start(config, None, &tls).expect("audit client");
        let local = LocalBus::new();
        let bus = local.subscribe();
        let publisher = Publisher::new(None, Some(local), "https://identity.test".to_owned());
        let events = Events::new(crate::events::SERVICE, audit.clone(), publisher);
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).expect("key");
        let jwks = Jwks {
            keys: vec![key.public_jwk().clone()],
        };
        let trusted = TrustedIssuerConfig {
            issuer: TRUSTED_ISSUER.to_owned(),
            jwks: Some(serde_json::to_string(&jwks).expect("jwks")),
            jwks_uri: None,
            algorithms: vec!["EdDSA".to_owned()],
            jwks_cache_secs: 300,
        };
        let registry = Registry {
            store: MemoryRegistryStore::default(),
            events,
            pepper: Pepper::new(vec![7u8; 32]),
            federation: Arc::new(Federation::new(&[trusted], 0).expect("federation")),
            // The registry only tells the standing what changed; it never
            // makes it read the database.
            standing: Standing::new(sea_orm::DatabaseConnection::default()),
        };
        Self {
            registry,
            audit,
            _sender: sender,
            bus,
        }
    }

    pub fn tables(&self) -> &MemoryTables<Tables> {
        &self.registry.store.tables
    }

    /// A copy of the committed tables.
    pub async fn stored(&self) -> Tables {
        self.tables().read(Tables::clone).await.expect("readable")
    }

    /// Audit events queued so far.
    pub fn audited(&self) -> usize {
        self.audit.pending()
    }

    /// Invalidation events published since the last call.
    pub fn published(&mut self) -> Vec<ReceivedInvalidation> {
        let mut events = Vec::new();
        while let Ok(payload) = self.bus.try_recv() {
            events.extend(ReceivedInvalidation::parse(&payload));
        }
        events
    }
}

pub fn global() -> AdminScope {
    AdminScope::Global
}

pub fn tenant_admin(tenant: &str) -> AdminScope {
    AdminScope::Tenant(tenant.to_owned())
}

pub fn fields(name: &str) -> AgentInput {
    AgentInput {
        owner: "alice".into(),
        name: name.into(),
        ceiling: Some(Ceiling {
            audiences: vec!["github-mcp".into()],
            scopes: vec!["repo:read".into()],
        }),
        ..AgentInput::default()
    }
}

pub fn new_agent(tenant: &str, name: &str) -> NewAgent {
    NewAgent {
        tenant: tenant.into(),
        fields: fields(name),
    }
}

pub fn page(size: i32, token: &str) -> PageRequest {
    PageRequest {
        page_size: size,
        page_token: token.to_owned(),
    }
}
