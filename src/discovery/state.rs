//! Each container's discovery state, and the one pure function that moves it.
//!
//! The tracker turns everything it learns about a container (a listing or
//! inspect, a ready line, an Engine event, a re-list that no longer shows it)
//! into an [`Observation`], and [`step`] gives the container's next [`State`] and
//! the [`Delta`] to announce. Nothing here talks to the Engine: the tracker reads
//! the new state to decide which log watchers to start or stop and what to
//! inspect.

use std::collections::BTreeMap;

use crate::labels::WorkerRecord;
use crate::ready::{Published, Ready};

/// What a container's server said when it became ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// The wool version it reported (`None`: the label's stands).
    pub version: Option<String>,
    /// Its pid inside the container.
    pub pid: Option<i64>,
    /// The worker's metadata as its ready line stated it (a claimed standby
    /// container's only record of it); `None` for a passing healthcheck.
    pub published: Option<Published>,
}

impl From<&Ready> for Served {
    fn from(ready: &Ready) -> Self {
        Served {
            version: ready.version.clone(),
            pid: ready.pid,
            published: ready.published.clone(),
        }
    }
}

/// Where a container is in its life, as far as serving goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Running; its server has not said that it serves (its output is watched).
    Starting,
    /// Running, and its server said it serves (or its healthcheck passed).
    Serving(Served),
    /// Running, but its healthcheck fails; kept: what it said if it had served,
    /// so a passing check brings it back without a new ready line.
    Unhealthy(Option<Served>),
    /// Frozen by `docker pause`; unpausing resumes the same server, so what it
    /// had said (and its health) is kept for then.
    Paused {
        served: Option<Served>,
        unhealthy: bool,
    },
    /// Sent a signal that stops it (`docker stop`, `docker kill`) at `since_ns`
    /// (the Engine's clock), and not yet seen exiting. It may still run, and
    /// serve, for a while (the worker image serves through its deregistration
    /// delay): a listing that shows this run still running does not bring it
    /// back. Only a run started after the signal does.
    Stopping { since_ns: i64 },
    /// Not running: created, exited, or dead. What a run said does not count
    /// for the next one, so nothing is kept. `since_ns`: when an event said
    /// this run ended (its stop signal, else its exit); a listing answered a
    /// moment late can still show the run running, and only a run started
    /// after it counts. `None` when only a listing or inspect said so.
    Stopped { since_ns: Option<i64> },
}

impl Phase {
    /// The phase of a running container that said `served` and whose healthcheck
    /// fails or not.
    fn awake(served: Option<Served>, unhealthy: bool) -> Phase {
        match (served, unhealthy) {
            (served, true) => Phase::Unhealthy(served),
            (Some(served), false) => Phase::Serving(served),
            (None, false) => Phase::Starting,
        }
    }

    /// When an event said its run ended: listings of a run started before then
    /// are stale.
    pub fn ended_ns(&self) -> Option<i64> {
        match self {
            Phase::Stopping { since_ns } => Some(*since_ns),
            Phase::Stopped { since_ns } => *since_ns,
            _ => None,
        }
    }

    /// A running or paused container's (served, unhealthy); `None` when stopped.
    fn parts(&self) -> Option<(Option<&Served>, bool)> {
        match self {
            Phase::Starting => Some((None, false)),
            Phase::Serving(s) => Some((Some(s), false)),
            Phase::Unhealthy(s) => Some((s.as_ref(), true)),
            Phase::Paused { served, unhealthy } => Some((served.as_ref(), *unhealthy)),
            Phase::Stopping { .. } | Phase::Stopped { .. } => None,
        }
    }

    /// What its current run's server said, if it said it.
    pub fn served(&self) -> Option<&Served> {
        self.parts().and_then(|(served, _)| served)
    }

    /// Running without a word from its server yet: the one phase whose output
    /// is worth following for a ready line.
    pub fn awaits_ready(&self) -> bool {
        matches!(self, Phase::Starting | Phase::Unhealthy(None))
    }

