//! Normal traffic: each token's requests, day by day, from its archetype and parameters.
//!
//! People work in their own time zone (with daylight saving), take days off, now and then work
//! late or on a weekend, and move between office, VPN and home networks whose host part
//! changes (DHCP, privacy addresses). Services run 24/7 with a daily rhythm and a quieter
//! weekend. Batch jobs start nightly from cron and walk through many objects. CI runs come from
//! a shared pool of runner networks. Partners follow their own office hours. Some denials are
//! legitimate: a missing scope, a mistyped token, a wrong path, a token that expired minutes
//! before its owner renewed it. Nothing in this module is misuse; `inject` adds that.

use std::collections::BTreeMap;

use jiff::Timestamp;
use ledger::event::{Event, Kind, format_time};
use token::Reason;

use crate::rng::Rng;
use crate::world::{Archetype, End, Ids, Net, ROUTES, Route, TokenSpec, World, allows};
use crate::zone;

/// An event waiting to be released in time order, with what it belongs to.
#[derive(Debug)]
pub struct Pending {
    /// Event time in microseconds (the sort key).
    pub time_us: i64,
    /// Tie-breaker: generation order.
    pub order: u64,
    /// The token (population index) whose normal traffic it is.
    pub token: Option<u32>,
    /// The injection it belongs to.
    pub injection: Option<u32>,
    /// The event (its id and seq are assigned on release).
    pub event: Event,
}

/// Where generators put events.
#[derive(Debug, Default)]
pub struct Out {
    /// Events not yet released.
    pub pending: Vec<Pending>,
    order: u64,
}

impl Out {
    /// Adds an event.
    pub fn push(&mut self, event: Event, token: Option<u32>, injection: Option<u32>) {
        self.order += 1;
        self.pending.push(Pending { time_us: event.time.as_microsecond(), order: self.order, token, injection, event });
    }
}

/// Known tricky but legitimate activity, labelled so the scorer can say which false positives
/// it caused.
#[derive(Clone, Debug, PartialEq)]
pub struct Benign {
    /// What happened (`expired_before_renewal`, `scope_missing_after_deploy`).
    pub kind: String,
    /// The token.
    pub token_id: String,
    /// Start, microseconds.
    pub start_us: i64,
    /// End, microseconds.
    pub end_us: i64,
}

/// A time from microseconds since the epoch.
pub fn ts(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or_default()
}

/// One request to describe as an event.
#[derive(Debug)]
pub struct Call<'a> {
    /// Microseconds since the epoch.
    pub time_us: i64,
    /// Caller address.
    pub ip: &'a str,
    /// User agent.
    pub agent: &'a str,
    /// Index into [`ROUTES`].
    pub route: usize,
    /// Object id (for routes with one).
    pub id: u64,
    /// Decision.
    pub reason: Reason,
}

const NODES: [&str; 3] = ["tt-node-1", "tt-node-2", "tt-node-3"];

fn fill_request(e: &mut Event, route: &Route, path: String, c: &Call<'_>, rng: &mut Rng) {
    e.source_ip = Some(c.ip.to_owned());
    e.user_agent = Some(c.agent.to_owned());
    e.method = Some(route.method.to_owned());
    e.path = Some(path);
    e.request_id = Some(format!("req_{}", rng.hex16()));
    e.node = Some((*rng.pick(&NODES)).to_owned());
    if c.reason == Reason::Ok {
        let (status, bytes) = match (route.method, route.ids) {
            ("GET", Ids::None) => (200, rng.int(2_000, 60_000)),
            ("GET", _) if rng.chance(0.04) => (404, 180),
            ("GET", _) => (200, rng.int(400, 6_000)),
            ("POST", _) => (201, rng.int(150, 900)),
            ("DELETE", _) => (204, 0),
            _ => (200, rng.int(150, 900)),
        };
        let status = if rng.chance(0.002) { 502 } else { status };
        e.status = Some(status);
        e.bytes_out = Some(bytes as u64);
        e.latency_us = Some((rng.log_uniform(4.0, 120.0) * 1000.0) as u64);
    } else {
        e.status = Some(c.reason.http_status());
        e.bytes_out = Some(rng.int(250, 420) as u64);
        e.latency_us = Some(rng.int(80, 600) as u64);
    }
}

