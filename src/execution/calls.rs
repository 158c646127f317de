//! Which stored result answers a checkpoint call: the core's decision, made once per call.
//!
//! `CallBook` is pure bookkeeping under the runner's lock (no I/O): call ids in call order
//! (`fetch`, `fetch_2`, ... or an explicit id), matching a call to a stored result by its
//! inputs, divergence under the flow's policy, and the passes of a flow body (a flow-level
//! retry runs the body again in the same run). What a decision still needs from the store
//! (a divergence record, a stored output to read) is done by `Runner::settle_call`
//! (`recording.rs`), blocking or awaited as the caller chooses.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use super::{FinishedCall, RawValue};
use crate::error::{Error, Result};
use crate::journal::types::Body;
use crate::journal::Journal;

/// What a flow does with a finished call that is made again with different inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep the stored output (and warn).
    Reuse,
    /// Run the call again with the new inputs (the default).
    Rerun,
    /// Fail the execution.
    Error,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Reuse => "reuse",
            Policy::Rerun => "rerun",
            Policy::Error => "error",
        }
    }
}

impl FromStr for Policy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reuse" => Ok(Policy::Reuse),
            "rerun" => Ok(Policy::Rerun),
            "error" => Ok(Policy::Error),
            other => Err(Error::InvalidName {
                what: "divergence policy",
                value: other.to_string(),
                rule: "one of 'reuse', 'rerun', 'error'",
            }),
        }
    }
}

/// One call as it asks whether a stored result answers it.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The id the call was given when it was made (`CallBook::allocate`).
    pub call_id: String,
    /// The checkpoint's name (stored results match only calls of the same checkpoint).
    pub name: String,
    /// The digest of the call's inputs; None when they cannot be digested.
    pub digest: Option<[u8; 32]>,
    /// The call got its id in the flow's own order (the flow's thread), so it can be
    /// compared with the stored call at its position; calls from other threads are
    /// ordered by the scheduler and matched by their inputs only.
    pub ordered: bool,
    /// The id was given by the caller (`id=`), not numbered by kitaru.
    pub explicit: bool,
    pub policy: Policy,
    /// The checkpoint's code identity (a digest of its source and configuration), for the
    /// cross-execution cache (`crate::cache`); None: the call is never answered from it.
    pub code: Option<[u8; 32]>,
    /// The checkpoint's own cache setting; None: the execution's.
    pub cache: Option<bool>,
}

/// A call made again with other inputs than its stored result's.
#[derive(Debug, Clone)]
pub struct Divergence {
    pub call_id: String,
    pub stored: Option<[u8; 32]>,
    pub new: Option<[u8; 32]>,
    pub policy: Policy,
}

/// Something the caller should tell the user about a decision (a Python warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A stored output was reused for a call with other inputs (policy `reuse`).
    ReusedDiverged,
    /// The stored output could not be read back; the call runs again (the reason).
    Damaged(String),
    /// A cache entry for the call cannot be believed; the call runs (the reason).
    CacheUnusable(String),
}

/// The core's answer to "does a stored result answer this call?".
#[derive(Debug, Clone)]
pub struct Decision {
    /// The id the call runs or is answered under (it may differ from the one it was given:
    /// another unclaimed call with the same inputs, or a fresh id for new inputs).
    pub call_id: String,
    /// A stored result answers the call.
    pub reuse: bool,
    /// That result, when it is at hand (None while `reuse` and still to be read).
    pub value: Option<RawValue>,
    /// A divergence to record first (and, under `Policy::Error`, to fail with).
    pub divergence: Option<Divergence>,
    /// The reused result was stored by an earlier run (not by this one's earlier pass).
    pub earlier_run: bool,
    pub notice: Option<Notice>,
    /// The cross-execution cache is to be asked for the call (`Runner::settle_call`).
    pub cache: Option<CacheProbe>,
    /// The result came from the cache: the execution and call that produced it.
    pub cached_from: Option<Cached>,
}

