//! What every reconcile shares: clients, configuration, the clock, metrics, per-object retry
//! backoff, and the channel that wakes agents waiting for quota.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use prospector_crds::{AgentDeployment, Customer, KnowledgeDocument, Tier};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::cached::CachedDeployment;
use crate::catalog::AgentCatalog;
use crate::clock::Clock;
use crate::metrics::Metrics;

/// The field manager of every server-side apply the operator does.
pub const FIELD_MANAGER: &str = "prospector-operator";

/// Settings of a running operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespace the operator runs in; customer NetworkPolicies admit traffic from it.
    pub platform_namespace: String,
    /// The REST API URL agents call (`PROSPECTOR_API_URL`).
    pub api_url: String,
    pub catalog: AgentCatalog,
    /// How often an agent waiting for quota retries on its own (freed quota also wakes it).
    pub waiting_retry: Duration,
    /// How often a healthy object is re-read, to pick up usage and the turn of the month, and
    /// how often rows whose object is gone are swept (`crate::orphans`).
    pub resync: Duration,
    /// How long an agent's pod may find no node before the agent shows Failed: the scheduler
    /// keeps trying, and a node may join.
    pub unschedulable_after: Duration,
    pub documents: DocumentSettings,
    /// The share of a quota at which a customer counts in `customers_near_quota_limit`.
    pub quota_near_limit_ratio: f64,
}

/// Where the embedding work of knowledge documents runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedderMode {
    /// The operator runs the worker loop in-process (development, GPU-less clusters).
    Inline,
    /// The operator runs `prospector-embedder worker` Jobs in the platform namespace, sized to
    /// the queue (the Helm default).
    Job,
    /// Nothing in this process embeds, and no Jobs are started: separately run workers do.
    External,
}

/// Embedder Jobs: what they run and where.
#[derive(Clone, Debug, Default)]
pub struct JobSettings {
    /// The embedder image (the CPU or CUDA build).
    pub image: String,
    /// Jobs running at once, at most.
    pub max_parallel_jobs: u32,
    /// Queued documents one more Job is started for.
    pub documents_per_job: u32,
    /// The Secret in the platform namespace with the database settings. The Secret never leaves
    /// the platform namespace: tenants cannot read it.
    pub database_secret: String,
    /// Environment variable → the Secret's key: `DATABASE_URL` → `url`, or libpq's variables
    /// (`PGHOST` → `host`, ...) from a Secret with one key per part.
    pub database_secret_keys: Vec<(String, String)>,
    /// The ServiceAccount the Jobs run as; it needs no RBAC.
    pub service_account: String,
    /// Seconds an idle worker waits before exiting.
    pub idle_exit_seconds: u64,
    /// GPUs each Job requests (`nvidia.com/gpu`); 0 runs on CPU.
    pub gpus: u32,
    pub node_selector: std::collections::BTreeMap<String, String>,
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
}

/// Parses `VARIABLE=key,VARIABLE=key`: which keys of the database Secret the embedder Jobs read
/// into which variables. Only `DATABASE_URL` and libpq's `PG*` variables may be set this way, and
/// either the URL or `PGHOST` must be among them.
pub fn parse_database_secret_keys(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (variable, key) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not VARIABLE=key"))?;
        let (variable, key) = (variable.trim(), key.trim());
        let libpq = variable
            .strip_prefix("PG")
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_uppercase()));
        if variable != "DATABASE_URL" && !libpq {
            return Err(format!("{variable} is neither DATABASE_URL nor a libpq PG* variable"));
        }
        let valid_key =
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_key {
            return Err(format!("{key:?} is not a Secret key"));
        }
        if pairs.iter().any(|(v, _)| v == variable) {
            return Err(format!("{variable} is given twice"));
        }
        pairs.push((variable.to_owned(), key.to_owned()));
    }
    if !pairs.iter().any(|(v, _)| v == "DATABASE_URL" || v == "PGHOST") {
        return Err("name the key of DATABASE_URL, or of PGHOST (with PGUSER, PGPASSWORD, PGDATABASE)".into());
    }
    Ok(pairs)
}