/// The event of a request made with a resolved token.
pub fn access_event(t: &TokenSpec, c: &Call<'_>, rng: &mut Rng) -> Event {
    let route = &ROUTES[c.route];
    let mut e = Event::new(String::new(), ts(c.time_us), Kind::Access, t.source, c.reason);
    e.token_id = Some(t.id.clone());
    e.owner = Some(t.owner.clone());
    fill_request(&mut e, route, route.path(c.id), c, rng);
    if c.reason == Reason::RouteNotFound {
        // A mistyped path: no route, so no resource or scope either.
        e.path = Some(format!("/v1/{}s/{}", route.resource.trim_end_matches('s'), c.id));
        return e;
    }
    e.route = Some(route.text());
    e.resource = Some(route.resource.to_owned());
    e.action = Some(route.action.to_owned());
    e.sensitivity = route.sensitivity.iter().map(|s| (*s).to_owned()).collect();
    e.required_scope = Some(route.scope());
    e.granted_scopes.clone_from(&t.scopes);
    match c.reason {
        Reason::InsufficientScope => {
            e.explanation = Some(format!(
                "the route {} needs {}; token {} holds {}",
                route.text(),
                route.scope(),
                t.id,
                t.scopes.join(", ")
            ));
        }
        Reason::Expired | Reason::Revoked => {}
        _ => {}
    }
    e
}

/// The event of a credential that could not be resolved (a typo or a guess).
pub fn bad_credential_event(c: &Call<'_>, source: &str, rng: &mut Rng) -> Event {
    let route = &ROUTES[c.route];
    let mut e = Event::new(String::new(), ts(c.time_us), Kind::Access, source, c.reason);
    e.token_fingerprint = Some(format!("fp_{}{}", rng.hex16(), &rng.hex16()[..8]));
    fill_request(&mut e, route, route.path(c.id), c, rng);
    e.route = Some(route.text());
    e.resource = Some(route.resource.to_owned());
    e.action = Some(route.action.to_owned());
    e.sensitivity = route.sensitivity.iter().map(|s| (*s).to_owned()).collect();
    e.required_scope = Some(route.scope());
    e.explanation = Some(match c.reason {
        Reason::MalformedToken => "the credential is not shaped like a token".to_owned(),
        Reason::BadChecksum => "the token's checksum does not match; it was mistyped or made up".to_owned(),
        _ => "no token has this id and secret".to_owned(),
    });
    e
}

/// An administrative event (token created, updated, revoked).
pub fn admin_event(w: &World, time_us: i64, operation: &str, target: &TokenSpec, rng: &mut Rng) -> Event {
    let mut e = Event::new(String::new(), ts(time_us), Kind::Admin, "admin", Reason::Ok);
    e.token_id = Some(w.admin_token.clone());
    e.owner = Some("platform-admin@example.com".to_owned());
    e.source_ip = Some("81.2.69.10".to_owned());
    e.user_agent = Some("tokentrail-cli/1.4.2".to_owned());
    e.method = Some(if operation == "token.create" { "POST" } else { "PATCH" }.to_owned());
    e.path =
        Some(if operation == "token.create" { "/v1/tokens".to_owned() } else { format!("/v1/tokens/{}", target.id) });
    e.resource = Some("tokentrail".to_owned());
    e.action = Some("admin".to_owned());
    e.status = Some(if operation == "token.create" { 201 } else { 200 });
    e.latency_us = Some(rng.int(800, 4000) as u64);
    e.request_id = Some(format!("req_{}", rng.hex16()));
    e.node = Some(NODES[0].to_owned());
    e.operation = Some(operation.to_owned());
    e.target = Some(target.id.clone());
    e.required_scope = Some("tokentrail:admin".to_owned());
    e.granted_scopes = vec!["tokentrail:admin".to_owned()];
    e
}

