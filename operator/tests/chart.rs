//! The Helm chart installed for real with Helm 3 and with Helm 4, each on a control plane of its
//! own (the release owns the Tiers, which the shared cluster's tests install themselves): `helm
//! install --wait` runs the migration hook Job and schedules the Deployments' pods (kwok plays the
//! nodes), the CRDs are served and the Tiers exist and the agent catalog is one the operator
//! parses; `helm upgrade` reaches a tier's limit, the embedder mode and the catalog (rolling the
//! operator); `helm uninstall` keeps the CRDs and removes the rest. And the RBAC proven with
//! `kubectl auth can-i` against that apiserver: each ServiceAccount may do what its binary does,
//! and nothing next to it.
//!
//! The release reads Postgres from a Secret with one key per part (CloudNativePG's layout, as
//! libpq variables) rather than a URL. There is no container runtime here, so the hook's
//! container does not run: the test runs the same binary with the hook's own arguments and
//! exactly the variables its pod would get from that Secret.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use prospector_crds::{AgentType, Customer, Tier};
use prospector_operator::catalog::AgentCatalog;
use prospector_tests::controlplane::ControlPlane;
use prospector_tests::hack::{hack_path, repo_root};
use prospector_tests::{process_dir, random_suffix, shared_postgres};

const NAMESPACE: &str = "prospector-system";

fn run(tool: &str, kubeconfig: &Path, args: &[&str]) -> Output {
    let binary = hack_path(&format!("{tool}.sh")).unwrap_or_else(|e| panic!("hack/{tool}.sh: {e}"));
    Command::new(binary).arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("run the tool")
}

