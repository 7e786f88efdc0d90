//! Following invalidation events: one loop, shared by every service that
//! keeps state in step with other services or replicas (identity-svc's
//! standing of agents and tokens; policy-svc's policy versions, decision
//! cache and revocation view).
//!
//! The loop subscribes (to Redis pub/sub, or to the in-process
//! [`LocalBus`]), then asks the follower to reload (nothing published in
//! between is missed: subscribed first, reloaded second), then hands it
//! each event. A Redis subscription is asked PING every poll interval: a
//! half-open connection is noticed within [`PING_TIMEOUT`] after that, not
//! never. Whenever the subscription is lost, or cannot be set up, the
//! follower is told ([`Follow::lost`]), and while no subscription is live
//! [`Follow::catch_up`] runs every `poll_interval` (reading the owners'
//! state directly); with one, every [`RECONCILE_INTERVAL`]. Without any bus (no Redis, not in one process) the
//! follower only polls.
//!
//! [`FollowerMetrics`] puts whether a subscription is live, when the
//! follower last knew it was in step with the owners (and how long ago),
//! the events heard and the subscriptions lost on the service's
//! `/metrics`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::broadcast::error::RecvError;

use crate::invalidation::{LocalBus, ReceivedInvalidation};
use crate::metrics::Metrics;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest wait for a Redis subscription to be set up.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the answer to that may take.
pub const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// Even with a live subscription, the follower catches up this often: an
/// event its publisher failed to send (the publisher's own Redis connection
/// was down) is missed by every subscriber, so it is read from the owners
/// at the latest then.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
/// Wait before subscribing again after a subscription failed.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// What a follower does with the invalidation events.
pub trait Follow: Send + Sync + 'static {
    /// Re-reads everything from its owners; called after every new
    /// subscription (and after an in-process subscriber lagged). An error
    /// drops the subscription and starts over.
    fn reload(&self) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// One event, in the order published.
    fn apply(&self, event: ReceivedInvalidation) -> impl Future<Output = ()> + Send;

    /// The subscription is gone: events may be missed until the next
    /// [`Self::reload`].
    fn lost(&self);

    /// Called every poll interval while there is no subscription: reads
    /// what changed from the owners, so that state stays within a bound of
    /// theirs. The default does nothing (for followers that fall back to
    /// reading the owner on every request).
    fn catch_up(&self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// The subscription answered its health check.
    fn healthy(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Resolves when the follower wants a new subscription (for example,
    /// a Redis command of its own failed, so events may have been missed).
    fn interrupted(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Where invalidation events are heard.
#[derive(Clone, Debug)]
pub enum Bus {
    /// Redis pub/sub on `channel` (already prefixed).
    Redis { url: String, channel: String },
    /// Services sharing this process.
    Local(LocalBus),
    /// No bus: state is only polled.
    None,
}

impl Bus {
    /// The bus a service configured with `redis` hears events on.
    pub fn of(redis: &crate::config::RedisConfig) -> Self {
        match (&redis.url, &redis.local_bus) {
            (Some(url), _) => Self::Redis {
                url: url.clone(),
                channel: format!(
                    "{}{}",
                    redis.key_prefix,
                    crate::invalidation::INVALIDATION_CHANNEL
                ),
            },
            (None, Some(local)) => Self::Local(local.clone()),
            (None, None) => Self::None,
        }
    }
}

/// What a follower reports on `/metrics`.
#[derive(Clone, Default)]
pub struct FollowerMetrics {
    state: Arc<FollowerState>,
}

#[derive(Default)]
struct FollowerState {
    subscribed: AtomicBool,
    /// Unix time in milliseconds when the follower last knew it was in
    /// step (a reload, a catch-up, an event or an answered PING); 0 before.
    in_step_ms: AtomicI64,
    events: AtomicU64,
    losses: AtomicU64,
    catch_up_failures: AtomicU64,
}

impl FollowerMetrics {
    /// Registers a follower's metrics in `metrics`; the lag is measured at
    /// every scrape (from the registration while never in step).
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        let state = this.state.clone();
        let registered_ms = chrono::Utc::now().timestamp_millis();
        metrics.register_scrape(move |scrape| {
            let in_step_ms = state.in_step_ms.load(Ordering::Relaxed);
            let since_ms = if in_step_ms == 0 {
                registered_ms
            } else {
                in_step_ms
            };
            let lag_ms = (chrono::Utc::now().timestamp_millis() - since_ms).max(0);
            scrape.gauge(
                "agentsec_follower_subscribed",
                "1 while the invalidation subscription (Redis or in process) is live",
                i64::from(state.subscribed.load(Ordering::Relaxed)),
            )?;
            scrape.gauge_seconds(
                "agentsec_follower_in_step_timestamp",
                "Unix time when the follower last knew it was in step with the owners (0: never)",
                in_step_ms as f64 / 1000.0,
            )?;
            scrape.gauge_seconds(
                "agentsec_follower_lag",
                "Seconds since the follower last knew it was in step with the owners",
                lag_ms as f64 / 1000.0,
            )?;
            scrape.counter(
                "agentsec_follower_events",
                "Invalidation events heard",
                state.events.load(Ordering::Relaxed),
            )?;
            scrape.counter(
                "agentsec_follower_subscription_losses",
                "Invalidation subscriptions lost or that could not be set up",
                state.losses.load(Ordering::Relaxed),
            )?;
            scrape.counter(
                "agentsec_follower_catch_up_failures",
                "Catch-ups with the owners that failed",
                state.catch_up_failures.load(Ordering::Relaxed),
            )
        });
        this
    }

    fn in_step(&self) {
        self.state
            .in_step_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    fn subscribed(&self, live: bool) {
        self.state.subscribed.store(live, Ordering::Relaxed);
        if live {
            self.in_step();
        }
    }
}

/// Follows `bus` for ever (spawn it; abort the task to stop), reporting
/// on `metrics`. Catching up runs beside the subscription attempts, so a
/// subscription that hangs (a Redis that accepts connections and never
/// answers) does not pause it.
pub async fn follow<F: Follow>(
    follower: Arc<F>,
    bus: Bus,
    poll_interval: Duration,
    metrics: FollowerMetrics,
) {
    let live = AtomicBool::new(false);
    // Rung when a subscription is lost: catch up at once, not a poll
    // interval later.
    let lost = tokio::sync::Notify::new();
    let poll = async {
        let mut last_catch_up = tokio::time::Instant::now();
        loop {
            if !live.load(Ordering::Acquire) || last_catch_up.elapsed() >= RECONCILE_INTERVAL {
                last_catch_up = tokio::time::Instant::now();
                match follower.catch_up().await {
                    Ok(()) => metrics.in_step(),
                    Err(err) => {
                        metrics
                            .state
                            .catch_up_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, "catching up with the owners failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(poll_interval) => {}
                () = lost.notified() => {}
            }
        }
    };
    let subscribe = async {
        if matches!(bus, Bus::None) {
            follower.lost();
            return std::future::pending::<()>().await;
        }
        let name = std::any::type_name::<F>();
        loop {
            let outcome = match &bus {
                Bus::Redis { url, channel } => {
                    follow_redis(&*follower, url, channel, &live, &metrics, poll_interval).await
                }
                Bus::Local(local) => follow_local(&*follower, local, &live, &metrics).await,
                Bus::None => Ok(()),
            };
            live.store(false, Ordering::Release);
            metrics.subscribed(false);
            metrics.state.losses.fetch_add(1, Ordering::Relaxed);
            follower.lost();
            lost.notify_one();
            if let Err(err) = outcome {
                tracing::warn!(follower = name, error = %err, "invalidation subscription lost; polling the owners until it is back");
            }
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
    };
    tokio::join!(poll, subscribe);
}

async fn follow_redis<F: Follow>(
    follower: &F,
    url: &str,
    channel: &str,
    live: &AtomicBool,
    metrics: &FollowerMetrics,
    health_interval: Duration,
) -> Result<(), BoxError> {
    let client = redis::Client::open(url)?;
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
        .await
        .map_err(|_| "subscribing timed out")??;
    follower.reload().await?;
    live.store(true, Ordering::Release);
    metrics.subscribed(true);
    tracing::info!(%channel, "following invalidation events");
    let (mut sink, mut messages) = pubsub.split();
    let mut health = tokio::time::interval(health_interval);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    health.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err("the subscription ended".into());
                };
                deliver(follower, metrics, message.get_payload_bytes()).await;
            }
            _ = health.tick() => {
                // A connection that went silent (no reset) is only noticed
                // by asking.
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {
                        metrics.in_step();
                        follower.healthy().await;
                    }
                    Ok(Err(err)) => return Err(err.into()),
                    Err(_) => return Err("the subscription did not answer PING in time".into()),
                }
            }
            () = follower.interrupted() => {
                return Err("the follower asked to subscribe again".into());
            }
        }
    }
}

async fn follow_local<F: Follow>(
    follower: &F,
    bus: &LocalBus,
    live: &AtomicBool,
    metrics: &FollowerMetrics,
) -> Result<(), BoxError> {
    let mut receiver = bus.subscribe();
    follower.reload().await?;
    live.store(true, Ordering::Release);
    metrics.subscribed(true);
    follower.healthy().await;
    loop {
        tokio::select! {
            received = receiver.recv() => match received {
                Ok(payload) => deliver(follower, metrics, &payload).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "in-process invalidation events missed; reloading");
                    follower.reload().await?;
                    metrics.in_step();
                }
                Err(RecvError::Closed) => return Err("the in-process bus closed".into()),
            },
            () = follower.interrupted() => {
                return Err("the follower asked to subscribe again".into());
            }
        }
    }
}

