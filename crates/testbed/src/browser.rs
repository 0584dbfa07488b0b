//! A real browser for tests of pages people use: headless Chromium (the
//! Debian package `chromium`) driven over the DevTools protocol.
//!
//! [`Browser::start`] runs `chromium --headless --remote-debugging-pipe`
//! with a throwaway profile. The protocol's messages are JSON, separated by
//! NUL bytes, on the browser's file descriptors 3 (to it) and 4 (from it);
//! a reader thread hands them over a channel, so every wait has a deadline.
//! Calls block: run them with `tokio::task::spawn_blocking` from async tests.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use command_fds::{CommandFdExt, FdMapping};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::Error;

/// How long one protocol call or page load may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium; killed when dropped.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    to: File,
    from: mpsc::Receiver<Value>,
    /// Events that arrived while waiting for something else.
    events: Vec<Value>,
    next_id: u64,
    _profile: TempDir,
}

/// A tab, attached to its own protocol session.
#[derive(Debug, Clone)]
pub struct Tab {
    session: String,
}

impl Browser {
    /// Starts Chromium (`$CHROMIUM`, else `chromium` on the `PATH`).
    pub fn start() -> Result<Self, Error> {
        let profile =
            tempfile::Builder::new().prefix("pp-chromium-").tempdir().map_err(Error::io("a browser profile"))?;
        // std::io::pipe() gives (reader, writer).
        let (theirs_in, ours_to) = std::io::pipe().map_err(Error::io("a pipe to the browser"))?;
        let (ours_from, theirs_out) = std::io::pipe().map_err(Error::io("a pipe from the browser"))?;
        let binary = std::env::var_os("CHROMIUM").unwrap_or_else(|| "chromium".into());
        let mut command = Command::new(binary);
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"])
            .args(["--remote-debugging-pipe", "--window-size=1400,1000"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
            .fd_mappings(vec![
                FdMapping { parent_fd: OwnedFd::from(theirs_in), child_fd: 3 },
                FdMapping { parent_fd: OwnedFd::from(theirs_out), child_fd: 4 },
            ])
            .map_err(|e| Error::Io { what: "mapping the browser's pipes".into(), source: std::io::Error::other(e) })?;
        let child = command.spawn().map_err(Error::io("starting chromium (Debian package chromium)"))?;
        // The command held the browser's ends; it is gone, so only the browser holds them now.
        drop(command);
        let (tx, from) = mpsc::channel();
        let mut reader = BufReader::new(File::from(OwnedFd::from(ours_from)));
        std::thread::spawn(move || loop {
            let mut message = Vec::new();
            match reader.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    message.pop();
                    if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let to = File::from(OwnedFd::from(ours_to));
        Ok(Self { child, to, from, events: Vec::new(), next_id: 1, _profile: profile })
    }

    /// Opens a new tab on `url` and waits until it has loaded.
    pub fn open(&mut self, url: &str) -> Result<Tab, Error> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
        let target = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = self.call(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true }))?;
        let tab = Tab { session: attached["sessionId"].as_str().unwrap_or_default().to_owned() };
        self.call(Some(&tab), "Page.enable", json!({}))?;
        self.load(&tab, |browser| browser.call(Some(&tab), "Page.navigate", json!({ "url": url })).map(drop))?;
        Ok(tab)
    }

    /// Runs `script` in the page and returns its value (JSON).
    pub fn evaluate(&mut self, tab: &Tab, script: &str) -> Result<Value, Error> {
        let params = json!({ "expression": script, "returnByValue": true, "awaitPromise": true });
        let result = self.call(Some(tab), "Runtime.evaluate", params)?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(self.failed("Runtime.evaluate", &exception.to_string()));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Runs `script`, which navigates (submits a form, follows a link), and
    /// waits until the next page has loaded.
    pub fn navigate_by(&mut self, tab: &Tab, script: &str) -> Result<(), Error> {
        self.load(tab, |browser| browser.evaluate(tab, script).map(drop))
    }

    /// The page's DOM as HTML, as the browser holds it now.
    pub fn html(&mut self, tab: &Tab) -> Result<String, Error> {
        let html = self.evaluate(tab, "document.documentElement.outerHTML")?;
        Ok(html.as_str().unwrap_or_default().to_owned())
    }

    /// Saves a PNG screenshot of the whole page to `path`.
    pub fn screenshot(&mut self, tab: &Tab, path: &Path) -> Result<(), Error> {
        let shot =
            self.call(Some(tab), "Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| self.failed("Page.captureScreenshot", &e.to_string()))?;
        std::fs::write(path, png).map_err(Error::io("writing the screenshot"))
    }

    /// Does `start` and waits for the tab's next `load` event.
    fn load(&mut self, tab: &Tab, start: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        self.events.retain(|e| !is_load(e, tab));
        start(self)?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.events.iter().position(|e| is_load(e, tab)) {
                self.events.remove(i);
                return Ok(());
            }
            let event = self.receive(deadline, "a page load")?;
            self.events.push(event);
        }
    }

    /// Sends one command and waits for its answer.
    fn call(&mut self, tab: Option<&Tab>, method: &str, params: Value) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(tab) = tab {
            message["sessionId"] = json!(tab.session);
        }
        let mut bytes = serde_json::to_vec(&message).map_err(|e| self.failed(method, &e.to_string()))?;
        bytes.push(0);
        self.to.write_all(&bytes).map_err(Error::io("writing to the browser"))?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let answer = self.receive(deadline, method)?;
            if answer["id"].as_u64() != Some(id) {
                self.events.push(answer);
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(self.failed(method, &error.to_string()));
            }
            return Ok(answer["result"].clone());
        }
    }

    fn receive(&mut self, deadline: Instant, what: &str) -> Result<Value, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.from
            .recv_timeout(left)
            .map_err(|_| Error::Timeout { what: format!("the browser: {what}"), after: TIMEOUT })
    }

    fn failed(&self, method: &str, why: &str) -> Error {
        Error::Io { what: format!("browser {method}"), source: std::io::Error::other(why.to_owned()) }
    }
}

fn is_load(event: &Value, tab: &Tab) -> bool {
    event["method"] == "Page.loadEventFired" && event["sessionId"] == tab.session.as_str()
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
