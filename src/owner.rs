//! Who owns a worker container: this process's owner token, whether a token's
//! process still lives, and `prune`, which removes the containers of owners
//! that are gone (only this user's, unless told otherwise).
//!
//! A token is written into the `wool.docker.owner` label at create; it is the
//! only state `prune` and discovery's owner filter read, so any process can
//! judge any container without talking to its owner.

use crate::engine::Engine;
use crate::error::Result;
use crate::labels;

/// This process as `uid/host/pid/start-time`: the user it runs as (so `prune`
/// touches only its user's workers); the host as `machine-id.boot-id.pid-namespace`,
/// unique across machines (a hostname is not: CI machines share them), boots and
/// containers; and its pid and start time, so `prune` can tell a dead owner from
/// a live one even when pids are reused.
pub fn token() -> String {
    let pid = std::process::id();
    format!(
        "{}/{}/{pid}/{}",
        current_uid().map(|u| u.to_string()).unwrap_or_default(),
        host_identity(),
        start_time(pid).unwrap_or_default()
    )
}

/// An owner token's parts. Tokens of wool-docker before the uid, `host/pid/start`
/// with the hostname as host, are `legacy`: no uid, and only this hostname's
/// owners can be judged.
struct OwnerToken<'a> {
    uid: Option<u32>,
    host: &'a str,
    pid: &'a str,
    start: &'a str,
    legacy: bool,
}

impl<'a> OwnerToken<'a> {
    fn parse(token: &'a str) -> Option<Self> {
        let parts: Vec<&str> = token.split('/').collect();
        match parts.as_slice() {
            [uid, host, pid, start] => Some(Self {
                uid: uid.parse().ok(),
                host,
                pid,
                start,
                legacy: false,
            }),
            [host, pid, start] => Some(Self {
                uid: None,
                host,
                pid,
                start,
                legacy: true,
            }),
            _ => None,
        }
    }

    /// Whether the owner runs here: its pid is one of this host's (and this
    /// pid namespace's), so it can be checked.
    fn here(&self) -> bool {
        if self.legacy {
            self.host == hostname()
        } else {
            self.host == host_identity()
        }
    }

    /// The owner's pid, if it is alive (its start time matches).
    fn live_pid(&self) -> Option<u32> {
        let pid = self.pid.parse::<u32>().ok()?;
        (start_time(pid)? == self.start).then_some(pid)
    }
}

/// Whether the process named by an owner token is alive. Owners on other hosts
/// (other machines, boots or pid namespaces) cannot be checked and count as alive.
pub fn alive(token: &str) -> bool {
    match OwnerToken::parse(token) {
        Some(owner) => !owner.here() || owner.live_pid().is_some(),
        None => false,
    }
}

/// The uid an owner token names. A legacy token names none; when its owner
/// still runs on this host, that process's uid is read instead.
fn owner_uid(token: &str) -> Option<u32> {
    let owner = OwnerToken::parse(token)?;
    if !owner.legacy {
        return owner.uid;
    }
    if !owner.here() {
        return None;
    }
    proc_uid(&owner.live_pid()?.to_string())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `machine-id.boot-id.pid-namespace`. The machine id tells machines apart
/// (falling back to the hostname where there is none, as in many containers);
/// the boot id, boots; the pid namespace, containers that share both (a pid
/// means something only in its own namespace).
fn host_identity() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let machine = read("/etc/machine-id")
        .or_else(|| read("/var/lib/dbus/machine-id"))
        .unwrap_or_else(hostname);
    let boot = read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    // `pid:[4026531836]`: the namespace's inode.
    let pidns: String = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| {
            p.to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect()
        })
        .unwrap_or_default();
    // '/' and '.' separate the token's parts.
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("{}.{}.{}", clean(&machine), clean(&boot), pidns)
}

/// Whether an owner token names this process's user (`any_user`: whoever).
pub fn same_user(token: Option<&str>, any_user: bool) -> bool {
    let me = current_uid();
    any_user || (me.is_some() && token.and_then(owner_uid) == me)
}

/// This process's real uid.
fn current_uid() -> Option<u32> {
    proc_uid("self")
}

