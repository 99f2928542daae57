//! Least privilege: what each token was granted, what it actually used, and what to change.
//!
//! Pure: the caller gathers the tokens and their observed use (from the ledger) and passes the
//! time in. Recommendations carry the evidence behind them, so a person can check them before
//! applying one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use token::{Action, Scope, TokenRecord, TokenState};

/// What one token did in the analysis window, from its allowed requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// For each scope a request required: how many allowed requests needed it.
    pub scopes: BTreeMap<Scope, u64>,
    /// Allowed requests in the window.
    pub allowed: u64,
    /// Denied requests in the window.
    pub denied: u64,
    /// The last allowed request (in the window or before).
    pub last_used: Option<Timestamp>,
}

/// Settings of the analysis.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The window of observed use (90 days).
    pub window: Duration,
    /// Unused for this long: recommend revoking (30 days).
    pub unused_for: Duration,
    /// Expiry beyond this from now: recommend an expiry (the configured maximum lifetime).
    pub max_lifetime: Duration,
    /// Secret older than this: recommend rotation (90 days).
    pub max_secret_age: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: Duration::from_secs(90 * 86_400),
            unused_for: Duration::from_secs(30 * 86_400),
            max_lifetime: Duration::from_secs(365 * 86_400),
            max_secret_age: Duration::from_secs(90 * 86_400),
        }
    }
}

/// The kinds of recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Replace the grants with the smaller set that covers all observed use.
    Narrow,
    /// Revoke: never used, or unused for long.
    Revoke,
    /// Give it an expiry (none, or beyond the maximum lifetime).
    SetExpiry,
    /// Rotate: the secret is older than the maximum age.
    Rotate,
}

impl Kind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Narrow => "narrow",
            Kind::Revoke => "revoke",
            Kind::SetExpiry => "set_expiry",
            Kind::Rotate => "rotate",
        }
    }
}

/// One recommendation for one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendation {
    /// The token.
    pub token_id: String,
    /// What to do.
    pub kind: Kind,
    /// The grants now.
    pub from: Vec<Scope>,
    /// The grants after (for `narrow`).
    pub to: Option<Vec<Scope>>,
    /// One sentence saying why, with the numbers.
    pub reason: String,
    /// The facts behind it.
    pub evidence: BTreeMap<String, String>,
    /// The command that applies it.
    pub command: String,
}

/// The analysis of one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPrivilege {
    /// The token's id.
    pub token_id: String,
    /// Granted scopes.
    pub granted: Vec<Scope>,
    /// The scopes that cover what was used: per resource, the highest action used.
    pub used: Vec<Scope>,
    /// Granted scopes not needed by any observed request.
    pub unused: Vec<Scope>,
    /// Recommendations (may be empty: the token is as small as its use).
    pub recommendations: Vec<Recommendation>,
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

/// The time from `then` to `now` (zero if `then` is later).
fn elapsed(now: Timestamp, then: Timestamp) -> Duration {
    Duration::from_secs(u64::try_from(now.as_second() - then.as_second()).unwrap_or(0))
}

/// Whole days from `then` to `now`.
fn since(now: Timestamp, then: Timestamp) -> u64 {
    days(elapsed(now, then))
}

/// A limit for people: whole days, or the exact duration when it is not a whole number of days.
fn limit(d: Duration) -> String {
    if d.as_secs().is_multiple_of(86_400) { format!("{} days", days(d)) } else { token::format_duration(d) }
}

