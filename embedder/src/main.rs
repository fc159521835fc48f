//! `prospector-embedder`: the embedding engine's command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prospector_embedder::paths::{self, ProcessEnv};

#[derive(Debug, Parser)]
#[command(name = "prospector-embedder", version, about = "Prospector's embedding engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints where the model and ONNX Runtime are found, and fails if either is missing.
    Paths,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Paths => {
            let resolved = match paths::resolve(&ProcessEnv) {
                Ok(resolved) => resolved,
                Err(e) => {
                    eprintln!("prospector-embedder: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!("model_dir={}", resolved.model_dir.display());
            println!("onnxruntime={}", resolved.onnxruntime.display());
            if let Err(e) = resolved.check() {
                eprintln!("prospector-embedder: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
    }
}
