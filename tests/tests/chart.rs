//! The Helm chart (`charts/prospector`), with Helm 3 and Helm 4: `helm lint`, and what `helm
//! template` renders for the default values, for GPU Jobs (`ci/gpu-job-values.yaml`) and for the
//! Prometheus Operator's objects and an agent catalog (`ci/monitoring-values.yaml`) and for
//! Postgres by parts with search on a replica (`ci/external-database-values.yaml`), validated
//! by the harness's real
//! kube-apiserver (a server-side dry run with strict field validation, after the chart's own
//! CRDs), and by `kubeconform -strict` with the schemas that apiserver serves (its built-in kinds
//! and the chart's CRDs); and `values.schema.json` refusing each kind of bad value with a message
//! that names it.

use std::path::PathBuf;
use std::process::{Command, Output};

use prospector_tests::hack::{hack_path, repo_root};
use prospector_tests::kube_schemas::{schema_location, write_kubeconform_schemas};
use prospector_tests::process::output_with_input;
use prospector_tests::{process_dir, random_suffix, shared_cluster};

fn chart() -> PathBuf {
    repo_root().join("charts/prospector")
}

/// The chart supports Helm 3 and Helm 4: every check runs with both.
const HELMS: [&str; 2] = ["helm.sh", "helm4.sh"];

fn helm(script: &str, args: &[&str]) -> Output {
    let helm = hack_path(script).unwrap_or_else(|e| panic!("hack/{script} builds helm: {e}"));
    Command::new(helm).args(args).output().expect("run helm")
}

/// The `-f` arguments of each values set the tests render: the defaults and `ci/*.yaml`.
fn value_sets() -> Vec<Vec<String>> {
    let ci = repo_root().join("charts/prospector/ci");
    let mut sets = vec![vec![]];
    for file in ["gpu-job-values.yaml", "monitoring-values.yaml", "external-database-values.yaml"] {
        sets.push(vec!["-f".to_owned(), ci.join(file).display().to_string()]);
    }
    sets
}

/// The chart's CRDs and the Prometheus Operator's (for the optional ServiceMonitor and
/// PrometheusRule), applied to the shared cluster as an install would find them.
fn apply_crds() {
    let crds =
        kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &format!("{}/crds", chart().display())], None);
    assert!(crds.status.success(), "{}", text(&crds));
    let dir = hack_path("prometheus-crds.sh").expect("hack/prometheus-crds.sh fetches the Prometheus Operator's CRDs");
    for kind in ["servicemonitors", "prometheusrules"] {
        let file = dir.join(format!("monitoring.coreos.com_{kind}.yaml"));
        let applied = kubectl(&["apply", "--server-side", "--force-conflicts", "-f", file.to_str().unwrap()], None);
        assert!(applied.status.success(), "{}", text(&applied));
    }
    let established = kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
        None,
    );
    assert!(established.status.success(), "{}", text(&established));
}

