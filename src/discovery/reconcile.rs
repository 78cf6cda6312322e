//! The tracker's decisions, as pure steps: what an event about one container
//! asks for ([`event_plan`]), what a listing reads and what it corrected
//! ([`Relist`], [`corrected`], [`reannounce`]), and which corrections of the
//! periodic re-list no event explained ([`Suspects`]). The tracker performs
//! them against the Engine; here they read no clock and touch no Engine.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::follow::Follow;
use super::state::{self, Book, Delta, Event, Logs, Observation, Phase, Run, Seen, Served, State};
use crate::engine::ContainerInfo;
use crate::ready::Ready;

/// How long after a periodic re-list an event about a container it corrected
/// still counts as the explanation (it was on its way while the listing ran).
pub(super) const IN_FLIGHT: Duration = Duration::from_secs(2);

/// What a listing follows: a gap (the first listing, or a broken stream),
/// after which nothing learned before counts as proof of serving; or a healthy
/// stream (the periodic re-list), whose events told of every restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Since {
    Gap,
    Stream,
}

/// One thing the tracker does about an event of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Do {
    /// Follow its output for the ready line, from the event's time.
    Follow,
    /// Step its machine with the event and announce the difference.
    Apply,
    /// Inspect it and step its machine with what the inspect shows.
    Refresh,
}

/// What an event (`obs`) about a container asks for, in order; `tracked`:
/// whether the tracker knows the container.
pub(super) fn event_plan(obs: &Observation, tracked: bool) -> &'static [Do] {
    match (obs, tracked) {
        // A new container: follow its output while the inspect runs, not
        // after. (A restart's follower starts from its StartedAt, once the
        // inspect read it.)
        (Observation::Event(Event::Start), false) => &[Do::Follow, Do::Apply, Do::Refresh],
        (Observation::Event(Event::Start), true) => &[Do::Apply, Do::Refresh],
        // Only containers we track: a new container's connect comes while it
        // is starting, when an inspect would wait for the start to finish; its
        // start event follows anyway.
        (Observation::Event(Event::Moved), true) => &[Do::Refresh],
        (Observation::Event(Event::Moved), false) => &[],
        (Observation::Event(Event::Health { .. }), false) => &[Do::Refresh, Do::Apply],
        _ => &[Do::Apply],
    }
}

/// What a listing read of each container's logs: id → (when its run
/// started, the earliest stamp of its output, what its ready line said), as
/// `read_ready_all` answers.
pub(super) type Learned = HashMap<String, (i64, i64, Option<Ready>)>;

/// One listing's plan: which of its containers it is the first word on, and
/// which must have their readiness read from their logs.
pub(super) struct Relist {
    since: Since,
    /// Listed containers the book has not heard of.
    untold: HashSet<String>,
    /// Listed containers whose readiness their logs must tell (`needs_logs`).
    wanted: Vec<String>,
}

impl Relist {
    /// The plan for `list` (the running containers in scope) against `book`.
    pub(super) fn new(
        list: &[ContainerInfo],
        book: &Book,
        since: Since,
        needs_logs: impl Fn(&ContainerInfo) -> bool,
    ) -> Relist {
        // The periodic re-list reads only the containers whose start event it
        // missed: the followers already watch the others for ready lines, and
        // a restart comes with a start event. With a healthy stream that is
        // none, and the re-list is one list call.
        let untold = list
            .iter()
            .filter(|c| !book.contains(&c.id))
            .map(|c| c.id.clone())
            .collect();
        let wanted = list
            .iter()
            .filter(|c| needs_logs(c))
            .map(|c| c.id.clone())
            .collect();
        Relist {
            since,
            untold,
            wanted,
        }
    }

    /// Whether this listing is the first word on the container's run.
    fn fresh(&self, id: &str) -> bool {
        self.since == Since::Gap || self.untold.contains(id)
    }

    /// The logs to read now, together, in one bounded step.
    pub(super) fn read_now(&self) -> Vec<String> {
        self.wanted
            .iter()
            .filter(|id| self.fresh(id))
            .cloned()
            .collect()
    }

