//! The harness's promise that no component outlives its parent, checked for real: a local
//! environment (Postgres + the whole control plane) is started in a child process, which is then
//! SIGKILLed, as CI does to a run past its deadline. Every component must be gone.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Zombies have exited; only their parent's bookkeeping is left.
        if state.split_whitespace().nth(2) == Some("Z") {
            continue;
        }
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

fn run_and_kill(signal: &str) {
    let dir = tempfile_dir();
    let needle = dir.display().to_string();
    let mut localenv = Command::new(env!("CARGO_BIN_EXE_prospector-localenv"))
        .args(["--dir", &needle])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !dir.join("ready").exists() {
        assert!(localenv.try_wait().unwrap().is_none(), "prospector-localenv exited before it was ready");
        assert!(Instant::now() < deadline, "prospector-localenv was not ready in time");
        std::thread::sleep(Duration::from_millis(200));
    }
    let children: Vec<u32> = processes_mentioning(&needle).into_iter().filter(|pid| *pid != localenv.id()).collect();
    // etcd, kube-apiserver, controller-manager, scheduler, kwok, postgres (+ its backends).
    assert!(children.len() >= 6, "expected every component to be running, found {children:?}");

    let status = Command::new("kill").args([signal, &localenv.id().to_string()]).status().unwrap();
    assert!(status.success());
    localenv.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = processes_mentioning(&needle);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes outlived their parent after {signal}: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir =
        Path::new(&std::env::temp_dir()).join(format!("prospector-leftovers-{}", prospector_tests::random_suffix(8)));
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn components_die_with_a_sigkilled_parent() {
    run_and_kill("-KILL");
}

#[test]
fn components_die_with_a_terminated_parent() {
    run_and_kill("-TERM");
}
