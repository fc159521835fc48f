//! The models that embed search queries: one single-threaded ONNX Runtime session per core,
//! loaded once at start and lent to one query at a time.
//!
//! A query is a few dozen tokens, too little work to share across threads: one session with two
//! intra-op threads serialises every query behind its lock while its second thread spins, and
//! measured slower under concurrent searches than two sessions of one thread each.

use std::sync::{Arc, Mutex};

use prospector_embedder::embed::{EmbedError, Embedder, EmbedderConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiResult, AppError};

/// A pool of query models.
#[derive(Debug)]
pub struct QueryEmbedders {
    idle: Arc<Mutex<Vec<Embedder>>>,
    /// One permit per idle model.
    permits: Arc<Semaphore>,
}

/// A model lent to one query. Dropping it (after the query, or while a panic unwinds) gives the
/// model back before its permit, so a permit always finds a model.
struct Lent {
    model: Option<Embedder>,
    idle: Arc<Mutex<Vec<Embedder>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(model) = self.model.take() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(model);
        }
    }
}

impl QueryEmbedders {
    /// Loads `sessions` copies of the model described by `config`, each on one thread.
    pub fn load(config: &EmbedderConfig, sessions: usize) -> Result<Self, EmbedError> {
        let config = EmbedderConfig { threads: 1, ..config.clone() };
        let models = (0..sessions.max(1)).map(|_| Embedder::load(&config)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(models))
    }

    /// A pool of these models.
    pub fn new(models: Vec<Embedder>) -> Self {
        let permits = Arc::new(Semaphore::new(models.len()));
        Self { idle: Arc::new(Mutex::new(models)), permits }
    }

    /// The normalised embedding of `text`, computed off the async workers by an idle model
    /// (waiting for one when all are busy). The blocking task owns the lent model: a request
    /// cancelled while its query is embedded (the client went away) still gives it back.
    pub async fn embed(&self, text: String) -> ApiResult<Vec<f32>> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| AppError::Internal(e.to_string()))?;
        let model = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let lent = Lent { model, idle: self.idle.clone(), _permit: permit };
        tokio::task::spawn_blocking(move || {
            let model = lent.model.as_ref().ok_or(AppError::Internal("a permit found no idle model".into()))?;
            model
                .embed(&[text.as_str()])
                .map_err(|e| AppError::Internal(format!("embedding the query failed: {e}")))?
                .pop()
                .ok_or(AppError::Internal("the model returned no vector".into()))
        })
        .await
        .map_err(|e| AppError::Internal(format!("the embedding task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Queries whose requests go away mid-embedding (a client that hangs up) leave the pool
    /// whole: later queries still find their model, and get the model's own vectors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_queries_give_their_model_back() {
        let config = prospector_embedder::paths::installed_config().expect("the model (hack/model.sh)");
        let pool = QueryEmbedders::load(&config, 1).expect("load the model");
        let direct = Embedder::load(&EmbedderConfig { threads: 1, ..config }).unwrap();
        let mut cancelled = 0;
        for i in 0..20 {
            let query = format!("who buys from us in region {i}");
            // Dropped as soon as it waits: while the model is lent to its blocking task.
            if tokio::time::timeout(Duration::from_micros(50), pool.embed(query)).await.is_err() {
                cancelled += 1;
            }
        }
        assert!(cancelled > 0, "no query was cancelled mid-way; the test proves nothing");
        let text = "which industries do our customers work in";
        let vector = tokio::time::timeout(Duration::from_secs(30), pool.embed(text.into()))
            .await
            .expect("a model was lost: the query waits forever")
            .expect("the query is embedded");
        assert_eq!(vector, direct.embed(&[text]).unwrap().remove(0));
    }
}