    /// The logs to read in the background: what could not be read in time
    /// and, after a healthy stream, the runs an event said had ended, to tell
    /// a later run.
    pub(super) fn read_later(&self, learned: &Learned, book: &Book) -> Vec<String> {
        let ended = |id: &str| book.get(id).is_some_and(|s| s.phase.ended_ns().is_some());
        self.wanted
            .iter()
            .filter(|id| !learned.contains_key(*id) && (self.fresh(id) || ended(id)))
            .cloned()
            .collect()
    }

    /// The listing as observations (`seen` describes one container), and
    /// from where each one's ready-line follower may start.
    pub(super) fn observe(
        &self,
        list: &[ContainerInfo],
        mut learned: Learned,
        mut seen: impl FnMut(&ContainerInfo, Logs, Option<i64>) -> Seen,
    ) -> (Vec<(String, Seen)>, HashMap<String, Follow>) {
        let mut listing = Vec::with_capacity(list.len());
        let mut follows = HashMap::with_capacity(list.len());
        for c in list {
            // Logs not read in time (or not read at all) leave readiness as known.
            let (started_ns, from_ns, logs) = match learned.remove(&c.id) {
                Some((started, from, Some(ready))) => {
                    (started, from, Logs::Ready(Served::from(&ready)))
                }
                Some((started, from, None)) => (started, from, Logs::NoReadyLine),
                None => (0, 0, Logs::Unread),
            };
            let run_started = Some(started_ns).filter(|ns| *ns > 0);
            listing.push((c.id.clone(), seen(c, logs, run_started)));
            let follow = match (self.fresh(&c.id), run_started) {
                (false, _) => Follow::Resume,
                (true, Some(_)) => Follow::From(from_ns),
                (true, None) => Follow::Run,
            };
            follows.insert(c.id.clone(), follow);
        }
        (listing, follows)
    }
}

/// The containers whose state `listing` corrects in `book` (appeared,
/// vanished or changed), except those whose only news is a ready line read
/// first (the ready-line follower races it, not the event stream).
pub(super) fn corrected(book: &Book, listing: &[(String, Seen)]) -> Vec<String> {
    let mut corrected = Vec::new();
    for (id, seen) in listing {
        let known = book.get(id);
        let read_first =
            matches!(seen.logs, Logs::Ready(_)) && known.is_some_and(|s| s.phase.awaits_ready());
        let changes = match known {
            None => seen.run != Run::Stopped,
            Some(s) => {
                state::step(Some(s), &Observation::Seen(seen.clone()))
                    .0
                    .as_ref()
                    != Some(s)
            }
        };
        if changes && !read_first {
            corrected.push(id.clone());
        }
    }
    // Containers it no longer shows, but for those known to have stopped
    // (the listing shows running ones only).
    let listed: HashSet<&str> = listing.iter().map(|(id, _)| id.as_str()).collect();
    corrected.extend(
        book.iter()
            .filter(|(id, s)| {
                !listed.contains(id.as_str()) && !matches!(s.phase, Phase::Stopped { .. })
            })
            .map(|(id, _)| id.clone()),
    );
    corrected
}

/// A listing's diff is exact: an unchanged serving container is announced
/// again, so a uid its duplicate's holder freed returns to it (the publisher
/// sends nothing when its record is the same).
pub(super) fn reannounce(book: &Book, deltas: &mut [(String, Delta)]) {
    for (id, delta) in deltas {
        if *delta == Delta::None {
            if let Some(record) = book.get(id).and_then(State::announce) {
                *delta = Delta::Updated(record);
            }
        }
    }
}

/// Containers a periodic re-list corrected, until when an event about them
/// may still explain it. A correction no event explains in time is drift, a
/// missed event (or a bug).
#[derive(Default)]
pub(super) struct Suspects(HashMap<String, Instant>);

impl Suspects {
    /// A periodic re-list that ended at `now` corrected `ids`.
    pub(super) fn corrected(&mut self, ids: Vec<String>, now: Instant) {
        let until = now + IN_FLIGHT;
        for id in ids {
            self.0.insert(id, until);
        }
    }

