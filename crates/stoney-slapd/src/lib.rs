//! The slapd launcher: one private OpenLDAP server built from `ldif/` (schema, cn=config
//! with indexes, overlays and ACLs, base tree, optional demo data). Used by the tests, by
//! `stoney-slapd dev`, by the benchmarks and by `stoney-slapd slapd` in containers.
//! It never touches a system slapd: everything lives in its own folder, and the server
//! is stopped (and a temporary folder removed) when the handle is dropped.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEFAULT_SUFFIX: &str = "dc=stoney-cloud,dc=org";
pub const GATEWAY_RDN: &str = "cn=gateway,ou=administration";
pub const GATEWAY_PASSWORD: &str = "gateway-secret";

const SCHEMA_LDIF: &str = include_str!("../../../ldif/sst-schema.ldif");
const GATEWAY_SCHEMA_LDIF: &str = include_str!("../../../ldif/gateway-schema.ldif");
const CONFIG_LDIF: &str = include_str!("../../../ldif/slapd-config.ldif");
const BASE_LDIF: &str = include_str!("../../../ldif/base.ldif");
const DEMO_LDIF: &str = include_str!("../../../ldif/demo.ldif");
const DEMO_PEOPLE_LDIF: &str = include_str!("../../../ldif/demo-people.ldif");
const DEMO_KEYS_LDIF: &str = include_str!("../../../ldif/demo-keys.ldif");
/// The subscription key of reseller 4000001 in the demo data (`ldif/demo-keys.ldif`,
/// stored there as its SHA-256): a published value for trying the subscriptions facade.
pub const DEMO_SUBSCRIPTION_KEY: &str = "sk_demo_4000001_subscriptions_only_for_trying_out";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0} not found: install the Debian packages slapd and ldap-utils")]
    Missing(String),
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct SlapdOptions {
    pub suffix: String,
    /// Load the demo data set of `ldif/demo.ldif`, `ldif/demo-people.ldif` and
    /// `ldif/demo-keys.ldif`.
    pub demo_data: bool,
    /// Further LDIF (entries, in slapadd form) loaded after the base tree.
    pub extra_ldif: Vec<String>,
    /// Listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Keep the database in this folder across runs instead of a temporary one.
    pub state_dir: Option<PathBuf>,
    /// Password of `cn=Manager,<suffix>`; random if not set.
    pub root_password: Option<String>,
    /// Multi-provider replication with other servers.
    pub replication: Option<Replication>,
}

/// One server of a multi-provider (mirror mode) set: OpenLDAP's own replication, each
/// server a syncprov provider and a syncrepl consumer of every other one.
#[derive(Debug, Clone)]
pub struct Replication {
    /// This server's id, 1 to 4095, different for every server.
    pub server_id: u32,
    /// The URLs of the other servers.
    pub peers: Vec<String>,
    /// Loads the data here; a server without starts empty and replicates everything.
    pub load_data: bool,
    /// Re-adds a server to the set: on a first start (an empty state folder), loads a
    /// full copy of this peer's database (every entry with its entryUUID and entryCSN,
    /// and the peer's contextCSN) before slapd starts, instead of the data or nothing.
    /// A server that starts empty instead serves its peers' consumers a directory that
    /// lacks entries, and they delete what it lacks.
    pub rejoin: Option<String>,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        SlapdOptions {
            suffix: DEFAULT_SUFFIX.into(),
            demo_data: false,
            extra_ldif: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            root_password: None,
            replication: None,
        }
    }
}

/// A running private slapd. Dropping it stops the server.
#[derive(Debug)]
pub struct Slapd {
    child: Option<Child>,
    _temp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    pub url: String,
    pub port: u16,
    /// The address it listens on.
    pub listen: SocketAddr,
    pub suffix: String,
    pub root_dn: String,
    pub root_password: String,
    pub gateway_dn: String,
    pub gateway_password: String,
    /// How long the server took from spawn until it answered an LDAP bind.
    pub startup: Duration,
}

fn find_binary(name: &str) -> Result<PathBuf, LaunchError> {
    for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(LaunchError::Missing(name.into()))
}