fn succeeded(what: &str, output: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// Whether `kubectl auth can-i` says this ServiceAccount may. `resource` is `kind[/name]`, with
/// `:subresource` after it (`customers.prospector.dev:status`).
fn can(kubeconfig: &Path, account: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let who = format!("--as=system:serviceaccount:{NAMESPACE}:prospector-{account}");
    let (resource, subresource) = resource.split_once(':').map_or((resource, None), |(r, s)| (r, Some(s)));
    let mut args = vec!["auth", "can-i", verb, resource, "-n", namespace, &who];
    let subresource = subresource.map(|s| format!("--subresource={s}"));
    args.extend(subresource.as_deref());
    let output = run("kubectl", kubeconfig, &args);
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(answer == "yes" || answer == "no", "can-i {verb} {resource}: {answer} {output:?}");
    answer == "yes"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_3_installs_upgrades_and_uninstalls_the_platform_with_least_privilege() {
    install_upgrade_uninstall("helm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_4_installs_upgrades_and_uninstalls_the_platform_with_least_privilege() {
    install_upgrade_uninstall("helm4").await;
}

/// The whole life of a release, with `helm` (`hack/<helm>.sh`), on a control plane of its own;
/// one at a time, since two control planes at once crowd two cores.
async fn install_upgrade_uninstall(helm: &str) {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = process_dir().join(format!("chart-cluster-{}", random_suffix(6).to_lowercase()));
    let cluster = ControlPlane::start(&dir).await.expect("a control plane of its own");
    let kubeconfig = cluster.kubeconfig();
    let client = cluster.client().await.unwrap();
    let db = shared_postgres().empty_database().await.unwrap();
    let chart = repo_root().join("charts/prospector");
    let chart = chart.to_str().unwrap();

    succeeded("create the namespace", run("kubectl", kubeconfig, &["create", "namespace", NAMESPACE]));
    // Enforced, as docs/operations.md asks: a pod of the release that broke the restricted
    // standard would never be created, and `helm install --wait` would time out.
    let enforce = ["label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"];
    succeeded("label the namespace", run("kubectl", kubeconfig, &enforce));
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let parts = [
        format!("--from-literal=host={}", options.get_host()),
        format!("--from-literal=port={}", options.get_port()),
        format!("--from-literal=username={}", options.get_username()),
        format!("--from-literal=dbname={}", options.get_database().unwrap()),
        "--from-literal=password=p@ss/w:rd".to_owned(),
    ];
    let mut create = vec!["-n", NAMESPACE, "create", "secret", "generic", "prospector-database"];
    create.extend(parts.iter().map(String::as_str));
    succeeded("create the database Secret", run("kubectl", kubeconfig, &create));

    // Every Job the install starts, as it goes (the hook's is deleted once it succeeded).
    let jobs_seen: Arc<Mutex<Vec<Job>>> = Arc::default();
    let watching = {
        let (jobs_seen, jobs) = (jobs_seen.clone(), Api::<Job>::namespaced(client.clone(), NAMESPACE));
        tokio::spawn(async move {
            let mut stream = watcher(jobs, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(job)) = stream.next().await {
                jobs_seen.lock().unwrap().push(job);
            }
        })
    };
    // Postgres by parts, and document_chunks in 4 hash partitions (the database is new).
    let values = "database.urlKey=,database.chunkPartitions=4";
    let install = ["install", "prospector", chart, "-n", NAMESPACE, "--set", values, "--wait", "--timeout", "180s"];
    succeeded("helm install", run(helm, kubeconfig, &install));
    watching.abort();

    // The hook Job ran to completion before the release's objects, with `migrate`; the same
    // binary with those arguments and the Secret's URL migrates the database.
    let jobs = jobs_seen.lock().unwrap().clone();
    let hook = jobs.iter().rev().find(|j| j.metadata.name.as_deref() == Some("prospector-migrate")).expect("the hook");
    assert_eq!(hook.status.as_ref().and_then(|s| s.succeeded), Some(1), "the hook Job completed");
    let container = &hook.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args, ["migrate", "--chunk-partitions=4"]);
    let secrets = Api::<Secret>::namespaced(client.clone(), NAMESPACE);
    let database_secret = secrets.get("prospector-database").await.unwrap().data.unwrap();
    let mut from_secret = Vec::new();
    for variable in container.env.as_ref().unwrap() {
        let selector = variable.value_from.as_ref().and_then(|v| v.secret_key_ref.clone()).expect("from a Secret");
        assert_eq!(selector.name, "prospector-database");
        let value = String::from_utf8(database_secret[&selector.key].0.clone()).unwrap();
        from_secret.push((variable.name.clone(), value));
    }
    let names: BTreeSet<&str> = from_secret.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["PGDATABASE", "PGHOST", "PGPASSWORD", "PGPORT", "PGUSER"].into());
    let migrated = Command::new(env!("CARGO_BIN_EXE_prospector-operator"))
        .args(&args)
        .env_remove("DATABASE_URL")
        .envs(from_secret)
        .output();
    succeeded("the hook's command", migrated.unwrap());
    let applied = prospector_store::applied_migrations(&db.pool).await.unwrap();
    assert_eq!(applied.len(), prospector_store::MIGRATOR.iter().count());
    let layout = prospector_store::partitions::chunk_layout(&db.pool).await.unwrap();
    assert_eq!(layout, prospector_store::partitions::ChunkLayout::Partitioned(4));

    // The CRDs are served, the Tiers exist, and every pod of the release has a node.
    Api::<Customer>::all(client.clone()).list(&ListParams::default()).await.expect("customers are served");
    let tiers: BTreeSet<String> = Api::<Tier>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| t.metadata.name.unwrap())
        .collect();
    assert_eq!(tiers, ["enterprise", "free", "pro", "starter"].map(String::from).into());
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    for component in ["operator", "apiserver"] {
        let selected = ListParams::default().labels(&format!("app.kubernetes.io/component={component}"));
        let list = pods.list(&selected).await.unwrap().items;
        assert_eq!(list.len(), 2, "{component}: two replicas");
        assert!(list.iter().all(|p| p.spec.as_ref().unwrap().node_name.is_some()), "{component}: scheduled");
    }

    // The agent catalog reaches the operator as a file its own parser accepts.
    let catalog_of = |client: kube::Client| async move {
        let map = Api::<ConfigMap>::namespaced(client, NAMESPACE).get("prospector-agent-catalog").await.unwrap();
        AgentCatalog::parse(&map.data.unwrap()["catalog.yaml"]).expect("the operator reads the chart's catalog")
    };
    let catalog = catalog_of(client.clone()).await;
    assert_eq!(catalog.image_for(AgentType::LeadQualifier, None), "ghcr.io/prospector-dev/agent-lead-qualifier:0.1.0");
    let catalog_checksum = |deployment: &Deployment| {
        let template = deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
        template.annotations.as_ref().unwrap()["checksum/agent-catalog"].clone()
    };
    let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    let checksum_before = catalog_checksum(&deployments.get("prospector-operator").await.unwrap());

    // Least privilege, asked of the real apiserver.
    for (verb, resource, namespace) in [
        ("patch", "customers.prospector.dev", "default"),
        ("patch", "customers.prospector.dev:status", "default"),
        ("patch", "tiers.prospector.dev:status", "default"),
        ("create", "namespaces", "default"),
        ("create", "deployments.apps", "cust-acme"),
        ("get", "secrets/prospector-api-key", "cust-acme"),
        ("create", "events.events.k8s.io", "cust-acme"),
        ("create", "jobs.batch", NAMESPACE),
        ("update", "leases.coordination.k8s.io/prospector-operator", NAMESPACE),
    ] {
        assert!(can(kubeconfig, "operator", verb, resource, namespace), "operator may {verb} {resource}");
    }
    for (verb, resource, namespace) in [
        ("delete", "customers.prospector.dev", "default"),
        ("get", "secrets/prospector-database", NAMESPACE),
        ("list", "secrets", "cust-acme"),
        ("update", "secrets/prospector-api-key", "cust-acme"),
        ("create", "jobs.batch", "cust-acme"),
        ("update", "leases.coordination.k8s.io/another-lease", NAMESPACE),
        ("create", "rolebindings.rbac.authorization.k8s.io", "cust-acme"),
        ("delete", "tiers.prospector.dev", "default"),
        ("patch", "tiers.prospector.dev", "default"),
    ] {
        assert!(!can(kubeconfig, "operator", verb, resource, namespace), "operator may not {verb} {resource}");
    }
    for (verb, resource, namespace) in [
        ("create", "customers.prospector.dev", "default"),
        ("list", "tiers.prospector.dev", "default"),
        ("create", "agentdeployments.prospector.dev", "cust-acme"),
        ("delete", "knowledgedocuments.prospector.dev", "cust-acme"),
        ("update", "secrets/prospector-api-key", "cust-acme"),
    ] {
        assert!(can(kubeconfig, "apiserver", verb, resource, namespace), "apiserver may {verb} {resource}");
    }
    for (verb, resource, namespace) in [
        ("get", "secrets/prospector-database", NAMESPACE),
        ("get", "secrets/another", "cust-acme"),
        ("list", "secrets", "cust-acme"),
        ("create", "namespaces", "default"),
        ("delete", "customers.prospector.dev", "default"),
        ("patch", "customers.prospector.dev:status", "default"),
        ("create", "deployments.apps", "cust-acme"),
        ("get", "pods", NAMESPACE),
    ] {
        assert!(!can(kubeconfig, "apiserver", verb, resource, namespace), "apiserver may not {verb} {resource}");
    }
    for (verb, resource, namespace) in [
        ("get", "pods", NAMESPACE),
        ("get", "secrets/prospector-database", NAMESPACE),
        ("list", "customers.prospector.dev", "default"),
        ("create", "jobs.batch", NAMESPACE),
        ("get", "configmaps", "cust-acme"),
    ] {
        assert!(!can(kubeconfig, "embedder", verb, resource, namespace), "embedder may not {verb} {resource}");
    }

    // An upgrade reaches a tier's limit and the embedder mode (and with inline mode, the
    // operator loses the right to start Jobs).
    let upgrade = [
        "upgrade",
        "prospector",
        chart,
        "-n",
        NAMESPACE,
        "--reset-then-reuse-values",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        "tiers.free.maxAgents=3",
        "--set",
        "operator.embedder.mode=inline",
        "--set",
        "agentCatalog.custom.image=registry.example/agents/custom:9",
    ];
    succeeded("helm upgrade", run(helm, kubeconfig, &upgrade));
    let free = Api::<Tier>::all(client.clone()).get("free").await.unwrap();
    assert_eq!(free.spec.max_agents, 3);
    let operator = Api::<Deployment>::namespaced(client.clone(), NAMESPACE).get("prospector-operator").await.unwrap();
    let env = operator.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("PROSPECTOR_EMBEDDER_MODE").as_deref(), Some("inline"));
    // The operator hands embedder Jobs the same keys of the same Secret.
    let keys = value("PROSPECTOR_DATABASE_SECRET_KEYS").unwrap();
    let keys = prospector_operator::context::parse_database_secret_keys(&keys).unwrap();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(keys.contains(&("PGUSER".to_owned(), "username".to_owned())), "{keys:?}");
    // A new catalog image reaches the file, and rolls the operator (its pod template changed).
    assert_eq!(catalog_of(client.clone()).await.image_for(AgentType::Custom, None), "registry.example/agents/custom:9");
    assert_ne!(catalog_checksum(&deployments.get("prospector-operator").await.unwrap()), checksum_before);
    let role = Api::<Role>::namespaced(client.clone(), NAMESPACE).get("prospector-operator").await.unwrap();
    let rules = role.rules.unwrap_or_default();
    assert!(!rules.iter().any(|r| r.resources.as_ref().is_some_and(|r| r.contains(&"jobs".to_owned()))), "{rules:?}");
    assert!(!can(kubeconfig, "operator", "create", "jobs.batch", NAMESPACE));

    // Uninstall: the CRDs stay (Helm's rule for crds/), the rest goes.
    succeeded("helm uninstall", run(helm, kubeconfig, &["uninstall", "prospector", "-n", NAMESPACE, "--wait"]));
    Api::<Customer>::all(client.clone()).list(&ListParams::default()).await.expect("the CRDs stay");
    assert!(Api::<Tier>::all(client.clone()).list(&ListParams::default()).await.unwrap().items.is_empty());
    let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE).list(&ListParams::default()).await;
    assert!(deployments.unwrap().items.is_empty());
}
