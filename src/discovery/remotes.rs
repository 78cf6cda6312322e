//! The tasks on other Swarm nodes a tracker announces: those a poll of the
//! manager finds serving (`remote`), and this process's own Swarm workers,
//! announced from the registry the moment they serve. Pure: the time and
//! what the registry says are given.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::state::Delta;
use crate::labels::WorkerRecord;

/// How long this process's own Swarm worker on another node stays announced
/// without a poll that finds it serving (the probe takes well under a second
/// where the pool can reach it at all).
pub(super) const OWN_REMOTE_GRACE: Duration = Duration::from_secs(10);

/// The remote tasks announced, and what keeps or withholds this process's own.
#[derive(Default)]
pub(super) struct Remotes {
    /// Announced, by container id.
    announced: HashMap<String, WorkerRecord>,
    /// This process's Swarm workers on other nodes announced from the
    /// registry, and when, until a poll confirms them.
    own: HashMap<String, Instant>,
    /// This process's Swarm workers on other nodes being stopped, until polls
    /// no longer find them.
    withdrawn: HashSet<String>,
}

impl Remotes {
    /// A Swarm worker of this process serves on another node: announce it at
    /// once, as a poll would once it probed it (`None`: it already is). Until
    /// a poll finds it serving (for `OWN_REMOTE_GRACE` at most), polls keep it.
    pub(super) fn own(&mut self, id: &str, record: WorkerRecord, now: Instant) -> Option<Delta> {
        if self.announced.contains_key(id) {
            return None;
        }
        self.own.insert(id.to_owned(), now);
        self.announced.insert(id.to_owned(), record.clone());
        Some(Delta::Added(record))
    }

    /// This process's Swarm worker on another node is being stopped or is
    /// gone: drop it now, as an event would drop a container.
    pub(super) fn own_gone(&mut self, id: &str) -> Option<Delta> {
        self.own.remove(id);
        // Polls may still find its task running while it drains.
        self.withdrawn.insert(id.to_owned());
        self.announced.remove(id).map(Delta::Dropped)
    }

    /// A poll found tasks `found` running, of which `desired` serve: the
    /// exact difference to announce. `serving` tells whether the registry
    /// still holds one of this process's own workers serving.
    pub(super) fn polled(
        &mut self,
        found: &HashSet<&str>,
        mut desired: HashMap<String, WorkerRecord>,
        serving: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Vec<(String, Delta)> {
        // This process's own workers being stopped stay dropped; polls that
        // no longer find them end that.
        self.withdrawn.retain(|id| found.contains(id.as_str()));
        desired.retain(|id, _| !self.withdrawn.contains(id));
        // This process's own tasks, announced before a poll could confirm
        // them, stay until one does (or their grace ends).
        self.own
            .retain(|id, at| !desired.contains_key(id) && now - *at < OWN_REMOTE_GRACE);
        for id in self.own.keys() {
            if let Some(record) = self.announced.get(id).filter(|_| serving(id)) {
                desired.insert(id.clone(), record.clone());
            }
        }
        let mut deltas = Vec::new();
        for (id, old) in &self.announced {
            if !desired.contains_key(id) {
                deltas.push((id.clone(), Delta::Dropped(old.clone())));
            }
        }
        for (id, record) in &desired {
            match self.announced.get(id) {
                Some(old) if old == record => {}
                Some(_) => deltas.push((id.clone(), Delta::Updated(record.clone()))),
                None => deltas.push((id.clone(), Delta::Added(record.clone()))),
            }
        }
        self.announced = desired;
        deltas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, pid: i64) -> WorkerRecord {
        WorkerRecord {
            pid,
            ..WorkerRecord::for_test(name, "10.0.9.1:48800", name, name)
        }
    }

    /// Deltas as `+id`, `~id`, `-id`, sorted.
    fn said(deltas: &[(String, Delta)]) -> Vec<String> {
        let mut out: Vec<String> = deltas
            .iter()
            .map(|(id, d)| match d {
                Delta::Added(_) => format!("+{id}"),
                Delta::Updated(_) => format!("~{id}"),
                Delta::Dropped(_) => format!("-{id}"),
                Delta::None => format!("={id}"),
            })
            .collect();
        out.sort();
        out
    }

    fn poll(
        r: &mut Remotes,
        found: &[&str],
        serving: &[(&str, i64)],
        own_serving: bool,
        now: Instant,
    ) -> Vec<String> {
        let found: HashSet<&str> = found.iter().copied().collect();
        let desired = serving
            .iter()
            .map(|(id, pid)| (id.to_string(), record(id, *pid)))
            .collect();
        said(&r.polled(&found, desired, |_| own_serving, now))
    }

    #[test]
    fn polls_announce_exactly_the_difference() {
        let mut r = Remotes::default();
        let t0 = Instant::now();
        assert_eq!(
            poll(&mut r, &["a", "b"], &[("a", 1), ("b", 1)], false, t0),
            ["+a", "+b"]
        );
        assert_eq!(
            poll(&mut r, &["a", "b"], &[("a", 1), ("b", 1)], false, t0),
            Vec::<String>::new()
        );
        assert_eq!(
            poll(&mut r, &["a", "c"], &[("a", 2), ("c", 1)], false, t0),
            ["+c", "-b", "~a"]
        );
    }

    #[test]
    fn own_workers_are_kept_until_a_poll_finds_them_or_their_grace_ends() {
        let mut r = Remotes::default();
        let t0 = Instant::now();
        assert!(matches!(
            r.own("o", record("o", 1), t0),
            Some(Delta::Added(_))
        ));
        assert_eq!(r.own("o", record("o", 1), t0), None);
        // Polls that do not find it yet keep it while the registry says it serves.
        assert!(poll(&mut r, &[], &[], true, t0).is_empty());
        // Not serving any more: dropped.
        assert_eq!(poll(&mut r, &[], &[], false, t0), ["-o"]);
        let mut r = Remotes::default();
        r.own("o", record("o", 1), t0);
        assert!(poll(&mut r, &[], &[], true, t0 + OWN_REMOTE_GRACE / 2).is_empty());
        assert_eq!(poll(&mut r, &[], &[], true, t0 + OWN_REMOTE_GRACE), ["-o"]);
        // A poll that found it confirms it: from then on, polls alone decide.
        let mut r = Remotes::default();
        r.own("o", record("o", 1), t0);
        assert!(poll(&mut r, &["o"], &[("o", 1)], true, t0).is_empty());
        assert_eq!(poll(&mut r, &[], &[], true, t0), ["-o"]);
    }

    #[test]
    fn an_own_worker_gone_stays_dropped_while_polls_still_find_it() {
        let mut r = Remotes::default();
        let t0 = Instant::now();
        r.own("o", record("o", 1), t0);
        assert!(matches!(r.own_gone("o"), Some(Delta::Dropped(_))));
        assert_eq!(r.own_gone("o"), None);
        // Its task drains: polls still find it serving, and it stays dropped.
        assert!(poll(&mut r, &["o"], &[("o", 1)], false, t0).is_empty());
        // Once a poll no longer finds it, a task by that id is news again.
        assert!(poll(&mut r, &[], &[], false, t0).is_empty());
        assert_eq!(poll(&mut r, &["o"], &[("o", 1)], false, t0), ["+o"]);
    }
}