/// Where `scripts/build-openldap` keeps the build in use: `$STONEY_OPENLDAP_CACHE/current`
/// (default `/var/cache/stoney-openldap/current`).
pub fn openldap_build() -> PathBuf {
    let cache = std::env::var_os("STONEY_OPENLDAP_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/stoney-openldap"));
    cache.join("current")
}

/// The slapd the launcher runs: `STONEY_SLAPD_BIN` if set, else the build of
/// `scripts/build-openldap` if there is one (OpenLDAP 2.6.14 or newer, which
/// `scripts/install-deps` provides), else the system's (`/usr/sbin/slapd`). slapadd and
/// the other slap tools are taken from the same folder (a build has them all in its `sbin`).
pub fn slapd_binary() -> Result<PathBuf, LaunchError> {
    match std::env::var_os("STONEY_SLAPD_BIN").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_file() {
                Ok(p)
            } else {
                Err(LaunchError::Missing(format!("STONEY_SLAPD_BIN={}", p.display())))
            }
        }
        None => {
            let built = openldap_build().join("sbin/slapd");
            if built.is_file() {
                Ok(built)
            } else {
                find_binary("slapd")
            }
        }
    }
}

/// A slap tool (slapadd, slapmodify, slapcat, ...) of the slapd the launcher runs.
pub fn server_tool(name: &str) -> Result<PathBuf, LaunchError> {
    let slapd = slapd_binary()?;
    match slapd.parent().map(|d| d.join(name)) {
        Some(p) if p.exists() => Ok(p),
        _ => find_binary(name),
    }
}

/// The version line of the slapd the launcher runs (`slapd -VV`).
pub fn server_version() -> Result<String, LaunchError> {
    let out = Command::new(slapd_binary()?).arg("-VV").stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// What a slapd build has compiled in (`slapd -VVV` lists its static backends and
/// overlays): those need no `olcModuleLoad`.
fn static_parts(slapd: &Path) -> Vec<String> {
    let Ok(out) = Command::new(slapd).arg("-VVV").stdin(Stdio::null()).output() else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.lines().filter(|l| l.starts_with("    ")).map(|l| l.trim().to_string()).collect()
}

/// The cn=config entry that loads the backends and overlays this slapd lacks, or
/// nothing when it has them all compiled in.
fn module_entry(slapd: &Path) -> String {
    let built_in = static_parts(slapd);
    let loads: Vec<&str> = [("mdb", "back_mdb"), ("sssvlv", "sssvlv"), ("unique", "unique"), ("syncprov", "syncprov")]
        .into_iter()
        .chain([("accesslog", "accesslog")])
        .filter(|(part, _)| !built_in.iter().any(|b| b == part))
        .map(|(_, module)| module)
        .collect();
    if loads.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\nolcModulePath: {}\n",
        module_path(slapd)
    );
    for m in loads {
        out.push_str(&format!("olcModuleLoad: {m}\n"));
    }
    out.push('\n');
    out
}

fn module_path(slapd: &Path) -> String {
    let own = slapd.parent().and_then(Path::parent).map(|p| p.join("libexec/openldap"));
    own.into_iter()
        .chain(
            ["/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap", "/usr/local/libexec/openldap"]
                .into_iter()
                .map(PathBuf::from),
        )
        .find(|p| p.join("back_mdb.so").exists() || p.join("back_mdb.la").exists())
        .unwrap_or_else(|| PathBuf::from("/usr/lib/ldap"))
        .display()
        .to_string()
}

fn schema_dir(slapd: &Path) -> String {
    let own = slapd.parent().and_then(Path::parent).map(|p| p.join("etc/openldap/schema"));
    own.into_iter()
        .chain(
            ["/etc/ldap/schema", "/etc/openldap/schema", "/usr/local/etc/openldap/schema"]
                .into_iter()
                .map(PathBuf::from),
        )
        .find(|p| p.join("core.ldif").exists())
        .unwrap_or_else(|| PathBuf::from("/etc/ldap/schema"))
        .display()
        .to_string()
}