fn kubectl(args: &[&str], stdin: Option<&[u8]>) -> Output {
    shared_cluster().kubectl(args, stdin.unwrap_or_default()).expect("run kubectl")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn the_chart_lints_and_renders_what_the_real_apiserver_accepts() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    for (h, extra) in HELMS.iter().flat_map(|h| value_sets().into_iter().map(move |e| (*h, e))) {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let lint = helm(h, &[&["lint", "--strict", chart][..], &extra].concat());
        assert!(lint.status.success(), "{h} lint {extra:?}:\n{}", text(&lint));
    }

    // The CRDs first (Helm installs crds/ before anything else), as the chart ships them.
    apply_crds();
    let namespace = format!("chart-{}", random_suffix(6).to_lowercase());
    let created = kubectl(&["create", "namespace", &namespace], None);
    assert!(created.status.success(), "{}", text(&created));
    // PodSecurity admission warns about every workload whose pod template breaks the restricted
    // standard in a namespace labelled so.
    let labelled = kubectl(&["label", "namespace", &namespace, "pod-security.kubernetes.io/warn=restricted"], None);
    assert!(labelled.status.success(), "{}", text(&labelled));
    let mut first_manifest = None;
    for (h, extra) in HELMS.iter().flat_map(|h| value_sets().into_iter().map(move |e| (*h, e))) {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let rendered = helm(h, &[&["template", "prospector", chart, "--namespace", &namespace][..], &extra].concat());
        assert!(rendered.status.success(), "{h} template {extra:?}:\n{}", text(&rendered));
        let manifest = String::from_utf8(rendered.stdout).unwrap();
        let mut kinds =
            vec!["ClusterRole", "Role", "Deployment", "Tier", "Job", "NetworkPolicy", "PodDisruptionBudget"];
        if extra.iter().any(|e| e.ends_with("monitoring-values.yaml")) {
            kinds.extend(["ServiceMonitor", "PrometheusRule"]);
        }
        // Each way of reaching Postgres renders its own variables.
        let expected: &[&str] = match extra.last().copied().unwrap_or_default() {
            e if e.ends_with("external-database-values.yaml") => {
                &["name: PGHOST", "name: PGSSLMODE", "name: PROSPECTOR_SEARCH_DATABASE_HOST"]
            }
            e if e.ends_with("gpu-job-values.yaml") => &["name: DATABASE_URL", "name: PROSPECTOR_SEARCH_DATABASE_URL"],
            _ => &["name: DATABASE_URL"],
        };
        for variable in expected {
            assert!(manifest.contains(variable), "{h} {extra:?}: no {variable}");
        }
        for kind in kinds {
            assert!(manifest.contains(&format!("\nkind: {kind}\n")), "{extra:?}: no {kind} rendered");
        }
        // Every pod of the chart meets the restricted Pod Security Standard.
        assert_eq!(manifest.matches("runAsNonRoot: true").count(), 2 * 3, "pod and container, 3 pods");
        assert_eq!(manifest.matches("readOnlyRootFilesystem: true").count(), 3);
        let applied = kubectl(
            &["apply", "--dry-run=server", "--validate=strict", "--namespace", &namespace, "-f", "-"],
            Some(manifest.as_bytes()),
        );
        assert!(applied.status.success(), "the apiserver refuses {extra:?}:\n{}", text(&applied));
        let accepted = text(&applied);
        assert!(accepted.contains("tier.prospector.dev/pro") && accepted.contains("(server dry run)"), "{accepted}");
        assert!(!accepted.contains("would violate PodSecurity"), "{h} {extra:?}: {accepted}");
        first_manifest.get_or_insert(manifest);
    }
    // The same check speaks up for a pod template that breaks the standard.
    let escalating =
        first_manifest.unwrap().replacen("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", 1);
    let applied =
        kubectl(&["apply", "--dry-run=server", "--namespace", &namespace, "-f", "-"], Some(escalating.as_bytes()));
    assert!(text(&applied).contains("would violate PodSecurity \"restricted"), "{}", text(&applied));
    let _ = kubectl(&["delete", "namespace", &namespace, "--wait=false"], None);
}

fn kubeconform(schemas: &std::path::Path, manifest: &str) -> Output {
    let kubeconform = hack_path("kubeconform.sh").expect("hack/kubeconform.sh builds kubeconform");
    let mut command = Command::new(kubeconform);
    command.args(["-strict", "-summary", "-output", "text", "-schema-location", &schema_location(schemas), "-"]);
    output_with_input(&mut command, manifest.as_bytes()).expect("run kubeconform")
}

