//! The edge: logging, configuration, clients built once, then either the Lambda runtime
//! (when `AWS_LAMBDA_RUNTIME_API` is set) or the local `invoke` mode.

use std::process::ExitCode;

use replay_sync::{app, cli};

#[tokio::main]
async fn main() -> ExitCode {
    app::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return cli::main(&args).await;
    }
    let started = async { app::serve_lambda(app::App::from_env().await?).await };
    match started.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay-sync: {e}");
            ExitCode::FAILURE
        }
    }
}
