//! What a tracker announces: its containers' deltas become one batch of
//! changes against what its hub announced, each through the uid rule, after
//! the warnings raised since the last batch. Pure: the tracker holds the
//! hub's lock and sends the batch.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;

use super::state::Delta;
use crate::labels::{self, WorkerRecord};
use crate::scope::Change;

/// The warnings a tracker owes, and those it already gave.
#[derive(Default)]
pub(super) struct Publisher {
    /// Containers already warned about for a malformed label.
    warned: HashSet<String>,
    /// Warnings raised while absorbing, sent ahead of the next batch.
    warnings: Vec<Change>,
    /// Containers already warned about for sharing another's uid.
    duplicates: HashSet<String>,
}

impl Publisher {
    /// Warn about container `id`'s malformed label, once.
    pub(super) fn malformed(&mut self, id: &str, error: &dyn Display) {
        if self.warned.insert(id.to_owned()) {
            self.warnings.push(Change::Warning(format!(
                "skipping {error}; fix the label (see the wool-docker label schema)"
            )));
        }
    }

    /// A container is forgotten: so are the warnings it was given.
    pub(super) fn forget(&mut self, id: &str) {
        self.warned.remove(id);
        self.duplicates.remove(id);
    }

    /// The batch that announces `deltas`, stamped `cause_ns`, after any
    /// pending warnings; `announced` (the hub's) is brought in line with it.
    pub(super) fn batch(
        &mut self,
        announced: &mut BTreeMap<String, WorkerRecord>,
        deltas: Vec<(String, Delta)>,
        cause_ns: i64,
    ) -> Vec<Change> {
        let mut batch = std::mem::take(&mut self.warnings);
        for (id, delta) in deltas {
            let change = match delta {
                Delta::None => continue,
                Delta::Added(r) | Delta::Updated(r) => {
                    let r = self.distinct_uid(&id, r, announced, &mut batch);
                    match announced.insert(id, r.clone()) {
                        None => Change::Added(r, cause_ns),
                        Some(old) if old != r => Change::Updated(r, cause_ns),
                        Some(_) => continue,
                    }
                }
                Delta::Dropped(_) => match announced.remove(&id) {
                    Some(r) => Change::Dropped(r, cause_ns),
                    None => continue,
                },
            };
            batch.push(change);
        }
        batch
    }

    /// wool keys workers by uid, so two live containers announced with one uid
    /// (a Compose service with a fixed `wool.uid`, scaled) would hide each other.
    /// The container announced first keeps the uid; any other gets the uid derived
    /// from its container id, with one warning naming both.
    fn distinct_uid(
        &mut self,
        id: &str,
        mut record: WorkerRecord,
        announced: &BTreeMap<String, WorkerRecord>,
        batch: &mut Vec<Change>,
    ) -> WorkerRecord {
        let holder = announced
            .iter()
            .find(|(other, r)| other.as_str() != id && r.uid == record.uid);
        if let Some((_, held)) = holder {
            if let Some(derived) = labels::uid_from_container_id(id) {
                if self.duplicates.insert(id.to_owned()) {
                    batch.push(Change::Warning(format!(
                        "containers {} and {} both carry wool.uid={}; {} is announced as {derived} \
                         (from its container id). Give each replica its own uid, or leave \
                         wool.uid unset so each gets one from its container id",
                        held.container_name, record.container_name, record.uid,
                        record.container_name
                    )));
                }
                record.uid = derived;
            }
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, uid: &str) -> WorkerRecord {
        WorkerRecord::for_test(
            uid,
            &format!("10.0.0.{n}:48800"),
            &id(n),
            &format!("worker-{n}"),
        )
    }

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// A batch as `+name uid`, `~name uid`, `-name`, or `!` for a warning.
    fn said(batch: &[Change]) -> Vec<String> {
        batch
            .iter()
            .map(|c| match c {
                Change::Added(r, _) => format!("+{} {}", r.container_name, r.uid),
                Change::Updated(r, _) => format!("~{} {}", r.container_name, r.uid),
                Change::Dropped(r, _) => format!("-{}", r.container_name),
                Change::Warning(_) => "!".to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_batch_holds_only_what_changes_what_was_announced() {
        let mut p = Publisher::default();
        let mut announced = BTreeMap::new();
        let batch = p.batch(
            &mut announced,
            vec![
                (id(1), Delta::Added(record(1, "a"))),
                (id(2), Delta::None),
                (id(3), Delta::Dropped(record(3, "c"))),
            ],
            7,
        );
        assert_eq!(said(&batch), ["+worker-1 a"]);
        assert!(matches!(batch[0], Change::Added(_, 7)));
        // The same record again is no change; a new one is an update.
        let mut moved = record(1, "a");
        moved.address = "10.0.0.9:48800".into();
        let batch = p.batch(
            &mut announced,
            vec![
                (id(1), Delta::Updated(record(1, "a"))),
                (id(1), Delta::Updated(moved)),
            ],
            8,
        );
        assert_eq!(said(&batch), ["~worker-1 a"]);
        let batch = p.batch(
            &mut announced,
            vec![(id(1), Delta::Dropped(record(1, "a")))],
            9,
        );
        assert_eq!(said(&batch), ["-worker-1"]);
        assert!(announced.is_empty());
    }

    #[test]
    fn a_shared_uid_goes_to_the_first_and_is_warned_about_once() {
        let mut p = Publisher::default();
        let mut announced = BTreeMap::new();
        let derived = labels::uid_from_container_id(&id(2)).unwrap_or_default();
        let batch = p.batch(
            &mut announced,
            vec![
                (id(1), Delta::Added(record(1, "same"))),
                (id(2), Delta::Added(record(2, "same"))),
            ],
            0,
        );
        assert_eq!(
            said(&batch),
            ["+worker-1 same", "!", &format!("+worker-2 {derived}")]
        );
        // Updated again while the holder stays: no second warning.
        let mut again = record(2, "same");
        again.pid = 9;
        let batch = p.batch(&mut announced, vec![(id(2), Delta::Updated(again))], 0);
        assert_eq!(said(&batch), [format!("~worker-2 {derived}")]);
        // The holder gone, a listing's re-announcement gives the uid back.
        let batch = p.batch(
            &mut announced,
            vec![
                (id(1), Delta::Dropped(record(1, "same"))),
                (id(2), Delta::Updated(record(2, "same"))),
            ],
            0,
        );
        assert_eq!(said(&batch), ["-worker-1", "~worker-2 same"]);
    }

    #[test]
    fn label_warnings_go_ahead_of_the_next_batch_once_per_container() {
        let mut p = Publisher::default();
        let mut announced = BTreeMap::new();
        p.malformed(&id(1), &"label wool.port=x");
        p.malformed(&id(1), &"label wool.port=x");
        let batch = p.batch(
            &mut announced,
            vec![(id(2), Delta::Added(record(2, "b")))],
            0,
        );
        assert_eq!(said(&batch), ["!", "+worker-2 b"]);
        // Forgotten, it is warned about again when it comes back.
        p.forget(&id(1));
        p.malformed(&id(1), &"label wool.port=x");
        let batch = p.batch(&mut announced, vec![], 0);
        assert_eq!(said(&batch), ["!"]);
    }
}
