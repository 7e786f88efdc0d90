//! Tracing end to end: spans reach a real OTLP/gRPC receiver under the name
//! of the service that opened them, one agent action across the four
//! services is one trace with the callers' spans as parents, and audit
//! events carry the trace and span ids of the call that caused them, with
//! or without an exporter.
//!
//! The cluster tests run on the default single-threaded test runtime and
//! install their subscriber for this thread only: the services are tasks
//! of that runtime, so the subscriber sees every span they open, and no
//! other test's.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::server::bind;
use agentsec_common::telemetry::{current_trace_ids, grpc_server_span, service_context, Tracers};
use agentsec_integration_tests::audit_trail::{agent_events, events_until};
use agentsec_integration_tests::cluster::TEST_TARGET;
use agentsec_integration_tests::{eventually, http, Service, TestCluster};
use agentsec_proto::audit::v1::{Event, EventFilter, StoredEvent};
use agentsec_proto::common::v1::{Effect, Resource};
use agentsec_proto::policy::v1::CheckTokenRequest;
use anyhow::{bail, ensure, Context as _};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::codegen::http as tonic_http;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::exchange_grants::person_token;
use crate::exchange_tokens::{request, Fixture};
use crate::policy_sets::policy;

/// The trace and span of the caller (an agent's runtime) in every test.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
/// How long spans and audit events may take to arrive.
const DEADLINE: Duration = Duration::from_secs(20);
/// The services' names, as `agentctl dev` and the servers use them.
const SERVICES: [&str; 4] = ["identity-svc", "policy-svc", "exchange-svc", "audit-svc"];

const EXCHANGE: &str = "agentsec.exchange.v1.ExchangeService/Exchange";
const INTROSPECT: &str = "agentsec.identity.v1.IdentityService/IntrospectToken";
const BATCH_CHECK: &str = "agentsec.policy.v1.PolicyService/BatchCheck";
const CHECK_TOKEN: &str = "agentsec.policy.v1.PolicyService/CheckToken";
const APPEND: &str = "agentsec.audit.v1.AuditService/AppendEvents";
const TOKEN: &str = "POST /oauth2/token";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
}

/// A minimal OTLP trace collector.
struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// One exported span and the `service.name` of its resource.
struct Exported {
    service: String,
    span: Span,
}

/// An OTLP receiver on an ephemeral port and every span it was sent.
struct Collector {
    endpoint: String,
    exported: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    spans: Vec<Exported>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Collector {
    async fn start() -> anyhow::Result<Self> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (sender, exported) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Receiver(sender)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Ok(Self {
            endpoint,
            exported,
            spans: Vec::new(),
            task,
        })
    }

    /// Flushes `tracers` and collects spans until `complete` holds for
    /// them, or fails after [`DEADLINE`].
    async fn spans_until(
        &mut self,
        tracers: &Arc<Tracers>,
        complete: impl Fn(&[Exported]) -> bool,
    ) -> anyhow::Result<&[Exported]> {
        let collector = RefCell::new(&mut *self);
        let arrived = eventually("the expected spans", DEADLINE, || {
            let (flushing, collector, complete) = (tracers.clone(), &collector, &complete);
            async move {
                // The exporters answer on this runtime: flush off it.
                tokio::task::spawn_blocking(move || flushing.force_flush()).await??;
                let mut collector = collector.borrow_mut();
                collector.receive();
                Ok(complete(&collector.spans).then_some(()))
            }
        })
        .await;
        if let Err(err) = arrived {
            let seen: Vec<String> = self
                .spans
                .iter()
                .map(|exported| format!("{} {}", exported.service, exported.span.name))
                .collect();
            return Err(err.context(format!("got {seen:?}")));
        }
        Ok(&self.spans)
    }

