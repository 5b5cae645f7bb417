//! The `stoney-gateway` command: `serve`, and `keys` (the subscription keys of the
//! resellers). The directories for containers and for trying
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
    /// Issue, list and revoke the subscription keys of a reseller (in the configured
    /// directory, as the gateway's account).
    Keys {
        /// A TOML configuration file, as for `serve`.
        #[arg(long, short, env = "STONEY_CONFIG", global = true)]
        config: Option<String>,
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Issue a key to a reseller; the key is printed this once.
    Issue {
        #[arg(long)]
        reseller: u64,
        /// `primary`, `secondary` or another short name of a-z, 0-9 and -.
        #[arg(long)]
        name: String,
    },
    /// List a reseller's keys (names and creation dates, never the keys).
    List {
        #[arg(long)]
        reseller: u64,
    },
    /// Revoke (delete) a reseller's key.
    Revoke {
        #[arg(long)]
        reseller: u64,
        #[arg(long)]
        name: String,
    },
}

fn keys(settings: Settings, action: KeysAction) -> Result<(), String> {
    use stoney_gateway::service::ServiceError;
    let describe = |e: ServiceError| match e {
        ServiceError::NotFound => "no such reseller or key".to_string(),
        ServiceError::Conflict(m) => m,
        ServiceError::Invalid(problems) => {
            problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let state = app::AppState::new(settings).map_err(|e| e.to_string())?;
        match action {
            KeysAction::Issue { reseller, name } => {
                let (key, info) = state.keys.issue(reseller, &name).await.map_err(describe)?;
                println!("{key}");
                eprintln!(
                    "issued subscription key {} to reseller {reseller} at {}; it is not shown again",
                    info.name, info.created
                );
            }
            KeysAction::List { reseller } => {
                for k in state.keys.list(reseller).await.map_err(describe)? {
                    println!("{}\t{}", k.name, k.created);
                }
            }
            KeysAction::Revoke { reseller, name } => {
                state.keys.revoke(reseller, &name).await.map_err(describe)?;
                eprintln!("revoked subscription key {name} of reseller {reseller}");
            }
        }
        Ok(())
    })
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
        Command::Keys { config, action } => match Settings::load(config.as_deref()) {
            Ok(settings) => keys(settings, action),
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