    /// The same phase with `f` applied to (served, unhealthy) of a running or
    /// paused container; a stopping or stopped one hears nothing until it
    /// starts again.
    fn with(&self, f: impl FnOnce(Option<Served>, bool) -> (Option<Served>, bool)) -> Phase {
        let Some((served, unhealthy)) = self.parts() else {
            return self.clone();
        };
        let (served, unhealthy) = f(served.cloned(), unhealthy);
        match self {
            Phase::Paused { .. } => Phase::Paused { served, unhealthy },
            _ => Phase::awake(served, unhealthy),
        }
    }
}

/// One tracked container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Its labels' record; `None` until inspected after a start, or when it
    /// has no address on the scoped network or its labels are malformed.
    pub record: Option<WorkerRecord>,
    pub phase: Phase,
}

impl State {
    /// The record to announce, if the container serves: its labels, with the
    /// version and pid its server reported. A standby container serves only
    /// once its ready line stated the worker it became (its labels could not),
    /// so a parked one, or one whose healthcheck alone passes, is no worker.
    pub fn announce(&self) -> Option<WorkerRecord> {
        let (Some(record), Phase::Serving(served)) = (&self.record, &self.phase) else {
            return None;
        };
        as_served(record, served)
    }
}

/// `record` (from labels) as its server said it serves: with the version and
/// pid it reported, and for a standby container the worker its ready line
/// states (`None` without one).
pub fn as_served(record: &WorkerRecord, served: &Served) -> Option<WorkerRecord> {
    let mut record = record.clone();
    if record.standby {
        let p = served.published.as_ref()?;
        record.uid = p.uid.clone();
        record.tags = p.tags.clone();
        record.extra = p.extra.clone();
        record.secure = p.secure;
        record.identity = p.identity.clone();
        record.options = p.options.clone();
    }
    if let Some(version) = &served.version {
        record.version = version.clone();
    }
    if let Some(pid) = served.pid {
        record.pid = pid;
    }
    Some(record)
}

/// A container's run state as a listing or inspect reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Running,
    Paused,
    /// `created`, `restarting`, `exited`, `dead`, …
    Stopped,
}

impl Run {
    pub fn of(state: &str) -> Run {
        match state {
            "running" => Run::Running,
            "paused" => Run::Paused,
            _ => Run::Stopped,
        }
    }
}

/// Its healthcheck as reported (`starting` tells nothing yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unreported,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn of(health: Option<&str>) -> Health {
        match health {
            Some("healthy") => Health::Healthy,
            Some("unhealthy") => Health::Unhealthy,
            _ => Health::Unreported,
        }
    }
}

/// What the current run's output says, as far as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logs {
    /// Not read (a periodic re-list reads only containers it had not heard
    /// of, a listing's read can miss its bound, and an inspect reads none):
    /// keep what is known.
    Unread,
    /// Read: this run printed no ready line (yet).
    NoReadyLine,
    /// This run's ready line, or the word of a `DockerWorker` of this process.
    Ready(Served),
}

/// A listing's or inspect's description of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its record, if its labels parse and it has an address in scope.
    pub record: Option<WorkerRecord>,
    pub run: Run,
    pub health: Health,
    pub logs: Logs,
    /// When its current run started (the Engine's clock), if an inspect told.
    pub started_ns: Option<i64>,
}

/// An Engine event, as far as discovery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `start`.
    Start,
    /// `pause`.
    Pause,
    /// `unpause`.
    Unpause,
    /// A `kill` with a signal that stops it, sent at `at_ns` (`docker stop`
    /// sends one too): it may serve on until it exits.
    Kill { at_ns: i64 },
    /// `die`, `stop` or `oom` at `at_ns`: it exited, or is exiting.
    Stop { at_ns: i64 },
    /// `health_status: healthy` / `unhealthy`.
    Health { healthy: bool },
    /// `connect`, `disconnect` or `rename`: its record may have changed; only
    /// an inspect tells how, so the state stays until that arrives.
    Moved,
}