    /// Takes the spans the receiver has been sent so far.
    fn receive(&mut self) {
        while let Ok(batch) = self.exported.try_recv() {
            for resource_spans in batch.resource_spans {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|resource| &resource.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|value| match &value.value {
                        Some(Value::StringValue(name)) => Some(name.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    self.spans
                        .extend(scope_spans.spans.into_iter().map(|span| Exported {
                            service: service.clone(),
                            span,
                        }));
                }
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The services' subscriber without logs: spans at INFO and above, as the
/// default log filter lets through.
fn subscriber(tracers: &Tracers) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry()
        .with(LevelFilter::INFO)
        .with(tracers.layer())
}

/// Stops the exporters off the runtime they answer on.
async fn shut_down(tracers: Arc<Tracers>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || tracers.shutdown()).await?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| value.value.as_ref())
}

fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key) {
        Some(Value::StringValue(value)) => Some(value),
        _ => None,
    }
}

fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::IntValue(value)) => Some(*value),
        _ => None,
    }
}

fn string_array_attribute(span: &Span, key: &str) -> Vec<String> {
    match attribute(span, key) {
        Some(Value::ArrayValue(array)) => array
            .values
            .iter()
            .filter_map(|value| match &value.value {
                Some(Value::StringValue(item)) => Some(item.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The spans of [`TRACE_ID`].
fn of_trace(spans: &[Exported]) -> Vec<&Exported> {
    spans
        .iter()
        .filter(|exported| hex(&exported.span.trace_id) == TRACE_ID)
        .collect()
}

/// The one span of `service` named `name` in `spans`.
fn one<'a>(spans: &[&'a Exported], service: &str, name: &str) -> anyhow::Result<&'a Span> {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|exported| exported.service == service && exported.span.name == name)
        .map(|exported| &exported.span)
        .collect();
    match found.as_slice() {
        [span] => Ok(span),
        _ => bail!("{} spans `{name}` of {service}", found.len()),
    }
}

/// Polls audit-svc until the events of [`TRACE_ID`] satisfy `complete`.
async fn trace_events(
    cluster: &TestCluster,
    complete: impl Fn(&[Event]) -> bool,
) -> anyhow::Result<Vec<Event>> {
    let events = events_until(
        cluster,
        &format!("the audit events of trace {TRACE_ID}"),
        DEADLINE,
        EventFilter {
            trace_id: TRACE_ID.to_owned(),
            ..EventFilter::default()
        },
        |stored| complete(&events_of(stored.to_vec())),
    )
    .await?;
    Ok(events_of(events))
}

/// The events of `stored`.
fn events_of(stored: Vec<StoredEvent>) -> Vec<Event> {
    stored
        .into_iter()
        .filter_map(|stored| stored.event)
        .collect()
}

/// The events of one exchange (`token.exchanged` and its two decisions:
/// audience and scope) and one CheckToken decision.
fn exchange_and_check_audited(events: &[Event]) -> bool {
    let count = |kind: &str| events.iter().filter(|event| event.kind == kind).count();
    count("token.exchanged") >= 1 && count("decision") >= 3
}

/// What an agent does in every cluster test: with the caller's
/// `traceparent` on each call, it gets a token from identity-svc (HTTP),
/// exchanges alice's token and its own for a delegated one (gRPC), and the
/// target system has policy-svc check the delegated token (CheckToken).
async fn agent_action(fx: &mut Fixture) -> anyhow::Result<()> {
    let agent = fx.a.clone();
    fx.grant("alice", &agent.agent.id, &["repo:read"], 1)
        .await?;
    // Nothing of the set-up is still queued in an audit client: every
    // batch the action sends holds its own events only.
    agent_events(
        &fx.cluster,
        &agent.agent.id,
        &["grant.created"],
        crate::exchange_grants::ASYNC_DEADLINE,
    )
    .await?;

    let traceparent = traceparent();
    let exchange_issuer = fx.exchange_issuer();
    let answer = http::post_form(
        fx.cluster.addr(Service::Identity),
        "/oauth2/token",
        &[("traceparent", &traceparent)],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &agent.id),
            ("client_secret", &agent.secret),
            ("audience", &exchange_issuer),
        ],
    )
    .await?;
    ensure!(answer.status == 200, "token request: {}", answer.status);
    let actor = answer.json()?["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned();

    let mut exchange = tonic::Request::new(request(
        &person_token("alice")?,
        &actor,
        TEST_TARGET,
        "repo:read",
    ));
    exchange
        .metadata_mut()
        .insert("traceparent", traceparent.parse()?);
    let delegated = fx.exchange.exchange(exchange).await?.into_inner();

    let mut check = tonic::Request::new(CheckTokenRequest {
        token: delegated.access_token,
        audience: TEST_TARGET.to_owned(),
        action: "token:exchange".to_owned(),
        resource: Some(Resource {
            r#type: "audience".to_owned(),
            id: "audience:x".to_owned(),
            ..Resource::default()
        }),
        context: None,
    });
    check
        .metadata_mut()
        .insert("traceparent", traceparent.parse()?);
    let checked = policy(&fx.cluster)
        .await?
        .check_token(check)
        .await?
        .into_inner();
    ensure!(
        checked.decision.unwrap_or_default().effect == Effect::Allow as i32,
        "the delegated token was not allowed at its audience"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_span_continues_the_callers_trace_under_its_services_name() -> anyhow::Result<()> {
    let mut collector = Collector::start().await?;
    let tracers = Arc::new(Tracers::otlp(
        &collector.endpoint,
        "agentsec-it",
        &["identity-svc"],
    )?);
    let subscriber = tracing_subscriber::registry().with(tracers.layer());
    let mut headers = tonic_http::HeaderMap::new();
    headers.insert("traceparent", traceparent().parse()?);
    let seen_inside = tracing::subscriber::with_default(subscriber, || {
        let span = grpc_server_span(
            "/agentsec.identity.v1.IdentityService/GetAgent",
            &headers,
            &service_context("identity-svc"),
        );
        let seen = span.in_scope(current_trace_ids);
        // Outside any request: the process's own name.
        tracing::info_span!("housekeeping").in_scope(|| {});
        seen
    });
    assert_eq!(seen_inside.trace_id, TRACE_ID);
    assert_eq!(seen_inside.span_id.len(), 16);
    assert_ne!(seen_inside.span_id, CALLER_SPAN_ID);

    let spans = collector
        .spans_until(&tracers, |spans| spans.len() >= 2)
        .await?;
    let request = spans
        .iter()
        .find(|exported| exported.service == "identity-svc")
        .map(|exported| &exported.span)
        .context("no span under identity-svc")?;
    assert_eq!(
        request.name,
        "agentsec.identity.v1.IdentityService/GetAgent"
    );
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.trace_id), TRACE_ID);
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN_ID);
    assert_eq!(hex(&request.span_id), seen_inside.span_id);
    assert_eq!(string_attribute(request, "rpc.system"), Some("grpc"));
    assert_eq!(
        string_attribute(request, "rpc.service"),
        Some("agentsec.identity.v1.IdentityService")
    );
    assert_eq!(string_attribute(request, "rpc.method"), Some("GetAgent"));
    let housekeeping = spans
        .iter()
        .find(|exported| exported.span.name == "housekeeping")
        .context("no span outside a request")?;
    assert_eq!(housekeeping.service, "agentsec-it");
    assert!(housekeeping.span.parent_span_id.is_empty());
    shut_down(tracers).await
}

