//! Real server processes, started and stopped by lockcheck: a scratch folder per run, one free
//! port and one data folder per server, and a wall clock lockcheck sets.
//!
//! The clock: Debian's `redis-server` is linked with jemalloc, which calls `clock_gettime` while it
//! initialises and so deadlocks under libfaketime (libfaketime issues #130, #327: no fix on either
//! side). lockcheck preloads its own twenty-line shim instead (`fakeclock.c`, built with the system
//! C compiler at the start of a run): the server's wall clock reads the milliseconds written in a
//! file, and stands still between writes. Time on a real server is then lockcheck's to move, a
//! tick at a time, as in the model; its monotonic clock stays real, so its event loop runs.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::RealError;

/// The model's first tick, as a wall clock: 2026-01-01T00:00:00Z.
pub const EPOCH_MS: i64 = 1_767_225_600_000;
/// How long one command may take.
pub const REPLY_BOUND: Duration = Duration::from_secs(5);

/// The wall clock, in milliseconds since the epoch, at the start of model tick `tick`.
pub fn wall_ms(tick: i64, tick_ms: i64) -> i64 {
    EPOCH_MS + tick * tick_ms
}

/// Where a run keeps everything it writes; removed with everything in it when dropped.
pub struct Sandbox {
    pub root: PathBuf,
    shim: PathBuf,
}

static RUNS: AtomicU64 = AtomicU64::new(0);

impl Sandbox {
    pub fn new() -> Result<Sandbox, RealError> {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("lockcheck-real-{}-{n}", std::process::id()));
        // A folder left by a process that died with this pid is stale.
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).map_err(|e| RealError::io(&root, e))?;
        let sandbox = Sandbox { shim: root.join("fakeclock.so"), root };
        sandbox.build_shim()?;
        Ok(sandbox)
    }

    fn build_shim(&self) -> Result<(), RealError> {
        let source = self.root.join("fakeclock.c");
        fs::write(&source, include_str!("fakeclock.c")).map_err(|e| RealError::io(&source, e))?;
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&self.shim)
            .arg(&source)
            .output()
            .map_err(|_| RealError::Missing { binary: "cc".into(), package: "gcc".into() })?;
        if !out.status.success() {
            return Err(RealError::Start {
                server: "the clock shim".into(),
                why: String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("cc failed").to_string(),
            });
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The path of `binary`, looked up on `PATH` and then in `extra` folders (PostgreSQL keeps its
/// server outside `PATH`); missing: an error naming the Debian package that has it.
pub fn find_binary(binary: &str, package: &str, extra: &[&str]) -> Result<PathBuf, RealError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or_else(|| RealError::Missing { binary: binary.into(), package: package.into() })
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, RealError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| RealError::io(Path::new("127.0.0.1:0"), e))?;
    l.local_addr().map(|a| a.port()).map_err(|e| RealError::io(Path::new("127.0.0.1:0"), e))
}

/// The wall clock of one server, in milliseconds since the epoch.
pub struct FakeClock {
    file: PathBuf,
    ms: i64,
}

impl FakeClock {
    fn new(file: PathBuf, ms: i64) -> Result<FakeClock, RealError> {
        let mut c = FakeClock { file, ms: i64::MIN };
        c.set(ms)?;
        Ok(c)
    }

    pub fn now(&self) -> i64 {
        self.ms
    }

    /// Moves the clock one millisecond past `when`, a server's expiry instant (servers let a key
    /// or row go once their clock has passed it), unless that is at or after `before` (the end of
    /// the current tick, in a timed spec). Whether it moved.
    pub fn pass(&mut self, when: i64, before: Option<i64>) -> Result<bool, RealError> {
        if before.is_some_and(|end| when >= end) {
            return Ok(false);
        }
        self.set(when + 1)?;
        Ok(true)
    }

    /// Moves the clock to `ms`; it never goes back (the model's clocks only jump ahead).
    pub fn set(&mut self, ms: i64) -> Result<(), RealError> {
        if ms <= self.ms {
            return Ok(());
        }
        self.ms = ms;
        // Written aside and renamed: the shim never reads half a number.
        let tmp = self.file.with_extension("new");
        let mut f = fs::File::create(&tmp).map_err(|e| RealError::io(&tmp, e))?;
        write!(f, "{ms}").map_err(|e| RealError::io(&tmp, e))?;
        fs::rename(&tmp, &self.file).map_err(|e| RealError::io(&self.file, e))
    }
}

/// One server process: how to start it, and the process while it runs.
pub struct Process {
    pub name: String,
    pub port: u16,
    pub data: PathBuf,
    pub clock: FakeClock,
    binary: PathBuf,
    args: Vec<String>,
    /// Arguments for the next starts only (a Redis that comes back as a replica).
    extra: Vec<String>,
    log: PathBuf,
    /// The clock shim to preload; `None`: the server keeps the real clock.
    shim: Option<PathBuf>,
    child: Option<Child>,
    account: Option<Account>,
}

/// The system account a server runs under: PostgreSQL refuses to run as root, so when lockcheck
/// runs as root its PostgreSQL runs as the package's own `postgres` account.
#[derive(Clone, Copy, Debug)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