/// A token's generator: its parameters, its own random stream and its day-to-day state.
#[derive(Debug)]
pub struct Behaviour {
    /// The token.
    pub spec: TokenSpec,
    rng: Rng,
    home_host: u64,
    nat: Vec<u64>,
    weights: Vec<f64>,
    expiry: Option<(i64, i64)>,
    missing: Option<(i64, i64, usize)>,
    batch_base: u64,
}

fn alive(t: &TokenSpec, s: i64) -> bool {
    s >= t.created_s && t.end.is_none_or(|(_, end)| s < end)
}

impl Behaviour {
    /// The generator of one token. `window` is the scored part of the trace (seconds), where
    /// the legitimate surprises (an expiry renewed late, a scope missing after a deploy) land.
    pub fn new(spec: TokenSpec, seed: u64, window: (i64, i64), benign: &mut Vec<Benign>) -> Behaviour {
        let mut rng = Rng::stream(seed, 1000 + spec.index as u64);
        let home_host = rng.next_u64();
        let nat = (0..spec.networks.len() * 2).map(|_| rng.below(254)).collect();
        let weights = spec.routes.iter().map(|(_, w)| *w).collect();
        let mut b = Behaviour { spec, rng, home_host, nat, weights, expiry: None, missing: None, batch_base: 0 };
        b.batch_base = b.rng.below(1_000_000);
        let (from, to) = window;
        let regular = b.spec.end.is_none() && b.spec.created_s < from && to - from > 2 * 86_400;
        if b.spec.archetype == Archetype::Service && regular {
            // One service in seven sees its token expire and keeps calling for a few minutes until
            // its owner renews it.
            if b.rng.chance(0.15) {
                let start = (b.rng.int(from, to - 86_400) / 60) * 60 * 1_000_000;
                let end = start + b.rng.int(120, 600) * 1_000_000;
                b.expiry = Some((start, end));
                benign.push(Benign {
                    kind: "expired_before_renewal".to_owned(),
                    token_id: b.spec.id.clone(),
                    start_us: start,
                    end_us: end,
                });
            }
            // One in ten deploys a version calling a route it has no scope for, until rolled back.
            let lacking: Vec<usize> =
                (0..ROUTES.len()).filter(|i| !allows(&b.spec.scopes, &ROUTES[*i]) && !ROUTES[*i].sensitive()).collect();
            if b.rng.chance(0.1) && !lacking.is_empty() {
                let start = b.rng.int(from, to - 86_400) * 1_000_000;
                let end = start + b.rng.int(600, 3600) * 1_000_000;
                let route = *b.rng.pick(&lacking);
                b.missing = Some((start, end, route));
                benign.push(Benign {
                    kind: "scope_missing_after_deploy".to_owned(),
                    token_id: b.spec.id.clone(),
                    start_us: start,
                    end_us: end,
                });
            }
        }
        b
    }

    fn route(&mut self) -> usize {
        self.spec.routes[self.rng.weighted(&self.weights)].0
    }

    fn emit(&mut self, out: &mut Out, time_s: f64, ip: &str, route: usize, id: Option<u64>, reason: Reason) {
        let s = time_s as i64;
        if !alive(&self.spec, s) {
            return;
        }
        let time_us = (time_s * 1e6) as i64;
        let mut reason = reason;
        let mut route = route;
        let mut details = BTreeMap::new();
        if let Some((a, b)) = self.expiry
            && (a..b).contains(&time_us)
            && reason == Reason::Ok
        {
            reason = Reason::Expired;
            details.insert("expires_at".to_owned(), format_time(ts(a)));
        }
        if let Some((a, b, r)) = self.missing
            && (a..b).contains(&time_us)
            && reason == Reason::Ok
            && self.rng.chance(0.3)
        {
            reason = Reason::InsufficientScope;
            route = r;
        }
        let id = id.unwrap_or_else(|| ROUTES[route].random_id(&mut self.rng));
        let agent = *self.rng.pick(&self.spec.agents);
        let call = Call { time_us, ip, agent, route, id, reason };
        let mut e = access_event(&self.spec, &call, &mut self.rng);
        e.details = details;
        out.push(e, Some(self.spec.index as u32), None);
    }

