//! `crdgen`: writes every CRD to `charts/prospector/crds/<plural>.yaml`, or with `--check`
//! fails when the committed files differ from what the Rust types generate (CI's drift check).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/prospector/crds"));
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [DIR]  (DIR defaults to charts/prospector/crds)");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }

    let mut drifted = Vec::new();
    for crd in prospector_crds::all_crds() {
        let path = dir.join(prospector_crds::crd_file_name(&crd));
        let yaml = match prospector_crds::crd_yaml(&crd) {
            Ok(yaml) => yaml,
            Err(err) => {
                eprintln!("crdgen: cannot render {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        };
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                drifted.push(path);
            }
        } else if let Err(err) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml)) {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }

    if drifted.is_empty() {
        return ExitCode::SUCCESS;
    }
    for path in &drifted {
        eprintln!("crdgen: {} is out of date with the Rust types", path.display());
    }
    eprintln!("crdgen: run `cargo run -p prospector-crds --bin crdgen` and commit the result");
    ExitCode::FAILURE
}
