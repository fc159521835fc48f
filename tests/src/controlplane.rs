//! A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok with one fake node, so Deployments get scheduled, "Running" pods and
//! garbage collection, without a kubelet or container runtime.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::HarnessError;
use crate::certs::{Pki, write_pki};
use crate::hack::{hack_path, repo_root};
use crate::process::{ManagedProcess, RunAs, free_port};

/// The name of the kwok-managed node every test cluster has.
pub const FAKE_NODE: &str = "kwok-node-0";
/// The field manager the harness applies with.
pub const HARNESS_MANAGER: &str = "prospector-harness";

/// A running control plane. Dropping it stops every process.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    processes: Vec<ManagedProcess>,
    /// kube-apiserver, apart from the others: a fault test stops and starts it again.
    apiserver: std::sync::Mutex<Apiserver>,
}

/// The running kube-apiserver and what it takes to start it again on the same port and etcd.
#[derive(Debug)]
struct Apiserver {
    process: Option<ManagedProcess>,
    program: PathBuf,
    args: Vec<String>,
    starts: u32,
}

impl ControlPlane {
    /// Starts the control plane in `dir` (which must be empty or absent) and waits until the
    /// apiserver is ready, the fake node exists and the CRDs under `charts/prospector/crds/`
    /// are established.
    pub async fn start(dir: &Path) -> Result<Self, HarnessError> {
        let bin = hack_path("controlplane.sh")?;
        std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
        let pki = write_pki(&dir.join("pki"))?;
        let mut plane = ControlPlane {
            dir: dir.to_owned(),
            kubeconfig: dir.join("kubeconfig"),
            server: String::new(),
            processes: Vec::new(),
            apiserver: std::sync::Mutex::new(Apiserver {
                process: None,
                program: bin.join("kube-apiserver"),
                args: Vec::new(),
                starts: 0,
            }),
        };

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        plane.spawn(
            &bin,
            "etcd",
            &[
                "--name=prospector".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=prospector={peer_url}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;

        let apiserver_port = free_port()?;
        plane.server = format!("https://127.0.0.1:{apiserver_port}");
        write_kubeconfig(&plane.kubeconfig, &plane.server, &pki)?;
        let sa_key = pki.service_account_key.display().to_string();
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={apiserver_port}"),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            format!("--service-account-key-file={}", pki.service_account_public_key.display()),
            format!("--service-account-signing-key-file={sa_key}"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=false".into(),
            "--enable-priority-and-fairness=false".into(),
            "--watch-cache=true".into(),
            "--v=0".into(),
        ];
        plane.apiserver.get_mut().expect("apiserver lock").args = apiserver_args;
        plane.start_apiserver()?;
        plane.wait_ready().await?;

        let kubeconfig = plane.kubeconfig.display().to_string();
        let kcm_port = free_port()?;
        plane.spawn(
            &bin,
            "kube-controller-manager",
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                // kwok's node renews its lease, but kwok never re-marks a pod Ready once the
                // node lifecycle controller marked it NotReady, as a kubelet's sync would. With
                // the default grace (50 s) a few apiserver restarts in a row (the fault soak's)
                // left every pod on the node NotReady for good.
                "--node-monitor-grace-period=10m".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={kcm_port}"),
                format!("--cert-dir={}", dir.join("kcm-certs").display()),
                format!("--service-account-private-key-file={sa_key}"),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                "--use-service-account-credentials=false".into(),
                "--concurrent-deployment-syncs=10".into(),
                "--concurrent-replicaset-syncs=10".into(),
                "--concurrent-gc-syncs=20".into(),
                "--kube-api-qps=200".into(),
                "--kube-api-burst=400".into(),
                "--v=0".into(),
            ],
        )?;
        let scheduler_port = free_port()?;
        plane.spawn(
            &bin,
            "kube-scheduler",
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={scheduler_port}"),
                format!("--cert-dir={}", dir.join("scheduler-certs").display()),
                "--kube-api-qps=200".into(),
                "--kube-api-burst=400".into(),
                "--v=0".into(),
            ],
        )?;
        let kwok_port = free_port()?;
        plane.spawn(
            &bin,
            "kwok",
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--config={}", bin.join("kwok-stages.yaml").display()),
                // The project's own stages (failure modes tests need), besides kwok's.
                format!("--config={}", repo_root().join("tests/kwok/image-pull-failure.yaml").display()),
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                "--manage-nodes-with-label-selector=".into(),
                "--cidr=10.244.0.0/16".into(),
                "--node-ip=127.0.0.1".into(),
                "--node-lease-duration-seconds=40".into(),
                format!("--server-address=127.0.0.1:{kwok_port}"),
            ],
        )?;