#[tokio::test]
async fn an_exchange_and_a_token_check_are_one_trace_across_the_four_services() -> anyhow::Result<()>
{
    let mut collector = Collector::start().await?;
    let tracers = Arc::new(Tracers::otlp(
        &collector.endpoint,
        "agentsec-it",
        &SERVICES,
    )?);
    let _tracing = tracing::subscriber::set_default(subscriber(&tracers));
    let mut fx = Fixture::start().await?;
    agent_action(&mut fx).await?;
    let events = trace_events(&fx.cluster, exchange_and_check_audited).await?;

    // Complete once audit-svc's handling of both services' appends is in.
    let appended_from = |spans: &[&Exported], service: &str| {
        spans.iter().any(|server| {
            server.service == "audit-svc"
                && server.span.name == APPEND
                && spans.iter().any(|client| {
                    client.service == service
                        && client.span.name == APPEND
                        && client.span.span_id == server.span.parent_span_id
                })
        })
    };
    let spans = collector
        .spans_until(&tracers, |spans| {
            let traced = of_trace(spans);
            [
                ("identity-svc", TOKEN),
                ("identity-svc", INTROSPECT),
                ("exchange-svc", EXCHANGE),
                ("policy-svc", BATCH_CHECK),
                ("policy-svc", CHECK_TOKEN),
            ]
            .iter()
            .all(|(service, name)| {
                traced
                    .iter()
                    .any(|exported| exported.service == *service && exported.span.name == *name)
            }) && appended_from(&traced, "exchange-svc")
                && appended_from(&traced, "policy-svc")
        })
        .await?;
    let traced = of_trace(spans);

    // The caller's spans are the parents of its calls; exchange-svc's span
    // is the parent of the calls it makes.
    let token = one(&traced, "identity-svc", TOKEN)?;
    let exchange = one(&traced, "exchange-svc", EXCHANGE)?;
    let check_token = one(&traced, "policy-svc", CHECK_TOKEN)?;
    let batch_check = one(&traced, "policy-svc", BATCH_CHECK)?;
    let introspect = one(&traced, "identity-svc", INTROSPECT)?;
    for called_by_the_agent in [token, exchange, check_token] {
        assert_eq!(hex(&called_by_the_agent.parent_span_id), CALLER_SPAN_ID);
        assert_eq!(called_by_the_agent.kind, SpanKind::Server as i32);
    }
    assert_eq!(batch_check.parent_span_id, exchange.span_id);
    assert_eq!(introspect.parent_span_id, exchange.span_id);
    // Every span of the trace hangs off the caller's span or another of
    // its spans: one tree.
    for exported in &traced {
        let parent = hex(&exported.span.parent_span_id);
        assert!(
            parent == CALLER_SPAN_ID
                || traced
                    .iter()
                    .any(|other| other.span.span_id == exported.span.parent_span_id),
            "{} `{}` has parent {parent}, which is not in the trace",
            exported.service,
            exported.span.name
        );
    }
    // Appends continue the trace of the events they carry.
    for exported in traced.iter().filter(|exported| {
        exported.span.name == APPEND && exported.span.kind == SpanKind::Client as i32
    }) {
        assert_ne!(exported.service, "audit-svc");
        assert!(
            traced
                .iter()
                .any(|server| server.service == exported.service
                    && server.span.kind == SpanKind::Server as i32
                    && server.span.span_id == exported.span.parent_span_id),
            "{}'s append is not a child of one of its request spans",
            exported.service
        );
    }

    // What the spans say (RPC and HTTP conventions, decisions).
    assert_eq!(string_attribute(exchange, "rpc.system"), Some("grpc"));
    assert_eq!(
        string_attribute(exchange, "rpc.service"),
        Some("agentsec.exchange.v1.ExchangeService")
    );
    assert_eq!(string_attribute(exchange, "rpc.method"), Some("Exchange"));
    assert_eq!(int_attribute(exchange, "rpc.grpc.status_code"), Some(0));
    assert_eq!(string_attribute(token, "http.request.method"), Some("POST"));
    assert_eq!(string_attribute(token, "http.route"), Some("/oauth2/token"));
    assert_eq!(int_attribute(token, "http.response.status_code"), Some(200));
    let decision_id = string_attribute(check_token, "agentsec.decision.id")
        .context("CheckToken's span names no decision")?;
    assert!(decision_id.starts_with("dec_"), "{decision_id}");
    assert_eq!(
        string_attribute(check_token, "agentsec.decision.outcome"),
        Some("allow")
    );
    let batch_ids = string_array_attribute(batch_check, "agentsec.decision.ids");
    assert_eq!(batch_ids.len(), 2, "{batch_ids:?}");
    assert_eq!(
        string_array_attribute(batch_check, "agentsec.decision.outcomes"),
        ["allow", "allow"]
    );
    // Never a token: no attribute value of any span looks like a JWT.
    for exported in spans {
        for kv in &exported.span.attributes {
            if let Some(Value::StringValue(value)) =
                kv.value.as_ref().and_then(|v| v.value.as_ref())
            {
                assert!(
                    !value.starts_with("eyJ"),
                    "{} `{}` carries a token in `{}`",
                    exported.service,
                    exported.span.name,
                    kv.key
                );
            }
        }
    }
    // Health checks (the cluster polled them to start) make no spans.
    assert!(
        !spans
            .iter()
            .any(|exported| exported.span.name.starts_with("grpc.health.v1.Health")),
        "a health check made a span"
    );

    // The audit events name the spans of the calls that caused them.
    let span_id_of = |event_kind: &str, decision_id: &str| -> Option<String> {
        events
            .iter()
            .find(|event| {
                event.kind == event_kind
                    && (decision_id.is_empty() || event.decision_id == decision_id)
            })
            .map(|event| event.span_id.clone())
    };
    assert_eq!(
        span_id_of("token.exchanged", "").as_deref(),
        Some(hex(&exchange.span_id).as_str())
    );
    assert_eq!(
        span_id_of("decision", decision_id).as_deref(),
        Some(hex(&check_token.span_id).as_str())
    );
    for batch_id in &batch_ids {
        assert_eq!(
            span_id_of("decision", batch_id).as_deref(),
            Some(hex(&batch_check.span_id).as_str())
        );
    }

    fx.cluster.shutdown().await?;
    shut_down(tracers).await
}