/// The schemas of everything the shared apiserver serves, once the chart's CRDs are among them
/// (the apiserver publishes a new CRD's schema a moment after accepting it).
fn served_schemas() -> PathBuf {
    let crds =
        kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &format!("{}/crds", chart().display())], None);
    assert!(crds.status.success(), "{}", text(&crds));
    let dir = process_dir().join(format!("kubeconform-{}", random_suffix(6)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = shared_cluster().client().await.expect("client");
        for _ in 0..60 {
            let _ = std::fs::remove_dir_all(&dir);
            let kinds = write_kubeconform_schemas(&client, &dir).await.expect("write the served schemas");
            let published = ["tier", "customer", "agentdeployment", "knowledgedocument"]
                .iter()
                .map(|kind| format!("{kind}-prospector-v1alpha1-strict.json"))
                .chain(["servicemonitor", "prometheusrule"].map(|kind| format!("{kind}-monitoring-v1-strict.json")));
            if published.collect::<Vec<_>>().iter().all(|file| dir.join(file).exists()) {
                assert!(kinds > 50, "only {kinds} kinds served");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        panic!("the apiserver never published the chart's CRD schemas");
    });
    dir
}

#[test]
fn kubeconform_strict_accepts_what_the_chart_renders_and_refuses_what_the_schemas_do_not_document() {
    let schemas = served_schemas();
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let mut manifests = Vec::new();
    for (h, extra) in HELMS.iter().flat_map(|h| value_sets().into_iter().map(move |e| (*h, e))) {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let rendered =
            helm(h, &[&["template", "prospector", chart, "--namespace", "prospector-system"][..], &extra].concat());
        assert!(rendered.status.success(), "{h} template {extra:?}:\n{}", text(&rendered));
        let manifest = String::from_utf8(rendered.stdout).unwrap();
        let checked = kubeconform(&schemas, &manifest);
        let summary = text(&checked);
        assert!(checked.status.success(), "kubeconform refuses {h} {extra:?}:\n{summary}");
        // Every object had a schema: none was skipped, none was missing.
        let objects = manifest.matches("\nkind: ").count();
        assert!(summary.contains(&format!("{objects} resources found")), "{summary}");
        assert!(summary.contains(&format!("Valid: {objects}, Invalid: 0, Errors: 0, Skipped: 0")), "{summary}");
        manifests.push(manifest);
    }

    // The same check finds an undocumented field in a pod template, and a wrong type in a Tier.
    let typo = manifests[0].replacen("          imagePullPolicy:", "          imagePullPolicyy:", 1);
    let refused = kubeconform(&schemas, &typo);
    assert!(!refused.status.success() && text(&refused).contains("imagePullPolicyy"), "{}", text(&refused));
    let wrong_type = manifests[0].replacen("maxAgents: 2", "maxAgents: two", 1);
    let refused = kubeconform(&schemas, &wrong_type);
    assert!(!refused.status.success() && text(&refused).contains("maxAgents"), "{}", text(&refused));
}

#[test]
fn the_values_schema_refuses_each_kind_of_bad_value_and_names_it() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    for (value, says) in [
        ("operator.embedder.mode=gpu", "value must be one of 'job', 'inline', 'external'"),
        ("tiers.free.maxAgents=-1", "/tiers/free/maxAgents"),
        ("operator.replicas=two", "got string, want integer"),
        ("apiserver.service.port=70000", "/apiserver/service/port"),
        ("tiers.Bad_Name.maxAgents=1", "/tiers"),
        ("database.existingSecret=", "/database/existingSecret"),
        ("operator.unknownSetting=1", "additional properties 'unknownSetting' not allowed"),
        ("database.urlKey=,database.keys.host=", "/database/keys/host"),
        ("monitoring.prometheusRule.quotaNearLimitRatio=1.5", "/monitoring/prometheusRule/quotaNearLimitRatio"),
        ("agentCatalog.custom.image=", "/agentCatalog/custom/image"),
        ("database.chunkPartitions=0", "/database/chunkPartitions"),
    ] {
        for h in HELMS {
            let rendered = helm(h, &["template", "prospector", chart, "--set", value]);
            assert!(!rendered.status.success(), "{h}: {value} was accepted");
            let error = text(&rendered);
            assert!(error.contains("don't meet the specifications of the schema"), "{h} {value}: {error}");
            assert!(error.contains(says), "{h} {value}: the error should say {says:?}:\n{error}");
        }
    }
    // And the defaults pass.
    for h in HELMS {
        assert!(helm(h, &["template", "prospector", chart]).status.success());
    }
}
