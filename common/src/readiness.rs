//! Readiness: whether this replica can answer correctly right now, reported
//! as the `grpc.health.v1` status of its gRPC service names (what the
//! chart's readiness probe asks for). The overall status (`""`) is
//! liveness: it stays SERVING until shutdown, so a replica that cannot
//! reach its database, or whose follower has fallen out of sync beyond its
//! bound, is taken out of load balancing and not restarted; it turns
//! SERVING again on its own once the cause is gone.
//!
//! The [`Readiness`] of a service pings its database every
//! [`CHECK_INTERVAL`] (waiting no longer than a request would for a
//! connection, `database.acquire_timeout_ms`) and evaluates the conditions
//! the service added with [`Readiness::require`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// How often readiness is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A condition of readiness: `Err` says why the replica cannot answer
/// correctly now.
type Condition = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What a replica must meet to be ready. Cheap to clone.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    ping_timeout: Duration,
    conditions: Mutex<Vec<Condition>>,
}

impl Readiness {
    /// Ready while `db` answers a ping within `ping_timeout`.
    pub fn new(db: DatabaseConnection, ping_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                ping_timeout,
                conditions: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Adds a condition; it is evaluated at every check, so it must be
    /// cheap (read state, never wait on I/O).
    pub fn require(&self, condition: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.conditions().push(Box::new(condition));
    }

    /// `Ok` when ready now, else why not.
    pub async fn check(&self) -> Result<(), String> {
        let timeout = self.inner.ping_timeout;
        match tokio::time::timeout(timeout, self.inner.db.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(format!("the database is unreachable: {err}")),
            Err(_) => {
                return Err(format!(
                    "the database did not answer within {} ms",
                    timeout.as_millis()
                ))
            }
        }
        self.conditions()
            .iter()
            .try_for_each(|condition| condition())
    }

    /// Checks now, then every [`CHECK_INTERVAL`] until the monitor is
    /// dropped; transitions are logged.
    pub async fn monitor(&self) -> Monitor {
        let first = self.check().await;
        if let Err(reason) = &first {
            tracing::warn!(%reason, "not ready");
        }
        let (sender, ready) = watch::channel(first.is_ok());
        let readiness = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECK_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let outcome = readiness.check().await;
                let was_ready = *sender.borrow();
                match (&outcome, was_ready) {
                    (Err(reason), true) => tracing::warn!(%reason, "not ready"),
                    (Ok(()), false) => tracing::info!("ready again"),
                    _ => {}
                }
                sender.send_replace(outcome.is_ok());
            }
        });
        Monitor { ready, task }
    }

    fn conditions(&self) -> std::sync::MutexGuard<'_, Vec<Condition>> {
        self.inner
            .conditions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running readiness check; stops when dropped.
pub struct Monitor {
    ready: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Follows readiness as it changes.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sets the status of `names` from `ready` now, then on every change (spawn
/// the returned future; abort it before reporting the shutdown).
pub async fn report(
    mut ready: watch::Receiver<bool>,
    reporter: HealthReporter,
    names: Vec<&'static str>,
) -> impl std::future::Future<Output = ()> {
    let current = *ready.borrow_and_update();
    set(&reporter, &names, current).await;
    async move {
        while ready.changed().await.is_ok() {
            let current = *ready.borrow_and_update();
            set(&reporter, &names, current).await;
        }
    }
}

async fn set(reporter: &HealthReporter, names: &[&'static str], ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in names {
        reporter.set_service_status(name, status).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    async fn memory_db() -> DatabaseConnection {
        sea_orm::Database::connect("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn a_failed_condition_makes_the_replica_not_ready_until_it_passes() {
        let readiness = Readiness::new(memory_db().await, Duration::from_millis(500));
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        readiness.require(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("the view is stale".to_owned())
            }
        });
        let monitor = readiness.monitor().await;
        let mut ready = monitor.ready();
        assert!(*ready.borrow_and_update());

        healthy.store(false, Ordering::SeqCst);
        assert_eq!(readiness.check().await, Err("the view is stale".to_owned()));
        tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|ready| !*ready))
            .await
            .unwrap()
            .unwrap();

        healthy.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|ready| *ready))
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_closed_database_is_not_ready() {
        let db = memory_db().await;
        let readiness = Readiness::new(db.clone(), Duration::from_millis(500));
        assert_eq!(readiness.check().await, Ok(()));
        db.close().await.unwrap();
        let reason = readiness.check().await.unwrap_err();
        assert!(reason.contains("database"), "{reason}");
    }
}