/// Where a result from the cross-execution cache came from.
#[derive(Debug, Clone)]
pub struct Cached {
    pub exec_id: String,
    pub call_id: String,
    /// The metadata recorded with it (its model calls: what the cache saved).
    pub metadata_json: Option<String>,
}

/// A cache lookup a decision still needs.
#[derive(Debug, Clone)]
pub struct CacheProbe {
    pub parts: crate::cache::KeyParts,
    /// The entry's bytes when a local store was read already.
    pub found: Option<bytes::Bytes>,
    pub explicit: bool,
}

impl Decision {
    /// The decision needs the store before it is final (`Runner::settle_call`).
    pub fn pending(&self) -> bool {
        self.divergence.is_some() || (self.reuse && self.value.is_none()) || self.cache.is_some()
    }
}

impl Notice {
    /// A short name for the kind of notice (`"diverged"`, `"damaged"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::ReusedDiverged => "diverged",
            Notice::Damaged(_) => "damaged",
            Notice::CacheUnusable(_) => "cache",
        }
    }
}

impl Decision {
    /// The notice as a sentence that names the call (of execution `exec`), if there is one.
    pub fn notice_text(&self, exec: &str) -> Option<String> {
        let call = &self.call_id;
        Some(match self.notice.as_ref()? {
            Notice::ReusedDiverged => format!(
                "Checkpoint '{call}' of execution {exec} is called with different inputs than \
                 when it finished; its stored output is reused because the flow's divergence \
                 policy is 'reuse' (the divergence is recorded on the execution)."
            ),
            Notice::Damaged(reason) => format!(
                "The stored output of checkpoint '{call}' of execution {exec} is damaged, so \
                 the call runs again: {reason}"
            ),
            Notice::CacheUnusable(reason) => format!(
                "Checkpoint '{call}' of execution {exec} runs: its cache entry is not used \
                 ({reason}); delete that entry (`kitaru cache clear`) to stop this warning."
            ),
        })
    }
}

#[derive(Debug, Clone)]
struct Stored {
    name: String,
    digest: Option<[u8; 32]>,
    explicit: bool,
}

/// The auto-numbered stored calls of one (checkpoint name, input digest), in call order,
/// and how many of the first ones are known to be handed out in pass `pass`. Handing out
/// and recording are amortized O(log n) whatever the number of calls with equal inputs (a
/// poll in a loop, a fan-out over one argument): a scan of the whole list per call made a
/// long run quadratic.
#[derive(Debug, Default)]
struct SameInputs {
    ids: Vec<String>,
    claimed_prefix: usize,
    pass: u32,
}

impl SameInputs {
    /// Where `call_id` is (Ok) or belongs (Err) in call order.
    fn position(&self, call_id: &str) -> std::result::Result<usize, usize> {
        let key = (occurrence(call_id), call_id);
        self.ids
            .binary_search_by(|i| (occurrence(i), i.as_str()).cmp(&key))
    }

    fn insert(&mut self, call_id: &str) {
        if let Err(at) = self.position(call_id) {
            self.ids.insert(at, call_id.to_string());
            self.claimed_prefix = self.claimed_prefix.min(at);
        }
    }

    fn remove(&mut self, call_id: &str) {
        if let Ok(at) = self.position(call_id) {
            self.ids.remove(at);
            self.claimed_prefix = self.claimed_prefix.min(at);
        }
    }

    /// The first id, in call order, not in `claimed` (ids are only ever added to `claimed`
    /// within a pass, so the prefix skipped once stays skipped).
    fn first_unclaimed(&mut self, claimed: &HashSet<String>, pass: u32) -> Option<&String> {
        if self.pass != pass {
            self.pass = pass;
            self.claimed_prefix = 0;
        }
        while self
            .ids
            .get(self.claimed_prefix)
            .is_some_and(|i| claimed.contains(i))
        {
            self.claimed_prefix += 1;
        }
        self.ids.get(self.claimed_prefix)
    }
}