/// The real uid of `/proc/<pid>`, from its `Uid:` line.
fn proc_uid(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// Whether `prune` removes a managed container with this owner label, for user
/// `me`: only a container of `me` (unless `any_user`), and then only if its
/// owner is gone (unless `all`). A container whose user cannot be told (a
/// legacy token of a gone owner, no owner label) is left but for `any_user`.
fn prunes(owner: Option<&str>, all: bool, any_user: bool, me: Option<u32>) -> bool {
    let users = any_user || (me.is_some() && owner.and_then(owner_uid) == me);
    users && (all || !owner.is_some_and(alive))
}

/// Remove this user's worker containers whose owner is gone (`all`: all of this
/// user's; `any_user`: of every user), among those that also carry every
/// `key=value` of `only`. Returns the names removed, and how many containers it
/// left because their user cannot be told (see `prunes`).
pub async fn prune(
    engine: &Engine,
    all: bool,
    any_user: bool,
    only: &[String],
) -> Result<(Vec<String>, usize)> {
    let mut terms = vec![format!("{}=true", labels::MANAGED)];
    terms.extend(only.iter().cloned());
    let managed = engine.list(&terms, true).await?;
    let me = current_uid();
    let mut removed = Vec::new();
    let mut unknown = 0usize;
    for c in managed {
        let owner = c.labels.get(labels::OWNER).map(String::as_str);
        if prunes(owner, all, any_user, me) {
            engine.remove(&c.id).await?;
            removed.push(c.name);
        } else if !any_user && owner.and_then(owner_uid).is_none() {
            unknown += 1;
        }
    }
    Ok((removed, unknown))
}

/// The owner token and `prune`'s choice.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_token_is_alive_and_a_dead_pid_is_not() {
        let token = token();
        assert!(alive(&token));
        let parts: Vec<&str> = token.split('/').collect();
        assert_eq!(parts.len(), 4, "{token}");
        let (uid, host, pid) = (parts[0], parts[1], parts[2]);
        assert!(!alive(&format!("{uid}/{host}/{pid}/1")));
        // Another machine, boot or pid namespace: not ours to judge.
        assert!(alive(&format!("{uid}/other.{host}/{pid}/1")));
        assert!(alive("some-other-host/1/1"));
        assert!(!alive("garbage"));
    }

    #[test]
    fn the_token_names_the_user_and_a_host_unique_across_machines_and_boots() {
        let token = token();
        let parts: Vec<&str> = token.split('/').collect();
        assert_eq!(parts[0].parse::<u32>().ok(), current_uid());
        let host: Vec<&str> = parts[1].split('.').collect();
        assert_eq!(host.len(), 3, "{token}");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(host[1], boot.trim());
        if let Ok(machine) = std::fs::read_to_string("/etc/machine-id") {
            if !machine.trim().is_empty() {
                assert_eq!(host[0], machine.trim());
            }
        }
        assert!(!host[2].is_empty() && host[2].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(owner_uid(&token), current_uid());
    }

    #[test]
    fn legacy_tokens_are_judged_by_hostname_and_their_user_read_while_alive() {
        let pid = std::process::id();
        let start = start_time(pid).unwrap();
        let live = format!("{}/{pid}/{start}", hostname());
        assert!(alive(&live));
        assert_eq!(owner_uid(&live), current_uid());
        let dead = format!("{}/{pid}/1", hostname());
        assert!(!alive(&dead));
        assert_eq!(owner_uid(&dead), None);
        assert!(alive("some-other-host/1/1"));
        assert_eq!(owner_uid("some-other-host/1/1"), None);
    }

    #[test]
    fn prune_touches_only_its_users_containers_unless_told() {
        let me = current_uid().unwrap();
        let other = me.wrapping_add(1);
        let mine_live = token();
        let parts: Vec<String> = mine_live.split('/').map(str::to_owned).collect();
        let mine_dead = format!("{me}/{}/{}/1", parts[1], parts[2]);
        let theirs_live = format!("{other}/other-machine.b.1/1/1");
        let theirs_dead = format!("{other}/{}/{}/1", parts[1], parts[2]);
        let legacy_dead = format!("{}/{}/1", hostname(), parts[2]);
        let cases: [(Option<&str>, [bool; 4]); 6] = [
            // (owner, [prune, --all, --any-user, --all --any-user])
            (Some(&mine_live), [false, true, false, true]),
            (Some(&mine_dead), [true, true, true, true]),
            (Some(&theirs_live), [false, false, false, true]),
            (Some(&theirs_dead), [false, false, true, true]),
            (Some(&legacy_dead), [false, false, true, true]),
            (None, [false, false, true, true]),
        ];
        for (owner, want) in cases {
            let got = [(false, false), (true, false), (false, true), (true, true)]
                .map(|(all, any)| prunes(owner, all, any, Some(me)));
            assert_eq!(got, want, "{owner:?}");
        }
    }
}
