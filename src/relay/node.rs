//! The relay as one node for a driver, whichever backend carries its
//! blocks.
//!
//! [`RelayNode::kernel`] is the relay-mode peer state machine alone on a
//! kernel UDP socket: it receives, verifies and pushes every block itself.
//! [`RelayNode::xdp`] starts the AF_XDP data plane ([`XdpDataPlane`]) and
//! wraps the state machine in a [`ControlPlane`] that steers it. Either way
//! the driver (`crate::io::udp::UdpDriver`) runs it on the relay's socket
//! through the [`Node`] trait, so the command line, the demo and the tests
//! run the same relay.

use std::net::SocketAddr;

use rand::rngs::SmallRng;

use super::control::ControlPlane;
use super::dataplane::{StartError, XdpDataPlane, XdpOptions};
use super::fanout::FanoutLimits;
use crate::roles::{Mode, Node, Peer, PeerConfig, PeerEvent, Time, Transmit};

/// The relay on one of its two backends.
pub enum RelayNode {
    /// Kernel UDP: the state machine does everything.
    Kernel(Box<Peer>),
    /// AF_XDP: the control plane steering the workers.
    Xdp(Box<ControlPlane>),
}

impl std::fmt::Debug for RelayNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayNode")
            .field("io", &self.io())
            .finish_non_exhaustive()
    }
}

impl RelayNode {
    /// A relay on kernel UDP. `pc` is put in relay mode.
    pub fn kernel(mut pc: PeerConfig, now: Time, rng: SmallRng) -> Self {
        pc.mode = Mode::Relay;
        pc.external_fanout = false;
        RelayNode::Kernel(Box::new(Peer::new(pc, now, rng)))
    }

    /// A relay whose BLOCKs run on AF_XDP: starts the data plane on
    /// `opts.ifname` for the port of `local` (the kernel socket's address)
    /// and returns the node with the running data plane, which must live
    /// as long as the node runs. `pc` is put in relay mode with
    /// `external_fanout`.
    pub fn xdp(
        mut pc: PeerConfig,
        now: Time,
        rng: SmallRng,
        local: SocketAddr,
        opts: &XdpOptions,
        limits: FanoutLimits,
        refresh_ms: u64,
    ) -> Result<(Self, XdpDataPlane), StartError> {
        pc.mode = Mode::Relay;
        pc.external_fanout = true;
        let stream = pc.stream;
        let (plane, handles) = XdpDataPlane::start(opts, local.port(), stream)?;
        let control = ControlPlane::new(
            Peer::new(pc, now, rng),
            handles.uplink,
            handles.publishers,
            &opts.ifname,
            handles.iface,
            limits,
            refresh_ms,
        );
        Ok((RelayNode::Xdp(Box::new(control)), plane))
    }

    /// The relay's state machine.
    pub fn peer(&self) -> &Peer {
        match self {
            RelayNode::Kernel(p) => p,
            RelayNode::Xdp(c) => c.peer(),
        }
    }

    /// The state machine's next event (see [`Peer::poll_event`]).
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        match self {
            RelayNode::Kernel(p) => p.poll_event(),
            RelayNode::Xdp(c) => c.peer_mut().poll_event(),
        }
    }

    /// The control plane, on AF_XDP.
    pub fn control(&self) -> Option<&ControlPlane> {
        match self {
            RelayNode::Kernel(_) => None,
            RelayNode::Xdp(c) => Some(c),
        }
    }

    /// Which backend carries the blocks: `"xdp"` or `"udp"`.
    pub fn io(&self) -> &'static str {
        match self {
            RelayNode::Kernel(_) => "udp",
            RelayNode::Xdp(_) => "xdp",
        }
    }
}

impl Node for RelayNode {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        match self {
            RelayNode::Kernel(p) => p.handle_datagram(now, from, datagram),
            RelayNode::Xdp(c) => c.handle_datagram(now, from, datagram),
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        match self {
            RelayNode::Kernel(p) => p.handle_timeout(now),
            RelayNode::Xdp(c) => c.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            RelayNode::Kernel(p) => p.poll_transmit(),
            RelayNode::Xdp(c) => c.poll_transmit(),
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        match self {
            RelayNode::Kernel(p) => p.poll_timeout(),
            RelayNode::Xdp(c) => c.poll_timeout(),
        }
    }
}
