//! The Dockerfile, checked without a container engine (this machine has none): every image the
//! chart runs is a target of it; each target's final stage runs as a non-root user; the binaries
//! it builds are binaries of the workspace and the ones its targets copy; every path it copies
//! from the build context exists; and the baked model and ONNX Runtime paths are where the
//! embedder looks for them (`PROSPECTOR_MODEL_DIR`, `ORT_DYLIB_PATH`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use prospector_tests::hack::{hack_path, repo_root};

/// One `FROM … AS name` stage and its instructions (continuation lines joined).
#[derive(Debug, Default)]
struct Stage {
    base: String,
    lines: Vec<String>,
}

fn stages() -> BTreeMap<String, Stage> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("a Dockerfile at the root");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages = BTreeMap::new();
    let mut name = None;
    for line in joined {
        if let Some(from) = line.strip_prefix("FROM ") {
            let words: Vec<&str> = from.split_whitespace().collect();
            let stage = words.iter().position(|w| w.eq_ignore_ascii_case("AS")).map(|i| words[i + 1].to_owned());
            name = Some(stage.expect("every stage is named"));
            stages.insert(name.clone().unwrap(), Stage { base: words[0].to_owned(), lines: Vec::new() });
        } else if let Some(name) = &name {
            stages.get_mut(name).unwrap().lines.push(line);
        }
    }
    stages
}

/// The image names the chart renders, for its defaults and for GPU Jobs.
fn chart_images() -> BTreeSet<String> {
    let helm = hack_path("helm.sh").unwrap();
    let chart = repo_root().join("charts/prospector");
    let gpu = chart.join("ci/gpu-job-values.yaml");
    let mut images = BTreeSet::new();
    for extra in [vec![], vec!["-f".to_owned(), gpu.display().to_string()]] {
        let output = Command::new(&helm).arg("template").arg("p").arg(&chart).args(&extra).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            let line = line.trim().trim_start_matches("value: ").trim_start_matches("image: ").trim_matches('"');
            if let Some(rest) = line.strip_prefix("ghcr.io/prospector-dev/") {
                images.insert(rest.split(':').next().unwrap().to_owned());
            }
        }
    }
    images
}

#[test]
fn every_image_the_chart_runs_is_a_non_root_target_of_the_dockerfile() {
    let stages = stages();
    let (agents, images): (BTreeSet<String>, BTreeSet<String>) =
        chart_images().into_iter().partition(|image| image.starts_with("agent-"));
    assert_eq!(images, ["apiserver", "embedder", "operator"].map(String::from).into(), "the chart's images");
    // The agent catalog's images are the agents the platform hosts, not the platform's own: this
    // repository builds none of them, and the catalog names one per agent type.
    assert_eq!(agents.len(), 5, "{agents:?}");
    for image in &images {
        let stage = stages.get(image).unwrap_or_else(|| panic!("no Dockerfile target {image}"));
        // The stage and the stages it is built on, nearest first.
        let chain: Vec<&Stage> = std::iter::successors(Some(stage), |s| stages.get(&s.base)).collect();
        let user = chain
            .iter()
            .find_map(|s| s.lines.iter().rev().find_map(|l| l.strip_prefix("USER ")))
            .unwrap_or_else(|| panic!("{image}: no USER"));
        let uid = user.split(':').next().unwrap();
        assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "{image} runs as {user}: a numeric non-root uid");
        let base = &chain.last().unwrap().base;
        assert!(base.contains(":nonroot"), "{image}: a non-root base image ({base})");
        // Its entrypoint is the binary it copies in.
        let entry = stage.lines.iter().find_map(|l| l.strip_prefix("ENTRYPOINT ")).expect("an entrypoint");
        let binary = format!("prospector-{image}");
        assert!(entry.contains(&format!("/usr/local/bin/{binary}")), "{image}: {entry}");
        assert!(stage.lines.iter().any(|l| l.starts_with("COPY --from=build") && l.contains(&binary)), "{image}");
    }
}

