//! A short run of the fault harness (`scripts/bench faults` is the long one): two
//! replicated servers under a write load through two gateways, one killed and restarted
//! twice, one wiped and rejoined, one double fault with `ldap.ack = "all"`; every
//! acknowledged write checked on both servers and through REST. It fails when a cycle
//! lost or undid an acknowledged write (a create, a delete, a patch), crash-looped,
//! left the servers apart or gave an id twice; what else the long run counts (orphans
//! of unanswered creates, counts through REST) it reports, in `docs/BENCHMARKS.md` for
//! the long run.

use std::process::Command;

#[test]
fn a_short_fault_run_keeps_every_acknowledged_write() {
    let bench = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stoney-bench"));
    // The gateway the harness starts: the workspace's build beside this one.
    let gateway = bench.with_file_name("stoney-gateway");
    assert!(gateway.exists(), "{} is built with the workspace (cargo test --workspace)", gateway.display());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("faults.md");
    let out = Command::new(&bench)
        .arg("--out")
        .arg(&report)
        .args(["faults", "--singles", "2", "--rejoins", "1", "--doubles", "1", "--doubles-ack-one", "0"])
        .args(["--up", "3", "--down", "3", "--after", "5", "--strict-writes"])
        .env("STONEY_GATEWAY_BIN", &gateway)
        .output()
        .expect("the harness runs");
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        out.status.success(),
        "the harness found a fault: {}\n{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every cycle ran, and the table says none lost, undid or crash-looped anything
    // (the columns after cycles, clean and crashes: crash loops, lost, resurrected, lost
    // patches).
    for row in
        ["| kill -9 and restart | one | 2 |", "| kill -9, wipe, rejoin | all | 1 |", "| double fault | all | 1 |"]
    {
        let line = text.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("{row} in {text}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(&cells[6..9], ["0", "0", "0"], "{line}");
        assert_eq!(cells[9], "0", "{line}");
    }
}
