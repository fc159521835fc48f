//! Child processes that cannot outlive the test process.
//!
//! Every server the harness starts (etcd, kube-apiserver, Postgres, ...) is launched through
//! `setpriv --pdeathsig KILL`, so the kernel kills it when its parent thread dies: when the test
//! binary exits, panics, or is SIGKILLed by CI. The parent-death signal follows the *thread* that
//! forked, so all spawns go through one spawner thread that lives as long as the process.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

use crate::HarnessError;

type SpawnReply = Sender<std::io::Result<Child>>;

fn spawner() -> &'static std::sync::Mutex<Sender<(Command, SpawnReply)>> {
    static SPAWNER: OnceLock<std::sync::Mutex<Sender<(Command, SpawnReply)>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<(Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop (and the thread) lasts until exit.
                while let Ok((mut command, reply)) = rx.recv() {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the harness spawner thread");
        std::sync::Mutex::new(tx)
    })
}

/// Which user a child runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// The current user.
    Current,
    /// An unprivileged uid/gid (Postgres refuses to run as root).
    Unprivileged { uid: u32, gid: u32 },
}

/// A running server whose output goes to a log file. Dropping it kills it.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ManagedProcess {
    /// Starts `program args...` with its stdout and stderr in `log_path`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        run_as: RunAs,
        log_path: &Path,
        envs: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        let log = File::create(log_path).map_err(|e| HarnessError::io(log_path, e))?;
        let log_err = log.try_clone().map_err(|e| HarnessError::io(log_path, e))?;
        let mut command = Command::new("setpriv");
        if let RunAs::Unprivileged { uid, gid } = run_as {
            command.args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into()]);
        }
        // pdeathsig is applied after the uid change, which would otherwise clear it.
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for (key, value) in envs {
            command.env(key, value);
        }
        let (reply_tx, reply_rx) = channel();
        spawner()
            .lock()
            .expect("spawner lock")
            .send((command, reply_tx))
            .map_err(|_| HarnessError::Start(format!("{name}: spawner thread is gone")))?;
        let child = reply_rx
            .recv()
            .map_err(|_| HarnessError::Start(format!("{name}: spawner thread is gone")))?
            .map_err(|e| HarnessError::Start(format!("{name}: cannot run setpriv {}: {e}", program.display())))?;
        Ok(Self { name: name.to_owned(), child, log_path: log_path.to_owned() })
    }

    /// Fails with the end of the log when the process has exited.
    pub fn check_running(&mut self) -> Result<(), HarnessError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(HarnessError::Start(format!(
                "{} exited with {status}; last log lines:\n{}",
                self.name,
                self.log_tail(40)
            ))),
            Err(e) => Err(HarnessError::Start(format!("{}: cannot poll: {e}", self.name))),
        }
    }

    /// How the process exited, or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command to completion; a failure to start or a non-zero exit is an error carrying
/// everything the command printed.
pub fn run_checked(command: &mut Command, what: &str) -> Result<std::process::Output, String> {
    let output = command.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}

/// Runs a command to completion with `input` on its standard input, collecting what it prints.
/// The input is written from a thread of its own, so a command that prints before it has read
/// everything cannot deadlock against a full pipe.
pub fn output_with_input(command: &mut Command, input: &[u8]) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output()?;
    // A command that exits without reading all of its input closes the pipe: not an error here.
    let _ = writer.join();
    Ok(output)
}

/// Picks a free TCP port on the loopback interface.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::Start(format!("no free port: {e}")))?;
    Ok(listener.local_addr().map_err(|e| HarnessError::Start(format!("no free port: {e}")))?.port())
}
