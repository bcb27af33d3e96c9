//! The kernel's receive-buffer drops of this process's UDP sockets, read
//! from `/proc/net/udp` and `/proc/net/udp6` (the `drops` column of each
//! socket's line, found by the socket's inode). Read once a second for the
//! counters, never on a packet's path. A flood that overruns a socket's
//! buffer is lost before any clubcast code sees it; this is where it shows.

use std::os::fd::RawFd;

/// The inode of the socket `fd`, if `fstat` works on it.
pub fn socket_inode(fd: RawFd) -> Option<u64> {
    // SAFETY: an all-zero stat is a valid out-parameter; `fd` is only read.
    let mut st: nix::libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat(2) writes into `st`, which outlives the call.
    (unsafe { nix::libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

/// The summed `drops` of the sockets with these inodes in the UDP tables
/// of this network namespace; 0 for any not found.
pub fn drops_of(inodes: &[u64]) -> u64 {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|text| parse_drops(&text, inodes))
        .sum()
}

/// The summed `drops` column of the lines of a `/proc/net/udp` table
/// whose `inode` column is one of `inodes`. Lines that do not parse are
/// skipped.
pub fn parse_drops(text: &str, inodes: &[u64]) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref
            // pointer drops
            let inode: u64 = fields.get(9)?.parse().ok()?;
            let drops: u64 = fields.last()?.parse().ok()?;
            (fields.len() >= 13 && inodes.contains(&inode)).then_some(drops)
        })
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  257: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  258: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 5
  259: garbage line
";

    #[test]
    fn drops_of_the_named_sockets_are_summed() {
        assert_eq!(parse_drops(TABLE, &[4242]), 17);
        assert_eq!(parse_drops(TABLE, &[4242, 4343]), 22);
        assert_eq!(parse_drops(TABLE, &[1]), 0);
        assert_eq!(parse_drops("", &[4242]), 0);
    }

    #[test]
    fn a_socket_of_this_process_is_found_in_the_table() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let inode = socket_inode(std::os::fd::AsRawFd::as_raw_fd(&s)).expect("an inode");
        let text = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(9) == Some(&inode.to_string())),
            "inode {inode} not listed"
        );
        assert_eq!(drops_of(&[inode]), 0);
    }
}
