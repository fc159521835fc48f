//! `openapi`: writes the REST API's OpenAPI document to `docs/openapi.json` (the reference
//! `docs/api.md` points to), or with `--check` fails when the committed file is out of date.

use std::process::ExitCode;

use prospector_apiserver::openapi::{COMMITTED_PATH, document_json};

fn main() -> ExitCode {
    let json = document_json();
    if std::env::args().any(|a| a == "--check") {
        if std::fs::read_to_string(COMMITTED_PATH).ok().as_deref() == Some(json.as_str()) {
            return ExitCode::SUCCESS;
        }
        eprintln!("openapi: {COMMITTED_PATH} is out of date; run `cargo run -p prospector-apiserver --bin openapi`");
        return ExitCode::FAILURE;
    }
    match std::fs::write(COMMITTED_PATH, json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openapi: cannot write {COMMITTED_PATH}: {e}");
            ExitCode::FAILURE
        }
    }
}
