//! The embedder Job of Job mode: `prospector-embedder worker` in the platform namespace, never
//! in a customer's (the database URL it reads from a Secret must not be readable by tenants),
//! under the restricted Pod Security Standard, with GPUs, node selector and tolerations from
//! the operator's settings, exiting once the queue stays idle.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, ResourceRequirements,
    SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{managed_labels, restricted_container_security, restricted_pod_security};
use crate::context::{DocumentSettings, JobSettings};

/// The label value that marks embedder Jobs and their pods (`app.kubernetes.io/component`).
pub const COMPONENT: &str = "embedder";
/// The component label key.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// The labels of every embedder Job and pod.
pub fn job_labels() -> BTreeMap<String, String> {
    managed_labels(&[(COMPONENT_LABEL, COMPONENT)])
}

/// The database settings, each variable read from its key of the platform's database Secret.
fn database_env(settings: &JobSettings) -> impl Iterator<Item = EnvVar> + '_ {
    settings.database_secret_keys.iter().map(|(variable, key)| EnvVar {
        name: variable.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: settings.database_secret.clone(),
                key: key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// An embedder Job named `name` in `namespace` (the platform namespace), whose worker applies
/// the operator's document settings (size cap, url policy).
pub fn embedder_job(name: &str, namespace: &str, documents: &DocumentSettings) -> Job {
    let settings = &documents.jobs;
    let mut args = vec![
        "worker".to_owned(),
        format!("--idle-exit-seconds={}", settings.idle_exit_seconds),
        format!("--max-input-bytes={}", documents.max_document_bytes),
        format!("--url-timeout-seconds={}", documents.url_timeout.as_secs()),
    ];
    if documents.allow_private_urls {
        args.push("--allow-private-urls".into());
    }
    let mut limits = BTreeMap::new();
    if settings.gpus > 0 {
        args.push("--device=cuda".into());
        limits.insert("nvidia.com/gpu".to_owned(), Quantity(settings.gpus.to_string()));
    }
    let container = Container {
        name: "worker".into(),
        image: Some(settings.image.clone()),
        args: Some(args),
        env: Some(
            database_env(settings)
                .chain([EnvVar {
                    name: "PROSPECTOR_WORKER_IDENTITY".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }])
                .collect(),
        ),
        resources: (!limits.is_empty()).then(|| ResourceRequirements {
            limits: Some(limits.clone()),
            requests: Some(limits),
            ..Default::default()
        }),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }]),
        ..Default::default()
    };
    let labels = job_labels();
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // A worker that dies loses its claims to the reaper; another Job takes them.
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(300),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    // SIGTERM lets the worker finish its batch; a batch of PDFs on CPU may take
                    // minutes.
                    termination_grace_period_seconds: Some(300),
                    service_account_name: Some(settings.service_account.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(restricted_pod_security()),
                    node_selector: (!settings.node_selector.is_empty()).then(|| settings.node_selector.clone()),
                    tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How many more Jobs to start: one per `documents_per_job` queued documents beyond what the
/// running Jobs take, within `max_parallel_jobs`.
pub fn jobs_to_start(queued: i64, running_jobs: u32, settings: &JobSettings) -> u32 {
    if queued <= 0 {
        return 0;
    }
    let per_job = i64::from(settings.documents_per_job.max(1));
    let wanted = u32::try_from((queued + per_job - 1) / per_job).unwrap_or(u32::MAX);
    wanted.min(settings.max_parallel_jobs).saturating_sub(running_jobs)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Toleration;

    use super::*;

    fn settings(gpus: u32) -> DocumentSettings {
        DocumentSettings { jobs: job_settings(gpus), ..DocumentSettings::default() }
    }

    fn job_settings(gpus: u32) -> JobSettings {
        JobSettings {
            image: "registry.example/prospector/embedder-cuda:1".into(),
            max_parallel_jobs: 3,
            documents_per_job: 10,
            database_secret: "prospector-database".into(),
            database_secret_keys: vec![("DATABASE_URL".into(), "url".into())],
            service_account: "prospector-embedder".into(),
            idle_exit_seconds: 30,
            gpus,
            node_selector: BTreeMap::from([("accelerator".to_owned(), "nvidia".to_owned())]),
            tolerations: vec![Toleration {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_gpu_job_requests_gpus_and_lands_where_settings_say() {
        let job = embedder_job("embedder-abc", "prospector-system", &settings(1));
        assert_eq!(job.metadata.namespace.as_deref(), Some("prospector-system"));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        let limits = container.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("1".into()));
        assert!(container.args.as_ref().unwrap().contains(&"--device=cuda".to_owned()));
        assert_eq!(pod.node_selector.unwrap()["accelerator"], "nvidia");
        assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("nvidia.com/gpu"));
        let cpu = embedder_job("embedder-def", "prospector-system", &settings(0)).spec.unwrap().template.spec.unwrap();
        assert!(
            cpu.containers[0].resources.is_none()
                && !cpu.containers[0].args.as_ref().unwrap().contains(&"--device=cuda".to_owned())
        );
    }

    #[test]
    fn the_job_is_restricted_and_reads_the_database_url_from_the_platform_secret() {
        let job = embedder_job("embedder-abc", "prospector-system", &settings(0));
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.service_account_name.as_deref(), Some("prospector-embedder"));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let container = &pod.containers[0];
        let security = container.security_context.clone().unwrap();
        assert_eq!(
            (security.read_only_root_filesystem, security.allow_privilege_escalation),
            (Some(true), Some(false))
        );
        let env = container.env.as_ref().unwrap();
        let url = env.iter().find(|e| e.name == "DATABASE_URL").unwrap();
        let args = container.args.as_ref().unwrap();
        assert!(args.contains(&"--max-input-bytes=50000000".to_owned()), "the operator's size cap: {args:?}");
        assert!(!args.contains(&"--allow-private-urls".to_owned()));
        assert!(url.value.is_none(), "never inlined");
        let secret = url.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((secret.name.as_str(), secret.key.as_str()), ("prospector-database", "url"));
    }

    #[test]
    fn a_secret_with_one_key_per_part_reaches_the_job_as_libpq_variables() {
        let mut documents = settings(0);
        documents.jobs.database_secret_keys =
            vec![("PGHOST".into(), "host".into()), ("PGPASSWORD".into(), "password".into())];
        let job = embedder_job("embedder-abc", "prospector-system", &documents);
        let env = job.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
        let from_secret: Vec<(String, String)> = env
            .iter()
            .filter_map(|e| {
                let secret = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
                assert_eq!(secret.name, "prospector-database");
                Some((e.name.clone(), secret.key.clone()))
            })
            .collect();
        assert_eq!(from_secret, documents.jobs.database_secret_keys);
        assert!(env.iter().all(|e| e.name != "DATABASE_URL" && e.value.is_none()));
    }

    #[test]
    fn jobs_follow_the_queue_within_the_bound() {
        let s = job_settings(0);
        assert_eq!(jobs_to_start(0, 0, &s), 0);
        assert_eq!(jobs_to_start(1, 0, &s), 1);
        assert_eq!(jobs_to_start(25, 1, &s), 2);
        assert_eq!(jobs_to_start(1000, 1, &s), 2, "at most 3 at once");
        assert_eq!(jobs_to_start(5, 3, &s), 0);
    }
}
