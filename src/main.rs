//! The `stoney-gateway` command: `serve`. The directories for containers and for trying
//! it out are `stoney-slapd`'s (crates/stoney-slapd).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stoney_gateway::app;
use stoney_gateway::config::Settings;
use stoney_gateway::telemetry;

#[derive(Parser)]
#[command(name = "stoney-gateway", version, about = "REST gateway for the stoney customer directory in OpenLDAP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API against the configured directory.
    Serve {
        /// A TOML configuration file (`docs/operations.md` lists every key).
        #[arg(long, short, env = "STONEY_CONFIG")]
        config: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => match Settings::load(config.as_deref()) {
            Ok(settings) => {
                telemetry::init(&settings.log.format, &settings.log.level);
                tracing::info!(listen = %settings.listen, ldap = ?settings.ldap.urls, "serving");
                app::run(settings)
            }
            Err(e) => Err(format!("configuration: {e}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoney-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