/// One attribute value as an LDIF line: as it is when it is safe ASCII, else base64.
pub fn ldif_line(attr: &str, value: &str) -> String {
    use base64::Engine;
    if value.is_ascii() && !value.starts_with([' ', ':', '<']) {
        format!("{attr}: {value}\n")
    } else {
        format!("{attr}:: {}\n", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

/// Rewrites the default suffix in LDIF text to another one.
pub fn with_suffix(ldif: &str, suffix: &str) -> String {
    if suffix == DEFAULT_SUFFIX {
        ldif.to_string()
    } else {
        ldif.replace(DEFAULT_SUFFIX, suffix)
    }
}

/// The LDAP entries the launcher loads (base tree, demo data if asked, extra LDIF).
pub fn data_ldif(opts: &SlapdOptions) -> String {
    let mut data = with_suffix(BASE_LDIF, &opts.suffix);
    if opts.demo_data {
        data.push('\n');
        data.push_str(&with_suffix(DEMO_LDIF, &opts.suffix));
        data.push('\n');
        data.push_str(&with_suffix(DEMO_PEOPLE_LDIF, &opts.suffix));
        data.push('\n');
        data.push_str(&with_suffix(DEMO_KEYS_LDIF, &opts.suffix));
    }
    for extra in &opts.extra_ldif {
        data.push('\n');
        data.push_str(extra);
    }
    data
}

fn run(step: &str, cmd: &mut Command) -> Result<(), LaunchError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LaunchError::Step {
            step: step.into(),
            detail: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
                .trim()
                .to_string(),
        })
    }
}

fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
    format!("{:016x}", h.finish())
}

/// A password as slapd stores it hashed: `{SSHA}` (salted SHA-1, RFC 2307 style), so
/// that cn=config never holds the root password in clear text.
pub fn ssha(password: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(password.as_bytes());
    let salt = h.finish().to_le_bytes();
    let mut digest = Sha1::new();
    digest.update(password.as_bytes());
    digest.update(salt);
    let mut raw = digest.finalize().to_vec();
    raw.extend_from_slice(&salt);
    format!("{{SSHA}}{}", base64::engine::general_purpose::STANDARD.encode(raw))
}

fn global_extra(opts: &SlapdOptions) -> String {
    match &opts.replication {
        Some(r) => format!("olcServerID: {}\n", r.server_id),
        None => String::new(),
    }
}

/// The syncrepl consumers of a replicated server, bound as the root DN of the peers
/// (they share the root password), and multi-provider mode.
fn database_extra(opts: &SlapdOptions, root_password: &str) -> String {
    let Some(r) = &opts.replication else { return String::new() };
    let mut out = String::new();
    for (i, peer) in r.peers.iter().enumerate() {
        out.push_str(&format!(
            "olcSyncrepl: {{{i}}}rid={:03} provider={peer} bindmethod=simple binddn=\"cn=Manager,{suffix}\" \
             credentials=\"{root_password}\" searchbase=\"{suffix}\" type=refreshAndPersist \
             retry=\"1 +\" timeout=3 network-timeout=3\n",
            i + 1,
            suffix = opts.suffix,
        ));
    }
    out.push_str("olcMultiProvider: TRUE\n");
    out
}

/// syncprov's session log (the recent deletes a resuming consumer is told about): in
/// memory; on a replicated server loaded from its write log, so that a peer resuming
/// after a restart of this server can be sent the deletes instead of a present phase,
/// which would make it drop the entries it has and this server does not have yet.
/// (slapd 2.5.13 still answers some resumes with a present phase: the restart test's
/// sync logs show one with a cookie that names both servers.)
fn session_log(opts: &SlapdOptions) -> &'static str {
    if opts.replication.is_some() {
        "olcSpSessionlogSource: cn=accesslog\n"
    } else {
        "olcSpSessionlog: 10000\n"
    }
}

/// The database of a replicated server's write log. The gateway reads it to tell a
/// delete a server missed from a create its peer missed.
fn replication_logdb(opts: &SlapdOptions, dir: &Path) -> String {
    if opts.replication.is_none() {
        return String::new();
    }
    format!(
        "dn: olcDatabase={{2}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n\
         olcDatabase: {{2}}mdb\nolcSuffix: cn=accesslog\nolcRootDN: cn=Manager,{suffix}\n\
         olcDbDirectory: {log}\nolcDbMaxSize: 1073741824\n\
         olcDbIndex: default eq\nolcDbIndex: entryCSN,objectClass,reqEnd,reqResult,reqStart,reqDN,reqEntryUUID eq\n\
         olcLimits: {{0}}dn.exact=\"{GATEWAY_RDN},{suffix}\" size=unlimited time=unlimited\n\
         olcAccess: {{0}}to * by dn.exact=\"cn=Manager,{suffix}\" read by dn.exact=\"{GATEWAY_RDN},{suffix}\" read \
         by * none\n\n",
        suffix = opts.suffix,
        log = dir.join("accesslog").display(),
    )
}

