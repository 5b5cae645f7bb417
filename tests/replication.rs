//! Two directory servers in multi-provider replication with the gateway on top: failover
//! to the other server when one dies, fail-back when it returns, and every write the
//! gateway acknowledged present on both servers afterwards, once, with unique ids.

mod common;

use std::time::{Duration, Instant};

use stoney_gateway::directory::slapd::{Slapd, SlapdOptions};

fn ldapsearch(s: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> String {
    let out = std::process::Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &s.url, "-D", &s.root_dn, "-w", &s.root_password, "-b", base, filter])
        .args(attrs)
        .output()
        .expect("ldapsearch runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_launched_servers_replicate_each_other() {
    let servers = Slapd::start_replicated(2, SlapdOptions { demo_data: true, ..Default::default() }).expect("two servers");
    let (a, b) = (&servers[0], &servers[1]);
    let count = |s: &Slapd| ldapsearch(s, &s.suffix, "(objectClass=sstCustomer)", &["1.1"]).lines().filter(|l| l.starts_with("dn:")).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(b) != 60 {
        assert!(Instant::now() < deadline, "the second server got the data: {}", count(b));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(a), 60);
}
