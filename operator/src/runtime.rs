//! Runs the operator: leader election, the four controllers, the inline embedding worker, and
//! the HTTP endpoints
//! (`/metrics`, `/healthz`, `/readyz`). Used by `prospector-operator run` and, in-process, by
//! the integration tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Config as WatcherConfig;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, ResourceExt};
use prospector_crds::{AgentDeployment, Customer, KnowledgeDocument, Tier, labels};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::cached::CachedDeployment;
use crate::clock::Clock;
use crate::context::{Context, EmbedderMode, Settings};
use crate::controllers::{agent, customer, document, error_policy, tier};
use crate::error::OperatorError;
use crate::leader::{LeaderElector, LeaseSettings};
use crate::metrics::Metrics;

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub settings: Settings,
    /// `None` runs without leader election (a single replica, or tests).
    pub lease: Option<LeaseSettings>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` serves nothing.
    pub http_addr: Option<SocketAddr>,
    /// Reconciles running at once per controller, but for documents.
    pub concurrency: u16,
    /// KnowledgeDocument reconciles running at once.
    pub document_concurrency: u16,
}

/// KnowledgeDocument reconciles running at once, by default. A burst of documents admitted 16 at
/// a time loaded the apiserver enough to slow down the agents created meanwhile; 2 admit
/// documents far faster than any worker embeds them (docs/benchmarks.md, "Documents at scale").
pub const DEFAULT_DOCUMENT_CONCURRENCY: u16 = 2;

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            lease: None,
            http_addr: None,
            concurrency: 16,
            document_concurrency: DEFAULT_DOCUMENT_CONCURRENCY,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Metrics,
    pool: PgPool,
}

async fn serve_http(addr: SocketAddr, state: HttpState) -> Result<(), OperatorError> {
    let app = Router::new()
        .route("/metrics", get(|State(s): State<HttpState>| async move { s.metrics.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<HttpState>| async move {
                // A probe must answer quickly even while connecting hangs.
                match tokio::time::timeout(Duration::from_secs(2), prospector_store::ping(&s.pool)).await {
                    Ok(Ok(())) => (StatusCode::OK, "ok"),
                    _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
                }
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| OperatorError::Config(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, "serving metrics and health");
    axum::serve(listener, app).await.map_err(|e| OperatorError::Config(format!("http server: {e}")))
}

/// The annotation in which a client-side `kubectl apply` keeps a copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads from a cached object: its managed fields and the copy
/// that `kubectl apply` keeps, which would double the cache of objects applied that way.
fn slim<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Tells `crate::own_writes` what a watch of reconciled objects delivered, once its cache holds
/// it.
fn note_delivered<K: kube::Resource>(ctx: Arc<Context>) -> impl Fn(&watcher::Event<K>) {
    move |event| match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) => ctx.own_writes.seen(object.meta()),
        watcher::Event::Init => ctx.own_writes.forget_all(),
        watcher::Event::Delete(_) | watcher::Event::InitDone => {}
    }
}

fn channel_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Reconciles a document as soon as a worker finished it: the task's NOTIFY names it. The
/// periodic resync covers notifications missed while disconnected.
async fn forward_finished_documents(pool: PgPool, ctx: Arc<Context>) {
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(prospector_store::queue::DONE_CHANNEL).await?;
            loop {
                let notification = listener.recv().await?;
                match prospector_store::documents::locate_document(&pool, notification.payload()).await {
                    Ok(Some((namespace, name))) => ctx.wake_document(&namespace, &name),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot find a finished document"),
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(e) = listening.await {
            tracing::warn!(error = %e, "listening for finished documents; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How long an upload's reservation waits for its KnowledgeDocument before it is released.
const STALE_UPLOAD_GRACE: Duration = Duration::from_secs(600);

/// Keeps the queue and document gauges current every few seconds, reaps lost leases, and
/// sweeps unreferenced bytes now and then.
async fn observe_documents(pool: PgPool, metrics: Metrics) {
    use prospector_store::documents::{ProcessingStatus, documents_by_status, sweep_orphan_blobs};
    for round in 0u64.. {
        // Every five minutes: bytes that no document took within an hour go.
        if round % 60 == 0 {
            match sweep_orphan_blobs(&pool, Duration::from_secs(3600)).await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "deleted unreferenced document bytes"),
                Err(e) => tracing::debug!(error = %e, "cannot sweep unreferenced document bytes"),
            }
            // Uploads whose REST server died between reserving and creating the object.
            match prospector_store::documents::sweep_stale_uploads(&pool, STALE_UPLOAD_GRACE).await {
                Ok(0) => {}
                Ok(cancelled) => tracing::info!(cancelled, "released uploads that never became documents"),
                Err(e) => tracing::debug!(error = %e, "cannot sweep stale uploads"),
            }
        }
        // Whatever the mode, lost leases return to the queue even when no worker is alive to
        // reap them (a preempted GPU Job).
        if let Err(e) = prospector_store::queue::reap_expired_leases(&pool).await {
            tracing::debug!(error = %e, "cannot reap expired leases");
        }
        match prospector_store::queue::stats(&pool).await {
            Ok(stats) => {
                metrics.queue_depth.set(stats.queued);
                metrics.queue_running.set(stats.running);
                metrics.oldest_queued.set(stats.oldest_queued_seconds);
                metrics.oldest_running.set(stats.oldest_running_seconds);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the embedding queue"),
        }
        if let Ok(counts) = documents_by_status(&pool).await {
            for status in [
                ProcessingStatus::Pending,
                ProcessingStatus::Queued,
                ProcessingStatus::Processing,
                ProcessingStatus::Ready,
                ProcessingStatus::Failed,
            ] {
                let count = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
                metrics.documents.with_label_values(&[&format!("{status:?}")]).set(count);
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Keeps `customers_near_quota_limit` current: every 30 seconds, how many customers use at
/// least `ratio` of each quota (the month and day by the operator's clock).
async fn observe_quotas(pool: PgPool, metrics: Metrics, clock: Arc<dyn Clock>, ratio: f64) {
    loop {
        let now = clock.now();
        let today = now.date_naive();
        match prospector_store::customers::customers_near_limits(&pool, ratio, today, crate::quota::month_start(now))
            .await
        {
            Ok(counts) => {
                for (quota, count) in counts {
                    metrics.customers_near_limit.with_label_values(&[&quota]).set(count);
                }
            }
            // A warning, not debug: while this fails the quota alert sees stale counts.
            Err(e) => tracing::warn!(error = %e, "cannot count customers near their limits"),
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// Inline mode: the embedding worker loop in this process, with the model and ONNX Runtime
/// found as `prospector-embedder` finds them. Without them documents wait in the queue (and
/// say so), and the log says why.
async fn run_inline_worker(
    pool: PgPool,
    identity: String,
    settings: crate::context::DocumentSettings,
    stop: impl Future<Output = ()>,
) {
    use prospector_embedder::embed::Embedder;
    use prospector_embedder::worker::on_worker_thread;
    // Loaded at the embedding threads' priority: ONNX Runtime starts its thread pool here.
    let loaded = on_worker_thread(settings.inline_worker_nice, || {
        let config = prospector_embedder::paths::installed_config().map_err(|e| e.to_string())?;
        Embedder::load(&config).map_err(|e| e.to_string())
    })
    .await;
    let embedder = match loaded {
        Ok(Ok(embedder)) => Arc::new(embedder),
        Ok(Err(e)) => {
            return tracing::error!(error = %e, "inline embedding worker cannot load the model; documents stay queued");
        }
        Err(e) => return tracing::error!(error = %e, "inline embedding worker failed to start"),
    };
    let max_bytes = usize::try_from(settings.max_document_bytes).unwrap_or(usize::MAX);
    let config = prospector_embedder::worker::WorkerConfig {
        identity,
        fetch: prospector_embedder::fetch::FetchPolicy {
            max_bytes,
            timeout: settings.url_timeout,
            allow_private: settings.allow_private_urls,
            ..Default::default()
        },
        limits: prospector_embedder::extract::Limits { max_input_bytes: max_bytes, ..Default::default() },
        nice: settings.inline_worker_nice,
        ..Default::default()
    };
    // Shared, so each restart and the pause between them watch the same shutdown.
    let stop = futures::FutureExt::shared(Box::pin(stop));
    loop {
        match prospector_embedder::worker::run(pool.clone(), embedder.clone(), config.clone(), stop.clone()).await {
            Ok(report) => return tracing::info!(?report, "inline embedding worker stopped"),
            // It cannot listen (the database is down): start again after a pause.
            Err(e) => tracing::error!(error = %e, "inline embedding worker failed; restarting"),
        }
        tokio::select! {
            () = stop.clone() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Job mode: starts embedder Jobs in the platform namespace as the queue needs them, within
/// `max_parallel_jobs`. Jobs end by themselves once the queue stays idle.
async fn scale_embedder_jobs(
    pool: PgPool,
    client: Client,
    namespace: String,
    documents: crate::context::DocumentSettings,
    stop: impl Future<Output = ()>,
) {
    let settings = &documents.jobs;
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{ListParams, PostParams};

    use crate::desired::embedder_job::{COMPONENT, COMPONENT_LABEL, embedder_job, jobs_to_start};
    let jobs: Api<Job> = Api::namespaced(client, &namespace);
    let selector = format!("{COMPONENT_LABEL}={COMPONENT}");
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        // Tasks in backoff wait for their time, not for a worker: a Job started for them would
        // find nothing to claim.
        let queued = match prospector_store::queue::stats(&pool).await {
            Ok(stats) => stats.claimable,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the embedding queue");
                continue;
            }
        };
        if queued == 0 {
            continue;
        }
        let running = match jobs.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|j| j.status.as_ref().is_none_or(|s| s.completion_time.is_none() && s.failed.unwrap_or(0) == 0))
                .count(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list embedder Jobs");
                continue;
            }
        };
        for _ in 0..jobs_to_start(queued, u32::try_from(running).unwrap_or(u32::MAX), settings) {
            let name = format!("embedder-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
            match jobs.create(&PostParams::default(), &embedder_job(&name, &namespace, &documents)).await {
                Ok(_) => tracing::info!(job = %name, queued, "started an embedder Job"),
                Err(e) => tracing::warn!(error = %e, "cannot start an embedder Job"),
            }
        }
    }
}

/// Runs until `shutdown` resolves (returns `Ok`) or leadership is lost (returns the error).
pub async fn run(
    client: Client,
    pool: PgPool,
    options: RunOptions,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let metrics = Metrics::new();
    metrics.start_controllers(&[tier::CONTROLLER, customer::CONTROLLER, agent::CONTROLLER, document::CONTROLLER]);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let http = options
        .http_addr
        .map(|addr| tokio::spawn(serve_http(addr, HttpState { metrics: metrics.clone(), pool: pool.clone() })));

    let elector = options.lease.clone().map(|lease| LeaderElector::new(client.clone(), lease));
    if let Some(elector) = &elector {
        tokio::select! {
            () = elector.acquire() => {}
            () = stopped() => return Ok(()),
        }
    }
    metrics.leader.set(1);

    let instance = options.lease.as_ref().map(|l| l.identity.clone());
    let worker_identity = format!("operator-{}", instance.clone().unwrap_or_else(|| std::process::id().to_string()));
    let pool_for_documents = pool.clone();
    let (ctx, wakeups) = Context::new(client.clone(), pool, options.settings.clone(), clock, metrics.clone(), instance);
    let pool = pool_for_documents;
    let watch_documents = WatcherConfig::default().any_semantic();
    let config = ControllerConfig::default().concurrency(options.concurrency).debounce(Duration::from_millis(200));
    let watch = WatcherConfig::default().any_semantic();

    // Watched objects are cached without managedFields: on a busy cluster these are most of an
    // object's bytes, and the operator never reads them. Watches that only map events to
    // objects use metadata.
    let (customer_store, customer_writer) = reflector::store::<Customer>();
    let synced = ctx.clone();
    // Tiers count their customers from this cache; the same watch tells which tiers to recount,
    // once the cache holds the change.
    let (tier_recounts, recount_requests) = tokio::sync::mpsc::unbounded_channel();
    let mut memberships = tier::TierMemberships::default();
    let customer_events = watcher(Api::<Customer>::all(client.clone()), watch.clone())
        .modify(slim)
        .default_backoff()
        .reflect(customer_writer)
        .inspect_ok(note_delivered(ctx.clone()))
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                synced.mark_customers_synced();
            }
            for name in memberships.on_event(event) {
                let _ = tier_recounts.send(ObjectRef::<Tier>::new(&name));
            }
        })
        .touched_objects();
    let customers_by_tier = customer_store.clone();
    ctx.set_customer_cache(customer_store.clone());
    // The API key Secrets, by metadata (never their data): one deleted is made anew with a new
    // key at once, and the customer's reconcile skips them only while they exist.
    let (key_secret_store, key_secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let key_secret_events = watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watch
            .clone()
            .labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
            .fields(&format!("metadata.name={}", crate::desired::customer::API_KEY_SECRET)),
    )
    .modify(slim)
    .default_backoff()
    .reflect(key_secret_writer)
    .touched_objects();
    ctx.set_key_secret_cache(key_secret_store);
    let customers = Controller::for_stream(customer_events, customer_store)
        .with_config(config.clone())
        .watches_stream(key_secret_events, |secret| {
            secret.labels().get(labels::CUSTOMER).map(|name| ObjectRef::<Customer>::new(name))
        })
        .watches_stream(
            // Only a tier's spec concerns its customers; its status (the customer count)
            // changes whenever any customer does.
            watcher(Api::<PartialObjectMeta<Tier>>::all(client.clone()), watch.clone())
                .default_backoff()
                .touched_objects()
                .predicate_filter(predicates::generation, Default::default()),
            move |tier| {
                let name = tier.name_any();
                customers_by_tier
                    .state()
                    .into_iter()
                    .filter(move |c| c.spec.tier == name)
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
            },
        )
        .reconcile_on(channel_stream(wakeups.customers))
        .graceful_shutdown_on(stopped())
        .run(customer::reconcile, error_policy(customer::CONTROLLER), ctx.clone())
        .for_each(|_| async {});

    // Tiers count their customers from the customer controller's cache, and recount only when
    // a customer joins or leaves them. Their cache serves the customers' tier.
    let tiers = Controller::new(Api::<Tier>::all(client.clone()), watch.clone());
    ctx.set_tier_cache(tiers.store());
    let tiers = tiers
        .with_config(config.clone())
        .reconcile_on(channel_stream(recount_requests))
        .graceful_shutdown_on(stopped())
        .run(tier::reconcile, error_policy(tier::CONTROLLER), ctx.clone())
        .for_each(|_| async {});

    let (agent_store, agent_writer) = reflector::store::<AgentDeployment>();
    let agent_events = watcher(Api::<AgentDeployment>::all(client.clone()), watch.clone())
        .modify(slim)
        .default_backoff()
        .reflect(agent_writer)
        .inspect_ok(note_delivered(ctx.clone()))
        .touched_objects();
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
    let document_config = config.clone().concurrency(options.document_concurrency);
    // The agents' Deployments, compact (`crate::cached`): a reconcile compares and
    // observes its Deployment here instead of asking the apiserver each time.
    let (deployment_store, deployment_writer) = reflector::store::<CachedDeployment>();
    let deployment_events = watcher(Api::<CachedDeployment>::all(client.clone()), watch.clone().labels(&managed))
        .modify(CachedDeployment::trim)
        .default_backoff()
        .reflect(deployment_writer)
        .touched_objects();
    ctx.set_deployment_cache(deployment_store);
    // A customer's spec changes (suspension) reach its agents through the customer controller,
    // which wakes them once its cache holds the change.
    let agent_cache = agent_store.clone();
    let agents = Controller::for_stream(agent_events, agent_store)
        .with_config(config)
        .owns_stream(deployment_events)
        .reconcile_on(channel_stream(wakeups.agents))
        .graceful_shutdown_on(stopped())
        .run(agent::reconcile, error_policy(agent::CONTROLLER), ctx.clone())
        .for_each(|_| async {});

    let (document_store, document_writer) = reflector::store::<KnowledgeDocument>();
    let document_events = watcher(Api::<KnowledgeDocument>::all(client.clone()), watch_documents)
        .modify(slim)
        .default_backoff()
        .reflect(document_writer)
        .inspect_ok(note_delivered(ctx.clone()))
        .touched_objects();
    let orphans = tokio::spawn(crate::orphans::sweep_orphans(
        ctx.clone(),
        agent_cache,
        document_store.clone(),
        options.settings.resync,
    ));
    let documents = Controller::for_stream(document_events, document_store)
        .with_config(document_config)
        .reconcile_on(channel_stream(wakeups.documents))
        .graceful_shutdown_on(stopped())
        .run(document::reconcile, error_policy(document::CONTROLLER), ctx.clone())
        .for_each(|_| async {});
    let notifications = tokio::spawn(forward_finished_documents(pool.clone(), ctx.clone()));
    let document_metrics = tokio::spawn(observe_documents(pool.clone(), metrics.clone()));
    let quota_metrics = tokio::spawn(observe_quotas(
        pool.clone(),
        metrics.clone(),
        ctx.clock.clone(),
        options.settings.quota_near_limit_ratio,
    ));
    let tenant_indexes = tokio::spawn(crate::tenant_index::manage_tenant_indexes(
        pool.clone(),
        options.settings.documents.tenant_indexes.clone(),
        metrics.clone(),
    ));
    let embedding = match options.settings.documents.mode {
        EmbedderMode::Inline => Some(tokio::spawn(run_inline_worker(
            pool.clone(),
            worker_identity,
            options.settings.documents.clone(),
            stopped(),
        ))),
        EmbedderMode::Job => Some(tokio::spawn(scale_embedder_jobs(
            pool.clone(),
            client.clone(),
            options.settings.platform_namespace.clone(),
            options.settings.documents.clone(),
            stopped(),
        ))),
        EmbedderMode::External => None,
    };

    let controllers = futures::future::join4(tiers, customers, agents, documents);
    let result = match &elector {
        Some(elector) => tokio::select! {
            _ = controllers => Ok(()),
            lost = elector.hold() => Err(lost),
        },
        None => {
            controllers.await;
            Ok(())
        }
    };
    metrics.leader.set(0);
    notifications.abort();
    document_metrics.abort();
    quota_metrics.abort();
    tenant_indexes.abort();
    orphans.abort();
    if let Some(embedding) = embedding {
        embedding.abort();
    }
    if let (Some(elector), Ok(())) = (&elector, &result) {
        elector.release().await;
    }
    if let Some(http) = http {
        http.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use prospector_crds::labels::UPLOAD_RESERVATION;

    use super::*;

    #[test]
    fn slim_drops_the_applied_copy_and_keeps_the_annotations_the_operator_reads() {
        // Any kind: a document's own annotation stands for the ones the operator reads.
        let mut document = ConfigMap {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([
                    (LAST_APPLIED.to_owned(), "{\"a whole copy\": true}".to_owned()),
                    (UPLOAD_RESERVATION.to_owned(), "5a0d3c1e-0000-4000-8000-000000000000".to_owned()),
                ])),
                managed_fields: Some(vec![Default::default()]),
                ..Default::default()
            },
            ..Default::default()
        };
        slim(&mut document);
        let annotations = document.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), [UPLOAD_RESERVATION]);
        assert!(document.metadata.managed_fields.is_none());

        let mut applied = ConfigMap::default();
        applied.metadata.annotations = Some(BTreeMap::from([(LAST_APPLIED.to_owned(), "{}".to_owned())]));
        slim(&mut applied);
        assert!(applied.metadata.annotations.is_none());
    }
}