/// The accesslog overlay that writes a replicated server's write log.
fn replication_extra(opts: &SlapdOptions) -> String {
    if opts.replication.is_none() {
        return String::new();
    }
    "dn: olcOverlay={3}accesslog,olcDatabase={1}mdb,cn=config\nobjectClass: olcOverlayConfig\n\
     objectClass: olcAccessLogConfig\nolcOverlay: {3}accesslog\nolcAccessLogDB: cn=accesslog\n\
     olcAccessLogOps: delete modrdn\nolcAccessLogSuccess: TRUE\nolcAccessLogPurge: 07+00:00 01+00:00\n"
        .to_string()
}

/// Operational attributes a search returns that slapd computes and slapadd refuses (or,
/// as the write log's `auditContext` on the base entry, that would then be there twice
/// on a server rejoined from a rejoined one).
const NOT_STORED: [&str; 7] = [
    "entryDN",
    "subschemaSubentry",
    "hasSubordinates",
    "numSubordinates",
    "pwdPolicySubentry",
    "memberOf",
    "auditContext",
];

/// Copies a peer's whole database as its root DN into `dir/rejoin.ldif`, in slapadd
/// form: every entry with its operational attributes (entryUUID, entryCSN, timestamps,
/// and the suffix's contextCSN, so that replication resumes from the peer's state),
/// parents before children. Tries for a minute while the peer does not answer.
fn copy_from_peer(peer: &str, suffix: &str, root_password: &str, dir: &Path) -> Result<PathBuf, LaunchError> {
    fs::create_dir_all(dir)?;
    let root_dn = format!("cn=Manager,{suffix}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = Command::new(find_binary("ldapsearch")?)
            // -M (ManageDsaIT): glue entries too, which replication leaves where a child
            // arrived without its parent; without them slapadd finds the children's
            // parents missing.
            .args(["-x", "-M", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=5", "-H", peer, "-D", &root_dn])
            .args(["-w", root_password, "-b", suffix, "-s", "sub", "(objectClass=*)", "*", "+"])
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            break out;
        }
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // 32: the peer does not hold the suffix (yet); anything else but "can't
        // contact" is an error the operator must see at once.
        let retry = matches!(out.status.code(), Some(-1) | Some(255) | Some(32) | Some(51) | Some(52));
        if !retry || Instant::now() > deadline {
            return Err(LaunchError::Step { step: format!("copying the directory from {peer}"), detail: why });
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut entries: Vec<(usize, String)> = Vec::new();
    for record in text.split("\n\n").map(str::trim).filter(|r| !r.is_empty()) {
        let mut dn = None;
        let mut kept = String::new();
        for line in record.lines() {
            let attr = line.split(':').next().unwrap_or_default();
            if NOT_STORED.iter().any(|n| n.eq_ignore_ascii_case(attr)) {
                continue;
            }
            if dn.is_none() {
                dn = line_value(line, "dn");
            }
            kept.push_str(line);
            kept.push('\n');
        }
        let Some(dn) = dn else { continue };
        entries.push((stoney_gateway::directory::layout::depth(&dn), kept));
    }
    if !entries.iter().any(|(depth, _)| *depth == stoney_gateway::directory::layout::depth(suffix)) {
        return Err(LaunchError::Step {
            step: format!("copying the directory from {peer}"),
            detail: "the peer does not hold the base entry".into(),
        });
    }
    // Parents first (a moved subtree can come before its new parent in search order).
    entries.sort_by_key(|(depth, _)| *depth);
    let file = dir.join("rejoin.ldif");
    let mut ldif = String::with_capacity(text.len());
    for (_, e) in entries {
        ldif.push_str(&e);
        ldif.push('\n');
    }
    fs::write(&file, ldif)?;
    Ok(file)
}

/// The value of an LDIF line `attr: value` or `attr:: base64`.
fn line_value(line: &str, attr: &str) -> Option<String> {
    use base64::Engine;
    let rest = line.strip_prefix(attr)?;
    if let Some(b64) = rest.strip_prefix(":: ") {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        String::from_utf8(raw).ok()
    } else {
        rest.strip_prefix(": ").map(str::to_string)
    }
}

/// Sends an anonymous bind and reads the answer: the server is up only when it answers
/// LDAP, not merely when its port accepts.
fn answers_ldap(addr: SocketAddr) -> bool {
    const BIND: [u8; 14] = [0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00];
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(&BIND).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        // SEQUENCE, msgid 1, BindResponse (0x61) ... resultCode 0
        Ok(n) if n >= 10 => buf[0] == 0x30 && buf.contains(&0x61),
        _ => false,
    }
}

/// Runs slapd on `addr` and waits until it answers LDAP; the inner error says why it did
/// not (it exited, e.g. because the port is taken, or it stayed silent for 10 s).
fn spawn(
    slapd: &Path,
    dir: &Path,
    config_dir: &Path,
    addr: SocketAddr,
) -> Result<Result<(Child, Duration), String>, LaunchError> {
    let url = format!("ldap://{addr}/");
    let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("slapd.log"))?;
    // slapd writes its pid file once its listeners are bound: the proof that whatever
    // answers on the port is this server and not another one that took the port first.
    let pid_file = dir.join("slapd.pid");
    let _ = fs::remove_file(&pid_file);
    let started = Instant::now();
    // STONEY_SLAPD_DEBUG=stats keeps slapd's log (slapd.log in its folder).
    let level = std::env::var("STONEY_SLAPD_DEBUG").unwrap_or_else(|_| "0".into());
    let mut child = Command::new(slapd)
        .args(["-d", level.as_str(), "-F"])
        .arg(config_dir)
        .arg("-h")
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let deadline = started + Duration::from_secs(10);
    let probe = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
    loop {
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(dir.join("slapd.log")).unwrap_or_default();
            return Ok(Err(format!("slapd exited with {status}: {}", log.trim())));
        }
        let ours = fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == child.id().to_string());
        if ours && answers_ldap(probe) {
            return Ok(Ok((child, started.elapsed())));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Err("slapd did not answer within 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Slapd {
    /// Builds the configuration and database and starts the server; returns once it answers.
    pub fn start(opts: SlapdOptions) -> Result<Slapd, LaunchError> {
        let slapd = slapd_binary()?;
        let slapadd = server_tool("slapadd")?;
        let (temp, dir) = match &opts.state_dir {
            Some(d) => {
                fs::create_dir_all(d)?;
                (None, fs::canonicalize(d)?)
            }
            None => {
                let t = tempfile::Builder::new().prefix("stoney-slapd-").tempdir()?;
                if std::env::var_os("STONEY_SLAPD_DEBUG").is_some() {
                    // Debugging: keep the folder with slapd.log after the run.
                    let p = t.keep();
                    (None, p)
                } else {
                    let p = t.path().to_path_buf();
                    (Some(t), p)
                }
            }
        };
        let root_password = opts.root_password.clone().unwrap_or_else(random_password);
        let gateway_dn = format!("{GATEWAY_RDN},{}", opts.suffix);
        let config_dir = dir.join("slapd.d");
        let fresh = !config_dir.join("cn=config.ldif").exists();
        // A rejoining server copies its peer first: if that fails, the state folder is
        // left as it was (uninitialised), so that the next start tries again.
        let copy = match opts.replication.as_ref().and_then(|r| r.rejoin.as_deref()) {
            Some(peer) if fresh => Some(copy_from_peer(peer, &opts.suffix, &root_password, &dir)?),
            _ => None,
        };
        if fresh {
            fs::create_dir_all(dir.join("db"))?;
            fs::create_dir_all(dir.join("accesslog"))?;
            fs::create_dir_all(&config_dir)?;
            fs::write(dir.join("sst-schema.ldif"), SCHEMA_LDIF)?;
            fs::write(dir.join("gateway-schema.ldif"), GATEWAY_SCHEMA_LDIF)?;
            let config = CONFIG_LDIF
                .replace("{{DIR}}", &dir.to_string_lossy())
                .replace("{{SUFFIX}}", &opts.suffix)
                .replace("{{ROOTPW}}", &ssha(&root_password))
                .replace("{{GATEWAY_DN}}", &gateway_dn)
                .replace("{{MODULES}}\n", &module_entry(&slapd))
                .replace("{{SCHEMADIR}}", &schema_dir(&slapd))
                .replace("{{GLOBAL_EXTRA}}\n", &global_extra(&opts))
                .replace("{{DATABASE_EXTRA}}\n", &database_extra(&opts, &root_password))
                .replace("{{REPLICATION_LOGDB}}\n", &replication_logdb(&opts, &dir))
                .replace("{{SESSIONLOG}}\n", session_log(&opts))
                .replace("{{REPLICATION_EXTRA}}\n", &replication_extra(&opts));
            fs::write(dir.join("config.ldif"), config)?;
            fs::write(dir.join("data.ldif"), data_ldif(&opts))?;
            run(
                "slapadd (cn=config)",
                Command::new(&slapadd).arg("-n0").arg("-F").arg(&config_dir).arg("-l").arg(dir.join("config.ldif")),
            )?;
            let load = opts.replication.as_ref().is_none_or(|r| r.load_data);
            let data = match &copy {
                Some(file) => Some(file.clone()),
                None => load.then(|| dir.join("data.ldif")),
            };
            if let Some(data) = data {
                let loaded = run(
                    "slapadd (data)",
                    Command::new(&slapadd).args(["-q", "-b", &opts.suffix, "-F"]).arg(&config_dir).arg("-l").arg(data),
                );
                if let Err(e) = loaded {
                    // Not initialised after all: the next start begins anew.
                    let _ = fs::remove_dir_all(&config_dir);
                    let _ = fs::remove_dir_all(dir.join("db"));
                    let _ = fs::remove_dir_all(dir.join("accesslog"));
                    return Err(e);
                }
            }
        }

        let mut last_err = String::new();
        for _attempt in 0..8 {
            let addr = if opts.listen.port() == 0 {
                let l = TcpListener::bind(opts.listen)?;
                l.local_addr()?
            } else {
                opts.listen
            };
            match spawn(&slapd, &dir, &config_dir, addr)? {
                Ok((child, startup)) => {
                    let slapd = Slapd {
                        child: Some(child),
                        _temp: temp,
                        dir,
                        url: format!("ldap://{addr}/"),
                        port: addr.port(),
                        listen: addr,
                        suffix: opts.suffix.clone(),
                        root_dn: format!("cn=Manager,{}", opts.suffix),
                        root_password,
                        gateway_dn,
                        gateway_password: GATEWAY_PASSWORD.into(),
                        startup,
                    };
                    if fresh {
                        if let Some(r) = &opts.replication {
                            slapd.mark_replication_start(r.server_id)?;
                        }
                    }
                    return Ok(slapd);
                }
                Err(e) => last_err = e,
            }
            if opts.listen.port() != 0 {
                break;
            }
        }
        Err(LaunchError::Step { step: "starting slapd".into(), detail: last_err })
    }

    /// Starts `n` servers that replicate each other (multi-provider); the first one is
    /// loaded with the data, the others get it by replication. They share the root
    /// password (`opts.root_password`, random if unset).
    pub fn start_replicated(n: usize, opts: SlapdOptions) -> Result<Vec<Slapd>, LaunchError> {
        let mut addrs = Vec::new();
        let mut holds = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            addrs.push(l.local_addr()?);
            holds.push(l);
        }
        drop(holds);
        let root_password = opts.root_password.clone().unwrap_or_else(random_password);
        let urls: Vec<String> = addrs.iter().map(|a| format!("ldap://{a}/")).collect();
        let mut out = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let peers = urls.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, u)| u.clone()).collect();
            out.push(Slapd::start(SlapdOptions {
                listen: *addr,
                root_password: Some(root_password.clone()),
                replication: Some(Replication { server_id: i as u32 + 1, peers, load_data: i == 0, rejoin: None }),
                ..opts.clone()
            })?);
        }
        Ok(out)
    }

    /// One delete in a new replicated server's write log, so that the log reaches back
    /// before any cookie a peer can hold: when this server restarts, a resuming peer
    /// can be sent the deletes since its cookie rather than a present phase (which made
    /// the peer drop entries it had written meanwhile).
    fn mark_replication_start(&self, server_id: u32) -> Result<(), LaunchError> {
        let marker = format!("cn=replication-start-{server_id},ou=administration,{}", self.suffix);
        let ldif = format!(
            "dn: {marker}\nchangetype: add\nobjectClass: applicationProcess\ncn: replication-start-{server_id}\n\n\
             dn: {marker}\nchangetype: delete\n"
        );
        // A server that starts empty gets ou=administration by replication: try until then.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = Command::new(find_binary("ldapmodify")?)
                .args(["-x", "-c", "-H", &self.url, "-D", &self.root_dn, "-w", &self.root_password])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(ldif.as_bytes())?;
            }
            let done = child.wait_with_output()?;
            if done.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LaunchError::Step {
                    step: "marking the start of replication".into(),
                    detail: String::from_utf8_lossy(&done.stderr).trim().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server at once, as a crash would (SIGKILL), and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same address with the same database.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.stop();
        let slapd = slapd_binary()?;
        let (child, startup) = spawn(&slapd, &self.dir, &self.dir.join("slapd.d"), self.listen)?
            .map_err(|detail| LaunchError::Step { step: "restarting slapd".into(), detail })?;
        self.child = Some(child);
        self.startup = startup;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the server ended if it stopped by itself (a crash): `None` while it runs,
    /// and after `kill` or `stop`.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Stops the server (SIGTERM, then SIGKILL after two seconds) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Runs until the server exits (the foreground `slapd` command) and returns how it
    /// ended. A stop signal noted by `note_stop_signals` (before or during the wait) is
    /// passed on to slapd as SIGTERM, which then stops cleanly (writing its
    /// `contextCSN`) and exits 0.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return Err(std::io::Error::other("slapd is not running"));
        };
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if STOP_SIGNAL.swap(0, std::sync::atomic::Ordering::Relaxed) != 0 {
                // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        Ok(status)
    }
}

