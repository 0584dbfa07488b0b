//! Service processes that stop when their handle drops.
//!
//! A [`Service`] owns one child process whose stdout and stderr go to a log
//! file. Dropping it (also while a panicking test unwinds) sends SIGTERM,
//! waits a short grace period and then SIGKILLs, so no test leaves a process
//! behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::Error;

/// How long a stopped service may take to exit before it is killed.
const GRACE: Duration = Duration::from_secs(5);

/// A running child process with its output in a log file.
#[derive(Debug)]
pub(crate) struct Service {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Starts `command`, appending its stdout and stderr to `log`.
    pub(crate) fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<Self, Error> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io(format!("opening {}", log.display())))?;
        let err = out.try_clone().map_err(Error::io("duplicating a log handle"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(Error::io(format!("starting {name} ({command:?})")))?;
        Ok(Self { name: name.to_owned(), log: log.to_owned(), child: Some(child) })
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
