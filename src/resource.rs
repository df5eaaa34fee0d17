//! The protected resource: one stock counter, as in the seed note's inventory example.
//!
//! It serves reads, absolute writes (Case 1: the client computed the new count) and conditional
//! decrements (Case 2: `UPDATE .. SET stock = stock - 1 WHERE stock >= 1`). With fencing it remembers
//! the highest token it has seen and rejects lower ones (Kleppmann 2016; catalog S1). Fencing reads
//! too closes the gap of catalog S1(c): a late write landing before the next holder's first write.
//! With a version column (optimistic concurrency, catalog S4) reads return the row's version and a
//! write names the version it read: `UPDATE .. SET stock = B, version = v + 1 WHERE version = v`.

use serde::{Deserialize, Serialize};

use crate::protocol::{Cx, NodeId, Observation, Wire};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fencing {
    None,
    Writes,
    ReadsAndWrites,
    /// No tokens: a version column checked by each write (`db` `lock = "optimistic"`).
    Version,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResReq {
    /// `session`: which of the client's grants the request is made under (a database connection's
    /// transaction); only a store that binds requests to the lock (`db` `for_update`) looks at it.
    Read {
        token: Option<u64>,
        session: i64,
    },
    /// `sale` marks a write that sells one item (the oversell workload).
    Write {
        token: Option<u64>,
        session: i64,
        value: i64,
        sale: bool,
    },
    Decrement,
    /// A write that changes the row only if its version is still the one read.
    CasWrite {
        version: u64,
        value: i64,
    },
}

impl ResReq {
    pub fn token(&self) -> Option<u64> {
        match self {
            ResReq::Read { token, .. } | ResReq::Write { token, .. } => *token,
            ResReq::Decrement | ResReq::CasWrite { .. } => None,
        }
    }

    pub fn session(&self) -> Option<i64> {
        match self {
            ResReq::Read { session, .. } | ResReq::Write { session, .. } => Some(*session),
            ResReq::Decrement | ResReq::CasWrite { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResReply {
    Stock(i64),
    /// A read of a versioned row.
    Row {
        stock: i64,
        version: u64,
    },
    WriteOk,
    /// `UPDATE 0`: the version moved on since the read.
    Conflict,
    Rejected,
    Decremented,
    SoldOut,
}

fn with_token(t: &Option<u64>) -> String {
    t.map(|t| format!(" [token {t}]")).unwrap_or_default()
}

impl std::fmt::Display for ResReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResReq::Read { token, .. } => write!(f, "SELECT stock{}", with_token(token)),
            ResReq::Write { token, value, .. } => write!(f, "UPDATE SET stock = {value}{}", with_token(token)),
            ResReq::Decrement => f.write_str("UPDATE SET stock = stock - 1 WHERE stock >= 1"),
            ResReq::CasWrite { version, value } => {
                write!(f, "UPDATE SET stock = {value}, version = {} WHERE version = {version}", version + 1)
            }
        }
    }
}

impl std::fmt::Display for ResReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResReply::Stock(s) => write!(f, "stock = {s}"),
            ResReply::Row { stock, version } => write!(f, "stock = {stock}, version = {version}"),
            ResReply::Conflict => f.write_str("UPDATE 0 (the version moved on)"),
            ResReply::WriteOk => f.write_str("UPDATE 1"),
            ResReply::Rejected => f.write_str("REJECTED"),
            ResReply::Decremented => f.write_str("UPDATE 1"),
            ResReply::SoldOut => f.write_str("UPDATE 0 (sold out)"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resource {
    pub stock: i64,
    pub max_token: Option<u64>,
    pub fencing: Fencing,
    /// The row's version column (only [`Fencing::Version`] moves it).
    pub version: u64,
}

impl Resource {
    pub fn new(stock: i64, fencing: Fencing) -> Self {
        Resource { stock, max_token: None, fencing, version: 0 }
    }

    /// A token lower than the highest seen is stale; an equal one is the current holder's.
    fn admits(&mut self, token: Option<u64>, registers: bool) -> bool {
        let Some(t) = token else { return true };
        if self.fencing == Fencing::None {
            return true;
        }
        if self.max_token.is_some_and(|m| t < m) {
            return false;
        }
        if registers {
            self.max_token = Some(t);
        }
        true
    }

    /// Serves one request, replying to `from` and recording what happened.
    pub fn handle<M, T, D>(&mut self, from: NodeId, req: ResReq, cx: &mut Cx<Wire<M>, T, D>) {
        let reply = match req {
            ResReq::Read { token, .. } => {
                let registers = self.fencing == Fencing::ReadsAndWrites;
                if self.admits(token, registers) {
                    cx.observe(Observation::Read { client: from, token, stock: self.stock });
                    if self.fencing == Fencing::Version {
                        ResReply::Row { stock: self.stock, version: self.version }
                    } else {
                        ResReply::Stock(self.stock)
                    }
                } else {
                    cx.observe(Observation::WriteRejected { client: from, token });
                    ResReply::Rejected
                }
            }
            ResReq::Write { token, value, sale, .. } => {
                if self.admits(token, true) {
                    let before = std::mem::replace(&mut self.stock, value);
                    cx.observe(Observation::WriteAccepted { client: from, token, value, sale, before });
                    ResReply::WriteOk
                } else {
                    cx.observe(Observation::WriteRejected { client: from, token });
                    ResReply::Rejected
                }
            }
            ResReq::CasWrite { version, value } => {
                assert_eq!(self.fencing, Fencing::Version, "a versioned write to a row without a version column");
                if version == self.version {
                    let before = std::mem::replace(&mut self.stock, value);
                    self.version += 1;
                    cx.observe(Observation::WriteAccepted { client: from, token: None, value, sale: true, before });
                    ResReply::WriteOk
                } else {
                    cx.observe(Observation::WriteRejected { client: from, token: None });
                    ResReply::Conflict
                }
            }
            ResReq::Decrement => {
                if self.stock >= 1 {
                    self.stock -= 1;
                    cx.observe(Observation::Decremented { client: from, stock: self.stock });
                    ResReply::Decremented
                } else {
                    cx.observe(Observation::SoldOut { client: from });
                    ResReply::SoldOut
                }
            }
        };
        cx.send(from, Wire::ResReply(reply));
    }

    /// A request refused before it reached the data (e.g. its transaction was aborted).
    pub fn refuse<M, T, D>(from: NodeId, req: &ResReq, cx: &mut Cx<Wire<M>, T, D>) {
        cx.observe(Observation::WriteRejected { client: from, token: req.token() });
        cx.send(from, Wire::ResReply(ResReply::Rejected));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type C = Cx<Wire<()>, (), ()>;

    #[test]
    fn fencing_rejects_a_lower_token_and_admits_an_equal_one() {
        let mut r = Resource::new(5, Fencing::Writes);
        let mut cx = C::new(9, 0);
        r.handle(0, ResReq::Write { token: Some(2), session: 0, value: 4, sale: true }, &mut cx);
        r.handle(1, ResReq::Write { token: Some(1), session: 0, value: 3, sale: true }, &mut cx);
        r.handle(0, ResReq::Write { token: Some(2), session: 0, value: 3, sale: true }, &mut cx);
        assert_eq!(r.stock, 3);
        let rejected = cx
            .effects
            .iter()
            .filter(|e| matches!(e, crate::protocol::Effect::Observe(Observation::WriteRejected { .. })))
            .count();
        assert_eq!(rejected, 1);
    }

    #[test]
    fn write_only_fencing_lets_a_stale_write_in_before_the_new_holder_writes() {
        for (fencing, stale_accepted) in [(Fencing::Writes, true), (Fencing::ReadsAndWrites, false)] {
            let mut r = Resource::new(1, fencing);
            let mut cx = C::new(9, 0);
            r.handle(1, ResReq::Read { token: Some(2), session: 0 }, &mut cx);
            r.handle(0, ResReq::Write { token: Some(1), session: 0, value: 0, sale: true }, &mut cx);
            assert_eq!(r.stock == 0, stale_accepted, "{fencing:?}");
        }
    }

    #[test]
    fn a_versioned_write_of_a_stale_version_changes_nothing() {
        let mut r = Resource::new(2, Fencing::Version);
        let mut cx = C::new(9, 0);
        r.handle(0, ResReq::Read { token: None, session: 0 }, &mut cx);
        r.handle(0, ResReq::CasWrite { version: 0, value: 1 }, &mut cx);
        r.handle(1, ResReq::CasWrite { version: 0, value: 1 }, &mut cx);
        assert_eq!((r.stock, r.version), (1, 1));
        let replies: Vec<_> = cx
            .effects
            .iter()
            .filter_map(|e| match e {
                crate::protocol::Effect::Send { msg: Wire::ResReply(r), .. } => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(replies, vec![ResReply::Row { stock: 2, version: 0 }, ResReply::WriteOk, ResReply::Conflict]);
    }

    #[test]
    fn a_refused_request_is_a_rejected_write_carrying_its_token() {
        use crate::protocol::Effect::{Observe, Send};
        let mut cx = C::new(9, 0);
        Resource::refuse(3, &ResReq::Write { token: Some(7), session: 0, value: 1, sale: true }, &mut cx);
        Resource::refuse(4, &ResReq::Decrement, &mut cx);
        let rejected = |to| Send { to, msg: Wire::ResReply(ResReply::Rejected) };
        assert_eq!(
            cx.effects,
            vec![
                Observe(Observation::WriteRejected { client: 3, token: Some(7) }),
                rejected(3),
                Observe(Observation::WriteRejected { client: 4, token: None }),
                rejected(4),
            ]
        );
    }

    #[test]
    fn decrement_never_goes_below_zero() {
        let mut r = Resource::new(1, Fencing::None);
        let mut cx = C::new(9, 0);
        r.handle(0, ResReq::Decrement, &mut cx);
        r.handle(1, ResReq::Decrement, &mut cx);
        assert_eq!(r.stock, 0);
    }
}

crate::no_ids!(ResReq, ResReply, Resource);
