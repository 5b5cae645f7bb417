//! The `stoney-gateway` command: `serve`, `keys` (the subscription keys of the
//! resellers), and `export` and `import` (clients of a gateway's REST API). The directories for containers and for trying
//! it out are `stoney-slapd`'s (crates/stoney-slapd).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stoney_gateway::app;
use stoney_gateway::config::Settings;
use stoney_gateway::telemetry;
use stoney_gateway::tools::transfer::{self, Format, Remote};

/// mimalloc rather than the system allocator: a list page builds many small values,
/// and next to the index's hundreds of megabytes glibc's malloc spends much of a
/// request searching its bins (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Write every element the caller sees (JSON Lines in the element form, or CSV), page
    /// by page, through a gateway's REST API.
    Export {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long, default_value = "customers")]
        resource: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// The file to write (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Create elements from JSON Lines or CSV through a gateway's REST API, each one POST;
    /// elements whose externalID exists already are skipped, so an interrupted import
    /// can be run again.
    Import {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long, default_value = "customers")]
        resource: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Requests at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Only check each line as a create would, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where rejected lines go, one JSON object each with the error body.
        #[arg(long, default_value = "rejected.jsonl")]
        report: std::path::PathBuf,
        /// The file to read (`-`: standard input).
        input: std::path::PathBuf,
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

/// The gateway and the login the tools use.
#[derive(clap::Args)]
struct RemoteArgs {
    /// The gateway's URL.
    #[arg(long, env = "STONEY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The login (a person's mail).
    #[arg(long, env = "STONEY_USER")]
    user: String,
    /// Its password (better from the environment).
    #[arg(long, env = "STONEY_PASSWORD", hide_env_values = true)]
    password: String,
}

impl RemoteArgs {
    fn remote(self) -> Remote {
        Remote { url: self.url, user: self.user, password: self.password }
    }
}

fn transfer(command: Command) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        match command {
            Command::Export { remote, resource, format, output } => {
                let def = transfer::resource(&resource)?;
                let mut out: Box<dyn std::io::Write> = match output {
                    Some(p) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout())),
                };
                let n = transfer::export(&remote.remote(), def, format, &mut out).await?;
                eprintln!("exported {n} {}", def.name);
            }
            Command::Import { remote, resource, format, concurrency, dry_run, report, input } => {
                let def = transfer::resource(&resource)?;
                let reader: Box<dyn std::io::BufRead + Send> = if input.as_os_str() == "-" {
                    Box::new(std::io::BufReader::new(std::io::stdin()))
                } else {
                    Box::new(std::io::BufReader::new(
                        std::fs::File::open(&input).map_err(|e| format!("{}: {e}", input.display()))?,
                    ))
                };
                let mut rep = std::fs::File::create(&report).map_err(|e| format!("{}: {e}", report.display()))?;
                let opts = transfer::ImportOptions { format, concurrency, dry_run };
                let started = std::time::Instant::now();
                let n = transfer::import(&remote.remote(), def, reader, opts, &mut rep).await?;
                let secs = started.elapsed().as_secs_f64();
                let verb = if dry_run { "valid" } else { "created" };
                eprintln!(
                    "{} {verb}, {} there already, {} rejected (in {}) in {secs:.1} s ({:.0}/s)",
                    n.created,
                    n.skipped,
                    n.rejected,
                    report.display(),
                    (n.created + n.skipped + n.rejected) as f64 / secs.max(0.001)
                );
                if n.rejected > 0 {
                    return Err(format!("{} lines rejected; see {}", n.rejected, report.display()));
                }
            }
            _ => unreachable!("only the tools"),
        }
        Ok(())
    })
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
        tool @ (Command::Export { .. } | Command::Import { .. }) => transfer(tool),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoney-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
