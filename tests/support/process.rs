//! Child processes for the tests that run `clubcast` roles (and tools such
//! as ffmpeg) as processes: a handle that kills its child by PID when it
//! drops, so a failing test leaves nothing running, and a free loopback
//! port to give a role.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::Child;

/// A child process, killed and reaped when dropped.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
