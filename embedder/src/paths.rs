//! Resolution of the model directory and the ONNX Runtime library. The product never downloads
//! anything at run time: these are configuration, defaulting to where `hack/model.sh` and
//! `hack/onnxruntime.sh` put them.

use std::path::{Path, PathBuf};

/// The model package version `hack/model.sh` installs.
pub const MODEL_PACKAGE_VERSION: &str = "0.1.2";
/// The ONNX Runtime version `hack/onnxruntime.sh` installs.
pub const ONNXRUNTIME_VERSION: &str = "1.32.0";

/// Why a runtime input could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("model directory {0} has no {1} (set PROSPECTOR_MODEL_DIR or run hack/model.sh)")]
    ModelMissing(PathBuf, &'static str),
    #[error("ONNX Runtime library {0} does not exist (set ORT_DYLIB_PATH or run hack/onnxruntime.sh)")]
    RuntimeMissing(PathBuf),
    #[error("cannot locate the cache: neither PROSPECTOR_CACHE, XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
}

/// Where the engine's inputs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimePaths {
    pub model_dir: PathBuf,
    pub onnxruntime: PathBuf,
}

/// A source of environment variables (the process environment, or a map in tests).
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

/// The cache root the `hack/` scripts use: `$PROSPECTOR_CACHE`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/prospector`.
pub fn cache_dir(env: &impl Env) -> Result<PathBuf, PathsError> {
    if let Some(dir) = env.var("PROSPECTOR_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let base = match env.var("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env.var("HOME").ok_or(PathsError::NoCacheDir)?).join(".cache"),
    };
    Ok(base.join("prospector"))
}

/// Resolves both paths without checking that they exist.
pub fn resolve(env: &impl Env) -> Result<RuntimePaths, PathsError> {
    let model_dir = match env.var("PROSPECTOR_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => cache_dir(env)?.join("models/all-MiniLM-L6-v2").join(MODEL_PACKAGE_VERSION).join("model"),
    };
    let onnxruntime = match env.var("ORT_DYLIB_PATH") {
        Some(path) => PathBuf::from(path),
        None => cache_dir(env)?.join("onnxruntime").join(ONNXRUNTIME_VERSION).join("lib/libonnxruntime.so"),
    };
    Ok(RuntimePaths { model_dir, onnxruntime })
}

/// The embedder configuration for the model and runtime this process finds (the `hack/` cache,
/// or the `PROSPECTOR_MODEL_DIR` / `ORT_DYLIB_PATH` overrides), checked to exist; the CLI, the
/// operator's inline worker and the tests load the model through it.
pub fn installed_config() -> Result<crate::embed::EmbedderConfig, PathsError> {
    let resolved = resolve(&ProcessEnv)?;
    resolved.check()?;
    Ok(crate::embed::EmbedderConfig::new(&resolved.model_dir, &resolved.onnxruntime))
}

impl RuntimePaths {
    /// Fails with an actionable message when an input is missing.
    pub fn check(&self) -> Result<(), PathsError> {
        for file in ["tokenizer.json", "model.onnx"] {
            if !self.model_dir.join(file).is_file() {
                return Err(PathsError::ModelMissing(self.model_dir.clone(), file));
            }
        }
        if !Path::new(&self.onnxruntime).is_file() {
            return Err(PathsError::RuntimeMissing(self.onnxruntime.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl Env for MapEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|v| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_follow_the_hack_cache_layout() {
        let env = MapEnv([("HOME", "/home/u")].into());
        let paths = resolve(&env).unwrap();
        assert_eq!(paths.model_dir, PathBuf::from("/home/u/.cache/prospector/models/all-MiniLM-L6-v2/0.1.2/model"));
        assert_eq!(
            paths.onnxruntime,
            PathBuf::from("/home/u/.cache/prospector/onnxruntime/1.32.0/lib/libonnxruntime.so")
        );
    }

    #[test]
    fn overrides_win() {
        let env = MapEnv(
            [
                ("HOME", "/home/u"),
                ("PROSPECTOR_MODEL_DIR", "/m"),
                ("ORT_DYLIB_PATH", "/o.so"),
                ("PROSPECTOR_CACHE", "/c"),
            ]
            .into(),
        );
        let paths = resolve(&env).unwrap();
        assert_eq!(paths, RuntimePaths { model_dir: "/m".into(), onnxruntime: "/o.so".into() });
        let env = MapEnv([("PROSPECTOR_CACHE", "/c")].into());
        assert!(resolve(&env).unwrap().model_dir.starts_with("/c/models"));
        assert!(matches!(resolve(&MapEnv(HashMap::new())), Err(PathsError::NoCacheDir)));
    }

    /// The versions here and in the hack scripts must move together.
    #[test]
    fn versions_match_the_hack_scripts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let model = std::fs::read_to_string(root.join("hack/model.sh")).unwrap();
        assert!(model.contains(&format!("MODEL_WHEEL_VERSION={MODEL_PACKAGE_VERSION}\n")));
        let ort = std::fs::read_to_string(root.join("hack/onnxruntime.sh")).unwrap();
        assert!(ort.contains(&format!("ORT_VERSION={ONNXRUNTIME_VERSION}\n")));
    }

    #[test]
    fn check_names_the_missing_input() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RuntimePaths { model_dir: dir.path().into(), onnxruntime: dir.path().join("lib.so") };
        assert!(matches!(paths.check(), Err(PathsError::ModelMissing(_, "tokenizer.json"))));
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        assert!(matches!(paths.check(), Err(PathsError::ModelMissing(_, "model.onnx"))));
        std::fs::write(dir.path().join("model.onnx"), "").unwrap();
        assert!(matches!(paths.check(), Err(PathsError::RuntimeMissing(_))));
        std::fs::write(dir.path().join("lib.so"), "").unwrap();
        paths.check().unwrap();
    }
}