/// How knowledge documents are processed.
#[derive(Clone, Debug)]
pub struct DocumentSettings {
    pub mode: EmbedderMode,
    /// Processing attempts before a document fails for good.
    pub max_attempts: i32,
    /// The largest source a document may have, in bytes.
    pub max_document_bytes: i64,
    pub thresholds: crate::status::document::Thresholds,
    /// How long the worker may take to fetch a url source.
    pub url_timeout: Duration,
    /// Whether url sources may point at private, loopback and link-local addresses.
    pub allow_private_urls: bool,
    pub jobs: JobSettings,
    /// Which customers get a vector index of their own.
    pub tenant_indexes: crate::tenant_index::TenantIndexSettings,
    /// Inline mode: the nice value of the embedding threads, so reconciles come first while
    /// the queue is deep; `None` leaves them at the operator's. The binary's flag defaults to
    /// [`DEFAULT_INLINE_WORKER_NICE`]; in-process callers (tests) get `None`.
    pub inline_worker_nice: Option<i32>,
}

impl Default for DocumentSettings {
    fn default() -> Self {
        Self {
            mode: EmbedderMode::Inline,
            max_attempts: 3,
            max_document_bytes: 50_000_000,
            thresholds: crate::status::document::Thresholds {
                queued_too_long: Duration::from_secs(600),
                processing_too_long: Duration::from_secs(900),
            },
            url_timeout: Duration::from_secs(30),
            allow_private_urls: false,
            jobs: JobSettings {
                image: "ghcr.io/prospector-dev/embedder:0.1.0".into(),
                max_parallel_jobs: 4,
                documents_per_job: 16,
                database_secret: "prospector-database".into(),
                database_secret_keys: vec![("DATABASE_URL".into(), "url".into())],
                service_account: "prospector-embedder".into(),
                idle_exit_seconds: 60,
                ..JobSettings::default()
            },
            tenant_indexes: crate::tenant_index::TenantIndexSettings::default(),
            inline_worker_nice: None,
        }
    }
}

/// Inline mode's default nice value for the embedding threads (`--inline-worker-nice`): the
/// lowest priority. Embedding is background work; reconciles, and on a machine shared with the
/// control plane (`make dev`) the apiserver, come first. With documents reconciled two at a time
/// ([`crate::runtime::DEFAULT_DOCUMENT_CONCURRENCY`]) this costs a plain ingestion nothing
/// measurable (0.86x of the embedder alone at 19, 0.87x at 0), and agents created while 1,000
/// documents wait come up 1.04x slower than alone instead of 1.87x (`docs/benchmarks.md`,
/// "Documents at scale").
pub const DEFAULT_INLINE_WORKER_NICE: i32 = 19;

/// An Event as the operator publishes it ([`Context::publish`]): Normal or Warning, a reason and
/// a note, on the Reconcile action.
pub fn operator_event(warning: bool, reason: &str, note: String) -> Event {
    Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            platform_namespace: "prospector-system".into(),
            api_url: "http://prospector-apiserver.prospector-system.svc:8080".into(),
            catalog: AgentCatalog::default(),
            waiting_retry: Duration::from_secs(30),
            resync: Duration::from_secs(300),
            unschedulable_after: Duration::from_secs(120),
            quota_near_limit_ratio: 0.9,
            documents: DocumentSettings::default(),
        }
    }
}

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub pool: PgPool,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub reporter: Reporter,
    failures: Mutex<HashMap<String, u32>>,
    /// Writes to reconciled objects that the caches have not shown yet.
    pub own_writes: crate::own_writes::PendingWrites,
    wake_agents: mpsc::UnboundedSender<ObjectRef<AgentDeployment>>,
    wake_documents: mpsc::UnboundedSender<ObjectRef<KnowledgeDocument>>,
    usage_refreshes: crate::refresh::UsageRefreshes,
    customer_cache: std::sync::OnceLock<kube::runtime::reflector::Store<Customer>>,
    tier_cache: std::sync::OnceLock<kube::runtime::reflector::Store<Tier>>,
    deployment_cache: std::sync::OnceLock<kube::runtime::reflector::Store<CachedDeployment>>,
    key_secrets: std::sync::OnceLock<kube::runtime::reflector::Store<PartialObjectMeta<Secret>>>,
    /// Set once the customer cache has listed every Customer.
    customers_synced: std::sync::atomic::AtomicBool,
}

