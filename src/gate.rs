//! Who may open a WebSocket or make a room (issue 16): a cap on open WebSockets in all and per
//! client address, and a rate of room creation per address. Counts and buckets keyed by
//! address, time passed in; no I/O, no clock. Addresses are IPv4 addresses or IPv6 /64s (one
//! machine usually holds a whole /64).

use crate::room::Bucket;
use std::collections::HashMap;
use std::net::IpAddr;

/// The caps `sgp serve` enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct Caps {
    /// Open WebSockets at once, from everyone (`--max-connections`).
    pub max_connections: usize,
    /// Open WebSockets at once from one address (`--max-per-address`).
    pub per_address: u32,
    /// Rooms one address may create per minute (`--rooms-per-minute`), a burst of as many.
    pub rooms_per_minute: u32,
    /// Connections of one address watching a room as observers (each is sent every board).
    pub observers_per_address: u32,
}

/// File descriptors kept for what is not a WebSocket (the listener, `/healthz`, `/metrics`,
/// a page's own requests): at least this many, or a twentieth of the limit.
pub const FD_RESERVE: usize = 64;

impl Caps {
    /// The default caps for a process allowed `nofile` open files.
    pub fn for_fd_limit(nofile: u64) -> Caps {
        let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
        let reserve = FD_RESERVE.max(nofile / 20);
        Caps { max_connections: nofile.saturating_sub(reserve).max(1), per_address: 64, rooms_per_minute: 30, observers_per_address: 16 }
    }
}

/// Why a WebSocket was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The server holds `max_connections` WebSockets.
    ServerFull,
    /// This address holds `per_address` WebSockets.
    AddressFull,
}

impl Refused {
    /// A stable code, as the error codes of the protocol are.
    pub fn code(self) -> &'static str {
        match self {
            Refused::ServerFull => "server_full",
            Refused::AddressFull => "too_many_connections",
        }
    }
}

/// The key an address is counted under: itself (IPv4), or its /64 (IPv6).
pub fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Buckets of room creation kept at most (idle ones are dropped first).
const MAX_BUCKETS: usize = 100_000;

/// The counts. Keyed with std's SipHash, not the server's `FastMap`: addresses are chosen by
/// clients (an IPv6 client picks its /64's neighbours), and must not crowd a bucket.
#[derive(Debug)]
pub struct Gate {
    caps: Caps,
    open: HashMap<IpAddr, u32>,
    total: usize,
    creates: HashMap<IpAddr, (Bucket, i64)>,
    observers: HashMap<IpAddr, u32>,
}

