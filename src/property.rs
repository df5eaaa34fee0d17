//! Properties, judged on observations only, identically in both engines.
//!
//! A [`Monitor`] folds the observations of a run into a small summary that lives in the world
//! state. Safety properties are predicates on it; `deadlock_free` and `available` are judged on the
//! explored graph (can every live client still finish?) by the engine, using [`Monitor::finished`].
//! Each property has a `sometimes` partner: a pass whose partner never happened is vacuous.

use serde::Serialize;

use crate::protocol::{NodeId, Observation};
use crate::spec::{MAX_SIM_CLIENTS as MAX_CLIENTS, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyName {
    MutualExclusion,
    NoStaleWrite,
    NoOversell,
    DeadlockFree,
    Reentrant,
    Available,
    TokenMonotonic,
    NoDuplicateEffect,
}

/// What a run does, as far as which properties speak about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    pub workload: Workload,
    /// The protocol issues tokens meant to increase.
    pub tokens: bool,
    /// The critical section performs an external side effect.
    pub side_effect: bool,
}

impl PropertyName {
    pub const ALL: [PropertyName; 8] = [
        PropertyName::MutualExclusion,
        PropertyName::NoStaleWrite,
        PropertyName::NoOversell,
        PropertyName::DeadlockFree,
        PropertyName::Reentrant,
        PropertyName::Available,
        PropertyName::TokenMonotonic,
        PropertyName::NoDuplicateEffect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PropertyName::MutualExclusion => "mutual_exclusion",
            PropertyName::NoStaleWrite => "no_stale_write",
            PropertyName::NoOversell => "no_oversell",
            PropertyName::DeadlockFree => "deadlock_free",
            PropertyName::Reentrant => "reentrant",
            PropertyName::Available => "available",
            PropertyName::TokenMonotonic => "token_monotonic",
            PropertyName::NoDuplicateEffect => "no_duplicate_effect",
        }
    }

    /// The property as a sentence, and its `sometimes` partner.
    pub fn sentence(self) -> (&'static str, &'static str) {
        match self {
            PropertyName::MutualExclusion => {
                ("at most one live client believes it holds the lock", "some client holds the lock")
            }
            PropertyName::NoStaleWrite => (
                "the resource never accepts a write under a grant older than one it has already served",
                "some write is accepted",
            ),
            PropertyName::NoOversell => (
                "stock never drops below 0 and always equals initial stock minus accepted sales",
                "some sale is accepted",
            ),
            PropertyName::DeadlockFree => {
                ("once faults stop and the world heals, every live client can still finish", "every client finishes")
            }
            PropertyName::Reentrant => (
                "an owner's nested acquire is granted and the lock stays its own until the last release",
                "some owner holds the lock twice",
            ),
            PropertyName::Available => (
                "with crashed nodes left down, partitions left in place and stuck application threads left stuck (pauses end), every other live client can still finish",
                "every client finishes",
            ),
            PropertyName::TokenMonotonic => {
                ("every grant carries a larger token than the one before", "two grants are issued")
            }
            PropertyName::NoDuplicateEffect => (
                "no external side effect is performed twice for the same item",
                "some external side effect is performed",
            ),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether the property says anything about a run of this workload and protocol.
    pub fn applies(self, Scope { workload, tokens, side_effect }: Scope) -> bool {
        match self {
            PropertyName::MutualExclusion | PropertyName::NoStaleWrite | PropertyName::Available => {
                workload.uses_lock()
            }
            PropertyName::NoOversell => {
                matches!(workload, Workload::Oversell | Workload::AtomicDecrement)
            }
            PropertyName::DeadlockFree => true,
            PropertyName::Reentrant => workload == Workload::Reentrant,
            PropertyName::TokenMonotonic => tokens && workload.uses_lock(),
            PropertyName::NoDuplicateEffect => side_effect,
        }
    }

    /// Liveness properties are judged on the whole explored graph, not on one state.
    pub fn is_liveness(self) -> bool {
        matches!(self, PropertyName::DeadlockFree | PropertyName::Available)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The run so far, as properties need it. Small on purpose: it is part of every world state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Monitor {
    /// Nesting depth of each client's hold; > 0 means it believes it holds the lock.
    depth: [u8; MAX_CLIENTS],
    /// Sequence number (in grant order) of each client's latest grant; 0: none yet.
    grant_of: [u8; MAX_CLIENTS],
    grants: u8,
    /// Highest grant sequence number the resource has served a request under.
    resource_seen: u8,
    last_token: Option<u64>,
    stock: i64,
    sales: i64,
    /// Some write was accepted (the `no_stale_write` witness).
    wrote: bool,
    /// Clients that released one level of a nested hold and still hold the rest.
    partial: u32,
    done: u32,
    dead: u32,
    /// Sticky: properties broken by an event (bit = PropertyName as u8).
    broken: u8,
    /// Sticky: some owner was granted a nested hold (the reentrancy witness is an event).
    nested: bool,
    /// Items whose external side effect has been performed (bit = item number).
    effects: u64,
    initial_stock: i64,
    clients: u8,
}

impl Monitor {
    pub fn new(clients: usize, stock: i64) -> Self {
        Monitor {
            depth: [0; MAX_CLIENTS],
            grant_of: [0; MAX_CLIENTS],
            grants: 0,
            resource_seen: 0,
            last_token: None,
            stock,
            sales: 0,
            wrote: false,
            partial: 0,
            done: 0,
            dead: 0,
            broken: 0,
            nested: false,
            effects: 0,
            initial_stock: stock,
            clients: clients as u8,
        }
    }

    fn clients(&self) -> usize {
        self.clients as usize
    }

    fn break_(&mut self, p: PropertyName) {
        self.broken |= p.bit();
    }

    fn seq(&self, client: NodeId) -> u8 {
        self.grant_of.get(client).copied().unwrap_or(0)
    }

    fn check_stock(&mut self) {
        if self.stock < 0 || self.stock != self.initial_stock - self.sales {
            self.break_(PropertyName::NoOversell);
        }
    }

    pub fn observe(&mut self, obs: &Observation) {
        match *obs {
            Observation::SideEffect { item, .. } => {
                assert!((0..64).contains(&item), "side-effect item {item} out of range (stock is validated to 1..=63)");
                let bit = 1u64 << item;
                if self.effects & bit != 0 {
                    self.break_(PropertyName::NoDuplicateEffect);
                }
                self.effects |= bit;
            }
            Observation::Granted { client, token } => {
                if (0..self.clients()).any(|d| d != client && self.partial & (1 << d) != 0) {
                    self.break_(PropertyName::Reentrant);
                }
                if let (Some(t), Some(last)) = (token, self.last_token)
                    && t <= last
                {
                    self.break_(PropertyName::TokenMonotonic);
                }
                if token.is_some() {
                    self.last_token = token;
                }
                self.grants = self.grants.saturating_add(1);
                if let Some(g) = self.grant_of.get_mut(client) {
                    *g = self.grants;
                }
            }
            Observation::Acquired { client, depth } => {
                assert!(
                    self.seq(client) > 0,
                    "observation contract: client {client} believes it holds a lock that was never granted to it"
                );
                self.depth[client] = depth;
                self.nested |= depth > 1;
            }
            Observation::Released { client, depth } => {
                self.depth[client] = depth;
                if depth > 0 {
                    self.partial |= 1 << client;
                } else {
                    self.partial &= !(1 << client);
                }
            }
            Observation::LeaseLapsed { client } | Observation::Lost { client, stops: true } => {
                self.depth[client] = 0;
                self.partial &= !(1 << client);
            }
            Observation::NestedDenied { .. } => self.break_(PropertyName::Reentrant),
            Observation::Read { client, .. } => self.resource_seen = self.resource_seen.max(self.seq(client)),
            Observation::WriteAccepted { client, value, sale, .. } => {
                let seq = self.seq(client);
                assert!(
                    seq > 0,
                    "observation contract: the resource accepted a write from client {client}, which was never granted the lock"
                );
                if seq < self.resource_seen {
                    self.break_(PropertyName::NoStaleWrite);
                }
                self.resource_seen = self.resource_seen.max(seq);
                self.wrote = true;
                if sale {
                    self.sales += 1;
                    self.stock = value;
                    self.check_stock();
                }
            }
            Observation::Decremented { stock, .. } => {
                self.sales += 1;
                self.stock = stock;
                self.check_stock();
            }
            // Back to the last committed stock: what was sold since was not (a stock already
            // wrong before the transaction has broken the property for good).
            Observation::RolledBack { stock, .. } => {
                self.stock = stock;
                self.sales = self.initial_stock - stock;
            }
            Observation::Done { client } => self.done |= 1 << client,
            Observation::Waiting { .. }
            | Observation::ReleasedOther { .. }
            | Observation::Lost { stops: false, .. }
            | Observation::Expired { .. }
            | Observation::WriteRejected { .. }
            | Observation::SoldOut { .. } => {}
        }
    }

    /// What the monitor knows of one client, without its id (orders clients for symmetry).
    pub fn client_key(&self, c: NodeId) -> (u8, u8, u32) {
        let bits = |m: u32| (m >> c) & 1;
        (self.depth[c], self.grant_of[c], bits(self.partial) | bits(self.done) << 1 | bits(self.dead) << 2)
    }

    /// Renames clients: client `c` becomes `map[c]`.
    pub fn permute(&mut self, map: &[NodeId]) {
        let (depth, grant_of) = (self.depth, self.grant_of);
        let (partial, done, dead) = (self.partial, self.done, self.dead);
        let (mut p, mut d, mut x) = (0, 0, 0);
        for c in 0..self.clients() {
            let to = map[c];
            self.depth[to] = depth[c];
            self.grant_of[to] = grant_of[c];
            p |= ((partial >> c) & 1) << to;
            d |= ((done >> c) & 1) << to;
            x |= ((dead >> c) & 1) << to;
        }
        (self.partial, self.done, self.dead) = (p, d, x);
    }

    /// A crashed client believes nothing and will never finish.
    pub fn crashed(&mut self, client: NodeId) {
        if client < self.clients() {
            self.depth[client] = 0;
            self.partial &= !(1 << client);
            self.dead |= 1 << client;
        }
    }

    pub fn client_finished(&self, c: NodeId) -> bool {
        (self.done | self.dead) & (1 << c) != 0
    }

    /// Every client has finished or died: the goal of the liveness properties.
    pub fn finished(&self) -> bool {
        let all = (1u32 << self.clients()) - 1;
        (self.done | self.dead) == all
    }

    /// Whether the safety property `p` holds in this state (liveness properties: always true here).
    pub fn holds(&self, p: PropertyName) -> bool {
        match p {
            PropertyName::MutualExclusion => self.depth.iter().filter(|&&d| d > 0).count() <= 1,
            PropertyName::DeadlockFree | PropertyName::Available => true,
            _ => self.broken & p.bit() == 0,
        }
    }

    /// Whether the `sometimes` partner of `p` is true in this state.
    pub fn witness(&self, p: PropertyName) -> bool {
        match p {
            PropertyName::MutualExclusion => self.depth.iter().any(|&d| d > 0),
            PropertyName::NoStaleWrite => self.wrote,
            PropertyName::NoOversell => self.sales > 0,
            PropertyName::DeadlockFree | PropertyName::Available => self.finished() && self.dead == 0,
            PropertyName::Reentrant => self.nested,
            PropertyName::TokenMonotonic => self.grants >= 2,
            PropertyName::NoDuplicateEffect => self.effects != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation::*;

    fn run(clients: usize, stock: i64, obs: &[Observation]) -> Monitor {
        let mut m = Monitor::new(clients, stock);
        for o in obs {
            m.observe(o);
        }
        m
    }

    /// Client `c` took the lock twice and gave one level back: it still holds the rest.
    fn partial_hold(c: NodeId) -> [Observation; 3] {
        [Granted { client: c, token: None }, Acquired { client: c, depth: 2 }, Released { client: c, depth: 1 }]
    }

    /// One client of each kind the monitor tells apart: 0 crashed, 1 granted and done, 2 holding
    /// partially, any further one knowing nothing.
    fn one_of_each(clients: usize) -> Monitor {
        let mut m = run(
            clients,
            1,
            &[&partial_hold(2)[..], &[Granted { client: 1, token: None }, Done { client: 1 }]].concat(),
        );
        m.crashed(0);
        m
    }

    #[test]
    fn two_believers_break_mutual_exclusion_until_one_crashes() {
        let g = |c| Granted { client: c, token: None };
        let mut m = run(2, 1, &[g(0), g(1), Acquired { client: 0, depth: 1 }, Acquired { client: 1, depth: 1 }]);
        assert!(!m.holds(PropertyName::MutualExclusion));
        m.crashed(0);
        assert!(m.holds(PropertyName::MutualExclusion));
    }

    #[test]
    fn a_write_under_an_older_grant_after_a_newer_one_was_served_is_stale() {
        let base = [
            Granted { client: 0, token: None },
            Granted { client: 1, token: None },
            Read { client: 1, token: None, stock: 1 },
        ];
        let stale = WriteAccepted { client: 0, token: None, value: 0, sale: true, before: 1 };
        let m = run(2, 1, &[&base[..], std::slice::from_ref(&stale)].concat());
        assert!(!m.holds(PropertyName::NoStaleWrite));
        let m = run(2, 1, &[&base[..2], &[stale]].concat());
        assert!(m.holds(PropertyName::NoStaleWrite), "nobody newer had touched the resource yet");
    }

    #[test]
    fn lost_update_is_an_oversell() {
        let g = |c| Granted { client: c, token: None };
        let w = |c| WriteAccepted { client: c, token: None, value: 0, sale: true, before: 1 };
        assert!(run(2, 1, &[g(0), w(0)]).holds(PropertyName::NoOversell));
        assert!(!run(2, 1, &[g(0), w(0), g(1), w(1)]).holds(PropertyName::NoOversell));
    }

    #[test]
    fn a_rolled_back_sale_was_not_sold_but_an_oversell_before_it_stays() {
        let g = |c| Granted { client: c, token: None };
        let w = |c| WriteAccepted { client: c, token: None, value: 0, sale: true, before: 1 };
        let undo = RolledBack { client: 0, stock: 1 };
        assert!(run(2, 1, &[g(0), w(0), undo.clone(), g(1), w(1)]).holds(PropertyName::NoOversell));
        assert!(!run(2, 1, &[g(0), w(0), g(1), w(1), undo]).holds(PropertyName::NoOversell));
    }

    #[test]
    #[should_panic(expected = "observation contract")]
    fn a_write_from_a_client_nobody_granted_breaks_the_contract() {
        run(2, 1, &[WriteAccepted { client: 1, token: None, value: 0, sale: true, before: 1 }]);
    }

    #[test]
    #[should_panic(expected = "observation contract")]
    fn a_belief_nobody_granted_breaks_the_contract() {
        run(2, 1, &[Acquired { client: 0, depth: 1 }]);
    }

    #[test]
    fn a_repeated_token_breaks_monotonicity() {
        let g = |c, t| Granted { client: c, token: Some(t) };
        assert!(run(2, 1, &[g(0, 1), g(1, 2)]).holds(PropertyName::TokenMonotonic));
        assert!(!run(2, 1, &[g(0, 1), g(1, 1)]).holds(PropertyName::TokenMonotonic));
    }

    #[test]
    fn granting_another_client_during_a_partial_release_breaks_reentrancy() {
        let obs = [&partial_hold(0)[..], &[Granted { client: 1, token: None }]].concat();
        assert!(!run(2, 1, &obs).holds(PropertyName::Reentrant));
        assert!(run(2, 1, &obs[..3]).holds(PropertyName::Reentrant));
        let by_client_1 = [&partial_hold(1)[..], &[Granted { client: 0, token: None }]].concat();
        assert!(!run(2, 1, &by_client_1).holds(PropertyName::Reentrant), "whichever client holds partially");
    }

    #[test]
    fn only_a_nested_hold_witnesses_reentrancy_and_the_witness_stays() {
        let first = [Granted { client: 0, token: None }, Acquired { client: 0, depth: 1 }];
        assert!(!run(1, 1, &first).witness(PropertyName::Reentrant), "one level is no reentrancy");
        let nested = [&first[..], &[Acquired { client: 0, depth: 2 }, Released { client: 0, depth: 1 }]].concat();
        assert!(run(1, 1, &nested).witness(PropertyName::Reentrant));
    }

    #[test]
    fn a_lapsed_lease_ends_its_own_clients_partial_hold_and_no_other() {
        let then = |lapsed| [LeaseLapsed { client: lapsed }, Granted { client: 0, token: None }];
        assert!(run(3, 1, &[&partial_hold(1)[..], &then(1)].concat()).holds(PropertyName::Reentrant));
        assert!(!run(3, 1, &[&partial_hold(1)[..], &then(2)].concat()).holds(PropertyName::Reentrant));
    }

    #[test]
    fn a_crash_ends_its_own_clients_partial_hold_and_no_other() {
        let after = |crashed| {
            let mut m = run(3, 1, &partial_hold(1));
            m.crashed(crashed);
            m.observe(&Granted { client: 0, token: None });
            m
        };
        assert!(after(1).holds(PropertyName::Reentrant));
        assert!(!after(2).holds(PropertyName::Reentrant));
    }

    /// The `sometimes` partner of mutual exclusion: a state where someone holds the lock, which a
    /// fresh start or one where the holder gave it back is not.
    #[test]
    fn only_a_held_lock_witnesses_mutual_exclusion() {
        let held = [Granted { client: 1, token: None }, Acquired { client: 1, depth: 1 }];
        assert!(!run(2, 1, &[]).witness(PropertyName::MutualExclusion));
        assert!(run(2, 1, &held).witness(PropertyName::MutualExclusion));
        let given_back = [&held[..], &[Released { client: 1, depth: 0 }]].concat();
        assert!(!run(2, 1, &given_back).witness(PropertyName::MutualExclusion));
    }

    /// Liveness is witnessed by a run where every client finished and none died; token order by
    /// two grants that carried tokens to compare.
    #[test]
    fn liveness_and_token_order_have_their_witnesses_only_once_exercised() {
        let fresh = run(2, 1, &[]);
        assert!(!fresh.witness(PropertyName::DeadlockFree) && !fresh.witness(PropertyName::TokenMonotonic));
        let g = |c, t| Granted { client: c, token: Some(t) };
        let both = run(2, 1, &[g(0, 1), Done { client: 0 }, g(1, 2), Done { client: 1 }]);
        assert!(both.witness(PropertyName::DeadlockFree) && both.witness(PropertyName::TokenMonotonic));
        let mut one_died = run(2, 1, &[g(0, 1), Done { client: 0 }]);
        one_died.crashed(1);
        assert!(one_died.finished() && !one_died.witness(PropertyName::Available));
        assert!(!one_died.witness(PropertyName::TokenMonotonic));
    }

    /// Faults may still crash a client that is done (its process stays up in the model).
    #[test]
    fn a_client_that_is_done_and_then_crashes_has_still_finished() {
        let mut m = run(3, 1, &[Done { client: 0 }]);
        m.crashed(0);
        m.crashed(1);
        assert_eq!((0..3).map(|c| m.client_finished(c)).collect::<Vec<_>>(), [true, true, false]);
        assert!(!m.finished());
        m.observe(&Done { client: 2 });
        assert!(m.finished());
    }

    /// Symmetry reduction orders clients by this key: a field left out merges states that differ.
    #[test]
    fn a_clients_symmetry_key_is_its_depth_grant_order_and_partial_done_and_dead_bits() {
        let m = one_of_each(3);
        assert_eq!([m.client_key(0), m.client_key(1), m.client_key(2)], [(0, 0, 0b100), (0, 2, 0b010), (1, 1, 0b001)]);
    }

    #[test]
    fn renaming_clients_moves_everything_the_monitor_knows_of_each() {
        let mut m = one_of_each(4);
        // Client 3 knows nothing: every client with a bit to move moves it up, never to bit 0.
        let before: Vec<_> = (0..4).map(|c| m.client_key(c)).collect();
        let map = [1, 2, 3, 0];
        m.permute(&map);
        for c in 0..4 {
            assert_eq!(m.client_key(map[c]), before[c], "client {c} renamed {}", map[c]);
        }
    }

    #[test]
    fn token_monotonicity_applies_only_to_lock_workloads_of_token_issuing_protocols() {
        let tm = PropertyName::TokenMonotonic;
        let scope = |workload, tokens| Scope { workload, tokens, side_effect: false };
        assert!(tm.applies(scope(Workload::CriticalWrite, true)));
        assert!(!tm.applies(scope(Workload::CriticalWrite, false)), "no tokens, nothing to order");
        assert!(!tm.applies(scope(Workload::AtomicDecrement, true)), "no lock, no grants");
    }

    #[test]
    fn a_second_side_effect_for_the_same_item_is_a_duplicate() {
        let e = |client, item| SideEffect { client, item };
        let m = run(2, 2, &[e(0, 2), e(1, 1)]);
        assert!(m.holds(PropertyName::NoDuplicateEffect) && m.witness(PropertyName::NoDuplicateEffect));
        assert!(!run(2, 2, &[e(0, 2), e(1, 2)]).holds(PropertyName::NoDuplicateEffect));
        assert!(!run(2, 2, &[]).witness(PropertyName::NoDuplicateEffect));
    }
}
