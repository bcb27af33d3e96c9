//! The drivers' clock: wall-clock microseconds since the UNIX epoch.
//!
//! Every driver on a machine stamps datagrams and timers with this one
//! clock, so roles in different threads and processes agree on what `now`
//! is. The protocol needs that: a block's one-way delay is measured by
//! comparing the sender's send time with the receiver's arrival time, which
//! only means something when both read the same clock (on one machine) or
//! synchronised clocks (NTP across machines). The price of a wall clock is
//! that it can step when the system time is set; roles must treat time
//! going backwards as "no time passed", never as an error.

use crate::roles::Time;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the UNIX epoch. A clock set before 1970
/// reads as `Time(0)`; one past the year 586 912 saturates.
pub fn now() -> Time {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => Time(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        Err(_) => Time(0),
    }
}