/// Hands one event to the follower; hearing it means the subscription
/// works, so the follower is in step once it is applied.
async fn deliver<F: Follow>(follower: &F, metrics: &FollowerMetrics, payload: &[u8]) {
    metrics.state.events.fetch_add(1, Ordering::Relaxed);
    match ReceivedInvalidation::parse(payload) {
        Some(event) => follower.apply(event).await,
        None => tracing::debug!("ignoring an invalidation event of an unknown kind"),
    }
    metrics.in_step();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::invalidation::{Invalidation, InvalidationKind, Publisher};

    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<String>>,
        applied: tokio::sync::Notify,
    }

    impl Recorder {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Follow for Recorder {
        async fn reload(&self) -> Result<(), BoxError> {
            self.log.lock().unwrap().push("reload".to_owned());
            Ok(())
        }

        async fn apply(&self, event: ReceivedInvalidation) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{:?} {}", event.event.kind, event.event.agent_id));
            self.applied.notify_one();
        }

        fn lost(&self) {
            self.log.lock().unwrap().push("lost".to_owned());
        }
    }

    #[tokio::test]
    async fn local_events_reach_the_follower_after_its_reload() {
        let bus = LocalBus::new();
        let recorder = Arc::new(Recorder::default());
        let metrics = Metrics::new();
        let task = tokio::spawn(follow(
            recorder.clone(),
            Bus::Local(bus.clone()),
            Duration::from_millis(10),
            FollowerMetrics::register(&metrics),
        ));
        let publisher = Publisher::new(None, Some(bus.clone()), "http://id".to_owned());
        // Published until heard: the follower subscribes asynchronously.
        let heard = async {
            loop {
                publisher
                    .publish(&Invalidation::new(
                        InvalidationKind::AgentSuspended,
                        "acme",
                        "agt_1",
                    ))
                    .await;
                if tokio::time::timeout(Duration::from_millis(50), recorder.applied.notified())
                    .await
                    .is_ok()
                {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), heard)
            .await
            .unwrap();
        task.abort();
        let log = recorder.log();
        assert_eq!(log.first().map(String::as_str), Some("reload"));
        assert!(log.contains(&"AgentSuspended agt_1".to_owned()), "{log:?}");
        let text = metrics.encode();
        assert!(text.contains("agentsec_follower_subscribed 1\n"), "{text}");
        assert!(
            !text.contains("agentsec_follower_events_total 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("agentsec_follower_in_step_timestamp_seconds 0.0\n"),
            "{text}"
        );
    }
}
