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
    log: PathBuf,
    shim: PathBuf,
    child: Option<Child>,
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
        Ok(Process { name: name.into(), port, data, clock, binary, args, log, shim: sb.shim.clone(), child: None })
    }

    /// Starts the process and waits (bounded) until it accepts connections on its port.
    pub fn start(&mut self) -> Result<(), RealError> {
        let log = fs::File::create(&self.log).map_err(|e| RealError::io(&self.log, e))?;
        let err = log.try_clone().map_err(|e| RealError::io(&self.log, e))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(&self.args)
            .env("LD_PRELOAD", &self.shim)
            .env("LOCKCHECK_CLOCK_FILE", &self.clock.file)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe; the server dies with lockcheck, even on SIGKILL.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
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

    /// `SIGKILL`: what is not on disk is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
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

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