impl Account {
    /// The account `name` when lockcheck is root (and must step down); `None` otherwise.
    pub fn for_root(name: &str) -> Result<Option<Account>, RealError> {
        // SAFETY: getuid cannot fail; getpwnam returns null or a pointer to static storage, read
        // at once.
        unsafe {
            if libc::getuid() != 0 {
                return Ok(None);
            }
            let cname = std::ffi::CString::new(name).expect("no NUL in an account name");
            let pw = libc::getpwnam(cname.as_ptr());
            if pw.is_null() {
                return Err(RealError::Start {
                    server: name.into(),
                    why: format!("lockcheck runs as root and there is no `{name}` account to run the server as"),
                });
            }
            Ok(Some(Account { uid: (*pw).pw_uid, gid: (*pw).pw_gid }))
        }
    }

    /// Gives `path` (and, for a folder, what it holds) to the account.
    pub fn own(&self, path: &Path) -> Result<(), RealError> {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .map_err(|e| RealError::io(path, e))?;
        if !status.success() {
            return Err(RealError::Io { file: path.display().to_string(), why: "chown failed".into() });
        }
        Ok(())
    }

    /// Makes `cmd` run under the account (before the parent-death signal is set: a change of
    /// user clears it).
    pub fn apply(account: Option<Account>, cmd: &mut Command) {
        // SAFETY: setgid, setuid and prctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(a) = account
                    && (libc::setgid(a.gid) != 0 || libc::setuid(a.uid) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
}

/// How long a server may take to accept connections after it was started.
const START_BOUND: Duration = Duration::from_secs(10);

impl Process {
    /// Prepares (does not start) `binary` as server `name` of the sandbox, with its wall clock at
    /// `clock_ms`. `args` may name `{port}` and `{data}`.
    pub fn new(sb: &Sandbox, name: &str, binary: PathBuf, args: &[&str], clock_ms: i64) -> Result<Process, RealError> {
        let port = free_port()?;
        let data = sb.root.join(name);
        fs::create_dir_all(&data).map_err(|e| RealError::io(&data, e))?;
        let fill = |a: &&str| a.replace("{port}", &port.to_string()).replace("{data}", &data.display().to_string());
        let args = args.iter().map(fill).collect();
        let clock = FakeClock::new(sb.root.join(format!("{name}.clock")), clock_ms)?;
        let log = sb.root.join(format!("{name}.log"));
        Ok(Process {
            name: name.into(),
            port,
            data,
            clock,
            binary,
            args,
            extra: Vec::new(),
            log,
            shim: Some(sb.shim.clone()),
            child: None,
            account: None,
        })
    }

    /// Runs the server under `account` (its data folder given to it).
    pub fn run_as(&mut self, account: Option<Account>) -> Result<(), RealError> {
        if let Some(a) = account {
            a.own(&self.data)?;
        }
        self.account = account;
        Ok(())
    }

    /// Arguments added to the next starts (none: `[]`).
    pub fn start_with(&mut self, extra: &[String]) {
        self.extra = extra.to_vec();
    }

    /// The server keeps the real wall clock: a JVM's threads stall when theirs stands still.
    pub fn real_clock(&mut self) {
        self.shim = None;
    }

    /// Starts the process and waits (bounded) until it accepts connections on its port.
    pub fn start(&mut self) -> Result<(), RealError> {
        let log = fs::File::create(&self.log).map_err(|e| RealError::io(&self.log, e))?;
        let err = log.try_clone().map_err(|e| RealError::io(&self.log, e))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(&self.args).args(&self.extra).stdin(Stdio::null()).stdout(log).stderr(err);
        if let Some(shim) = &self.shim {
            cmd.env("LD_PRELOAD", shim).env("LOCKCHECK_CLOCK_FILE", &self.clock.file);
        }
        // The server dies with lockcheck, even on SIGKILL.
        Account::apply(self.account, &mut cmd);
        let child = cmd.spawn().map_err(|e| RealError::Start { server: self.name.clone(), why: e.to_string() })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), RealError> {
        let began = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || began.elapsed() > START_BOUND {
                let why = match exited {
                    Some(status) => format!("exited ({status}): {}", self.last_log_line()),
                    None => format!("not accepting connections after {} s", START_BOUND.as_secs()),
                };
                self.kill();
                return Err(RealError::Start { server: self.name.clone(), why });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn last_log_line(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").to_string()
    }

    /// `SIGKILL` to the server and every process it started (PostgreSQL's backends, each in a
    /// process group of its own): what is not on disk is gone. Returns once none of them runs any
    /// more (bounded), so the data folder is free for a restart.
    pub fn kill(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let mut pids = children(c.id() as i32);
        pids.push(c.id() as i32);
        for &pid in &pids {
            // SAFETY: kill has no memory effects; these are the server's processes.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = c.wait();
        let began = Instant::now();
        while pids.iter().any(|&p| runs(p)) && began.elapsed() < START_BOUND {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Everything on its disk is lost (a replaced machine).
    pub fn wipe(&mut self) -> Result<(), RealError> {
        let _ = fs::remove_dir_all(&self.data);
        fs::create_dir_all(&self.data).map_err(|e| RealError::io(&self.data, e))
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// The state letter and parent of process `pid` (`/proc/<pid>/stat`: `pid (comm) state ppid
/// ...`, where comm may hold spaces).
fn stat(pid: &str) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

fn children(parent: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let pids = dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()));
    pids.filter(|p| stat(&p.to_string()).is_some_and(|(_, ppid)| ppid == parent)).collect()
}

/// Process `pid` still runs (a zombie does not: a container's first process may never reap it).
fn runs(pid: i32) -> bool {
    stat(&pid.to_string()).is_some_and(|(state, _)| state != 'Z')
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