#[test]
fn the_dockerfile_builds_workspace_binaries_from_paths_that_exist() {
    let stages = stages();
    let root = repo_root();
    let build = &stages["build"];
    let cargo = build.lines.iter().find(|l| l.contains("cargo build")).expect("a cargo build");
    let metadata = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(&root)
        .output()
        .unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    let binaries: BTreeSet<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let built: Vec<&str> = cargo.split("--bin ").skip(1).map(|s| s.split_whitespace().next().unwrap()).collect();
    assert_eq!(built.len(), 3, "{cargo}");
    for binary in built {
        assert!(binaries.contains(binary), "{binary} is not a binary of the workspace");
    }
    // Every COPY from the build context names something that exists (and the workspace's
    // members are all copied, or `--locked` could not resolve).
    let mut copied = BTreeSet::new();
    for line in stages.values().flat_map(|s| &s.lines) {
        let Some(args) = line.strip_prefix("COPY ") else { continue };
        if args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(root.join(source).exists(), "COPY {source}: no such path in the repository");
            copied.insert(source.to_string());
        }
    }
    for member in metadata["workspace_members"].as_array().unwrap() {
        let id = member.as_str().unwrap();
        let package = metadata["packages"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap();
        let dir = std::path::Path::new(package["manifest_path"].as_str().unwrap()).parent().unwrap().to_owned();
        let dir = dir.strip_prefix(root.canonicalize().unwrap()).unwrap().display().to_string();
        assert!(copied.contains(&dir), "the workspace member {dir} is not copied into the build");
    }
    // So are the patched dependencies (`[patch.crates-io]`, third_party/README.md).
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let patches = manifest.split("\n[patch.").skip(1).flat_map(|section| section.split("\n[").next().unwrap().lines());
    let patched: Vec<&str> =
        patches.filter_map(|line| line.split("path = \"").nth(1)).map(|rest| rest.split('"').next().unwrap()).collect();
    assert!(!patched.is_empty(), "the workspace patches kube-runtime");
    for path in patched {
        let copied_whole = copied.iter().any(|c| path == c || path.starts_with(&format!("{c}/")));
        assert!(copied_whole, "the patched dependency {path} is not copied into the build");
    }
    // Files the sources compile in from outside their crate are copied too.
    let mut included = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() && !name.starts_with('.') && name != "target" {
                dirs.push(path);
            } else if name.ends_with(".rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                let pieces = ["include_str!(\"", "include_bytes!(\""].map(|m| source.split(m).skip(1));
                for piece in pieces.into_iter().flatten() {
                    let Some((relative, _)) = piece.split_once('"') else { continue };
                    if relative.starts_with("../") && !relative.contains('{') {
                        let target = path
                            .parent()
                            .unwrap()
                            .join(relative)
                            .canonicalize()
                            .unwrap_or_else(|e| panic!("{}: include of {relative}: {e}", path.display()));
                        included.push(target.strip_prefix(root.canonicalize().unwrap()).unwrap().display().to_string());
                    }
                }
            }
        }
    }
    assert!(included.iter().any(|i| i == "hack/model-smoothing.json"), "the scan found {included:?}");
    let build_copies: Vec<&str> = build
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    for file in included {
        assert!(
            build_copies.iter().any(|c| file == *c || file.starts_with(&format!("{c}/"))),
            "{file} is compiled in but not copied into the build stage"
        );
    }
    // The baked model and runtime are where the images point the embedder.
    for image in ["apiserver", "embedder"] {
        let with_model = &stages[&stages[image].base];
        let env = with_model.lines.iter().find_map(|l| l.strip_prefix("ENV ")).expect("ENV");
        assert!(env.contains("PROSPECTOR_MODEL_DIR=/opt/prospector/model"), "{image}: {env}");
        assert!(env.contains("ORT_DYLIB_PATH=/opt/prospector/lib/libonnxruntime.so"), "{image}: {env}");
    }
    let assets = stages["assets"].lines.join("\n");
    for file in [
        "tokenizer.json",
        "config.json",
        "model.safetensors",
        "model-int8.onnx",
        "/opt/prospector/model",
        "/opt/prospector/lib",
        "hack/model.sh",
        "hack/onnxruntime.sh",
    ] {
        assert!(assets.contains(file), "the assets stage does not provide {file}");
    }
}
