//! The `stoney-slapd` command: `slapd` (a directory built from ldif/, in the
//! foreground, for containers) and `dev` (a private directory with the demo data and the
//! gateway on top, for trying it out). Neither is part of the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stoney_gateway::app;
use stoney_gateway::config::Settings;
use stoney_gateway::telemetry;
use stoney_slapd::{self as slapd, Replication, Slapd, SlapdOptions};

#[derive(Parser)]
#[command(
    name = "stoney-slapd",
    version,
    about = "Directories for the stoney gateway: for containers, and a private one for trying it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a private slapd with the demo data and serve the API on top of it.
    Dev {
        /// Address of the HTTP server.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Address of the private slapd (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:3389")]
        ldap_listen: SocketAddr,
    },
    /// Run a directory built from ldif/ in the foreground (for containers).
    Slapd {
        #[arg(long, default_value = "0.0.0.0:389")]
        listen: SocketAddr,
        /// Keeps the configuration and database here; initialised on first start.
        #[arg(long, default_value = "/var/lib/stoney-slapd")]
        state_dir: PathBuf,
        /// Load the demo data set on first start.
        #[arg(long)]
        demo: bool,
        /// Base DN of the directory.
        #[arg(long, default_value = "dc=stoney-cloud,dc=org")]
        suffix: String,
        /// Password of cn=Manager,<suffix> (the same on every server of a replicated set).
        #[arg(long, env = "STONEY_SLAPD_ROOT_PASSWORD")]
        root_password: Option<String>,
        /// Multi-provider replication: this server's id (1 to 4095, unique in the set).
        #[arg(long, requires = "peer")]
        server_id: Option<u32>,
        /// Multi-provider replication: the URL of another server of the set (repeat for more).
        #[arg(long, requires = "server_id")]
        peer: Vec<String>,
        /// Re-adds this server to a replicated set: on a first start (empty state folder)
        /// it loads a full copy of this peer's database before it serves, instead of
        /// starting empty (then its peers would delete what it lacks). Ignored once the
        /// state folder is initialised.
        #[arg(long, requires = "server_id", conflicts_with = "demo")]
        rejoin: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev { listen, ldap_listen } => dev(listen, ldap_listen),
        Command::Slapd { listen, state_dir, demo, suffix, root_password, server_id, peer, rejoin } => {
            // In a replicated set the server started with --demo loads the data; the
            // others start empty and replicate it.
            let replication = server_id.map(|id| Replication { server_id: id, peers: peer, load_data: demo, rejoin });
            let opts = SlapdOptions {
                suffix,
                demo_data: demo,
                listen,
                state_dir: Some(state_dir),
                root_password,
                replication,
                ..Default::default()
            };
            slapd::note_stop_signals();
            match Slapd::start(opts) {
                Ok(mut s) => {
                    println!("slapd serving {} at {} (pid {:?})", s.suffix, s.url, s.pid());
                    // A supervisor must see a slapd that died as a failure: exit with its
                    // code, or 128 + the signal that killed it.
                    return match s.wait() {
                        Ok(status) => {
                            if !status.success() {
                                eprintln!("stoney-slapd: slapd ended: {status}");
                            }
                            ExitCode::from(slapd::exit_code(status))
                        }
                        Err(e) => {
                            eprintln!("stoney-slapd: {e}");
                            ExitCode::FAILURE
                        }
                    };
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoney-slapd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dev(listen: String, ldap_listen: SocketAddr) -> Result<(), String> {
    let mut settings = Settings::defaults();
    telemetry::init(&settings.log.format, &settings.log.level);
    let slapd = Slapd::start(SlapdOptions {
        demo_data: true,
        listen: ldap_listen,
        root_password: Some("secret".into()),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    settings.listen = listen;
    settings.ldap.urls = vec![slapd.url.clone()];
    settings.ldap.bind_dn = slapd.gateway_dn.clone();
    settings.ldap.bind_password = slapd.gateway_password.clone();
    settings.ldap.base_dn = slapd.suffix.clone();
    println!(
        "\nstoney gateway (demo data)\n  API:        {api}/v1/customers\n  ready:      {api}/ready\n  LDAP:       {url}  base {base}\n  LDAP admin: -D '{root}' -w {rootpw}\n  slapd up in {ms} ms\n  Demo logins (HTTP Basic): admin@stoney-cloud.org / admin-secret (provider),\n    reseller1@example.com / reseller1-secret (reseller 4000001), customer@example.com / customer-secret (customer 5000001)\n  Demo subscription key (X-Subscription-Key, reseller 4000001): {key}\n    {api}/subscriptions/v1/customers/{{customerNumber}}\n  Ctrl-C stops the gateway and the private slapd.\n",
        api = settings.public_url(),
        url = slapd.url,
        base = slapd.suffix,
        root = slapd.root_dn,
        rootpw = slapd.root_password,
        ms = slapd.startup.as_millis(),
        key = slapd::DEMO_SUBSCRIPTION_KEY,
    );
    let res = app::run(settings);
    drop(slapd);
    res
}
