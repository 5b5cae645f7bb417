//! Benchmarks: the gateway next to a raw-LDAP baseline that does the same LDAP work with
//! ldap3 directly, in the same run, on a private slapd from the launcher. The figures go
//! into docs/BENCHMARKS.md (a section per benchmark, between markers).
//!
//!     scripts/bench element
//!     scripts/bench collection
//!     scripts/bench ack
//!     scripts/bench people
//!     scripts/bench subscriptions
//!     scripts/bench faults
//!     scripts/bench feed
//!     scripts/bench contracts
//!     scripts/bench import

mod ack;
mod collection;
mod common;
mod contracts;
mod element;
mod faults;
mod feed;
mod import;
mod index;
mod people;
mod scale;
mod subscriptions;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// The Markdown file the figures are written into.
    #[arg(long, default_value = "docs/BENCHMARKS.md", global = true)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// GET and POST of one customer, vs raw LDAP.
    Element {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// POST on two replicated servers: acknowledged by the server in use (`ldap.ack =
    /// "one"`) and once both hold it (`"all"`), vs raw LDAP on the first server.
    Ack {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// List queries over a large directory (sort, deep pages, filter, q), vs raw LDAP
    /// server-side sort + VLV.
    Collection {
        #[arg(long, default_value_t = 100_000)]
        customers: u64,
        #[arg(long, default_value_t = 4)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// People lists (sort, deep pages, mail filter, q), a customer's users and employees
    /// and /v1/search, as the provider admin and a reseller, vs raw LDAP for the lists.
    People {
        #[arg(long, default_value_t = 100_000)]
        customers: u64,
        #[arg(long, default_value_t = 4)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// Replication under faults: servers killed and restarted, wiped and rejoined, both
    /// killed one after the other, under a write load through two gateways; every
    /// acknowledged write checked on both servers and through REST. Exits 1 when a goal
    /// is missed (`--strict`).
    Faults(faults::Plan),
    /// The change feed: write to event latency (through the gateway and with LDAP directly)
    /// next to a raw content synchronisation consumer, and many open streams under writes.
    Feed {
        /// Writes one after another for the latencies (each way).
        #[arg(long, default_value_t = 300)]
        writes: u64,
        #[arg(long, default_value_t = 100)]
        streams: usize,
        #[arg(long, default_value_t = 4)]
        writers: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Orders and contracts of the subscriptions facade: order creation and activation,
    /// vs the same LDAP transactions done directly.
    Contracts {
        #[arg(long, default_value_t = 1000)]
        customers: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The size curve: cold start vs a raw paged fetch of the same entries, memory, and
    /// the list queries at concurrency 8 for each size; lists under writes at the largest.
    Scale {
        /// Customers per step of the curve.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
        sizes: Vec<u64>,
        #[arg(long, default_value_t = 4)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Customer writes per second during the runs under writes (0: none).
        #[arg(long, default_value_t = 100)]
        writes: u64,
    },
    /// The customer index alone in this process: the generated customers loaded, then
    /// each list query of the size curve asked of it directly on one thread.
    Index {
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
        #[arg(long, default_value_t = 2)]
        seconds: u64,
    },
    /// `stoney-gateway import` of many customers, vs ldapadd of the same entries.
    Import {
        #[arg(long, default_value_t = 100_000)]
        customers: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// The subscriptions facade: GET and POST (upsert: update and create) of a merchant's
    /// customer by its customer number, vs raw LDAP.
    Subscriptions {
        /// Customers created through the facade before the runs (`bench-<i>`).
        #[arg(long, default_value_t = 300)]
        customers: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    match cli.command {
        Cmd::Element { concurrency, seconds, rounds } => {
            rt.block_on(element::element(&cli.out, concurrency, seconds, rounds))
        }
        Cmd::Ack { concurrency, seconds, rounds } => rt.block_on(ack::ack(&cli.out, concurrency, seconds, rounds)),
        Cmd::Collection { customers, seconds, rounds } => {
            rt.block_on(collection::collection(&cli.out, customers, seconds, rounds))
        }
        Cmd::People { customers, seconds, rounds } => rt.block_on(people::people(&cli.out, customers, seconds, rounds)),
        Cmd::Faults(plan) => {
            if !rt.block_on(faults::faults(&cli.out, plan)) {
                std::process::exit(1);
            }
        }
        Cmd::Feed { writes, streams, writers, seconds } => {
            rt.block_on(feed::feed(&cli.out, writes, streams, writers, seconds))
        }
        Cmd::Contracts { customers, concurrency, seconds, rounds } => {
            rt.block_on(contracts::contracts(&cli.out, customers, concurrency, seconds, rounds))
        }
        Cmd::Index { customers, seconds } => rt.block_on(index::index(&cli.out, customers, seconds)),
        Cmd::Import { customers, concurrency } => rt.block_on(import::import(&cli.out, customers, concurrency)),
        Cmd::Scale { sizes, seconds, rounds, writes } => {
            rt.block_on(scale::scale(&cli.out, &sizes, seconds, rounds, writes))
        }
        Cmd::Subscriptions { customers, concurrency, seconds, rounds } => {
            rt.block_on(subscriptions::subscriptions(&cli.out, customers, concurrency, seconds, rounds))
        }
    }
}
