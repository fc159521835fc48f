//! Finds the pinned dependencies through the repository's `hack/` scripts, which fetch or build
//! them on first use (cached under ~/.cache/prospector) and print where they are.

use std::path::PathBuf;
use std::process::Command;

use crate::HarnessError;
use crate::process::run_checked;

/// The repository root (the workspace this crate belongs to).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs `hack/<script>` and returns the path it prints on its last line of stdout.
pub fn hack_path(script: &str) -> Result<PathBuf, HarnessError> {
    let path = repo_root().join("hack").join(script);
    let output =
        run_checked(Command::new("bash").arg(&path), &path.display().to_string()).map_err(HarnessError::Dependency)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default().trim();
    let found = PathBuf::from(line);
    if line.is_empty() || !found.exists() {
        return Err(HarnessError::Dependency(format!("{} printed '{line}', which does not exist", path.display())));
    }
    Ok(found)
}