impl Event {
    /// Read an event's action (and a `kill`'s signal and time); `None`: not one
    /// that matters, and `destroy` is [`Observation::Gone`].
    pub fn parse(action: &str, signal: Option<&str>, at_ns: i64) -> Option<Observation> {
        let event = match action {
            "start" => Event::Start,
            "pause" => Event::Pause,
            "unpause" => Event::Unpause,
            "stop" | "die" | "oom" => Event::Stop { at_ns },
            "kill" if stops(signal) => Event::Kill { at_ns },
            "connect" | "disconnect" | "rename" => Event::Moved,
            "destroy" => return Some(Observation::Gone),
            a if a.starts_with("health_status") => Event::Health {
                healthy: a.ends_with(" healthy") || a.ends_with(":healthy"),
            },
            _ => return None,
        };
        Some(Observation::Event(event))
    }
}

/// Whether a `kill` with this signal stops the container (Docker reports numbers).
fn stops(signal: Option<&str>) -> bool {
    matches!(
        signal,
        None | Some("2" | "9" | "15" | "SIGINT" | "SIGKILL" | "SIGTERM" | "INT" | "KILL" | "TERM")
    )
}

/// Everything the tracker can learn about one container.
// One observation lives for one step: boxing `Seen` would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A listing or inspect described it.
    Seen(Seen),
    /// Its server said it serves: a ready line, or a `DockerWorker` of this process.
    Ready(Served),
    Event(Event),
    /// `destroy`, or a listing or inspect that no longer shows it.
    Gone,
}

/// What to announce after a step, in the container's own terms (the tracker
/// still applies the one rule that spans containers: distinct uids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    None,
    Added(WorkerRecord),
    Updated(WorkerRecord),
    Dropped(WorkerRecord),
}

impl Delta {
    fn between(before: Option<WorkerRecord>, after: Option<WorkerRecord>) -> Delta {
        match (before, after) {
            (None, Some(r)) => Delta::Added(r),
            (Some(r), None) => Delta::Dropped(r),
            (Some(old), Some(r)) if old != r => Delta::Updated(r),
            _ => Delta::None,
        }
    }
}

/// The transition: a container's next state (`None`: forgotten) and what to
/// announce, from its state (`None`: unknown) and an observation.
pub fn step(state: Option<&State>, obs: &Observation) -> (Option<State>, Delta) {
    let next = next(state, obs);
    let delta = Delta::between(
        state.and_then(State::announce),
        next.as_ref().and_then(State::announce),
    );
    (next, delta)
}

fn next(state: Option<&State>, obs: &Observation) -> Option<State> {
    match obs {
        Observation::Gone => None,
        Observation::Seen(seen) => Some(from_seen(state, seen)),
        Observation::Event(Event::Start) => match state {
            // A start we already saw through a listing keeps what we know.
            Some(s)
                if !matches!(
                    s.phase,
                    Phase::Stopping { .. } | Phase::Stopped { .. } | Phase::Paused { .. }
                ) =>
            {
                Some(s.clone())
            }
            // A new run: its address is not known until inspected (it can change
            // across a restart), and it must print its ready line again.
            _ => Some(State {
                record: None,
                phase: Phase::Starting,
            }),
        },
        // Nothing else creates a state: only containers we track matter (a new
        // one's start event, or a listing, comes first).
        Observation::Ready(served) => {
            let state = state?;
            let phase = state
                .phase
                .with(|_, unhealthy| (Some(served.clone()), unhealthy));
            Some(State {
                record: state.record.clone(),
                phase,
            })
        }
        Observation::Event(event) => {
            let state = state?;
            let phase = match (event, &state.phase) {
                (Event::Pause, Phase::Starting | Phase::Serving(_) | Phase::Unhealthy(_)) => {
                    Phase::Paused {
                        served: state.phase.served().cloned(),
                        unhealthy: matches!(state.phase, Phase::Unhealthy(_)),
                    }
                }
                (Event::Unpause, Phase::Paused { served, unhealthy }) => {
                    Phase::awake(served.clone(), *unhealthy)
                }
                // The earliest word of the run's end is the fence: any time
                // between its start and the next run's start would do.
                (Event::Stop { at_ns }, phase) => Phase::Stopped {
                    since_ns: phase.ended_ns().or(Some(*at_ns)),
                },
                // A second signal to the same run (the kill after `docker stop`'s
                // timeout) changes nothing.
                (Event::Kill { .. }, Phase::Stopping { .. } | Phase::Stopped { .. }) => {
                    state.phase.clone()
                }
                (Event::Kill { at_ns }, _) => Phase::Stopping { since_ns: *at_ns },
                // A passing check proves the server up even without a ready line.
                (Event::Health { healthy }, phase) => phase.with(|served, _| {
                    let served = match healthy {
                        true => Some(served.unwrap_or_default()),
                        false => served,
                    };
                    (served, !healthy)
                }),
                (_, phase) => phase.clone(),
            };
            Some(State {
                record: state.record.clone(),
                phase,
            })
        }
    }
}

