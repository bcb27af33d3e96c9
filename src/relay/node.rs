//! The relay as one node for a driver, whichever backend carries its
//! blocks.
//!
//! Both are a [`ControlPlane`] steering the one forwarding core
//! (`crate::forward::BlockForwarder`). [`RelayNode::kernel`] runs the core
//! inline on a kernel UDP socket: the BLOCKs that reach the socket go to
//! the core and its copies leave through the socket. [`RelayNode::xdp`]
//! starts the AF_XDP data plane ([`XdpDataPlane`]), whose workers run the
//! core on their rings. Either way
//! the driver (`crate::io::udp::UdpDriver`) runs it on the relay's socket
//! through the [`Node`] trait, so the command line, the demo and the tests
//! run the same relay.

use std::net::SocketAddr;

use rand::rngs::SmallRng;

use super::control::{ControlPlane, DEFAULT_REFRESH_MS};
use super::dataplane::{StartError, XdpDataPlane, XdpOptions};
use super::fanout::FanoutLimits;
use super::next_hops::KernelNextHops;
use crate::roles::{Mode, Node, Peer, PeerConfig, PeerEvent, Time, Transmit};

/// The relay on one of its two backends.
pub enum RelayNode {
    /// Kernel UDP: the control plane with the forwarding core inline.
    Kernel(Box<ControlPlane>),
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
    /// A relay on kernel UDP. `pc` is put in relay mode with
    /// `external_fanout`: the inline forwarding core serves its IPv4
    /// uploads.
    pub fn kernel(pc: PeerConfig, now: Time, rng: SmallRng) -> Self {
        RelayNode::Kernel(Box::new(inline_plane(pc, now, rng)))
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
            Box::new(KernelNextHops::new(&opts.ifname, handles.iface)),
            limits,
            refresh_ms,
        )
        .with_sender_filter(Box::new(handles.senders));
        Ok((RelayNode::Xdp(Box::new(control)), plane))
    }

    /// The relay's state machine.
    pub fn peer(&self) -> &Peer {
        self.plane().peer()
    }

    /// The state machine's next event (see [`Peer::poll_event`]).
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.plane_mut().peer_mut().poll_event()
    }

    /// The control plane, on AF_XDP.
    pub fn control(&self) -> Option<&ControlPlane> {
        match self {
            RelayNode::Kernel(_) => None,
            RelayNode::Xdp(c) => Some(c),
        }
    }

    /// The control plane, whichever the backend.
    pub fn plane(&self) -> &ControlPlane {
        match self {
            RelayNode::Kernel(c) | RelayNode::Xdp(c) => c,
        }
    }

    fn plane_mut(&mut self) -> &mut ControlPlane {
        match self {
            RelayNode::Kernel(c) | RelayNode::Xdp(c) => c,
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

/// A relay-mode control plane with its forwarding core inline: the relay
/// on a kernel socket, and in the simulator.
pub fn inline_plane(mut pc: PeerConfig, now: Time, rng: SmallRng) -> ControlPlane {
    pc.mode = Mode::Relay;
    pc.external_fanout = true;
    ControlPlane::inline(
        Peer::new(pc, now, rng),
        FanoutLimits::default(),
        DEFAULT_REFRESH_MS,
    )
}

impl Node for RelayNode {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        self.plane_mut().handle_datagram(now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.plane_mut().handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.plane_mut().poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.plane().poll_timeout()
    }

    fn leave(&mut self, now: Time) {
        self.plane_mut().leave(now);
    }
}