#[tokio::test]
async fn audit_events_carry_the_callers_trace_and_their_spans_without_an_exporter(
) -> anyhow::Result<()> {
    let tracers = Tracers::local();
    assert!(!tracers.exporting());
    let _tracing = tracing::subscriber::set_default(subscriber(&tracers));
    let mut fx = Fixture::start().await?;
    agent_action(&mut fx).await?;
    let events = trace_events(&fx.cluster, |events| {
        exchange_and_check_audited(events)
            && events.iter().any(|event| event.kind == "token.issued")
    })
    .await?;

    // Each event names the span of the service call that recorded it: one
    // of the services' spans under the caller's, never the caller's own.
    for event in &events {
        assert_eq!(event.trace_id, TRACE_ID, "{}", event.kind);
        assert!(
            event.span_id.len() == 16 && event.span_id.chars().all(|c| c.is_ascii_hexdigit()),
            "{}: span id `{}`",
            event.kind,
            event.span_id
        );
        assert_ne!(event.span_id, CALLER_SPAN_ID, "{}", event.kind);
    }
    let span_of = |service: &str, kind: &str| -> Vec<&str> {
        events
            .iter()
            .filter(|event| event.service == service && event.kind == kind)
            .map(|event| event.span_id.as_str())
            .collect()
    };
    let exchanged = span_of("exchange-svc", "token.exchanged");
    let issued = span_of("identity-svc", "token.issued");
    let decided = span_of("policy-svc", "decision");
    // The exchange's two decisions come from one BatchCheck, the third from
    // CheckToken: two policy-svc spans, neither exchange-svc's nor
    // identity-svc's.
    let mut decision_spans = decided.clone();
    decision_spans.sort_unstable();
    decision_spans.dedup();
    assert_eq!(decision_spans.len(), 2, "{decided:?}");
    for span in &decision_spans {
        assert!(!exchanged.contains(span) && !issued.contains(span));
    }
    assert!(!exchanged.is_empty() && !issued.is_empty());
    assert_ne!(exchanged, issued);
    fx.cluster.shutdown().await
}