fn list(scopes: &[Scope]) -> String {
    scopes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// The smallest set of scopes that covers every used scope: per resource, the highest action.
pub fn covering(used: &BTreeMap<Scope, u64>) -> Vec<Scope> {
    let mut best: BTreeMap<&str, Action> = BTreeMap::new();
    for s in used.keys() {
        let a = best.entry(s.resource()).or_insert(s.action());
        if s.action().implies(*a) {
            *a = s.action();
        } else if !a.implies(s.action()) {
            // Two actions neither of which implies the other (admin and verify on tokentrail):
            // keep the one that implies more; admin implies verify.
            *a = Action::Admin;
        }
    }
    best.into_iter().filter_map(|(r, a)| Scope::new(r, a).ok()).collect()
}

/// Whether `a` grants strictly more than `b` does (every scope of `b` is implied by `a`, and not
/// the other way round).
fn broader(a: &[Scope], b: &[Scope]) -> bool {
    let covers_all = |x: &[Scope], y: &[Scope]| y.iter().all(|s| token::covers(x, s));
    covers_all(a, b) && !covers_all(b, a)
}

/// Analyses one token.
pub fn analyse(t: &TokenRecord, usage: &Usage, now: Timestamp, settings: &Settings) -> TokenPrivilege {
    let used = covering(&usage.scopes);
    let unused: Vec<Scope> = t.scopes.iter().filter(|g| !usage.scopes.keys().any(|u| g.implies(u))).cloned().collect();
    let mut recs = Vec::new();
    let live = t.state(now) != TokenState::Revoked;
    let id = &t.id;
    let base =
        |kind: Kind, reason: String, evidence: BTreeMap<String, String>, to: Option<Vec<Scope>>, command: String| {
            Recommendation { token_id: id.clone(), kind, from: t.scopes.clone(), to, reason, evidence, command }
        };
    if live {
        let window_days = days(settings.window);
        let never = usage.last_used.is_none();
        let idle_days = usage.last_used.map(|l| since(now, l));
        let age_days = since(now, t.created_at);
        // Compared exactly, not in whole days: `unused_for` may be shorter than a day.
        let idle = usage.last_used.map(|l| elapsed(now, l));
        let stale = idle.unwrap_or_else(|| elapsed(now, t.created_at)) >= settings.unused_for;
        if stale {
            let mut ev = BTreeMap::new();
            ev.insert("created_days_ago".into(), age_days.to_string());
            let reason = match (never, idle_days) {
                (true, _) if age_days == 0 => "never used since it was created, less than a day ago".to_owned(),
                (true, _) => format!("never used in the {age_days} days since it was created"),
                (false, Some(0)) => "unused for less than a day".to_owned(),
                (false, Some(d)) => format!("unused for {d} days"),
                _ => "unused".to_owned(),
            };
            if let Some(d) = idle_days {
                ev.insert("idle_days".into(), d.to_string());
            }
            recs.push(base(
                Kind::Revoke,
                reason,
                ev,
                None,
                format!("tokentrail token revoke {id} --reason \"unused\""),
            ));
        } else if !usage.scopes.is_empty() && broader(&t.scopes, &used) {
            let mut ev = BTreeMap::new();
            ev.insert("window_days".into(), window_days.to_string());
            ev.insert("allowed_requests".into(), usage.allowed.to_string());
            for (s, n) in &usage.scopes {
                ev.insert(format!("used {s}"), n.to_string());
            }
            let reason = format!(
                "{} allowed requests in {window_days} days needed only {}; granted {}",
                usage.allowed,
                list(&used),
                list(&t.scopes)
            );
            let flags: Vec<String> = used.iter().map(|s| format!("--to {s}")).collect();
            recs.push(base(
                Kind::Narrow,
                reason,
                ev,
                Some(used.clone()),
                format!("tokentrail token narrow {id} {} --what-if", flags.join(" ")),
            ));
        }
        let max_expiry =
            now.checked_add(jiff::SignedDuration::try_from(settings.max_lifetime).unwrap_or_default()).ok();
        match t.expires_at {
            None => recs.push(base(
                Kind::SetExpiry,
                "the token never expires".to_owned(),
                BTreeMap::new(),
                None,
                format!("tokentrail token update {id} --expires-in 90d"),
            )),
            Some(e) if max_expiry.is_some_and(|m| e > m) => {
                let mut ev = BTreeMap::new();
                ev.insert("expires_at".into(), e.to_string());
                recs.push(base(
                    Kind::SetExpiry,
                    format!("the expiry is beyond the maximum lifetime of {}", limit(settings.max_lifetime)),
                    ev,
                    None,
                    format!(
                        "tokentrail token update {id} --expires-in {}",
                        token::format_duration(settings.max_lifetime)
                    ),
                ));
            }
            Some(_) => {}
        }
        let secret_age = since(now, t.secret_created_at);
        if elapsed(now, t.secret_created_at) >= settings.max_secret_age {
            let mut ev = BTreeMap::new();
            ev.insert("secret_age_days".into(), secret_age.to_string());
            recs.push(base(
                Kind::Rotate,
                match secret_age {
                    0 => format!("the secret is less than a day old (maximum {})", limit(settings.max_secret_age)),
                    d => format!("the secret is {d} days old (maximum {})", limit(settings.max_secret_age)),
                },
                ev,
                None,
                format!("tokentrail token rotate {id} --grace 1h"),
            ));
        }
    }
    // Revoking makes every other change moot.
    if recs.iter().any(|r| r.kind == Kind::Revoke) {
        recs.retain(|r| r.kind == Kind::Revoke);
    }
    TokenPrivilege { token_id: id.clone(), granted: t.scopes.clone(), used, unused, recommendations: recs }
}

/// What a narrower grant would have done to recorded requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WhatIf {
    /// Requests considered (allowed requests of the token in the window).
    pub considered: u64,
    /// How many the proposed scopes would have denied.
    pub would_deny: u64,
    /// Their event ids (the first 1000).
    pub would_deny_events: Vec<String>,
    /// Per route: how many would have been denied.
    pub by_route: BTreeMap<String, u64>,
}

/// One recorded request for what-if replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The event id.
    pub event_id: String,
    /// The scope it required.
    pub required: Scope,
    /// Its route (or path).
    pub route: String,
}

/// Replays recorded requests against proposed scopes.
pub fn what_if(proposed: &[Scope], requests: &[Recorded]) -> WhatIf {
    let mut w = WhatIf::default();
    for r in requests {
        w.considered += 1;
        if !token::covers(proposed, &r.required) {
            w.would_deny += 1;
            if w.would_deny_events.len() < 1000 {
                w.would_deny_events.push(r.event_id.clone());
            }
            *w.by_route.entry(r.route.clone()).or_default() += 1;
        }
    }
    w
}

/// Which recorded request the proposed scopes would deny, for shadow mode on live traffic.
pub fn shadow_denies(proposed: &[Scope], required: &Scope) -> bool {
    !token::covers(proposed, required)
}

/// Counts of recommendations by kind.
pub fn summary(all: &[TokenPrivilege]) -> BTreeSet<(Kind, usize)> {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for t in all {
        for r in &t.recommendations {
            *counts.entry(r.kind).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

#[cfg(test)]
mod tests;
