//! The operator's own writes to the objects it reconciles (a finalizer added, a status written)
//! that its watch caches have not shown yet.
//!
//! A reconcile starts from the cached object. When a pass writes the object, the watch event of
//! that write also asks for a pass; but a pass asked for earlier (by the event of the write
//! before) can start first, from a copy older than the write. That pass would see no status and
//! apply every child and the status again: at scale, half an extra pass for every new object
//! (docs/benchmarks.md). Such a pass is skipped instead; the event of the write brings the
//! object back. An entry the watch never confirms (a relist that skipped that version) is
//! dropped after [`PendingWrites::patience`], so a lost event delays a pass, never loses it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::core::ObjectMeta;

/// The last write per object (by UID) that the caches have not shown yet.
#[derive(Debug)]
pub struct PendingWrites {
    writes: Mutex<Writes>,
    patience: Duration,
}

#[derive(Debug)]
struct Writes {
    /// UID → (resourceVersion the write returned, when it was made).
    by_uid: HashMap<String, (String, Instant)>,
    last_sweep: Instant,
}

impl PendingWrites {
    /// `patience`: how long a write may wait for its watch event before it is forgotten.
    pub fn new(patience: Duration, now: Instant) -> Self {
        Self { writes: Mutex::new(Writes { by_uid: HashMap::new(), last_sweep: now }), patience }
    }

    /// How long a write may wait for its watch event before it is forgotten.
    pub fn patience(&self) -> Duration {
        self.patience
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the operator wrote the object, which now has `written`'s resourceVersion.
    pub fn wrote(&self, written: &ObjectMeta, now: Instant) {
        let (Some(uid), Some(version)) = (written.uid.clone(), written.resource_version.clone()) else {
            return;
        };
        let mut writes = self.lock();
        // Entries whose event never came (the object deleted, a relist) go now and then.
        if now.saturating_duration_since(writes.last_sweep) >= self.patience {
            let patience = self.patience;
            writes.by_uid.retain(|_, (_, at)| now.saturating_duration_since(*at) < patience);
            writes.last_sweep = now;
        }
        writes.by_uid.insert(uid, (version, now));
    }

    /// Records what a watch delivered: a write of ours it shows is no longer pending.
    pub fn seen(&self, delivered: &ObjectMeta) {
        let Some(uid) = delivered.uid.as_deref() else { return };
        let mut writes = self.lock();
        if writes.by_uid.get(uid).is_some_and(|(version, _)| delivered.resource_version.as_ref() == Some(version)) {
            writes.by_uid.remove(uid);
        }
    }

    /// Forgets every pending write: a watch relisted, and its list shows the current objects.
    pub fn forget_all(&self) {
        self.lock().by_uid.clear();
    }

    /// Whether `cached` is older than a write of ours the cache has not shown yet. Watch events
    /// arrive in order, so while a write is pending any other version in the cache precedes it.
    pub fn is_behind(&self, cached: &ObjectMeta, now: Instant) -> bool {
        let Some(uid) = cached.uid.as_deref() else { return false };
        let mut writes = self.lock();
        match writes.by_uid.get(uid) {
            Some((version, _)) if cached.resource_version.as_ref() == Some(version) => {
                writes.by_uid.remove(uid);
                false
            }
            Some((_, at)) if now.saturating_duration_since(*at) < self.patience => true,
            Some(_) => {
                writes.by_uid.remove(uid);
                false
            }
            None => false,
        }
    }

    /// Writes still waiting for their watch event.
    pub fn len(&self) -> usize {
        self.lock().by_uid.len()
    }

    /// Whether no write is waiting for its watch event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, version: &str) -> ObjectMeta {
        ObjectMeta { uid: Some(uid.into()), resource_version: Some(version.into()), ..Default::default() }
    }

    #[test]
    fn a_copy_older_than_our_write_is_behind_until_the_watch_shows_the_write() {
        let start = Instant::now();
        let writes = PendingWrites::new(Duration::from_secs(10), start);
        assert!(!writes.is_behind(&meta("a", "1"), start), "nothing written yet");
        writes.wrote(&meta("a", "2"), start);
        assert!(writes.is_behind(&meta("a", "1"), start));
        assert!(!writes.is_behind(&meta("b", "1"), start), "another object is not concerned");
        writes.seen(&meta("a", "1"));
        assert!(writes.is_behind(&meta("a", "1"), start), "an older event does not confirm the write");
        writes.seen(&meta("a", "2"));
        assert!(writes.is_empty());
        assert!(!writes.is_behind(&meta("a", "1"), start));
    }

    #[test]
    fn a_pass_that_starts_from_the_written_version_clears_it() {
        let start = Instant::now();
        let writes = PendingWrites::new(Duration::from_secs(10), start);
        writes.wrote(&meta("a", "2"), start);
        assert!(!writes.is_behind(&meta("a", "2"), start));
        assert!(writes.is_empty());
    }

    #[test]
    fn a_later_write_replaces_the_earlier_one() {
        let start = Instant::now();
        let writes = PendingWrites::new(Duration::from_secs(10), start);
        writes.wrote(&meta("a", "2"), start);
        writes.wrote(&meta("a", "3"), start);
        writes.seen(&meta("a", "2"));
        assert!(writes.is_behind(&meta("a", "2"), start), "the finalizer's version is not the status write's");
        writes.seen(&meta("a", "3"));
        assert!(!writes.is_behind(&meta("a", "2"), start));
    }

    #[test]
    fn a_write_whose_event_never_comes_is_forgotten_after_the_patience() {
        let start = Instant::now();
        let patience = Duration::from_secs(10);
        let writes = PendingWrites::new(patience, start);
        writes.wrote(&meta("a", "2"), start);
        assert!(writes.is_behind(&meta("a", "5"), start + patience / 2));
        assert!(!writes.is_behind(&meta("a", "5"), start + patience), "a lost event delays, never blocks");
        assert!(writes.is_empty());
        // And entries nobody asks about again are swept by later writes.
        writes.wrote(&meta("gone", "7"), start + patience);
        writes.wrote(&meta("b", "1"), start + patience * 2);
        assert_eq!(writes.len(), 1);
    }

    #[test]
    fn a_relist_forgets_every_pending_write() {
        let start = Instant::now();
        let writes = PendingWrites::new(Duration::from_secs(10), start);
        writes.wrote(&meta("a", "2"), start);
        writes.forget_all();
        assert!(!writes.is_behind(&meta("a", "9"), start));
    }

    #[test]
    fn objects_without_a_uid_or_version_are_never_behind() {
        let start = Instant::now();
        let writes = PendingWrites::new(Duration::from_secs(10), start);
        writes.wrote(&ObjectMeta::default(), start);
        assert!(writes.is_empty());
        assert!(!writes.is_behind(&ObjectMeta::default(), start));
    }
}
