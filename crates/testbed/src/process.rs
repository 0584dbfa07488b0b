//! Service processes that stop when their handle drops.
//!
//! A [`Service`] is the place of one child process whose stdout and stderr
//! go to a log file: started and waited for until it is ready, stopped
//! (SIGTERM, then SIGKILL), killed as a crash would, and started again. The
//! testbed's containerd and peerpull nodes each hold one. Dropping it (also
//! while a panicking test unwinds) stops the process, so no test leaves one
//! behind.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::Error;

/// How long a stopped service may take to exit before it is killed.
const GRACE: Duration = Duration::from_secs(5);

/// A child process, running or not, with its output in a log file.
#[derive(Debug)]
pub(crate) struct Service {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// A service named `name` (for messages) logging to `log`, not running yet.
    pub(crate) fn new(name: &str, log: &Path) -> Self {
        Self { name: name.to_owned(), log: log.to_owned(), child: None }
    }

    /// Starts `command` (stopping what ran before), appending its output to the
    /// log, and waits until `ready` says so: an error if the process exits
    /// first or `ready` is not true within `timeout`.
    pub(crate) async fn start<F, Fut>(
        &mut self,
        command: &mut Command,
        ready: F,
        timeout: Duration,
    ) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        self.stop();
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(Error::io(format!("opening {}", self.log.display())))?;
        let err = out.try_clone().map_err(Error::io("duplicating a log handle"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(Error::io(format!("starting {} ({command:?})", self.name)))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_running()?;
            if ready().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                self.stop();
                return Err(Error::Timeout { what: format!("{} to be ready", self.name), after: timeout });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether a process was started and not stopped.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Fails if the process has exited, with the tail of its log.
    pub(crate) fn check_running(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Io {
                what: format!("{} is stopped", self.name),
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited { service: self.name.clone(), status, log: tail(&self.log, 4096) }),
            Err(e) => Err(Error::io(format!("waiting for {}", self.name))(e)),
        }
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the process: SIGTERM, then SIGKILL after the grace period.
    pub(crate) fn stop(&mut self) {
        self.signal_and_reap(Signal::SIGTERM);
    }

    /// Sends SIGTERM and returns at once; [`Service::exited`] waits for the exit.
    pub(crate) fn terminate(&self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Waits up to `timeout` for the process to exit and returns its status
    /// (it is then stopped); still running at the deadline is an error.
    pub(crate) async fn exited(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(Error::io(format!("{} was not running", self.name))(std::io::ErrorKind::NotFound.into()));
            };
            if let Some(status) = child.try_wait().map_err(Error::io(format!("waiting for {}", self.name)))? {
                self.child = None;
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout { what: format!("{} to exit", self.name), after: timeout });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process at once, as a crash would.
    pub(crate) fn kill(&mut self) {
        self.signal_and_reap(Signal::SIGKILL);
    }

    fn signal_and_reap(&mut self, signal: Signal) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        let deadline = Instant::now() + GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `max` bytes of a log file, for error messages.
pub(crate) fn tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