    fn typo(&mut self, out: &mut Out, time_s: f64, ip: &str) {
        if !alive(&self.spec, time_s as i64) {
            return;
        }
        let reason = if self.rng.chance(0.7) { Reason::BadChecksum } else { Reason::MalformedToken };
        let route = self.route();
        let id = ROUTES[route].random_id(&mut self.rng);
        let agent = *self.rng.pick(&self.spec.agents);
        let call = Call { time_us: (time_s * 1e6) as i64, ip, agent, route, id, reason };
        let e = bad_credential_event(&call, self.spec.source, &mut self.rng);
        out.push(e, None, None);
    }

    /// Generates the token's traffic of day `d` (0 = the trace's first day; its local date for
    /// people, its UTC date for services). Every event is at or after `start + d days - 14 h`.
    pub fn day(&mut self, d: i64, w: &World, out: &mut Out) {
        let day_s = w.start_s + d * 86_400;
        if day_s + 2 * 86_400 < self.spec.created_s || self.spec.end.is_some_and(|(_, e)| day_s - 86_400 > e) {
            return;
        }
        match self.spec.archetype {
            Archetype::Human => self.human(day_s, out),
            Archetype::Service => self.service(day_s, out),
            Archetype::Batch => self.batch(day_s, out),
            Archetype::Ci => self.ci(day_s, out),
            Archetype::Partner => self.partner(day_s, out),
        }
    }

    /// A UTC second (fractional) of a local time on the local date starting at `day_s`.
    fn at(&self, day_s: i64, local_h: f64) -> f64 {
        let local = day_s as f64 + local_h * 3600.0;
        let utc = self.spec.zone.to_utc(local as i64);
        utc as f64 + local.fract()
    }

    fn human_ip(&mut self, net: usize, day: i64) -> String {
        let n = self.spec.networks[net];
        let host = match (self.spec.params.net_weights.get(net), n) {
            // Home: the ISP keeps the address for weeks (v4) or rotates privacy addresses daily (v6).
            (Some(w), Net::V4(_)) if *w < 0.3 || self.spec.networks.len() == 1 => self.home_host % 254,
            (_, Net::V6(_)) => self.home_host ^ (day as u64).wrapping_mul(0x9e37_79b9),
            // Office DHCP and VPN pools: a new lease every day.
            _ => self.rng.below(254),
        };
        n.addr(host)
    }

    fn session(&mut self, out: &mut Out, start_s: f64, ip: &str, requests: u64) {
        let mut t = start_s;
        for _ in 0..requests {
            let route = self.route();
            self.emit(out, t, ip, route, None, Reason::Ok);
            t += self.rng.exp(20.0) + 1.0;
        }
    }

