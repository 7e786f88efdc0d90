//! Redis connections: the shared decision cache and the invalidation bus.
//! Redis is optional everywhere; a service without it keeps working on its
//! in-process state.

use redis::aio::ConnectionManager;

use crate::config::RedisConfig;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("Redis at {endpoint} is unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
}

/// Checks that `url` is a Redis URL the client accepts.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|err| format!("is not a URL: {err}"))?;
    if !matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix") {
        return Err(format!(
            "has scheme `{}`; expected `redis` or `rediss`",
            parsed.scheme()
        ));
    }
    redis::Client::open(url).map_err(|err| err.to_string())?;
    Ok(())
}

/// A Redis connection that reconnects by itself, with the deployment's key
/// prefix.
#[derive(Clone)]
pub struct RedisHandle {
    pub connection: ConnectionManager,
    pub key_prefix: String,
}

impl RedisHandle {
    /// `name` with the configured prefix, for keys and channels.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }
}

/// Connects when a URL is configured and checks the server answers PING.
pub async fn connect(config: &RedisConfig) -> Result<Option<RedisHandle>, RedisError> {
    let Some(url) = &config.url else {
        return Ok(None);
    };
    let client = redis::Client::open(url.as_str()).map_err(|err| RedisError::InvalidUrl {
        reason: err.to_string(),
    })?;
    let endpoint = client.get_connection_info().addr().to_string();
    let unreachable = |err: redis::RedisError| RedisError::Unreachable {
        endpoint: endpoint.clone(),
        reason: err.to_string(),
    };
    let mut connection = client.get_connection_manager().await.map_err(unreachable)?;
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map_err(unreachable)?;
    Ok(Some(RedisHandle {
        connection,
        key_prefix: config.key_prefix.clone(),
    }))
}
