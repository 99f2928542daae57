//! Detector settings with their documented defaults (docs/detectors.md). Plain values: the
//! server's configuration file maps onto this struct; the time zone for business hours is
//! resolved by the caller.

use jiff::tz::TimeZone;

/// Working hours used for tokens without enough history of their own.
#[derive(Clone, Debug)]
pub struct BusinessHours {
    /// Working days, Monday first.
    pub days: [bool; 7],
    /// First working hour (inclusive), 0-23.
    pub start_hour: u8,
    /// End hour (exclusive), 1-24.
    pub end_hour: u8,
    /// The time zone the hours are in.
    pub tz: TimeZone,
}

impl Default for BusinessHours {
    fn default() -> Self {
        BusinessHours {
            days: [true, true, true, true, true, false, false],
            start_hour: 7,
            end_hour: 20,
            tz: TimeZone::UTC,
        }
    }
}

/// Every detector's settings.
#[derive(Clone, Debug)]
pub struct DetectConfig {
    /// IPv4 network prefix length (24).
    pub v4_prefix: u8,
    /// IPv6 network prefix length (48).
    pub v6_prefix: u8,
    /// Networks never reported as new or concurrent (your offices, your NAT egress).
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Most keys any one detector tracks (100000); beyond it the least recently seen go.
    pub max_keys: usize,
    /// A token's own history counts once it has this many events (100)…
    pub min_history_events: u64,
    /// …spread over at least this many days (7).
    pub min_history_days: u32,
    /// off_hours: only report access to sensitive routes (true).
    pub off_hours_sensitive_only: bool,
    /// off_hours: an hour this many hours away from the token's usual hours still counts as usual (2).
    pub off_hours_margin_hours: u8,
    /// off_hours and new_network: an hour up to this many hours after an hour the token was active
    /// in still counts as usual (3; never less than `off_hours_margin_hours`). People work on
    /// into the evening more often, and further, than they start early; 03:00 stays more than
    /// 3 hours after the end of a day that ran to 23:59.
    pub off_hours_evening_margin_hours: u8,
    /// off_hours: hours for tokens without enough history.
    pub business_hours: BusinessHours,
    /// concurrent_networks: window in seconds (300).
    pub concurrent_window_s: i64,
    /// concurrent_networks: distinct networks in the window (3).
    pub concurrent_networks: usize,
    /// brute_force: window in seconds (300).
    pub brute_force_window_s: i64,
    /// brute_force: bad credentials from one network in the window (20).
    pub brute_force_threshold: usize,
    /// scope_probing: window in seconds (600).
    pub probing_window_s: i64,
    /// scope_probing: distinct routes denied for insufficient scope in the window (5).
    pub probing_routes: usize,
    /// revoked/expired use: one finding per token per this many seconds (3600).
    pub misuse_window_s: i64,
    /// dormant_reactivation: silence in days (30).
    pub dormant_days: u32,
    /// enumeration: window in seconds (300).
    pub enumeration_window_s: i64,
    /// enumeration: distinct ids on one route in the window, at least (50)…
    pub enumeration_min_ids: usize,
    /// …and this many times the token's usual number (5).
    pub enumeration_factor: f64,
    /// volume_spike: bucket in seconds (300).
    pub volume_bucket_s: i64,
    /// volume_spike: requests in a bucket, at least (200)…
    pub volume_min_requests: u64,
    /// …and this many times the token's usual rate (10)…
    pub volume_factor: f64,
    /// …and this many times its busiest bucket of each of the last 7 days (3).
    pub volume_peak_factor: f64,
    /// expired_token_use: presentations this many seconds after `expires_at` from a network the
    /// token was used from before are a client that has not picked up its renewed token yet, not
    /// reported unless they go on past it (900).
    pub expired_grace_s: i64,
    /// new_network and concurrent_networks: a network that this many other tokens use
    /// regularly (on two days or more) is one of the organization's own (an office, a VPN egress,
    /// a CI runner pool), not a new network for the next token that uses it (2).
    pub shared_network_tokens: u32,
    /// new_network: a new network is reported at once only with a second sign of another party
    /// (a client, route or hour the token never used, or going back and forth between networks);
    /// without one it is held as a move of the token's owner. Going back and forth means the
    /// token left one network and used it again within this many seconds, using the other in
    /// between (14400, 4 hours).
    pub new_network_back_and_forth_s: i64,
    /// new_network: a token gets at most one held (unreported) new network in this many days;
    /// the next new network within them is reported (30). With 0, nothing is held: every new
    /// network is reported, signs or not.
    pub new_network_quiet_days: u32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            v4_prefix: 24,
            v6_prefix: 48,
            trusted_networks: Vec::new(),
            max_keys: 100_000,
            min_history_events: 100,
            min_history_days: 7,
            off_hours_sensitive_only: true,
            off_hours_margin_hours: 2,
            off_hours_evening_margin_hours: 3,
            business_hours: BusinessHours::default(),
            concurrent_window_s: 300,
            concurrent_networks: 3,
            brute_force_window_s: 300,
            brute_force_threshold: 20,
            probing_window_s: 600,
            probing_routes: 5,
            misuse_window_s: 3600,
            dormant_days: 30,
            enumeration_window_s: 300,
            enumeration_min_ids: 50,
            enumeration_factor: 5.0,
            volume_bucket_s: 300,
            volume_min_requests: 200,
            volume_factor: 10.0,
            volume_peak_factor: 3.0,
            expired_grace_s: 900,
            shared_network_tokens: 2,
            new_network_back_and_forth_s: 4 * 3600,
            new_network_quiet_days: 30,
        }
    }
}

impl DetectConfig {
    /// Whether an address is in a trusted network.
    pub fn trusted(&self, ip: &str) -> bool {
        !self.trusted_networks.is_empty() && ip.parse().is_ok_and(|ip| token::cidr_contains(&self.trusted_networks, ip))
    }
}
