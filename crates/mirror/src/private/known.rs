//! What this node learnt about repositories: private or public, and when.
//!
//! A status is learnt from the upstream ([`STATUS_FOR`] then re-learnt when
//! the upstream answers) and kept while it cannot answer, however old. With
//! a state file, what was learnt survives a restart: one line per
//! repository, `private <registry> <repository>` or `public …`, rewritten
//! (to a temporary file, then renamed) when a status is new or changes.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// How long a learnt status is used before it is asked again.
pub(crate) const STATUS_FOR: Duration = Duration::from_secs(3600);
/// The most repositories remembered; past it, the longest unasked public ones go.
const MAX_KNOWN: usize = 10_000;

/// Whether a repository is readable without a pull's own credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// The upstream serves it to this node (anonymously, or with the node's own credentials).
    Public,
    /// The upstream refuses it to this node.
    Private,
}

/// A registry host and a repository in it.
pub(crate) type Repo = (String, String);

/// The statuses learnt, by registry and repository.
#[derive(Debug)]
pub(crate) struct Known {
    statuses: Mutex<HashMap<Repo, (Status, Instant)>>,
    file: Option<PathBuf>,
}

impl Known {
    /// The statuses kept in `file` (a missing or unreadable file: none), all due to be asked again.
    pub(crate) fn load(file: Option<PathBuf>) -> Self {
        let mut statuses = HashMap::new();
        if let Some(text) = file.as_deref().and_then(|f| std::fs::read_to_string(f).ok()) {
            let due = Instant::now().checked_sub(STATUS_FOR).unwrap_or_else(Instant::now);
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                let status = match parts.next() {
                    Some("private") => Status::Private,
                    Some("public") => Status::Public,
                    _ => continue,
                };
                if let (Some(registry), Some(repository), None) = (parts.next(), parts.next(), parts.next()) {
                    statuses.insert((registry.to_owned(), repository.to_owned()), (status, due));
                }
            }
        }
        Self { statuses: Mutex::new(statuses), file }
    }

    /// The status of `repo` and whether it was learnt within [`STATUS_FOR`].
    pub(crate) fn get(&self, repo: &Repo) -> Option<(Status, bool)> {
        let statuses = self.statuses.lock();
        statuses.get(repo).map(|(status, at)| (*status, at.elapsed() < STATUS_FOR))
    }

    /// Records that `repo` is `status` now.
    pub(crate) fn learnt(&self, repo: &Repo, status: Status) {
        let changed = {
            let mut statuses = self.statuses.lock();
            let before = statuses.insert(repo.clone(), (status, Instant::now())).map(|(s, _)| s);
            if statuses.len() > MAX_KNOWN {
                let oldest = statuses
                    .iter()
                    .filter(|(_, (s, _))| *s == Status::Public)
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(r, _)| r.clone());
                if let Some(oldest) = oldest {
                    statuses.remove(&oldest);
                }
            }
            before != Some(status)
        };
        if changed {
            if status == Status::Private {
                tracing::info!(registry = %repo.0, repository = %repo.1, "a private repository: pulls must prove access");
            }
            self.save();
        }
    }

    /// The private repositories, sorted.
    pub(crate) fn private(&self) -> Vec<Repo> {
        let statuses = self.statuses.lock();
        let mut out: Vec<Repo> =
            statuses.iter().filter(|(_, (s, _))| *s == Status::Private).map(|(r, _)| r.clone()).collect();
        out.sort();
        out
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let mut lines: Vec<String> = {
            let statuses = self.statuses.lock();
            statuses
                .iter()
                .map(|((registry, repository), (status, _))| {
                    let word = if *status == Status::Private { "private" } else { "public" };
                    format!("{word} {registry} {repository}\n")
                })
                .collect()
        };
        lines.sort();
        if let Err(error) = write(file, &lines.concat()) {
            tracing::warn!(file = %file.display(), %error, "could not keep what was learnt about repositories");
        }
    }
}

fn write(file: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = file.with_extension("new");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> Repo {
        ("registry.example:5000".to_owned(), name.to_owned())
    }

    #[test]
    fn statuses_survive_a_restart_due_to_be_asked_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("state").join("repositories");
        let known = Known::load(Some(file.clone()));
        known.learnt(&repo("team/app"), Status::Private);
        known.learnt(&repo("library/base"), Status::Public);
        assert_eq!(known.get(&repo("team/app")), Some((Status::Private, true)));
        assert_eq!(known.private(), vec![repo("team/app")]);

        let again = Known::load(Some(file.clone()));
        assert_eq!(again.get(&repo("team/app")), Some((Status::Private, false)), "kept, and due");
        assert_eq!(again.get(&repo("library/base")), Some((Status::Public, false)));
        assert_eq!(again.get(&repo("other")), None);
        again.learnt(&repo("team/app"), Status::Public);
        assert_eq!(Known::load(Some(file)).get(&repo("team/app")), Some((Status::Public, false)), "a change is kept");
    }

    #[test]
    fn a_garbled_state_file_loses_only_its_garbled_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("repositories");
        std::fs::write(&file, "private r a\nnonsense\nprivate r\npublic r b extra\npublic r c\n").unwrap_or_default();
        let known = Known::load(Some(file));
        assert_eq!(known.get(&("r".into(), "a".into())).map(|s| s.0), Some(Status::Private));
        assert_eq!(known.get(&("r".into(), "c".into())).map(|s| s.0), Some(Status::Public));
        assert_eq!(known.get(&("r".into(), "b".into())), None);
    }
}