static STOP_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Makes SIGTERM, SIGINT and SIGHUP to this process a request to stop slapd, which
/// `Slapd::wait` carries out (the foreground `slapd` command installs this first, so
/// that a stop during start-up is not lost).
pub fn note_stop_signals() {
    extern "C" fn note(sig: libc::c_int) {
        STOP_SIGNAL.store(sig, std::sync::atomic::Ordering::Relaxed);
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, note as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    }
}

/// The exit code a wrapper of slapd reports for how slapd ended: slapd's own code, or
/// 128 + the signal that killed it (as a shell does).
pub fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::{exit_code, ldif_line, ssha};
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_wrapper_reports_slapds_exit_code_or_128_plus_its_signal() {
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(1 << 8)), 1);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(6)), 134);
    }

    #[test]
    fn a_root_password_is_stored_as_a_salted_sha1() {
        use base64::Engine;
        use sha1::{Digest, Sha1};
        let stored = ssha("secret");
        let raw = base64::engine::general_purpose::STANDARD.decode(stored.strip_prefix("{SSHA}").unwrap()).unwrap();
        assert_eq!(raw.len(), 28);
        let (digest, salt) = raw.split_at(20);
        assert_eq!(digest, Sha1::new().chain_update("secret").chain_update(salt).finalize().as_slice());
        assert_ne!(ssha("secret"), stored, "a new salt each time");
    }

    #[test]
    fn ldif_lines_base64_what_plain_ldif_cannot_carry() {
        assert_eq!(ldif_line("l", "Bern"), "l: Bern\n");
        assert_eq!(ldif_line("l", "Zürich"), "l:: WsO8cmljaA==\n");
        assert_eq!(ldif_line("o", " lead"), "o:: IGxlYWQ=\n");
        assert_eq!(ldif_line("o", ":x"), "o:: Ong=\n");
        assert_eq!(ldif_line("o", "<x"), "o:: PHg=\n");
    }
}