impl Gate {
    pub fn new(caps: Caps) -> Gate {
        Gate { caps, open: HashMap::new(), total: 0, creates: HashMap::new(), observers: HashMap::new() }
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// WebSockets open now.
    pub fn open(&self) -> usize {
        self.total
    }

    /// Lets one more WebSocket in from `addr`, or says why not. Every `Ok` must be given back
    /// with [`Gate::release`].
    pub fn admit(&mut self, addr: IpAddr) -> Result<(), Refused> {
        if self.total >= self.caps.max_connections {
            return Err(Refused::ServerFull);
        }
        let n = self.open.entry(key(addr)).or_insert(0);
        if *n >= self.caps.per_address {
            return Err(Refused::AddressFull);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// A WebSocket from `addr` has closed.
    pub fn release(&mut self, addr: IpAddr) {
        let k = key(addr);
        if let Some(n) = self.open.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&k);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// May one more connection of `addr` watch a room?
    pub fn may_observe(&self, addr: IpAddr) -> bool {
        self.observers.get(&key(addr)).copied().unwrap_or(0) < self.caps.observers_per_address
    }

    /// A connection of `addr` now watches a room (it must [`Gate::unobserve`] when it stops).
    pub fn observe(&mut self, addr: IpAddr) {
        *self.observers.entry(key(addr)).or_insert(0) += 1;
    }

    pub fn unobserve(&mut self, addr: IpAddr) {
        let k = key(addr);
        if let Some(n) = self.observers.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.observers.remove(&k);
            }
        }
    }

    /// May `addr` create a room at `now` (µs)? Takes one from its bucket if so.
    pub fn may_create(&mut self, addr: IpAddr, now: i64) -> bool {
        let burst = f64::from(self.caps.rooms_per_minute);
        let per_sec = burst / 60.0;
        if self.creates.len() >= MAX_BUCKETS {
            // A bucket idle for a minute is full again: forgetting it changes nothing.
            self.creates.retain(|_, (_, at)| now - *at < 60_000_000);
        }
        let (bucket, at) = self.creates.entry(key(addr)).or_insert_with(|| (Bucket::full(burst, now), now));
        *at = now;
        bucket.take(now, burst, per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_and_total_caps() {
        let mut g = Gate::new(Caps { max_connections: 5, per_address: 2, rooms_per_minute: 30, observers_per_address: 1 });
        assert_eq!(g.admit(ip("127.0.0.2")), Ok(()));
        assert_eq!(g.admit(ip("127.0.0.2")), Ok(()));
        assert_eq!(g.admit(ip("127.0.0.2")), Err(Refused::AddressFull));
        assert_eq!(g.admit(ip("127.0.0.1")), Ok(()));
        g.release(ip("127.0.0.2"));
        assert_eq!(g.admit(ip("127.0.0.2")), Ok(()));
        assert_eq!(g.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(g.admit(ip("10.0.0.2")), Ok(()));
        assert_eq!(g.open(), 5);
        assert_eq!(g.admit(ip("10.0.0.3")), Err(Refused::ServerFull));
        // Releasing what was never admitted changes nothing.
        g.release(ip("192.0.2.9"));
        assert_eq!(g.open(), 5);
        for a in ["127.0.0.2", "127.0.0.2", "127.0.0.1", "10.0.0.1", "10.0.0.2"] {
            g.release(ip(a));
        }
        assert_eq!((g.open(), g.open.len()), (0, 0));
    }

    #[test]
    fn an_ipv6_machine_is_its_slash_64() {
        let mut g = Gate::new(Caps { max_connections: 100, per_address: 2, rooms_per_minute: 30, observers_per_address: 1 });
        assert_eq!(g.admit(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(g.admit(ip("2001:db8:1:2:ffff::7")), Ok(()));
        assert_eq!(g.admit(ip("2001:db8:1:2::9")), Err(Refused::AddressFull));
        assert_eq!(g.admit(ip("2001:db8:1:3::1")), Ok(()));
        // An IPv4-mapped address is the IPv4 address.
        assert_eq!(key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn room_creation_rate_per_address() {
        let mut g = Gate::new(Caps { max_connections: 100, per_address: 2, rooms_per_minute: 3, observers_per_address: 1 });
        let t = 1_000_000_000;
        for _ in 0..3 {
            assert!(g.may_create(ip("127.0.0.2"), t));
        }
        assert!(!g.may_create(ip("127.0.0.2"), t));
        assert!(g.may_create(ip("127.0.0.1"), t), "another address is not affected");
        // One more every 20 s.
        assert!(!g.may_create(ip("127.0.0.2"), t + 19_000_000));
        assert!(g.may_create(ip("127.0.0.2"), t + 21_000_000));
    }

    #[test]
    fn observers_per_address() {
        let mut g = Gate::new(Caps { max_connections: 100, per_address: 50, rooms_per_minute: 3, observers_per_address: 2 });
        for _ in 0..2 {
            assert!(g.may_observe(ip("127.0.0.2")));
            g.observe(ip("127.0.0.2"));
        }
        assert!(!g.may_observe(ip("127.0.0.2")));
        assert!(g.may_observe(ip("127.0.0.3")));
        g.unobserve(ip("127.0.0.2"));
        assert!(g.may_observe(ip("127.0.0.2")));
        g.unobserve(ip("127.0.0.2"));
        g.unobserve(ip("127.0.0.2")); // once too often: nothing below zero
        assert!(g.observers.is_empty());
    }

    #[test]
    fn defaults_keep_a_reserve_of_descriptors() {
        assert_eq!(Caps::for_fd_limit(1024).max_connections, 960);
        assert_eq!(Caps::for_fd_limit(65_536).max_connections, 65_536 - 3276);
        assert_eq!(Caps::for_fd_limit(10).max_connections, 1);
        let c = Caps::for_fd_limit(u64::MAX);
        assert!(c.max_connections > 1 && (c.per_address, c.rooms_per_minute) == (64, 30));
    }
}