    /// An event about `id` came: it explains any correction of it.
    pub(super) fn explained(&mut self, id: &str) {
        self.0.remove(id);
    }

    /// After a gap the listing is the truth: nothing is judged any more.
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// When the next judgement is due.
    pub(super) fn due(&self) -> Option<Instant> {
        self.0.values().min().copied()
    }

    /// The corrections no event explained by `now`, forgotten: their
    /// containers' short ids, sorted.
    pub(super) fn drifted(&mut self, now: Instant) -> Vec<String> {
        let mut drifted: Vec<String> = Vec::new();
        self.0.retain(|id, until| {
            let expired = *until <= now;
            if expired {
                drifted.push(id.chars().take(12).collect());
            }
            !expired
        });
        drifted.sort();
        drifted
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::labels::WorkerRecord;
    use state::Health;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn container(n: u8, health: Option<&str>) -> ContainerInfo {
        ContainerInfo {
            id: id(n),
            name: format!("worker-{n}"),
            image: "img".to_owned(),
            labels: BTreeMap::new(),
            state: "running".to_owned(),
            health: health.map(str::to_owned),
            networks: BTreeMap::new(),
            started_at_ns: None,
            finished_at_ns: None,
            published: BTreeMap::new(),
        }
    }

    fn record(n: u8) -> WorkerRecord {
        WorkerRecord::for_test(
            &format!("u{n}"),
            &format!("10.0.0.{n}:48800"),
            &id(n),
            &format!("worker-{n}"),
        )
    }

    fn seen_of(c: &ContainerInfo, logs: Logs, started_ns: Option<i64>) -> Seen {
        Seen {
            record: Some(record(c.id.as_bytes()[1] - b'0')),
            run: Run::of(&c.state),
            health: Health::of(c.health.as_deref()),
            logs,
            started_ns,
        }
    }

    fn ready(n: u8) -> Ready {
        Ready {
            id: id(n),
            at_ns: 5,
            version: Some("0.15.7".into()),
            pid: Some(7),
            ..Default::default()
        }
    }

    /// A book that knows containers 1 (healthy: serving) and 2 (running,
    /// awaiting its ready line).
    fn book() -> Book {
        let mut book = Book::default();
        for (n, health) in [(1, Some("healthy")), (2, None)] {
            let c = container(n, health);
            book.observe(&c.id, &Observation::Seen(seen_of(&c, Logs::Unread, None)));
        }
        book
    }

    /// Needs logs: the containers without a healthcheck.
    fn unhealthchecked(c: &ContainerInfo) -> bool {
        c.health.is_none()
    }

    #[test]
    fn events_ask_for_a_follower_an_apply_and_an_inspect_in_order() {
        let ev = |e| Observation::Event(e);
        assert_eq!(
            event_plan(&ev(Event::Start), false),
            [Do::Follow, Do::Apply, Do::Refresh]
        );
        assert_eq!(
            event_plan(&ev(Event::Start), true),
            [Do::Apply, Do::Refresh]
        );
        assert_eq!(event_plan(&ev(Event::Moved), true), [Do::Refresh]);
        assert_eq!(event_plan(&ev(Event::Moved), false), []);
        let health = ev(Event::Health { healthy: true });
        assert_eq!(event_plan(&health, false), [Do::Refresh, Do::Apply]);
        assert_eq!(event_plan(&health, true), [Do::Apply]);
        assert_eq!(event_plan(&ev(Event::Stop { at_ns: 1 }), true), [Do::Apply]);
        assert_eq!(event_plan(&Observation::Gone, false), [Do::Apply]);
    }

    #[test]
    fn after_a_gap_every_run_is_read_and_followed_from_its_start() {
        let book = book();
        let list = [
            container(1, Some("healthy")),
            container(2, None),
            container(3, None),
        ];
        let relist = Relist::new(&list, &book, Since::Gap, unhealthchecked);
        assert_eq!(relist.read_now(), [id(2), id(3)]);
        // 3's logs were read in time, 2's were not: 2 is read in the background.
        let learned: Learned = HashMap::from([(id(3), (42, 41, Some(ready(3))))]);
        assert_eq!(relist.read_later(&learned, &book), [id(2)]);
        let (listing, follows) = relist.observe(&list, learned, seen_of);
        let logs: Vec<&Logs> = listing.iter().map(|(_, s)| &s.logs).collect();
        assert!(matches!(
            logs[..],
            [Logs::Unread, Logs::Unread, Logs::Ready(_)]
        ));
        assert_eq!(listing[2].1.started_ns, Some(42));
        assert_eq!(follows[&id(2)], Follow::Run);
        assert_eq!(follows[&id(3)], Follow::From(41));
    }

    #[test]
    fn a_periodic_relist_reads_only_what_the_stream_never_told_of() {
        let mut book = book();
        let list = [
            container(1, Some("healthy")),
            container(2, None),
            container(3, None),
        ];
        let relist = Relist::new(&list, &book, Since::Stream, unhealthchecked);
        assert_eq!(relist.read_now(), [id(3)]);
        assert_eq!(relist.read_later(&Learned::new(), &book), [id(3)]);
        let (_, follows) = relist.observe(&list, Learned::new(), seen_of);
        assert_eq!(follows[&id(2)], Follow::Resume);
        assert_eq!(follows[&id(3)], Follow::Run);
        // A run an event said had ended is read later, to tell a new run.
        book.observe(&id(2), &Observation::Event(Event::Stop { at_ns: 9 }));
        let relist = Relist::new(&list, &book, Since::Stream, unhealthchecked);
        assert_eq!(relist.read_later(&Learned::new(), &book), [id(2), id(3)]);
    }

    #[test]
    fn corrections_are_what_the_listing_changes_but_a_ready_line_read_first() {
        let mut book = book();
        book.observe(
            &id(4),
            &Observation::Seen(seen_of(&container(4, None), Logs::Unread, None)),
        );
        book.observe(&id(4), &Observation::Event(Event::Stop { at_ns: 9 }));
        let mut gone = container(1, Some("healthy"));
        gone.id = id(5);
        book.observe(
            &id(5),
            &Observation::Seen(seen_of(&gone, Logs::Unread, None)),
        );
        let listing = vec![
            // Unchanged.
            (
                id(1),
                seen_of(&container(1, Some("healthy")), Logs::Unread, None),
            ),
            // Its ready line, read before its follower told.
            (
                id(2),
                seen_of(
                    &container(2, None),
                    Logs::Ready(Served::from(&ready(2))),
                    None,
                ),
            ),
            // New.
            (id(3), seen_of(&container(3, None), Logs::Unread, None)),
        ];
        // 4 was known to have stopped; 5 vanished.
        assert_eq!(corrected(&book, &listing), [id(3), id(5)]);
    }

    #[test]
    fn an_unchanged_serving_container_is_announced_again() {
        let book = book();
        let mut deltas = vec![(id(1), Delta::None), (id(2), Delta::None)];
        reannounce(&book, &mut deltas);
        assert!(matches!(&deltas[0].1, Delta::Updated(r) if r.uid == "u1"));
        assert_eq!(deltas[1].1, Delta::None);
    }

    #[test]
    fn corrections_no_event_explains_in_flight_are_drift() {
        let t0 = Instant::now();
        let mut suspects = Suspects::default();
        assert_eq!(suspects.due(), None);
        suspects.corrected(vec![id(2), id(1), id(3)], t0);
        assert_eq!(suspects.due(), Some(t0 + IN_FLIGHT));
        suspects.explained(&id(3));
        assert!(suspects.drifted(t0 + IN_FLIGHT / 2).is_empty());
        assert_eq!(
            suspects.drifted(t0 + IN_FLIGHT),
            ["010101010101", "020202020202"]
        );
        assert_eq!(suspects.due(), None);
        suspects.corrected(vec![id(1)], t0);
        suspects.clear();
        assert_eq!(suspects.due(), None);
    }
}