/// How long a write of the operator's to an object may wait for its watch event before a pass
/// that starts from an older copy runs anyway (`crate::own_writes`).
pub const OWN_WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// The receiving ends of the wake-up channels, consumed by the controllers.
#[derive(Debug)]
pub struct Wakeups {
    pub agents: mpsc::UnboundedReceiver<ObjectRef<AgentDeployment>>,
    pub customers: mpsc::UnboundedReceiver<ObjectRef<Customer>>,
    pub documents: mpsc::UnboundedReceiver<ObjectRef<KnowledgeDocument>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Context {
    /// Builds the context and the receiving ends of its wake-up channels.
    pub fn new(
        client: Client,
        pool: PgPool,
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        instance: Option<String>,
    ) -> (Arc<Self>, Wakeups) {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance };
        let (wake_agents, agents) = mpsc::unbounded_channel();
        let (wake_customers, customers) = mpsc::unbounded_channel();
        let usage_refreshes = crate::refresh::UsageRefreshes::new(wake_customers);
        let (wake_documents, documents) = mpsc::unbounded_channel();
        let context = Self {
            client,
            pool,
            settings,
            clock,
            metrics,
            reporter,
            failures: Mutex::new(HashMap::new()),
            own_writes: crate::own_writes::PendingWrites::new(OWN_WRITE_PATIENCE, std::time::Instant::now()),
            wake_agents,
            wake_documents,
            usage_refreshes,
            customer_cache: std::sync::OnceLock::new(),
            tier_cache: std::sync::OnceLock::new(),
            deployment_cache: std::sync::OnceLock::new(),
            key_secrets: std::sync::OnceLock::new(),
            customers_synced: std::sync::atomic::AtomicBool::new(false),
        };
        (Arc::new(context), Wakeups { agents, customers, documents })
    }

