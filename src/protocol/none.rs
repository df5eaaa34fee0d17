//! `none`: no lock at all. Every acquire succeeds at once, locally.
//!
//! The baseline of the seed note's oversell example: Case 1 (read, subtract in the program, write
//! the target count) without a lock loses updates (catalog #30, `no_oversell`), while Case 2
//! (`workload = "atomic_decrement"`, a conditional decrement in the database) needs no lock.

use serde::{Deserialize, Serialize};

use crate::protocol::{LockEvent, NodeId, Observation, PCx, Protocol, ResourceHome};
use crate::resource::Fencing;
use crate::spec::Env;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Options {}

pub struct NoLock;

pub fn build(_: Options, _: &Env) -> Result<NoLock, (String, String)> {
    Ok(NoLock)
}

impl Protocol for NoLock {
    type Server = ();
    type Client = ();
    type Msg = ();
    type Timer = ();
    type Durable = ();
    type Hold = ();

    fn servers(&self) -> Vec<String> {
        vec![]
    }
    fn resource(&self) -> ResourceHome {
        ResourceHome::Storage(Fencing::None)
    }
    fn issues_tokens(&self) -> bool {
        false
    }
    fn server_start(&self, _: usize, _: &mut PCx<Self>) {}
    fn server_restart(&self, _: usize, _: Option<&()>, _: &mut PCx<Self>) {}
    fn server_on_msg(&self, _: &mut (), _: NodeId, _: (), _: &mut PCx<Self>) {}
    fn server_on_timer(&self, _: &mut (), _: (), _: &mut PCx<Self>) {}

    fn acquire(&self, _: &mut (), cx: &mut PCx<Self>) -> LockEvent<()> {
        cx.observe(Observation::Granted { client: cx.me, token: None });
        LockEvent::Granted { hold: (), token: None, valid_for: None }
    }
    fn release(&self, _: &mut (), _: &(), _: &mut PCx<Self>) {}
    fn client_on_msg(&self, _: &mut (), _: NodeId, _: (), _: &mut PCx<Self>) -> LockEvent<()> {
        LockEvent::Ignore
    }
    // No lock service: nothing is ever sent or timed.
    fn show_msg(&self, _: NodeId, _: &()) -> String {
        String::new()
    }
    fn show_timer(&self, _: &()) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::property::PropertyName;
    use crate::protocol::{Machine, NodeKind};
    use crate::spec::Workload;
    use crate::system::LockSystem;

    /// No lock service: a crash or a partition aimed at the servers finds none, so the oversell
    /// without a lock is the clients' and the store's doing alone.
    #[test]
    fn without_a_lock_the_world_is_the_clients_and_the_store() {
        let system = LockSystem::new(NoLock, Env::test(2, Workload::Oversell, 3, 2));
        let kinds: Vec<(&str, NodeKind)> = system.nodes().iter().map(|n| (n.name.as_str(), n.kind)).collect();
        assert_eq!(
            kinds,
            vec![("client-0", NodeKind::Client), ("client-1", NodeKind::Client), ("storage", NodeKind::Storage)]
        );
    }

    /// Grants without a lock carry no token, so token order is not judged: a claim on it is refused.
    #[test]
    fn without_a_lock_no_token_is_issued_and_token_order_is_not_judged() {
        let spec = crate::spec::load_model(std::path::Path::new("models/oversell_no_lock.toml")).unwrap();
        let limits = crate::check::search::Limits::default();
        let judged = crate::check::judged(&spec, &NoLock, &limits).unwrap();
        assert!(judged.contains(&PropertyName::NoOversell) && !judged.contains(&PropertyName::TokenMonotonic));
    }
}