/// The calls of one run: what the journal holds, what this run recorded, and the ids taken
/// and results handed out in the current pass over the flow body.
#[derive(Debug, Default)]
pub(super) struct CallBook {
    flow_name: String,
    stored: HashMap<String, Stored>,
    /// Auto-numbered stored calls by (checkpoint name, input digest), in call order.
    by_inputs: HashMap<(String, [u8; 32]), SameInputs>,
    /// Outputs recorded by this run: a later pass reuses them without a read.
    done: HashMap<String, RawValue>,
    /// Results a replay took over from its source execution (recorded by this run before
    /// the flow body started): reused like an earlier run's, with their metadata.
    seeded: HashMap<String, (RawValue, Option<String>)>,
    pass: u32,
    occurrences: HashMap<String, u32>,
    /// Every call id of this pass: an explicit id, a named `llm()` call and the occurrences
    /// of a checkpoint never share one (the later would get the earlier one's output).
    taken: HashSet<String>,
    /// Stored results handed to a call of this pass: each goes to one call only.
    claimed: HashSet<String>,
    /// Per checkpoint name, the last number `fresh` gave out in this pass (every lower one
    /// is taken or stored, and both only grow within a pass).
    fresh_from: HashMap<String, u32>,
}

impl CallBook {
    pub(super) fn new(journal: &Journal) -> CallBook {
        let mut book = CallBook {
            flow_name: journal
                .start()
                .map(|s| s.flow_name.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        for (call_id, (_, rec)) in &journal.checkpoints {
            let digest = rec.input_digest.map(|d| d.0);
            book.index(call_id, &rec.name, rec.explicit_id, digest);
        }
        book
    }

    fn index(&mut self, call_id: &str, name: &str, explicit: bool, digest: Option<[u8; 32]>) {
        let entry = Stored {
            name: name.to_string(),
            digest,
            explicit,
        };
        // A call recorded again (a rerun after a divergence) is found by its new inputs
        // only: left under its old ones, a later pass calling with those inputs would be
        // handed the output of the new ones.
        if let Some(old) = self.stored.insert(call_id.to_string(), entry) {
            if let Some(d) = old.digest {
                if let Some(same) = self.by_inputs.get_mut(&(old.name, d)) {
                    same.remove(call_id);
                }
            }
        }
        if let (Some(d), false) = (digest, explicit) {
            self.by_inputs
                .entry((name.to_string(), d))
                .or_default()
                .insert(call_id);
        }
    }

    /// Starts a pass over the flow body (the first, or a flow-level retry); its number.
    pub(super) fn new_pass(&mut self) -> u32 {
        self.occurrences.clear();
        self.taken.clear();
        self.claimed.clear();
        self.fresh_from.clear();
        self.pass += 1;
        self.pass
    }

    /// The id of the next call of checkpoint `name` (numbered from `name` in call order),
    /// or its explicit id, which must be unique in the pass.
    pub(super) fn allocate(&mut self, name: &str, explicit: Option<&str>) -> Result<String> {
        if let Some(id) = explicit {
            if !self.taken.insert(id.to_string()) {
                return Err(Error::IdTaken {
                    flow: self.flow_name.clone(),
                    call_id: id.to_string(),
                });
            }
            return Ok(id.to_string());
        }
        let n = self.occurrences.entry(name.to_string()).or_insert(0);
        loop {
            *n += 1;
            let call_id = numbered(name, *n);
            if self.taken.insert(call_id.clone()) {
                return Ok(call_id);
            }
        }
    }

    /// An id of checkpoint `name` that no stored result and no call of this pass has.
    fn fresh(&mut self, name: &str) -> String {
        let mut n = self.fresh_from.get(name).copied().unwrap_or(0);
        loop {
            n += 1;
            let id = numbered(name, n);
            if !self.taken.contains(&id) && !self.stored.contains_key(&id) {
                self.fresh_from.insert(name.to_string(), n);
                self.taken.insert(id.clone());
                self.claimed.insert(id.clone());
                return id;
            }
        }
    }

    /// Hands `id` to the call being decided; false when a call of this pass has it.
    fn claim(&mut self, id: &str) -> bool {
        self.claimed.insert(id.to_string())
    }

    /// Which id the call gets and whether a stored result answers it.
    ///
    /// A stored result goes only to a call with the same inputs: first the stored call of
    /// this checkpoint with the call's own id, then any other unclaimed one with the same
    /// inputs (calls from threads arrive in any order). Only a call in the flow's own
    /// order is compared with the stored call at its position (a divergence); a call from
    /// another thread with new inputs runs under an id nothing stored has.
    fn choose(&mut self, req: &CallRequest) -> (String, Choice) {
        let id = &req.call_id;
        let known = self.stored.get(id).cloned();
        if req.explicit {
            self.claim(id);
            return match known {
                None => (id.clone(), Choice::Run),
                Some(k) => match (k.digest, req.digest) {
                    (Some(old), Some(new)) if old != new => {
                        (id.clone(), Choice::Diverged(k.digest))
                    }
                    _ => (id.clone(), Choice::Reuse),
                },
            };
        }
        if let Some(d) = req.digest {
            // The call's own stored result, if it had these inputs (`by_inputs` holds
            // exactly the auto-numbered stored calls, under their name and digest).
            let own = known
                .as_ref()
                .is_some_and(|k| !k.explicit && k.name == req.name && k.digest == Some(d));
            if own && !self.claimed.contains(id) {
                self.claim(id);
                return (id.clone(), Choice::Reuse);
            }
            let other = self
                .by_inputs
                .get_mut(&(req.name.clone(), d))
                .and_then(|same| same.first_unclaimed(&self.claimed, self.pass))
                .cloned();
            if let Some(other) = other {
                self.claim(&other);
                return (other, Choice::Reuse);
            }
        }
        match known {
            None if !self.claimed.contains(id) => {
                self.claim(id);
                (id.clone(), Choice::Run)
            }
            Some(k) if req.ordered && !self.claimed.contains(id) && k.name == req.name => {
                self.claim(id);
                match (k.digest, req.digest) {
                    // inputs that cannot be compared
                    (None, _) | (_, None) => (id.clone(), Choice::Reuse),
                    _ => (id.clone(), Choice::Diverged(k.digest)),
                }
            }
            _ => (self.fresh(&req.name), Choice::Run),
        }
    }

    /// The decision for `req`; `journal` is the one loaded when the run took the lease.
    pub(super) fn decide(&mut self, req: &CallRequest, journal: &Journal) -> Decision {
        let (call_id, choice) = self.choose(req);
        let mut decision = Decision {
            call_id,
            reuse: false,
            value: None,
            divergence: None,
            earlier_run: false,
            notice: None,
            cache: None,
            cached_from: None,
        };
        match choice {
            Choice::Run => return decision,
            Choice::Reuse => {}
            Choice::Diverged(stored) => {
                decision.divergence = Some(Divergence {
                    call_id: decision.call_id.clone(),
                    stored,
                    new: req.digest,
                    policy: req.policy,
                });
                match req.policy {
                    Policy::Error => return decision,
                    Policy::Rerun => {
                        // This run recorded that id already: a call id is recorded once.
                        let id = &decision.call_id;
                        if self.done.contains_key(id) || self.seeded.contains_key(id) {
                            decision.call_id = self.fresh(&req.name);
                        }
                        return decision;
                    }
                    Policy::Reuse => decision.notice = Some(Notice::ReusedDiverged),
                }
            }
        }
        decision.reuse = true;
        if let Some(v) = self.done.get(&decision.call_id) {
            decision.value = Some(v.clone());
            return decision;
        }
        decision.earlier_run = true;
        if let Some((v, _)) = self.seeded.get(&decision.call_id) {
            decision.value = Some(v.clone());
            return decision;
        }
        if let Some((_, rec)) = journal.checkpoints.get(&decision.call_id) {
            if let Body::Inline(b) = &rec.output.body {
                decision.value = Some(RawValue {
                    serializer: rec.output.serializer.clone(),
                    bytes: bytes::Bytes::copy_from_slice(&b.0),
                });
            }
        }
        decision
    }

    /// A result a replay took over from its source: answered as an earlier run's would be.
    pub(super) fn seeded(&mut self, call: &FinishedCall) {
        let seed = (call.output.clone(), call.metadata_json.clone());
        self.seeded.insert(call.call_id.clone(), seed);
        self.index(
            &call.call_id,
            &call.name,
            call.explicit_id,
            call.input_digest,
        );
    }

    /// The metadata of a seeded result.
    pub(super) fn seed_metadata(&self, call_id: &str) -> Option<&str> {
        self.seeded.get(call_id)?.1.as_deref()
    }

    /// A call this run recorded: later passes reuse its output.
    pub(super) fn recorded(
        &mut self,
        call_id: &str,
        name: &str,
        explicit: bool,
        digest: Option<[u8; 32]>,
        output: RawValue,
    ) {
        self.done.insert(call_id.to_string(), output);
        self.index(call_id, name, explicit, digest);
    }
}

enum Choice {
    Run,
    Reuse,
    /// A stored call at the call's position had other inputs (its digest).
    Diverged(Option<[u8; 32]>),
}

fn numbered(name: &str, n: u32) -> String {
    if n == 1 {
        name.to_string()
    } else {
        format!("{name}_{n}")
    }
}

/// Sort key of auto ids: name, name_2, name_3, ... in call order.
fn occurrence(call_id: &str) -> (u64, &str) {
    match call_id.rsplit_once('_') {
        Some((base, n))
            if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (n.parse().unwrap_or(u64::MAX), base)
        }
        _ => (1, call_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(book: &mut CallBook, name: &str, digest: u8, ordered: bool) -> (String, bool) {
        let call_id = book.allocate(name, None).unwrap_or_default();
        let r = CallRequest {
            call_id,
            name: name.into(),
            digest: Some([digest; 32]),
            ordered,
            explicit: false,
            policy: Policy::Rerun,
            code: None,
            cache: None,
        };
        let (id, choice) = book.choose(&r);
        (id, matches!(choice, Choice::Reuse))
    }

    #[test]
    fn equal_inputs_hand_out_each_stored_result_once_in_call_order() {
        let mut book = CallBook::default();
        for id in ["poll", "poll_2", "poll_3", "poll_10"] {
            book.index(id, "poll", false, Some([7; 32]));
        }
        book.index("poll_4", "poll", false, Some([8; 32]));
        book.new_pass();
        // the flow's own order: each call gets its own stored result...
        assert_eq!(req(&mut book, "poll", 7, true), ("poll".into(), true));
        assert_eq!(req(&mut book, "poll", 7, true), ("poll_2".into(), true));
        // ...a call whose own id holds other inputs gets the first unclaimed with its own
        assert_eq!(req(&mut book, "poll", 8, true), ("poll_4".into(), true));
        assert_eq!(req(&mut book, "poll", 7, true), ("poll_3".into(), true));
        assert_eq!(req(&mut book, "poll", 7, true), ("poll_10".into(), true));
        // every stored result with these inputs is handed out: the next call runs, under
        // an id nothing stored has
        let (id, reused) = req(&mut book, "poll", 7, true);
        assert!(!reused);
        assert_eq!(id, "poll_6");
        // a new pass hands them out again
        book.new_pass();
        assert_eq!(req(&mut book, "poll", 7, false), ("poll".into(), true));
    }

    #[test]
    fn a_call_recorded_again_with_new_inputs_leaves_its_old_inputs() {
        let mut book = CallBook::default();
        book.index("a", "a", false, Some([1; 32]));
        book.index("a_2", "a", false, Some([1; 32]));
        book.index("a", "a", false, Some([2; 32])); // a rerun after a divergence
        book.new_pass();
        assert_eq!(req(&mut book, "a", 1, false), ("a_2".into(), true));
        assert!(!req(&mut book, "a", 1, false).1);
        assert_eq!(req(&mut book, "a", 2, false), ("a".into(), true));
    }
}
