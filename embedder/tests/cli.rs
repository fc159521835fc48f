//! The command-line contract other tools script: stdout carries the result, failures exit
//! non-zero with exactly one line on stderr.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prospector-embedder"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn one_line_failure(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure, got {output:?}");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("prospector-embedder: "));
    stderr
}

#[test]
fn extract_prints_text_and_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("doc.pdf");
    std::fs::write(&pdf, support::pdf(&[support::column(72.0, &["Hello from page one."])], true)).unwrap();
    let output = run(&["extract", pdf.to_str().unwrap()], "", &[]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "Hello from page one.");

    let encrypted = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pdf/py-pdf-sample-files/005-libreoffice-writer-password/libreoffice-writer-password.pdf"
    );
    let err = one_line_failure(&run(&["extract", encrypted], "", &[]));
    assert!(err.contains("encrypted"), "{err}");

    let err = one_line_failure(&run(&["extract", pdf.to_str().unwrap(), "--max-input-bytes", "10"], "", &[]));
    assert!(err.contains("over the limit of 10"), "{err}");
    let err = one_line_failure(&run(&["extract", "/nonexistent/file.pdf"], "", &[]));
    assert!(err.contains("/nonexistent/file.pdf"), "{err}");
    let png = dir.path().join("image.pdf");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\0").unwrap();
    let err = one_line_failure(&run(&["extract", png.to_str().unwrap()], "", &[]));
    assert!(err.contains("unsupported document type: PNG image"), "{err}");
}

#[test]
// The switch that makes a parser panic exists in debug builds only.
#[cfg_attr(not(debug_assertions), ignore)]
fn a_parser_panic_is_one_line_and_its_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("doc.pdf");
    std::fs::write(&pdf, support::pdf(&[support::column(72.0, &["Hello."])], true)).unwrap();
    // RUST_BACKTRACE=1 would make the default panic hook print a backtrace: none must reach
    // stderr. With RUST_LOG=error the backtrace is logged.
    let panics = [("PROSPECTOR_TEST_PARSER_PANIC", "1"), ("RUST_BACKTRACE", "1")];
    let err = one_line_failure(&run(&["extract", pdf.to_str().unwrap()], "", &panics));
    assert!(err.contains("the PDF parser panicked: PROSPECTOR_TEST_PARSER_PANIC is set"), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
    let output = run(&["extract", pdf.to_str().unwrap()], "", &[panics[0], ("RUST_LOG", "error")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("backtrace") && stderr.contains("debug_panic_switch"), "{stderr}");
}

#[test]
fn embed_reads_a_json_array_and_writes_vectors() {
    let output = run(&["embed", "--threads", "2"], r#"["We sell to banks.", "Hola"]"#, &[]);
    assert!(output.status.success(), "{output:?}");
    let vectors: Vec<Vec<f32>> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(vectors.len(), 2);
    assert!(vectors.iter().all(|v| v.len() == 384));
    let long = serde_json::to_string(&vec!["word ".repeat(400)]).unwrap();
    let output = run(&["embed"], &long, &[]);
    assert!(output.status.success());
    assert!(String::from_utf8(output.stderr).unwrap().contains("longer than 256 tokens"));
    let err = one_line_failure(&run(&["embed"], r#"{"not": "an array"}"#, &[]));
    assert!(err.contains("JSON array of strings"), "{err}");
}

#[test]
fn icp_writes_the_four_fields() {
    let output = run(&["icp"], "Hospitals in Germany with 1,000+ employees; the CIO signs.", &[]);
    assert!(output.status.success(), "{output:?}");
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "target_industries": ["healthcare"], "company_sizes": ["enterprise"],
            "decision_makers": ["CIO"], "target_regions": ["Europe"]
        })
    );
}

#[test]
fn bench_reports_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.json");
    std::fs::write(&corpus, serde_json::to_string(&vec!["A short sentence about sales."; 16]).unwrap()).unwrap();
    let output = run(&["bench", "--corpus", corpus.to_str().unwrap(), "--repeat", "1"], "", &[]);
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["chunks"], 16);
    assert!(report["tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_missing_runtime_is_named() {
    let err = one_line_failure(&run(&["embed"], r#"["x"]"#, &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")]));
    assert!(err.contains("/nonexistent/libonnxruntime.so") && err.contains("ORT_DYLIB_PATH"), "{err}");
    let err = one_line_failure(&run(&["icp"], "x", &[("PROSPECTOR_MODEL_DIR", "/nonexistent/model")]));
    assert!(err.contains("/nonexistent/model"), "{err}");
}

#[test]
fn cuda_without_a_cuda_runtime_falls_back_to_cpu_and_says_so() {
    // The ONNX Runtime hack/onnxruntime.sh installs is the CPU build: the request for CUDA must
    // still give vectors, with the fallback logged.
    let output = run(&["embed", "--device", "cuda"], r#"["fallback"]"#, &[]);
    assert!(output.status.success(), "{output:?}");
    let vectors: Vec<Vec<f32>> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(vectors[0].len(), 384);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("falling back to CPU"), "{stderr}");
}
