//! [`eventually`]: waiting for what the services do in the background
//! (audit events arriving, caches following changes, a port answering).

use std::future::Future;
use std::time::Duration;

/// How long [`eventually`] waits between two probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` until it answers `Some`, for at most `within`; the error
/// says `what` did not happen. A probe's error ends the wait at once (a
/// probe that must treat an error as "not yet" answers `Ok(None)` for it).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await? {
            return Ok(found);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("not within {within:?}: {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
