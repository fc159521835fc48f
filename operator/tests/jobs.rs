//! Job mode against the real control plane, kwok and Postgres: the operator starts an embedder
//! Job in the platform namespace for queued documents, with the GPU request, node selector,
//! tolerations and restricted security context of its settings; kwok schedules its pod on the
//! GPU node the selector names; and a `prospector-embedder worker` process, run by the test as
//! the pod would run it, takes the document to Ready.

#[path = "common/process.rs"]
mod process;

use std::collections::BTreeMap;

use prospector_tests::chart::{OPERATOR_ACCOUNT, client_under_chart_rbac};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount, Toleration};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use prospector_crds::{DocumentPhase, HasConditions, KnowledgeDocument};
use prospector_operator::clock::SystemClock;
use prospector_operator::context::{DocumentSettings, EmbedderMode, JobSettings, Settings};
use prospector_operator::runtime::{DEFAULT_DOCUMENT_CONCURRENCY, RunOptions, run};
use prospector_tests::fixtures::{PLATFORM_NAMESPACE, install_platform, ready_customer, unique};
use prospector_tests::process::{ManagedProcess, RunAs};
use prospector_tests::{eventually, process_dir, shared_cluster, shared_postgres};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_mode_runs_gpu_workers_in_the_platform_namespace() {
    let client = shared_cluster().client().await.unwrap();
    let db = shared_postgres().migrated_database().await.unwrap();
    install_platform(&client).await;
    prospector_tests::controlplane::add_fake_node(&client, "kwok-gpu-0", "64Gi", &[("accelerator", "nvidia")])
        .await
        .unwrap();
    let database_secret = Secret {
        metadata: ObjectMeta { name: Some("prospector-database".into()), ..Default::default() },
        string_data: Some(BTreeMap::from([("url".to_owned(), db.url.clone())])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), PLATFORM_NAMESPACE)
        .create(&PostParams::default(), &database_secret)
        .await
        .unwrap();
    // The Jobs' ServiceAccount, without any RBAC, as the Helm chart installs it.
    let account = ServiceAccount {
        metadata: ObjectMeta { name: Some("prospector-embedder".into()), ..Default::default() },
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), PLATFORM_NAMESPACE)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let jobs_settings = JobSettings {
        image: "registry.example/prospector/embedder-cuda:test".into(),
        max_parallel_jobs: 2,
        documents_per_job: 8,
        database_secret: "prospector-database".into(),
        database_secret_keys: vec![("DATABASE_URL".into(), "url".into())],
        service_account: "prospector-embedder".into(),
        idle_exit_seconds: 30,
        gpus: 1,
        node_selector: BTreeMap::from([("accelerator".to_owned(), "nvidia".to_owned())]),
        tolerations: vec![Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }],
    };
    let http_port = prospector_tests::process::free_port().unwrap();
    let options = RunOptions {
        settings: Settings {
            platform_namespace: PLATFORM_NAMESPACE.into(),
            waiting_retry: Duration::from_secs(2),
            resync: Duration::from_secs(3),
            documents: DocumentSettings { mode: EmbedderMode::Job, jobs: jobs_settings, ..DocumentSettings::default() },
            ..Settings::default()
        },
        lease: None,
        http_addr: Some(([127, 0, 0, 1], http_port).into()),
        concurrency: 8,
        document_concurrency: DEFAULT_DOCUMENT_CONCURRENCY,
    };
    let operator = tokio::spawn(run(
        client_under_chart_rbac(shared_cluster(), OPERATOR_ACCOUNT, "job").await.unwrap(),
        db.pool.clone(),
        options,
        Arc::new(SystemClock),
        std::future::pending(),
    ));

    let customer_name = unique("gpu");
    let (namespace, _) = ready_customer(&client, &customer_name, "pro", json!({})).await;
    let documents: Api<KnowledgeDocument> = Api::namespaced(client.clone(), &namespace);
    let text = "We sell fleet telematics to logistics companies in Germany; the COO signs.";
    let document: KnowledgeDocument = serde_json::from_value(json!({
        "apiVersion": "prospector.dev/v1alpha1", "kind": "KnowledgeDocument", "metadata": {"name": "fleet"},
        "spec": {"filename": "fleet.txt", "source": {"text": text}}
    }))
    .unwrap();
    documents.create(&PostParams::default(), &document).await.unwrap();
    // A url inside the cluster's reach: the worker, run with its pod's defaults, must not fetch it.
    let internal = prospector_tests::http::TestHttpServer::start(std::collections::HashMap::from([(
        "/metadata".to_owned(),
        prospector_tests::http::Answer::Body(b"internal secrets".to_vec()),
    )]))
    .await
    .unwrap();
    let probe: KnowledgeDocument = serde_json::from_value(json!({
        "apiVersion": "prospector.dev/v1alpha1", "kind": "KnowledgeDocument", "metadata": {"name": "probe"},
        "spec": {"filename": "probe.txt", "source": {"url": internal.url("/metadata")}}
    }))
    .unwrap();
    documents.create(&PostParams::default(), &probe).await.unwrap();

    // The Job: in the platform namespace, with the settings' GPU, placement and security.
    let jobs: Api<Job> = Api::namespaced(client.clone(), PLATFORM_NAMESPACE);
    let job = eventually("an embedder Job", WAIT, || async {
        let list = jobs.list(&ListParams::default().labels("app.kubernetes.io/component=embedder")).await.ok()?;
        list.items.into_iter().next()
    })
    .await;
    let pod_spec = job.spec.clone().unwrap().template.spec.unwrap();
    let container = &pod_spec.containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.example/prospector/embedder-cuda:test"));
    assert!(container.args.as_ref().unwrap().contains(&"--device=cuda".to_owned()));
    assert_eq!(container.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0, "1");
    assert_eq!(pod_spec.node_selector.as_ref().unwrap()["accelerator"], "nvidia");
    assert_eq!(pod_spec.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(pod_spec.automount_service_account_token, Some(false));
    assert_eq!(container.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
    let url = container.env.as_ref().unwrap().iter().find(|e| e.name == "DATABASE_URL").unwrap();
    assert!(url.value.is_none(), "the database URL comes from the platform namespace's Secret");
    assert_eq!(job.metadata.namespace.as_deref(), Some(PLATFORM_NAMESPACE));
    let in_customer_namespace =
        Api::<Job>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await.unwrap();
    assert!(in_customer_namespace.items.is_empty(), "no embedder Job runs where tenants can read its Secret");

    // kwok schedules the Job's pod on the GPU node its selector names.
    let pods: Api<Pod> = Api::namespaced(client.clone(), PLATFORM_NAMESPACE);
    let job_name = job.metadata.name.clone().unwrap();
    let node = eventually("the Job's pod scheduled", WAIT, || async {
        let list = pods.list(&ListParams::default().labels(&format!("job-name={job_name}"))).await.ok()?;
        list.items.into_iter().find_map(|p| p.spec?.node_name)
    })
    .await;
    assert_eq!(node, "kwok-gpu-0");

    // The operator's metrics show the waiting document.
    let gauge = |name: &'static str| async move {
        let body = tokio::task::spawn_blocking(move || process::http_get(http_port, "/metrics")).await.ok()??;
        Some(process::metric(&body, name))
    };
    eventually("the queue depth in the metrics", WAIT, || async {
        (gauge("prospector_operator_embedding_queue_depth").await? == 2.0).then_some(())
    })
    .await;

    // The worker, run as its pod would run it, takes the document to Ready.
    let log = process_dir().join("job-worker.log");
    let args = vec!["worker".to_owned(), "--idle-exit-seconds=3".to_owned(), "--poll-seconds=1".to_owned()];
    let mut worker = ManagedProcess::spawn(
        "job-worker",
        &process::embedder_binary(),
        &args,
        RunAs::Current,
        &log,
        &[("DATABASE_URL", db.url.as_str()), ("PROSPECTOR_WORKER_IDENTITY", job_name.as_str())],
    )
    .unwrap();
    let ready = eventually("the document Ready", WAIT, || async {
        let d = documents.get("fleet").await.ok()?;
        (d.status.as_ref()?.phase == Some(DocumentPhase::Ready)).then_some(d)
    })
    .await;
    let icp = ready.status.unwrap().icp.unwrap();
    assert!(icp.target_industries.contains(&"logistics".to_owned()), "{icp:?} (worker log: {})", worker.log_tail(10));
    let leased_by: String = sqlx::query_scalar(
        "SELECT t.leased_by FROM embedding_tasks t JOIN knowledge_documents d ON d.id = t.document_id
          WHERE d.name = 'fleet'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(leased_by, job_name, "the Job's worker did the work");
    eventually("the document counted Ready in the metrics", WAIT, || async {
        let body = tokio::task::spawn_blocking(move || process::http_get(http_port, "/metrics")).await.ok()??;
        body.lines().any(|l| l == "prospector_operator_documents{phase=\"Ready\"} 1").then_some(())
    })
    .await;
    let refused = eventually("the internal url refused", WAIT, || async {
        let d = documents.get("probe").await.ok()?;
        (d.status.as_ref()?.phase == Some(DocumentPhase::Failed)).then_some(d.status?)
    })
    .await;
    let ready = refused.condition(prospector_crds::conditions::types::READY).unwrap();
    assert_eq!((ready.reason.as_str(), refused.attempts), (prospector_crds::conditions::reasons::URL_NOT_ALLOWED, 1));
    assert!(refused.error.as_deref().unwrap().contains("private"), "{:?}", refused.error);
    worker.kill();
    operator.abort();
}