/// A listing or inspect is the truth about what it shows; readiness that it
/// did not read is kept from what the container's current run already said.
/// But a run an event said had ended does not come back, however it looks: a
/// listing can be answered between the signal and the exit, or a moment after
/// the exit. Only a run started after that event counts (a restart's `start`
/// event moves it anyway).
fn from_seen(state: Option<&State>, seen: &Seen) -> State {
    if let Some(ended) = state.and_then(|s| s.phase.ended_ns()) {
        let newer_run = seen.started_ns.is_some_and(|started| started > ended);
        if !newer_run {
            let phase = match (&state.map(|s| &s.phase), seen.run) {
                (Some(Phase::Stopping { .. }), Run::Running | Run::Paused) => {
                    Phase::Stopping { since_ns: ended }
                }
                _ => Phase::Stopped {
                    since_ns: Some(ended),
                },
            };
            return State {
                record: seen.record.clone(),
                phase,
            };
        }
    }
    let served = match &seen.logs {
        Logs::Ready(served) => Some(served.clone()),
        Logs::NoReadyLine => None,
        Logs::Unread => state.and_then(|s| s.phase.served()).cloned(),
    };
    let served = match seen.health {
        Health::Healthy => Some(served.unwrap_or_default()),
        _ => served,
    };
    let unhealthy = seen.health == Health::Unhealthy;
    let phase = match seen.run {
        Run::Running => Phase::awake(served, unhealthy),
        Run::Paused => Phase::Paused { served, unhealthy },
        Run::Stopped => Phase::Stopped { since_ns: None },
    };
    State {
        record: seen.record.clone(),
        phase,
    }
}

/// Every tracked container's state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Book {
    states: BTreeMap<String, State>,
}

impl Book {
    pub fn get(&self, id: &str) -> Option<&State> {
        self.states.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.states.contains_key(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &State)> {
        self.states.iter()
    }

    /// Apply one observation of one container.
    pub fn observe(&mut self, id: &str, obs: &Observation) -> Delta {
        let (next, delta) = step(self.states.get(id), obs);
        match next {
            Some(state) => self.states.insert(id.to_owned(), state),
            None => self.states.remove(id),
        };
        delta
    }

    /// Apply a full listing: each listed container is `Seen`, every other one
    /// `Gone`. The deltas are the listed ones' in order, then the vanished ones'.
    pub fn relist(&mut self, listing: &[(String, Seen)]) -> Vec<(String, Delta)> {
        let mut deltas = Vec::with_capacity(listing.len());
        for (id, seen) in listing {
            deltas.push((
                id.clone(),
                self.observe(id, &Observation::Seen(seen.clone())),
            ));
        }
        let listed: std::collections::HashSet<&String> = listing.iter().map(|(id, _)| id).collect();
        let gone: Vec<String> = self
            .states
            .keys()
            .filter(|id| !listed.contains(id))
            .cloned()
            .collect();
        for id in gone {
            let delta = self.observe(&id, &Observation::Gone);
            deltas.push((id, delta));
        }
        deltas
    }

    /// Every container that serves, with the record to announce.
    #[cfg(test)]
    pub fn announced(&self) -> BTreeMap<String, WorkerRecord> {
        self.states
            .iter()
            .filter_map(|(id, s)| Some((id.clone(), s.announce()?)))
            .collect()
    }
}
