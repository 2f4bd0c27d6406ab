//! Rolling windows: per-edge numbers in time slots, 10-second slots for the last 5 minutes and
//! minute slots for the last hour. Deltas go into the slot of the time they were received; a
//! window is answered by summing the slots it covers, so its resolution is the slot length.
//! Slots hold only the edges that had traffic in them, so idle edges cost nothing.
//!
//! Closed minute slots are what the history writer stores (see `history`).

use super::model::{EdgeKey, Stats};
use super::view::Fronting;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Index of an edge in the [`EdgeTable`].
pub type EdgeId = u32;

pub const FINE_SLOT_MS: i64 = 10_000;
pub const FINE_SLOTS: usize = 30;
pub const MINUTE_MS: i64 = 60_000;
/// An hour of closed minutes plus the current one.
pub const MINUTE_SLOTS: usize = 61;
/// Most distinct edges kept; beyond it new edges are dropped (and counted).
pub const MAX_EDGES: usize = 100_000;

/// The longest window the fine slots answer.
pub const FINE_SPAN_MS: i64 = FINE_SLOT_MS * (FINE_SLOTS as i64 - 1);
/// The longest window memory answers (minute slots).
pub const MEMORY_SPAN_MS: i64 = MINUTE_MS * (MINUTE_SLOTS as i64 - 1);

/// Every edge seen, each once, with a small id.
#[derive(Default)]
pub struct EdgeTable {
    keys: Vec<Arc<EdgeKey>>,
    ids: HashMap<Arc<EdgeKey>, EdgeId>,
    /// The services seen in front of each workload.
    pub fronting: Fronting,
}

/// Records that `key`'s service fronts its destination workload.
pub fn note_fronting(fronting: &mut Fronting, key: &EdgeKey) {
    if let (Some(service), Some(workload), false) =
        (&key.service, &key.destination, key.from_traces)
    {
        let services = fronting.entry(workload.clone()).or_default();
        if !services.contains(service) {
            services.push(service.clone());
            services.sort();
        }
    }
}

impl EdgeTable {
    /// The id of `key`, adding it; `None` when the table is full.
    pub fn intern(&mut self, key: EdgeKey) -> Option<EdgeId> {
        if let Some(id) = self.ids.get(&key) {
            return Some(*id);
        }
        if self.keys.len() >= MAX_EDGES {
            return None;
        }
        let id = self.keys.len() as EdgeId;
        note_fronting(&mut self.fronting, &key);
        let key = Arc::new(key);
        self.keys.push(key.clone());
        self.ids.insert(key, id);
        Some(id)
    }

    pub fn key(&self, id: EdgeId) -> &Arc<EdgeKey> {
        &self.keys[id as usize]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One slot: the edges that had traffic in `[start, start + slot length)`.
struct Slot {
    start: i64,
    cells: HashMap<EdgeId, Stats>,
}

/// Consecutive slots of one length, the newest last.
pub struct Ring {
    slot_ms: i64,
    capacity: usize,
    slots: VecDeque<Slot>,
}

impl Ring {
    pub fn new(slot_ms: i64, capacity: usize) -> Ring {
        Ring {
            slot_ms,
            capacity,
            slots: VecDeque::with_capacity(capacity),
        }
    }

    pub fn floor(&self, t: i64) -> i64 {
        t.div_euclid(self.slot_ms) * self.slot_ms
    }

    /// Adds `delta` to `edge` in the slot of `now`.
    pub fn add(&mut self, now: i64, edge: EdgeId, delta: &Stats) {
        let start = self.floor(now);
        // A clock that went back adds to the newest slot rather than reopening an old one.
        let newest = self.slots.back().map(|s| s.start);
        if newest.is_none_or(|n| n < start) {
            self.slots.push_back(Slot {
                start,
                cells: HashMap::new(),
            });
        }
        self.evict(now);
        if let Some(slot) = self.slots.back_mut() {
            slot.cells.entry(edge).or_default().merge(delta);
        }
    }

    /// Drops slots older than the ring's span as of `now`.
    pub fn evict(&mut self, now: i64) {
        let oldest = self.oldest_start(now);
        while self.slots.front().is_some_and(|s| s.start < oldest) {
            self.slots.pop_front();
        }
    }

    /// The start of the oldest slot the ring keeps at `now`.
    pub fn oldest_start(&self, now: i64) -> i64 {
        self.floor(now) - self.slot_ms * (self.capacity as i64 - 1)
    }

    /// Sums the slots starting in `[from, to)` per edge into `into`.
    pub fn sum(&self, from: i64, to: i64, into: &mut HashMap<EdgeId, Stats>) {
        for slot in self
            .slots
            .iter()
            .filter(|s| s.start >= from && s.start < to)
        {
            for (edge, stats) in &slot.cells {
                into.entry(*edge).or_default().merge(stats);
            }
        }
    }

    /// The slots that ended by `now` and start after `after`, oldest first.
    fn closed_after(&self, after: i64, now: i64) -> impl Iterator<Item = &Slot> {
        self.slots
            .iter()
            .filter(move |s| s.start > after && s.start + self.slot_ms <= now)
    }

    /// Cells in use, for the memory gauge.
    pub fn cells(&self) -> usize {
        self.slots.iter().map(|s| s.cells.len()).sum()
    }
}

/// A window to answer, in unix milliseconds: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    pub fn seconds(&self) -> f64 {
        ((self.end - self.start).max(1)) as f64 / 1000.0
    }
}

/// Where a window is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The 10-second slots.
    Fine(Span),
    /// The minute slots.
    Minutes(Span),
    /// Stored minutes (the window reaches past what memory keeps).
    History(Span),
}