    fn human(&mut self, day_s: i64, out: &mut Out) {
        let p = self.spec.params.clone();
        let local_day = day_s.div_euclid(86_400);
        let wd = zone::weekday(local_day);
        let day_net = self.rng.weighted(&p.net_weights);
        let ip = self.human_ip(day_net, local_day);
        let mean_session = p.per_session.max(1.0);
        if zone::weekend(wd) {
            if self.rng.chance(p.p_weekend) {
                for _ in 0..self.rng.int(1, 3) {
                    let h = self.rng.uniform(10.0, 17.0);
                    let n = 1 + self.rng.poisson(mean_session - 1.0);
                    self.session(out, self.at(day_s, h), &ip, n);
                }
            }
            return;
        }
        if self.rng.chance(0.05) {
            return; // a day off
        }
        let start = p.start_h + self.rng.normal(0.0, 0.4);
        let end = (p.end_h + self.rng.normal(0.0, 0.5)).max(start + 3.0);
        let sessions = self.rng.poisson(p.sessions_per_h * (end - start)).max(1);
        for _ in 0..sessions {
            let mut h = self.rng.uniform(start, end);
            if (12.0..13.0).contains(&h) && self.rng.chance(0.6) {
                h = self.rng.uniform(start, end);
            }
            let n = 1 + self.rng.poisson(mean_session - 1.0);
            self.session(out, self.at(day_s, h), &ip, n);
        }
        if self.rng.chance(p.p_late) {
            // Working late, usually from home or over the VPN, never past midnight.
            let late_end = (end + self.rng.uniform(1.5, 4.5)).min(23.7);
            let late_net = if self.spec.networks.len() > 1 { self.spec.networks.len() - 1 } else { 0 };
            let late_ip = self.human_ip(late_net, local_day);
            let n_sessions = self.rng.poisson(p.sessions_per_h * (late_end - end) * 0.6).max(1);
            for _ in 0..n_sessions {
                let h = self.rng.uniform(end, late_end - 0.1);
                let n = 1 + self.rng.poisson(mean_session - 1.0);
                self.session(out, self.at(day_s, h), &late_ip, n);
            }
        }
        // Legitimate denials: a route outside the token's scopes, a mistyped token, a wrong path.
        if self.rng.chance(0.04) {
            let lacking: Vec<usize> = (0..ROUTES.len()).filter(|i| !allows(&self.spec.scopes, &ROUTES[*i])).collect();
            if !lacking.is_empty() {
                let route = *self.rng.pick(&lacking);
                let h = self.rng.uniform(start, end);
                let t = self.at(day_s, h);
                for k in 0..self.rng.int(1, 4) {
                    self.emit(out, t + 20.0 * k as f64, &ip, route, None, Reason::InsufficientScope);
                }
            }
        }
        if self.rng.chance(0.015) {
            let h = self.rng.uniform(start, end);
            let t = self.at(day_s, h);
            for k in 0..self.rng.int(1, 3) {
                self.typo(out, t + 15.0 * k as f64, &ip);
            }
        }
        if self.rng.chance(0.02) {
            let h = self.rng.uniform(start, end);
            let t = self.at(day_s, h);
            let route = self.route();
            self.emit(out, t, &ip, route, None, Reason::RouteNotFound);
        }
    }

    fn service_ip(&mut self) -> String {
        let k = if self.spec.params.multi_net { self.rng.below(self.spec.networks.len() as u64) as usize } else { 0 };
        let slot = 2 * k + self.rng.below(2) as usize;
        self.spec.networks[k].addr(self.nat[slot])
    }

    fn service(&mut self, day_s: i64, out: &mut Out) {
        // A redeploy now and then moves the NAT gateway to other addresses in the same network.
        for slot in 0..self.nat.len() {
            if self.rng.chance(0.1) {
                self.nat[slot] = self.rng.below(254);
            }
        }
        let p = self.spec.params.clone();
        for hour in 0..24 {
            let utc_s = day_s + hour * 3600;
            let local = self.spec.zone.to_local(utc_s);
            let local_h = (local.rem_euclid(86_400) / 3600) as f64;
            let dist = (local_h - 14.0).abs().min(24.0 - (local_h - 14.0).abs());
            let mut factor = 0.3 + 0.7 * (-(dist / 5.0).powi(2)).exp();
            if zone::weekend(zone::weekday(local.div_euclid(86_400))) {
                factor *= p.weekend_factor;
            }
            let n = self.rng.poisson(p.rate_per_min * 60.0 * factor);
            let mut times: Vec<f64> = (0..n).map(|_| utc_s as f64 + self.rng.uniform(0.0, 3600.0)).collect();
            times.sort_by(f64::total_cmp);
            for t in times {
                let ip = self.service_ip();
                let route = self.route();
                self.emit(out, t, &ip, route, None, Reason::Ok);
            }
        }
    }

