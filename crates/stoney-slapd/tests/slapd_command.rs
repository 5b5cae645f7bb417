//! `stoney-slapd slapd`, the directory in the foreground for containers and
//! supervisors, run as the real binary: how it ends tells a supervisor what happened.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Starts the wrapper on a fresh state folder and returns it with slapd's pid once the
/// wrapper says the server answers.
fn start(state: &Path, args: &[&str]) -> (Child, u32) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_stoney-slapd"))
        .arg("slapd")
        .arg("--listen")
        .arg(free_addr().to_string())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("STONEY_SLAPD_ROOT_PASSWORD", "secret")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the wrapper runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("slapd serving"), "the wrapper started slapd: {line:?}");
    let pid: u32 = std::fs::read_to_string(state.join("slapd.pid")).unwrap().trim().parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let parent = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).map(str::to_string);
    assert_eq!(parent, Some(child.id().to_string()), "slapd runs under the wrapper");
    (child, pid)
}

fn wait(child: &mut Child, secs: u64) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the wrapper did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

#[test]
fn the_wrapper_fails_with_128_plus_the_signal_when_slapd_is_killed() {
    let state = tempfile::tempdir().unwrap();
    let (mut wrapper, slapd) = start(state.path(), &[]);
    signal(slapd, libc::SIGKILL);
    let status = wait(&mut wrapper, 10);
    assert_eq!(status.code(), Some(128 + libc::SIGKILL), "{status:?}");
}

#[test]
fn the_wrapper_fails_with_slapds_code_when_slapd_aborts() {
    let state = tempfile::tempdir().unwrap();
    let (mut wrapper, slapd) = start(state.path(), &[]);
    signal(slapd, libc::SIGABRT);
    let status = wait(&mut wrapper, 10);
    assert_eq!(status.code(), Some(128 + libc::SIGABRT), "{status:?}");
}

#[test]
fn a_stopped_wrapper_stops_slapd_cleanly_and_exits_0() {
    let state = tempfile::tempdir().unwrap();
    let (mut wrapper, slapd) = start(state.path(), &[]);
    signal(wrapper.id(), libc::SIGTERM);
    let status = wait(&mut wrapper, 10);
    assert!(status.success(), "{status:?} (signal {:?})", status.signal());
    assert!(!Path::new(&format!("/proc/{slapd}")).exists(), "slapd {slapd} is gone with the wrapper");
}

#[test]
fn a_slapd_given_by_stoney_slapd_bin_that_is_not_there_is_an_error() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stoney-slapd"))
        .args(["slapd", "--listen", &free_addr().to_string(), "--state-dir"])
        .arg(state.path())
        .env("STONEY_SLAPD_BIN", "/nonexistent/sbin/slapd")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STONEY_SLAPD_BIN=/nonexistent/sbin/slapd"), "{out:?}");
}

#[test]
fn the_slapd_given_by_stoney_slapd_bin_is_the_one_that_runs() {
    let state = tempfile::tempdir().unwrap();
    // A folder with slapd alone: the launcher takes slapadd from the system then.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/sbin/slapd", bin.path().join("slapd")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stoney-slapd"))
        .args(["slapd", "--listen", &free_addr().to_string(), "--state-dir"])
        .arg(state.path())
        .env("STONEY_SLAPD_BIN", bin.path().join("slapd"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("slapd serving"), "{line:?}");
    let pid = std::fs::read_to_string(state.path().join("slapd.pid")).unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", pid.trim())).unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", pid.trim())).unwrap();
    assert!(cmdline.starts_with(&bin.path().join("slapd").display().to_string()), "{cmdline:?} ({exe:?})");
    signal(child.id(), libc::SIGTERM);
    assert!(wait(&mut child, 10).success());
}
