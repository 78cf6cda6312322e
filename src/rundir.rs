//! Private run directories: where the owner keeps sockets (the worker feed's,
//! an `ssh://` Engine's forward). Each is a fresh 0700 directory of this user,
//! in `$XDG_RUNTIME_DIR` when that is private, else the temp directory, named
//! `<prefix><pid>-<128 random bits>`: nobody can make it first, and one whose
//! process is gone (a `SIGKILL`ed owner) is recognised and removed.

use std::io;
use std::path::{Path, PathBuf};

/// Names tried before giving up: with 128 random bits a second one is only
/// needed if someone else made the first.
const ATTEMPTS: usize = 16;

/// One kind of run directory, by its name prefix.
#[derive(Debug, Clone, Copy)]
pub struct RunDirs {
    prefix: &'static str,
}

/// The worker feed's directories.
pub const FEED: RunDirs = RunDirs {
    prefix: "wool-docker-feed-",
};
/// The directories of `ssh://` Engines' forwarded sockets.
pub const SSH: RunDirs = RunDirs {
    prefix: "wool-docker-ssh-",
};

impl RunDirs {
    /// A new directory of this kind, after removing those whose process is gone.
    pub fn create(&self) -> io::Result<PathBuf> {
        self.remove_stale();
        private_dir(&base_dir(), || self.random_name())
    }

    /// Remove this process's directories of this kind (at exit: nothing
    /// serves them then).
    pub fn remove_own(&self) {
        self.remove_where(|pid| pid == std::process::id());
    }

    /// Remove this user's directories of this kind whose process is gone.
    pub fn remove_stale(&self) {
        self.remove_where(|pid| !Path::new(&format!("/proc/{pid}")).exists());
    }

    fn remove_where(&self, remove: impl Fn(u32) -> bool) {
        let Ok(entries) = std::fs::read_dir(base_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| self.pid_of(n)) else {
                continue;
            };
            // Only directories of ours; remove_dir_all does not follow symlinks.
            if remove(pid) && is_private(&entry.path()).unwrap_or(false) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// A fresh name: the owner's pid, and 128 bits from the OS.
    fn random_name(&self) -> io::Result<String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(io::Error::other)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{}{}-{hex}", self.prefix, std::process::id()))
    }

    /// The pid in a name of this kind (`<prefix><pid>` or `<prefix><pid>-<random>`).
    fn pid_of(&self, name: &str) -> Option<u32> {
        name.strip_prefix(self.prefix)?
            .split('-')
            .next()?
            .parse()
            .ok()
    }
}

/// `$XDG_RUNTIME_DIR` when it is a directory of ours that only we may enter, else
/// the temp directory.
fn base_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if is_private(&xdg).unwrap_or(false) {
            return xdg;
        }
    }
    std::env::temp_dir()
}

/// This process's user id.
pub fn own_uid() -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// Whether `path` is a directory of this user that only this user may enter.
pub fn is_private(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok(meta.is_dir() && meta.uid() == own_uid()? && meta.mode() & 0o077 == 0)
}

/// Create a fresh 0700 directory in `base` under a name from `name`. Creation
/// fails if anything is there already (mkdir is exclusive and follows no
/// symlink): then the next name is tried, so nothing planted under any name,
/// by anyone, can deny service or be used by us.
fn private_dir(base: &Path, mut name: impl FnMut() -> io::Result<String>) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    for _ in 0..ATTEMPTS {
        let dir = base.join(name()?);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                // The umask may only have narrowed the mode; make it exact.
                set_mode(&dir, 0o700)?;
                if !is_private(&dir)? {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "the new directory is not one only this user may enter",
                    ));
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{ATTEMPTS} fresh names in a row were taken"),
    ))
}

/// Set `path`'s permission bits.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory standing in for the temp directory.
    fn scratch() -> PathBuf {
        let name = FEED.random_name().unwrap();
        let base = std::env::temp_dir().join(format!(
            "wool-docker-rundir-test-{}",
            name.rsplit('-').next().unwrap()
        ));
        std::fs::create_dir(&base).unwrap();
        base
    }

    #[test]
    fn a_planted_name_is_skipped_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let base = scratch();
        // Whatever is at the names tried first: a directory open to all, a
        // private one of ours, a symlink to one, a file.
        let planted = ["open", "ours", "link", "file"];
        std::fs::create_dir(base.join("open")).unwrap();
        set_mode(&base.join("open"), 0o777).unwrap();
        std::fs::create_dir(base.join("ours")).unwrap();
        std::os::unix::fs::symlink(base.join("ours"), base.join("link")).unwrap();
        std::fs::write(base.join("file"), b"").unwrap();
        let mut names = planted
            .iter()
            .map(|n| n.to_string())
            .chain(["fresh".to_owned()]);

        let dir = private_dir(&base, || Ok(names.next().unwrap())).unwrap();

        assert_eq!(dir, base.join("fresh"));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(std::fs::read_dir(base.join("ours")).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn names_taken_every_time_give_up_with_an_error() {
        let base = scratch();
        std::fs::create_dir(base.join("taken")).unwrap();
        let mut tries = 0;
        let result = private_dir(&base, || {
            tries += 1;
            Ok("taken".to_owned())
        });
        assert!(result.is_err());
        assert_eq!(tries, ATTEMPTS);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn directory_names_are_random_and_carry_the_pid() {
        let (a, b) = (FEED.random_name().unwrap(), FEED.random_name().unwrap());
        assert_ne!(a, b);
        assert_eq!(FEED.pid_of(&a), Some(std::process::id()));
        assert_eq!(
            a.len(),
            FEED.prefix.len() + std::process::id().to_string().len() + 33
        );
        // Names of earlier versions (the pid alone) are still cleaned up.
        assert_eq!(FEED.pid_of("wool-docker-feed-42"), Some(42));
        assert_eq!(FEED.pid_of("wool-docker-feed-x-1"), None);
        assert_eq!(FEED.pid_of("other-42"), None);
        assert_eq!(SSH.pid_of("wool-docker-ssh-42-ab"), Some(42));
        assert_eq!(SSH.pid_of("wool-docker-feed-42-ab"), None);
    }
}