impl Plan {
    pub fn span(&self) -> Span {
        match self {
            Plan::Fine(s) | Plan::Minutes(s) | Plan::History(s) => *s,
        }
    }
}

/// Chooses the slots for a window of `duration_ms` ending at `query_time` (default `now`).
///
/// A window that ends in the current slot ends at `now`; one that ends in the past ends at the
/// start of the slot holding its end (slots are not split). The start is the start of the slot
/// holding `end - duration`, so a window is at least `duration` long and rates divide by its
/// real length.
pub fn plan(now: i64, query_time: Option<i64>, duration_ms: i64) -> Plan {
    let end = query_time.unwrap_or(now).min(now);
    let duration_ms = duration_ms.max(1);
    let floor = |t: i64, slot: i64| t.div_euclid(slot) * slot;
    let span = |slot: i64| {
        let end = if end >= floor(now, slot) {
            now
        } else {
            floor(end, slot)
        };
        Span {
            start: floor(end - duration_ms, slot),
            end,
        }
    };
    let fine = span(FINE_SLOT_MS);
    if duration_ms <= FINE_SPAN_MS && fine.start >= floor(now, FINE_SLOT_MS) - FINE_SPAN_MS {
        return Plan::Fine(fine);
    }
    let minutes = span(MINUTE_MS);
    if minutes.start >= floor(now, MINUTE_MS) - MEMORY_SPAN_MS {
        return Plan::Minutes(minutes);
    }
    // Stored minutes: whole minutes that had closed by the end.
    let end = floor(end, MINUTE_MS);
    let minutes = (duration_ms + MINUTE_MS - 1) / MINUTE_MS;
    Plan::History(Span {
        start: end - minutes * MINUTE_MS,
        end,
    })
}

/// The edge table and both rings, with how far minutes have been handed to the history writer.
pub struct Windows {
    pub edges: EdgeTable,
    fine: Ring,
    minutes: Ring,
    flushed_through: i64,
}

/// One closed minute for the history writer.
#[derive(Debug, Clone)]
pub struct MinuteBatch {
    pub minute_ms: i64,
    pub edges: Vec<(Arc<EdgeKey>, Stats)>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            edges: EdgeTable::default(),
            fine: Ring::new(FINE_SLOT_MS, FINE_SLOTS),
            minutes: Ring::new(MINUTE_MS, MINUTE_SLOTS),
            flushed_through: i64::MIN,
        }
    }
}

impl Windows {
    /// Adds a delta to an edge at `now`.
    pub fn add(&mut self, now: i64, edge: EdgeId, delta: &Stats) {
        self.fine.add(now, edge, delta);
        self.minutes.add(now, edge, delta);
    }

    /// Per-edge sums over a memory plan (nothing for a history plan). A window ending now
    /// includes the current slot (what was received up to now).
    pub fn sum(&self, plan: Plan, now: i64) -> Vec<(Arc<EdgeKey>, Stats)> {
        let mut sums = HashMap::new();
        let to = |s: Span| if s.end >= now { now + 1 } else { s.end };
        match plan {
            Plan::Fine(s) => self.fine.sum(s.start, to(s), &mut sums),
            Plan::Minutes(s) => self.minutes.sum(s.start, to(s), &mut sums),
            Plan::History(_) => {}
        }
        sums.into_iter()
            .map(|(id, stats)| (self.edges.key(id).clone(), stats))
            .collect()
    }

    /// Minutes that closed since the last call, oldest first.
    pub fn take_closed_minutes(&mut self, now: i64) -> Vec<MinuteBatch> {
        let batches: Vec<MinuteBatch> = self
            .minutes
            .closed_after(self.flushed_through, now)
            .map(|slot| MinuteBatch {
                minute_ms: slot.start,
                edges: slot
                    .cells
                    .iter()
                    .map(|(id, stats)| (self.edges.key(*id).clone(), stats.clone()))
                    .collect(),
            })
            .collect();
        if let Some(last) = batches.last() {
            self.flushed_through = last.minute_ms;
        }
        batches
    }

    /// Drops slots past their span (also when nothing arrives).
    pub fn evict(&mut self, now: i64) {
        self.fine.evict(now);
        self.minutes.evict(now);
    }

    /// Slot cells held (10-second and minute), for the memory gauge.
    pub fn cells(&self) -> usize {
        self.fine.cells() + self.minutes.cells()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_pick_the_finest_slots_that_cover_the_window() {
        let now = 1_000_000_005_000; // 5 s into a 10 s slot
        assert_eq!(
            plan(now, None, 60_000),
            Plan::Fine(Span {
                start: 1_000_000_000_000 - 60_000,
                end: now
            })
        );
        match plan(now, None, 10 * 60_000) {
            Plan::Minutes(s) => {
                assert_eq!(s.end, now);
                assert_eq!(s.start % MINUTE_MS, 0);
                assert!(now - s.start >= 10 * 60_000);
            }
            other => panic!("{other:?}"),
        }
        // A past window beyond the hour goes to history, in whole minutes.
        let past = now - 3 * 3_600_000;
        match plan(now, Some(past), 60_000) {
            Plan::History(s) => {
                assert_eq!(s.end, past.div_euclid(MINUTE_MS) * MINUTE_MS);
                assert_eq!(s.end - s.start, MINUTE_MS);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ring_keeps_its_span_and_sums_windows() {
        let mut ring = Ring::new(10, 3);
        let one = Stats {
            requests: 1.0,
            ..Stats::default()
        };
        for t in [0, 5, 10, 20, 30] {
            ring.add(t, 7, &one);
        }
        let mut sums = HashMap::new();
        ring.sum(i64::MIN, i64::MAX, &mut sums);
        // Slots 10, 20, 30 remain (slot 0 with two requests was evicted).
        assert_eq!(sums[&7].requests, 3.0);
    }
}