        let client = plane.client().await?;
        create_fake_node(&client).await?;
        install_crds(&client, &repo_root().join("charts/prospector/crds")).await?;
        for process in &mut plane.processes {
            process.check_running()?;
        }
        Ok(plane)
    }

    fn spawn(&mut self, bin: &Path, name: &str, args: &[String]) -> Result<(), HarnessError> {
        let log = self.dir.join(format!("{name}.log"));
        let process = ManagedProcess::spawn(name, &bin.join(name), args, RunAs::Current, &log, &[])?;
        self.processes.push(process);
        Ok(())
    }

    /// Starts kube-apiserver with its arguments; each start logs to a file of its own, so the
    /// logs of a stopped one are kept.
    fn start_apiserver(&self) -> Result<(), HarnessError> {
        let mut apiserver = self.apiserver.lock().expect("apiserver lock");
        let log = match apiserver.starts {
            0 => self.dir.join("kube-apiserver.log"),
            n => self.dir.join(format!("kube-apiserver.{n}.log")),
        };
        let process =
            ManagedProcess::spawn("kube-apiserver", &apiserver.program, &apiserver.args, RunAs::Current, &log, &[])?;
        apiserver.process = Some(process);
        apiserver.starts += 1;
        Ok(())
    }

    /// Kills kube-apiserver (SIGKILL): an API outage for every client, while etcd and the other
    /// components keep running.
    pub fn kill_apiserver(&self) {
        if let Some(mut process) = self.apiserver.lock().expect("apiserver lock").process.take() {
            process.kill();
        }
    }

    /// Starts a killed kube-apiserver again on the same port and etcd, and waits until it is
    /// ready.
    pub async fn start_apiserver_again(&self) -> Result<(), HarnessError> {
        self.start_apiserver()?;
        let deadline = Instant::now() + Duration::from_secs(90);
        let client = self.client().await?;
        loop {
            if let Some(process) = self.apiserver.lock().expect("apiserver lock").process.as_mut() {
                process.check_running()?;
            }
            if let Ok(body) = client.request_text(http_get("/readyz")).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Start("kube-apiserver was not ready within 90 s of its restart".into()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last_error = String::new();
        while Instant::now() < deadline {
            for process in &mut self.processes {
                process.check_running()?;
            }
            if let Some(apiserver) = self.apiserver.get_mut().expect("apiserver lock").process.as_mut() {
                apiserver.check_running()?;
            }
            match self.client().await {
                Ok(client) => {
                    let request = http_get("/readyz");
                    match client.request_text(request).await {
                        Ok(body) if body.trim() == "ok" => return Ok(()),
                        Ok(body) => last_error = body,
                        Err(e) => last_error = e.to_string(),
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(HarnessError::Start(format!("kube-apiserver was not ready within 90 s: {last_error}")))
    }

    /// A new client for the admin user. Each test builds its own: a client is bound to the
    /// tokio runtime it first runs on.
    pub async fn client(&self) -> Result<Client, HarnessError> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A kubeconfig whose requests act as `user` (a ServiceAccount's
    /// `system:serviceaccount:<namespace>:<name>`): with it, a binary under test has exactly the
    /// rights RBAC gives that user.
    pub fn kubeconfig_as(&self, user: &str) -> Result<PathBuf, HarnessError> {
        let name: String = user.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let path = self.dir.join(format!("kubeconfig-as-{name}"));
        let admin = std::fs::read_to_string(&self.kubeconfig).map_err(|e| HarnessError::io(&self.kubeconfig, e))?;
        // The admin's certificate authenticates; `as:` makes every request the user's.
        let (head, tail) = admin.split_once("\ncontexts:").expect("the harness writes a contexts section");
        let acting = format!("{head}\n    as: {user}\ncontexts:{tail}");
        std::fs::write(&path, acting).map_err(|e| HarnessError::io(&path, e))?;
        Ok(path)
    }

    /// A new client acting as `user` (see [`ControlPlane::kubeconfig_as`]).
    pub async fn client_as(&self, user: &str) -> Result<Client, HarnessError> {
        client_from_kubeconfig(&self.kubeconfig_as(user)?).await
    }

    /// Runs `kubectl` (hack/kubectl.sh) as the admin against this control plane, from the
    /// repository root, with `input` on its standard input.
    pub fn kubectl(&self, args: &[&str], input: &[u8]) -> Result<std::process::Output, HarnessError> {
        let mut command = std::process::Command::new(hack_path("kubectl.sh")?);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args).current_dir(repo_root());
        crate::process::output_with_input(&mut command, input)
            .map_err(|e| HarnessError::Start(format!("kubectl {}: {e}", args.join(" "))))
    }

    /// The kubeconfig file of the admin user (for `kubectl --kubeconfig`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directory holding the control plane's data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process ids of the running components, by name.
    pub fn pids(&self) -> Vec<u32> {
        let apiserver = self.apiserver.lock().expect("apiserver lock").process.as_ref().map(ManagedProcess::pid);
        self.processes.iter().map(ManagedProcess::pid).chain(apiserver).collect()
    }
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).expect("a static request is valid")
}

/// Builds a client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, HarnessError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| HarnessError::Kube(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| HarnessError::Kube(e.to_string()))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(60));
    Client::try_from(config).map_err(|e| HarnessError::Kube(e.to_string()))
}

fn write_kubeconfig(path: &Path, server: &str, pki: &Pki) -> Result<(), HarnessError> {
    let body = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: prospector-local
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: prospector-admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: prospector-local
  context:
    cluster: prospector-local
    user: prospector-admin
current-context: prospector-local
",
        ca = pki.ca_cert.display(),
        cert = pki.admin_cert.display(),
        key = pki.admin_key.display(),
    );
    std::fs::write(path, body).map_err(|e| HarnessError::io(path, e))
}

async fn create_fake_node(client: &Client) -> Result<(), HarnessError> {
    add_fake_node(client, FAKE_NODE, "4Ti", &[]).await
}

/// Adds a node that kwok runs, with `memory` allocatable (and room for 20,000 pods, 1,000 CPUs
/// and 8 GPUs) and `labels` besides the standard ones. Tests add one to give the scheduler
/// capacity it lacked, or a node a selector picks.
pub async fn add_fake_node(
    client: &Client,
    name: &str,
    memory: &str,
    labels: &[(&str, &str)],
) -> Result<(), HarnessError> {
    let mut node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok"
            }
        },
        "status": {
            "allocatable": {"cpu": "1000", "memory": memory, "pods": "20000", "nvidia.com/gpu": "8"},
            "capacity": {"cpu": "1000", "memory": memory, "pods": "20000", "nvidia.com/gpu": "8"}
        }
    }))
    .map_err(|e| HarnessError::Kube(e.to_string()))?;
    let node_labels = node.metadata.labels.get_or_insert_with(Default::default);
    for (key, value) in labels {
        node_labels.insert((*key).to_owned(), (*value).to_owned());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(name, &PatchParams::apply(HARNESS_MANAGER).force(), &Patch::Apply(&node))
        .await
        .map_err(|e| HarnessError::Kube(format!("create node {name}: {e}")))?;
    Ok(())
}

/// Applies every CRD YAML in `dir` and waits until each is Established.
pub async fn install_crds(client: &Client, dir: &Path) -> Result<Vec<String>, HarnessError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| HarnessError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Err(HarnessError::Dependency(format!("no CRD YAML in {}", dir.display())));
    }
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(|e| HarnessError::io(&path, e))?;
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).map_err(|e| HarnessError::Kube(format!("{}: {e}", path.display())))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &PatchParams::apply(HARNESS_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .map_err(|e| HarnessError::Kube(format!("apply CRD {name}: {e}")))?;
        names.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in &names {
        loop {
            let crd = crds.get(name).await.map_err(|e| HarnessError::Kube(e.to_string()))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Kube(format!("CRD {name} was not Established within 30 s")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(names)
}