    fn batch(&mut self, day_s: i64, out: &mut Out) {
        let p = self.spec.params.clone();
        if p.weekdays_only && zone::weekend(zone::weekday(day_s.div_euclid(86_400))) {
            return;
        }
        let ip = self.spec.networks[0].addr(self.nat[0]);
        let items = (p.items * self.rng.uniform(0.7, 1.3)) as u64;
        let rate = p.items_per_s * self.rng.uniform(0.8, 1.2);
        let mut t = self.at(day_s, p.run_h) + self.rng.uniform(0.0, 60.0);
        let list = self.spec.routes.iter().map(|(r, _)| *r).find(|r| ROUTES[*r].ids == Ids::None);
        let item = self.spec.routes.iter().map(|(r, _)| *r).find(|r| ROUTES[*r].ids != Ids::None);
        if let Some(list) = list {
            for _ in 0..(1 + items / 100) {
                self.emit(out, t, &ip, list, Some(0), Reason::Ok);
                t += self.rng.exp(1.0 / rate) + 0.05;
            }
        }
        if let Some(item) = item {
            // Yesterday's objects: a contiguous block of ids that moves on every night.
            let bound = match ROUTES[item].ids {
                Ids::Number(n) => n,
                _ => 40_000,
            };
            self.batch_base = (self.batch_base + items) % bound;
            for i in 0..items {
                let id = 1 + (self.batch_base + i) % bound;
                self.emit(out, t, &ip, item, Some(id), Reason::Ok);
                t += self.rng.exp(1.0 / rate) + 0.02;
            }
        }
    }

    fn ci_run(&mut self, out: &mut Out, start_s: f64) {
        let net = *self.rng.pick(&self.spec.networks);
        let ip = net.addr(self.rng.next_u64());
        let n = (self.spec.params.per_session * self.rng.uniform(0.5, 1.5)) as u64;
        let mut t = start_s;
        for _ in 0..n {
            let route = self.route();
            self.emit(out, t, &ip, route, None, Reason::Ok);
            t += self.rng.exp(4.0) + 0.2;
        }
    }

    fn ci(&mut self, day_s: i64, out: &mut Out) {
        let p = self.spec.params.clone();
        if let Some(h) = p.nightly_h {
            let start = day_s as f64 + h * 3600.0 + self.rng.uniform(0.0, 120.0);
            self.ci_run(out, start);
        }
        if zone::weekend(zone::weekday(day_s.div_euclid(86_400))) {
            return;
        }
        for _ in 0..self.rng.poisson(p.run_h) {
            let h = self.rng.uniform(8.0, 20.0);
            self.ci_run(out, self.at(day_s, h));
        }
    }

    fn partner(&mut self, day_s: i64, out: &mut Out) {
        let p = self.spec.params.clone();
        if zone::weekend(zone::weekday(day_s.div_euclid(86_400))) || self.rng.chance(0.03) {
            return;
        }
        let weights: Vec<f64> = (0..self.spec.networks.len()).map(|i| if i == 0 { 3.0 } else { 1.0 }).collect();
        let net = self.spec.networks[self.rng.weighted(&weights)];
        let ip = net.addr(self.rng.below(254));
        let start = p.start_h + self.rng.normal(0.0, 0.2);
        let end = p.end_h + self.rng.normal(0.0, 0.3);
        let n = self.rng.poisson(p.rate_per_min * 60.0 * (end - start));
        let mut hours: Vec<f64> = (0..n).map(|_| self.rng.uniform(start, end)).collect();
        hours.sort_by(f64::total_cmp);
        for h in hours {
            let route = self.route();
            self.emit(out, self.at(day_s, h), &ip, route, None, Reason::Ok);
        }
        if self.rng.chance(0.02) {
            let lacking: Vec<usize> = (0..ROUTES.len()).filter(|i| !allows(&self.spec.scopes, &ROUTES[*i])).collect();
            if !lacking.is_empty() {
                let route = *self.rng.pick(&lacking);
                let h = self.rng.uniform(start, end);
                let t = self.at(day_s, h);
                self.emit(out, t, &ip, route, None, Reason::InsufficientScope);
            }
        }
    }
}

/// Whether a token is one of the normal population (no lifecycle end within the trace).
pub fn regular(t: &TokenSpec) -> bool {
    t.end.is_none() || matches!(t.end, Some((End::Silent, _)))
}