    /// Publishes a Kubernetes Event about `object`. Failing to publish never fails a reconcile.
    ///
    /// A fresh recorder each time: kube's `Recorder` keeps every event it published for six
    /// minutes (to count repeats into a series) and scans that cache on each publish. At scale
    /// that cache was the operator's largest allocation (heaptrack, docs/benchmarks.md), and
    /// we publish only on transitions, so there are no repeats to count.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, warning: bool, reason: &str, note: String) {
        let event = operator_event(warning, reason, note);
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish an event");
        }
    }

    /// Asks the agent controller to reconcile these agents soon (quota was freed).
    pub fn wake(&self, agents: impl IntoIterator<Item = (String, String)>) {
        for (namespace, name) in agents {
            let _ = self.wake_agents.send(ObjectRef::new(&name).within(&namespace));
        }
    }

    /// Asks the customer controller to refresh a customer's usage soon (an agent was admitted,
    /// resized or released), throttled per customer (`crate::refresh`).
    pub fn wake_customer(&self, name: &str) {
        self.usage_refreshes.request(name);
    }

    /// Asks the customer controller to reconcile a customer soon, not held by the usage
    /// throttle: what changed is news (its count of refused agents, its Ready documents' ICP).
    pub fn wake_customer_soon(&self, name: &str) {
        self.usage_refreshes.request_soon(name);
    }

    /// Asks the document controller to reconcile a document soon (a worker finished it).
    pub fn wake_document(&self, namespace: &str, name: &str) {
        let _ = self.wake_documents.send(ObjectRef::new(name).within(namespace));
    }

    /// Shares the customer controller's cache with the other controllers.
    pub fn set_customer_cache(&self, store: kube::runtime::reflector::Store<Customer>) {
        let _ = self.customer_cache.set(store);
    }

    /// Records that the customer cache holds every Customer (its watch's first list is done).
    pub fn mark_customers_synced(&self) {
        self.customers_synced.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The customer cache, once it holds every Customer. Not `Store::wait_until_ready`: kube's
    /// readiness signal wakes only the last of several waiters, and the customer controller
    /// waits on it too.
    pub fn synced_customer_cache(&self) -> Option<&kube::runtime::reflector::Store<Customer>> {
        self.customers_synced.load(std::sync::atomic::Ordering::Acquire).then(|| self.customer_cache.get()).flatten()
    }

    /// A customer as the customer controller's cache has it, if it does. The cache can lag
    /// behind the apiserver (never lead it): callers that need what it lacks read the apiserver.
    pub fn cached_customer(&self, name: &str) -> Option<Arc<Customer>> {
        self.customer_cache.get()?.get(&ObjectRef::new(name))
    }

    /// Shares the tier controller's cache with the customer controller.
    pub fn set_tier_cache(&self, store: kube::runtime::reflector::Store<Tier>) {
        let _ = self.tier_cache.set(store);
    }

    /// A tier as the tier controller's cache has it, if it does (see [`Context::cached_customer`]).
    pub fn cached_tier(&self, name: &str) -> Option<Arc<Tier>> {
        self.tier_cache.get()?.get(&ObjectRef::new(name))
    }

    /// Shares the cache of the agents' Deployments (compact: what reconciles read).
    pub fn set_deployment_cache(&self, store: kube::runtime::reflector::Store<CachedDeployment>) {
        let _ = self.deployment_cache.set(store);
    }

    /// An agent's Deployment as the cache has it, if it does (see [`Context::cached_customer`]),
    /// with the fields the cache keeps.
    pub fn cached_deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        let cached = self.deployment_cache.get()?.get(&ObjectRef::new(name).within(namespace))?;
        Some(cached.to_deployment())
    }

    /// Shares the metadata cache of the customers' API key Secrets.
    pub fn set_key_secret_cache(&self, store: kube::runtime::reflector::Store<PartialObjectMeta<Secret>>) {
        let _ = self.key_secrets.set(store);
    }

    /// Whether the watch's cache, once it has listed every API key Secret, lacks the one of
    /// `namespace`. Without a cache, or before that first list, nothing is known to be absent.
    pub fn key_secret_known_absent(&self, namespace: &str) -> bool {
        self.key_secrets.get().is_some_and(|store| {
            let listed = futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|ready| ready.is_ok());
            listed && store.get(&ObjectRef::new(crate::desired::customer::API_KEY_SECRET).within(namespace)).is_none()
        })
    }

    /// Whether the API key Secret of `namespace` exists, by the watch's cache. Without a cache
    /// (a context built for a single reconcile) it is taken to exist.
    pub fn key_secret_exists(&self, namespace: &str) -> bool {
        self.key_secrets.get().is_none_or(|store| {
            store.get(&ObjectRef::new(crate::desired::customer::API_KEY_SECRET).within(namespace)).is_some()
        })
    }

    /// The retry delay after a failure of `key`: 1 s, doubling up to 5 minutes.
    pub fn backoff(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        Duration::from_secs(1u64 << (*count - 1).min(8)).min(Duration::from_secs(300))
    }

    /// Forgets the failures of `key` after it reconciled.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// A key identifying an object for backoff bookkeeping.
pub fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), object.namespace().unwrap_or_default(), object.name_any())
}

#[cfg(test)]
mod tests {
    use super::parse_database_secret_keys;

    #[test]
    fn database_secret_keys_name_a_url_or_libpq_variables() {
        assert_eq!(
            parse_database_secret_keys("DATABASE_URL=url").unwrap(),
            vec![("DATABASE_URL".into(), "url".into())]
        );
        let parts = parse_database_secret_keys(
            "PGHOST=host, PGPORT=port,PGUSER=username,PGPASSWORD=password,PGDATABASE=dbname",
        )
        .unwrap();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[2], ("PGUSER".into(), "username".into()));
        for (bad, says) in [
            ("", "name the key of DATABASE_URL"),
            ("PGUSER=user", "name the key of DATABASE_URL"),
            ("LD_PRELOAD=url,DATABASE_URL=url", "LD_PRELOAD is neither"),
            ("DATABASE_URL", "is not VARIABLE=key"),
            ("DATABASE_URL=a/b", "is not a Secret key"),
            ("PGHOST=a,PGHOST=b", "PGHOST is given twice"),
        ] {
            let error = parse_database_secret_keys(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
