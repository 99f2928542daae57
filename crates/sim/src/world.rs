//! The simulated world: an API (routes with resources, actions and sensitivity), the networks
//! people and machines call from, and the token population with each token's behaviour
//! parameters.
//!
//! Everything here is drawn once from the seed before any traffic is generated; the traffic
//! and the misuse are generated from it (`traffic`, `inject`).

use std::collections::BTreeSet;

use crate::rng::Rng;
use crate::zone::{self, Zone};

/// How a route names the object it works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ids {
    /// No object (lists, searches, creations).
    None,
    /// A numeric id below the bound.
    Number(u64),
    /// A stock keeping unit.
    Sku,
    /// A report name.
    Report,
}

/// One route of the API's policy.
#[derive(Debug)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub template: &'static str,
    /// Resource of the scope it needs.
    pub resource: &'static str,
    /// Action of the scope it needs.
    pub action: &'static str,
    /// Sensitivity labels.
    pub sensitivity: &'static [&'static str],
    /// What its `{param}` names.
    pub ids: Ids,
}

macro_rules! route {
    ($m:literal, $t:literal, $r:literal, $a:literal, [$($s:literal),*], $ids:expr) => {
        Route { method: $m, template: $t, resource: $r, action: $a, sensitivity: &[$($s),*], ids: $ids }
    };
}

/// The API: a shop with customer, patient and billing data, as a policy file would map it.
pub static ROUTES: [Route; 28] = [
    route!("GET", "/v1/health", "health", "read", [], Ids::None),
    route!("GET", "/v1/products", "products", "read", [], Ids::None),
    route!("GET", "/v1/products/{id}", "products", "read", [], Ids::Number(20_000)),
    route!("PUT", "/v1/products/{id}", "products", "write", [], Ids::Number(20_000)),
    route!("GET", "/v1/search", "products", "read", [], Ids::None),
    route!("GET", "/v1/inventory/{sku}", "inventory", "read", [], Ids::Sku),
    route!("POST", "/v1/inventory/{sku}/adjust", "inventory", "write", [], Ids::Sku),
    route!("GET", "/v1/orders", "orders", "read", [], Ids::None),
    route!("GET", "/v1/orders/{id}", "orders", "read", [], Ids::Number(5_000_000)),
    route!("POST", "/v1/orders", "orders", "write", [], Ids::None),
    route!("PATCH", "/v1/orders/{id}", "orders", "write", [], Ids::Number(5_000_000)),
    route!("GET", "/v1/customers", "customers", "read", ["pii"], Ids::None),
    route!("GET", "/v1/customers/{id}", "customers", "read", ["pii"], Ids::Number(400_000)),
    route!("PUT", "/v1/customers/{id}", "customers", "write", ["pii"], Ids::Number(400_000)),
    route!("GET", "/v1/patients/{id}", "patients", "read", ["phi"], Ids::Number(90_000)),
    route!("GET", "/v1/patients/{id}/records", "patients", "read", ["phi"], Ids::Number(90_000)),
    route!("GET", "/v1/invoices", "invoices", "read", ["financial"], Ids::None),
    route!("GET", "/v1/invoices/{id}", "invoices", "read", ["financial"], Ids::Number(2_000_000)),
    route!("POST", "/v1/payments", "payments", "write", ["financial", "pci"], Ids::None),
    route!("GET", "/v1/reports/{name}", "reports", "read", [], Ids::Report),
    route!("POST", "/v1/exports", "exports", "write", ["pii"], Ids::None),
    route!("POST", "/v1/webhooks", "webhooks", "write", [], Ids::None),
    route!("GET", "/v1/users/{id}", "users", "read", ["pii"], Ids::Number(5_000)),
    route!("DELETE", "/v1/users/{id}", "users", "admin", ["pii"], Ids::Number(5_000)),
    route!("GET", "/v1/audit/events", "audit", "read", [], Ids::None),
    route!("GET", "/v1/admin/settings", "settings", "admin", [], Ids::None),
    route!("POST", "/v1/refunds", "payments", "admin", ["financial"], Ids::None),
    route!("GET", "/v1/patients", "patients", "read", ["phi"], Ids::None),
];

/// Index of a route by method and template (the first route for an unknown one).
pub fn route_index(method: &str, template: &str) -> usize {
    ROUTES.iter().position(|x| x.method == method && x.template == template).unwrap_or(0)
}

impl Route {
    /// `GET /v1/patients/{id}`: the route as events name it.
    pub fn text(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    /// The scope it needs.
    pub fn scope(&self) -> String {
        format!("{}:{}", self.resource, self.action)
    }

    /// Whether it touches sensitive data.
    pub fn sensitive(&self) -> bool {
        !self.sensitivity.is_empty()
    }

    /// A concrete path for an object id (ignored by routes without one).
    pub fn path(&self, id: u64) -> String {
        let value = match self.ids {
            Ids::None => return self.template.to_owned(),
            Ids::Number(_) => id.to_string(),
            Ids::Sku => format!("SKU-{:05}", id % 100_000),
            Ids::Report => REPORTS[(id % REPORTS.len() as u64) as usize].to_owned(),
        };
        let start = self.template.find('{').unwrap_or(self.template.len());
        let end = self.template[start..].find('}').map_or(self.template.len(), |e| start + e + 1);
        format!("{}{value}{}", &self.template[..start], &self.template[end..])
    }

    /// A random object id for this route.
    pub fn random_id(&self, rng: &mut Rng) -> u64 {
        match self.ids {
            Ids::Number(n) => 1 + rng.below(n),
            Ids::Sku => rng.below(40_000),
            Ids::Report => rng.below(REPORTS.len() as u64),
            Ids::None => 0,
        }
    }
}

const REPORTS: [&str; 6] = ["daily-sales", "weekly-revenue", "inventory-aging", "churn", "returns", "fulfilment"];

/// What kind of client a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Archetype {
    /// A person (dashboard, CLI, scripts run by hand): office hours in their zone.
    Human,
    /// An always-on service: 24/7 with a daily rhythm.
    Service,
    /// A nightly batch job iterating many objects.
    Batch,
    /// A CI pipeline: short runs from a shared pool of runner networks.
    Ci,
    /// A partner's integration: the partner's office hours, from the partner's networks.
    Partner,
}

impl Archetype {
    /// Every archetype.
    pub const ALL: [Archetype; 5] =
        [Archetype::Human, Archetype::Service, Archetype::Batch, Archetype::Ci, Archetype::Partner];

    /// The archetype's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Archetype::Human => "human",
            Archetype::Service => "service",
            Archetype::Batch => "batch",
            Archetype::Ci => "ci",
            Archetype::Partner => "partner",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Archetype> {
        Archetype::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A role: what a token is for, as weighted routes.
#[derive(Debug)]
pub struct Role {
    /// The role's name.
    pub name: &'static str,
    /// The archetype it belongs to.
    pub archetype: Archetype,
    /// How often it is drawn within its archetype.
    pub weight: f64,
    /// Routes and how often each is used.
    pub routes: &'static [(&'static str, &'static str, f64)],
    /// User agents it may use.
    pub agents: &'static [&'static str],
}

const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
const MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15";
const CLI: &str = "tokentrail-cli/1.4.2";
const CURL: &str = "curl/8.5.0";
const PY: &str = "python-requests/2.32.3";

/// Every role.
pub static ROLES: [Role; 18] = [
    Role {
        name: "support",
        archetype: Archetype::Human,
        weight: 0.25,
        routes: &[
            ("GET", "/v1/customers", 1.0),
            ("GET", "/v1/customers/{id}", 5.0),
            ("PUT", "/v1/customers/{id}", 0.5),
            ("GET", "/v1/orders/{id}", 4.0),
            ("PATCH", "/v1/orders/{id}", 0.6),
            ("GET", "/v1/orders", 1.0),
        ],
        agents: &[BROWSER, MAC],
    },
    Role {
        name: "clinician",
        archetype: Archetype::Human,
        weight: 0.12,
        routes: &[
            ("GET", "/v1/patients", 1.0),
            ("GET", "/v1/patients/{id}", 4.0),
            ("GET", "/v1/patients/{id}/records", 3.0),
        ],
        agents: &[BROWSER, MAC],
    },
    Role {
        name: "finance",
        archetype: Archetype::Human,
        weight: 0.1,
        routes: &[
            ("GET", "/v1/invoices", 2.0),
            ("GET", "/v1/invoices/{id}", 4.0),
            ("GET", "/v1/reports/{name}", 1.0),
            ("POST", "/v1/refunds", 0.1),
        ],
        agents: &[BROWSER, MAC, CLI],
    },
    Role {
        name: "analyst",
        archetype: Archetype::Human,
        weight: 0.13,
        routes: &[
            ("GET", "/v1/reports/{name}", 4.0),
            ("GET", "/v1/orders", 2.0),
            ("GET", "/v1/products", 1.0),
            ("POST", "/v1/exports", 0.15),
        ],
        agents: &[BROWSER, PY, CLI],
    },
    Role {
        name: "developer",
        archetype: Archetype::Human,
        weight: 0.25,
        routes: &[
            ("GET", "/v1/health", 1.0),
            ("GET", "/v1/products", 2.0),
            ("GET", "/v1/products/{id}", 3.0),
            ("GET", "/v1/orders/{id}", 2.0),
            ("GET", "/v1/inventory/{sku}", 1.0),
            ("GET", "/v1/search", 1.0),
        ],
        agents: &[CURL, CLI, PY],
    },
    Role {
        name: "ops",
        archetype: Archetype::Human,
        weight: 0.15,
        routes: &[
            ("GET", "/v1/inventory/{sku}", 3.0),
            ("POST", "/v1/inventory/{sku}/adjust", 1.0),
            ("GET", "/v1/products/{id}", 2.0),
            ("PUT", "/v1/products/{id}", 0.5),
            ("GET", "/v1/audit/events", 0.3),
        ],
        agents: &[BROWSER, CLI],
    },
    Role {
        name: "storefront",
        archetype: Archetype::Service,
        weight: 0.3,
        routes: &[
            ("GET", "/v1/products", 3.0),
            ("GET", "/v1/products/{id}", 6.0),
            ("GET", "/v1/search", 3.0),
            ("GET", "/v1/inventory/{sku}", 2.0),
            ("POST", "/v1/orders", 1.0),
        ],
        agents: &["storefront/3.12.0 (+reqwest)"],
    },
    Role {
        name: "crm-sync",
        archetype: Archetype::Service,
        weight: 0.2,
        routes: &[
            ("GET", "/v1/customers/{id}", 4.0),
            ("PUT", "/v1/customers/{id}", 1.0),
            ("GET", "/v1/orders/{id}", 2.0),
        ],
        agents: &["crm-connector/2.4.1 (Java/21)"],
    },
    Role {
        name: "ehr-gateway",
        archetype: Archetype::Service,
        weight: 0.15,
        routes: &[("GET", "/v1/patients/{id}", 3.0), ("GET", "/v1/patients/{id}/records", 2.0)],
        agents: &["ehr-gateway/1.9.3 (Go-http-client/2.0)"],
    },
    Role {
        name: "payments",
        archetype: Archetype::Service,
        weight: 0.15,
        routes: &[("POST", "/v1/payments", 2.0), ("GET", "/v1/invoices/{id}", 2.0), ("GET", "/v1/orders/{id}", 1.0)],
        agents: &["payments-svc/5.0.7 (+hyper)"],
    },
    Role {
        name: "notifier",
        archetype: Archetype::Service,
        weight: 0.2,
        routes: &[("GET", "/v1/orders/{id}", 3.0), ("POST", "/v1/webhooks", 1.0)],
        agents: &["notifier/0.8.2 (node-fetch)"],
    },
    Role {
        name: "billing-export",
        archetype: Archetype::Batch,
        weight: 0.3,
        routes: &[("GET", "/v1/invoices", 1.0), ("GET", "/v1/invoices/{id}", 1.0)],
        agents: &["billing-export/1.3 (python-requests/2.32.3)"],
    },
    Role {
        name: "catalog-sync",
        archetype: Archetype::Batch,
        weight: 0.35,
        routes: &[("GET", "/v1/products", 1.0), ("PUT", "/v1/products/{id}", 1.0)],
        agents: &["catalog-sync/4.1.0 (+reqwest)"],
    },
    Role {
        name: "order-reconcile",
        archetype: Archetype::Batch,
        weight: 0.35,
        routes: &[("GET", "/v1/orders", 1.0), ("GET", "/v1/orders/{id}", 1.0)],
        agents: &["reconcile-job/2.0.3 (Java/17)"],
    },
    Role {
        name: "deploy",
        archetype: Archetype::Ci,
        weight: 0.5,
        routes: &[("GET", "/v1/health", 3.0), ("POST", "/v1/webhooks", 0.5), ("PUT", "/v1/products/{id}", 1.0)],
        agents: &["GitHub-Actions deploy-bot/1.2 curl/8.5.0"],
    },
    Role {
        name: "smoke-test",
        archetype: Archetype::Ci,
        weight: 0.5,
        routes: &[("GET", "/v1/health", 2.0), ("GET", "/v1/products/{id}", 2.0), ("GET", "/v1/orders", 1.0)],
        agents: &["k6/0.54.0 (https://k6.io/)"],
    },
    Role {
        name: "logistics",
        archetype: Archetype::Partner,
        weight: 0.6,
        routes: &[
            ("GET", "/v1/orders", 1.0),
            ("GET", "/v1/orders/{id}", 4.0),
            ("PATCH", "/v1/orders/{id}", 2.0),
            ("GET", "/v1/inventory/{sku}", 1.0),
        ],
        agents: &["AcmeLogistics-Integration/7.2", PY],
    },
    Role {
        name: "clinic-partner",
        archetype: Archetype::Partner,
        weight: 0.4,
        routes: &[("GET", "/v1/patients/{id}", 3.0), ("GET", "/v1/patients/{id}/records", 1.0)],
        agents: &["ClinicBridge/3.0 (.NET 8)"],
    },
];

/// An IPv4 /24 or an IPv6 /48 that addresses are drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Net {
    /// The first three octets of a /24.
    V4([u8; 3]),
    /// The first three groups of a /48.
    V6([u16; 3]),
}

impl Net {
    /// The address with this host part (v4: 1-254; v6: the low 80 bits).
    pub fn addr(&self, host: u64) -> String {
        match self {
            Net::V4([a, b, c]) => format!("{a}.{b}.{c}.{}", 1 + host % 254),
            Net::V6([a, b, c]) => {
                let g = |i: u32| host.rotate_right(16 * i + 8) & 0xffff;
                format!("{a:x}:{b:x}:{c:x}:{:x}:{:x}:{:x}:{:x}:{:x}", g(4), g(3), g(2), g(1), g(0))
            }
        }
    }

    /// The network as detection names it (`10.1.2.0/24`, `2001:db8:1::/48`).
    pub fn text(&self) -> String {
        match self {
            Net::V4([a, b, c]) => format!("{a}.{b}.{c}.0/24"),
            Net::V6([a, b, c]) => format!("{a:x}:{b:x}:{c:x}::/48"),
        }
    }
}

/// Where networks come from: distinct /24s and /48s in plausible ranges per kind.
#[derive(Debug, Default)]
pub struct Networks {
    used: BTreeSet<Net>,
}

/// Kinds of networks, with the first octets (or v6 prefixes) they are drawn in.
#[derive(Clone, Copy, Debug)]
pub enum Pool {
    /// Company offices.
    Office,
    /// Corporate VPN egress.
    Vpn,
    /// Home broadband.
    Home,
    /// Cloud provider egress (services, jobs, CI runners).
    Cloud,
    /// A partner's offices and data centres.
    Partner,
    /// Networks attackers use (hosting, VPS, anonymizers).
    Hostile,
}

impl Networks {
    /// A fresh network from a pool.
    pub fn draw(&mut self, pool: Pool, rng: &mut Rng) -> Net {
        let (v4, v6): (&[u8], &[u16]) = match pool {
            Pool::Office => (&[81, 62, 212, 80, 217, 12, 64, 66], &[]),
            Pool::Vpn => (&[193, 146, 130], &[]),
            Pool::Home => (&[84, 86, 93, 73, 24, 76, 98, 109, 178], &[0x2a02, 0x2003, 0x2600]),
            Pool::Cloud => (&[3, 13, 18, 34, 35, 52, 54, 20, 40], &[0x2600, 0x2a05]),
            Pool::Partner => (&[62, 195, 213, 64, 71, 154], &[]),
            Pool::Hostile => (&[185, 45, 91, 5, 194, 103, 141], &[0x2a0b, 0x2001]),
        };
        loop {
            let net = if !v6.is_empty() && rng.chance(0.25) {
                Net::V6([*rng.pick(v6), rng.int(0x1000, 0xffff) as u16, rng.int(0, 0xffff) as u16])
            } else {
                Net::V4([*rng.pick(v4), rng.int(1, 255) as u8, rng.int(0, 256) as u8])
            };
            if self.used.insert(net) {
                return net;
            }
        }
    }
}

/// How a token's life ends within the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Revoked by an administrator (an employee left, a contract ended).
    Revoked,
    /// Its expiry passed and it was not renewed.
    Expired,
    /// Simply no longer used (a dormant token, still valid).
    Silent,
}

/// One token and how it behaves.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// Index in the population.
    pub index: usize,
    /// Token id (`tk_…`).
    pub id: String,
    /// Owner.
    pub owner: String,
    /// Client kind.
    pub archetype: Archetype,
    /// Index into [`ROLES`].
    pub role: usize,
    /// Zone of the people or market it follows.
    pub zone: Zone,
    /// Seconds since the epoch of creation.
    pub created_s: i64,
    /// How and when normal use ends, if it does within the trace.
    pub end: Option<(End, i64)>,
    /// Networks it normally uses, most used first.
    pub networks: Vec<Net>,
    /// User agents it uses.
    pub agents: Vec<&'static str>,
    /// Routes and their weights.
    pub routes: Vec<(usize, f64)>,
    /// Scopes it holds.
    pub scopes: Vec<String>,
    /// Whether it uses sensitive routes from the start.
    pub sensitive: bool,
    /// The request source (`gateway`, or `authz` behind a proxy's auth_request).
    pub source: &'static str,
    /// Behaviour parameters (their meaning depends on the archetype).
    pub params: Params,
}

/// Behaviour parameters.
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// Humans and partners: usual start of the working day, local hours.
    pub start_h: f64,
    /// Humans and partners: usual end of the working day, local hours.
    pub end_h: f64,
    /// Humans: sessions per working hour.
    pub sessions_per_h: f64,
    /// Humans: mean requests per session; CI: per run.
    pub per_session: f64,
    /// Humans: probability of working late on a workday.
    pub p_late: f64,
    /// Humans: probability of working on a weekend day.
    pub p_weekend: f64,
    /// Services and partners: requests per minute at the daily peak.
    pub rate_per_min: f64,
    /// Services: traffic on weekends relative to weekdays.
    pub weekend_factor: f64,
    /// Batch: local start time in hours; CI: runs per workday.
    pub run_h: f64,
    /// Batch: objects per night.
    pub items: f64,
    /// Batch: requests per second while running.
    pub items_per_s: f64,
    /// Batch: weekdays only.
    pub weekdays_only: bool,
    /// Humans: preferred network weights (office, vpn, home), aligned with `networks`.
    pub net_weights: Vec<f64>,
    /// Services: used several networks at once (multi-zone deployments).
    pub multi_net: bool,
    /// CI: also a scheduled nightly run at this UTC hour.
    pub nightly_h: Option<f64>,
}

/// The world: the company's shared networks and every token.
#[derive(Debug)]
pub struct World {
    /// First second of the trace (a Monday 00:00 UTC).
    pub start_s: i64,
    /// Days of traffic.
    pub days: i64,
    /// Tokens.
    pub tokens: Vec<TokenSpec>,
    /// Network allocator (injections draw hostile networks from it).
    pub networks: Networks,
    /// The CI runners' shared networks.
    pub ci_pool: Vec<Net>,
    /// The admin token that creates and revokes tokens.
    pub admin_token: String,
}

const FIRST: [&str; 24] = [
    "alice", "bob", "carmen", "deepak", "elena", "farid", "grace", "hiro", "ines", "jonas", "kavya", "liam", "maria",
    "noah", "olga", "pedro", "qi", "rosa", "sven", "tariq", "uma", "victor", "wen", "yusuf",
];
const LAST: [&str; 16] = [
    "schmidt", "nguyen", "garcia", "patel", "kim", "okafor", "rossi", "tanaka", "silva", "novak", "murphy", "cohen",
    "larsen", "fischer", "haddad", "ito",
];
const PARTNERS: [&str; 8] =
    ["acme-logistics", "northwind", "globex", "initech", "umbrella-care", "stark-freight", "wayne-health", "hooli"];

fn archetype_weights() -> [f64; 5] {
    [0.45, 0.2, 0.12, 0.1, 0.13]
}

impl World {
    /// Draws a population of `n` tokens over `days` days from `start_s`.
    pub fn build(seed: u64, n: usize, start_s: i64, days: i64) -> World {
        let mut rng = Rng::stream(seed, 1);
        let mut networks = Networks::default();
        // Shared company networks: one office per zone, two VPN egress networks (EU, US).
        let offices: Vec<Net> = zone::ZONES.iter().map(|_| networks.draw(Pool::Office, &mut rng)).collect();
        let vpn = [networks.draw(Pool::Vpn, &mut rng), networks.draw(Pool::Vpn, &mut rng)];
        let ci_pool: Vec<Net> = (0..rng.int(3, 6)).map(|_| networks.draw(Pool::Cloud, &mut rng)).collect();
        let partner_nets: Vec<Vec<Net>> = PARTNERS
            .iter()
            .map(|_| (0..rng.int(1, 3)).map(|_| networks.draw(Pool::Partner, &mut rng)).collect())
            .collect();
        let zone_weights: Vec<f64> = zone::ZONES.iter().map(|(_, w)| *w).collect();
        let mut tokens = Vec::with_capacity(n);
        for index in 0..n {
            let archetype = Archetype::ALL[rng.weighted(&archetype_weights())];
            let roles: Vec<usize> = (0..ROLES.len()).filter(|i| ROLES[*i].archetype == archetype).collect();
            let role = roles[rng.weighted(&roles.iter().map(|i| ROLES[*i].weight).collect::<Vec<_>>())];
            let zi = rng.weighted(&zone_weights);
            let zone = zone::ZONES[zi].0;
            let id = format!("tk_{}", rng.base62(14));
            // About one token in eight is created during the trace rather than before it.
            let created_s = if rng.chance(0.12) && days > 4 {
                start_s + rng.int(86_400, (days - 3) * 86_400)
            } else {
                start_s - rng.int(30, 400) * 86_400
            };
            let mut params = Params::default();
            let mut networks_of = Vec::new();
            let owner;
            let mut multi_net = false;
            match archetype {
                Archetype::Human => {
                    owner = format!("{}.{}@example.com", rng.pick(&FIRST), rng.pick(&LAST));
                    params.start_h = rng.normal(8.6, 0.7).clamp(6.5, 10.5);
                    params.end_h = (params.start_h + rng.normal(8.8, 0.6)).clamp(15.0, 19.5);
                    params.sessions_per_h = rng.log_uniform(0.4, 1.5);
                    params.per_session = rng.log_uniform(3.0, 25.0);
                    params.p_late = rng.uniform(0.02, 0.12);
                    params.p_weekend = rng.uniform(0.0, 0.08);
                    let remote = rng.chance(0.1);
                    if !remote {
                        networks_of.push(offices[zi]);
                        params.net_weights.push(0.7);
                    }
                    if rng.chance(0.5) {
                        networks_of.push(vpn[usize::from(zone::americas(&zone))]);
                        params.net_weights.push(0.2);
                    }
                    if remote || rng.chance(0.35) {
                        networks_of.push(networks.draw(Pool::Home, &mut rng));
                        params.net_weights.push(if remote { 1.0 } else { 0.15 });
                    }
                }
                Archetype::Service => {
                    owner = format!("svc-{}@platform.example.com", ROLES[role].name);
                    params.rate_per_min = rng.log_uniform(0.03, 0.8);
                    params.weekend_factor = rng.uniform(0.5, 1.0);
                    let n_nets = [1, 1, 1, 1, 1, 1, 1, 2, 2, 3][rng.below(10) as usize];
                    multi_net = n_nets > 1;
                    for _ in 0..n_nets {
                        networks_of.push(networks.draw(Pool::Cloud, &mut rng));
                    }
                }
                Archetype::Batch => {
                    owner = format!("job-{}@platform.example.com", ROLES[role].name);
                    params.run_h = f64::from(rng.int(2, 22) as i32) / 4.0;
                    params.items = rng.log_uniform(80.0, 3000.0);
                    params.items_per_s = rng.log_uniform(0.5, 6.0);
                    params.weekdays_only = rng.chance(0.3);
                    networks_of.push(networks.draw(Pool::Cloud, &mut rng));
                }
                Archetype::Ci => {
                    owner = format!("ci-{}@platform.example.com", ROLES[role].name);
                    params.run_h = rng.uniform(1.0, 5.0);
                    params.per_session = rng.uniform(5.0, 30.0);
                    params.nightly_h = rng.chance(0.3).then(|| rng.uniform(0.0, 4.0));
                    networks_of.extend(ci_pool.iter().copied());
                }
                Archetype::Partner => {
                    let p = rng.below(PARTNERS.len() as u64) as usize;
                    owner = format!("partner:{}", PARTNERS[p]);
                    params.start_h = rng.uniform(7.0, 9.0);
                    params.end_h = params.start_h + rng.uniform(8.0, 10.0);
                    params.rate_per_min = rng.log_uniform(0.05, 1.0);
                    networks_of.extend(partner_nets[p].iter().copied());
                }
            }
            params.multi_net = multi_net;
            let routes: Vec<(usize, f64)> =
                ROLES[role].routes.iter().map(|(m, t, w)| (route_index(m, t), *w)).collect();
            let mut scopes: BTreeSet<String> = routes.iter().map(|(i, _)| ROUTES[*i].scope()).collect();
            // Collapse read+write on the same resource into write, as people grant them.
            let writes: Vec<String> =
                scopes.iter().filter_map(|s| s.strip_suffix(":write").map(|r| format!("{r}:read"))).collect();
            for w in writes {
                scopes.remove(&w);
            }
            let sensitive = routes.iter().any(|(i, _)| ROUTES[*i].sensitive());
            let role_agents = ROLES[role].agents;
            let mut agents = vec![*rng.pick(role_agents)];
            if role_agents.len() > 1 && rng.chance(0.3) {
                agents.push(*rng.pick(role_agents));
            }
            tokens.push(TokenSpec {
                index,
                id,
                owner,
                archetype,
                role,
                zone: if matches!(archetype, Archetype::Service | Archetype::Ci) && rng.chance(0.5) {
                    zone::UTC
                } else {
                    zone
                },
                created_s,
                end: None,
                networks: networks_of,
                agents,
                routes,
                scopes: scopes.into_iter().collect(),
                sensitive,
                source: if rng.chance(0.8) { "gateway" } else { "authz" },
                params,
            });
        }
        World {
            start_s,
            days,
            tokens,
            networks,
            ci_pool,
            admin_token: format!("tk_{}", Rng::stream(seed, 99).base62(14)),
        }
    }
}

/// Whether a token's scopes allow a route (`resource:action`, actions ordered read < write < admin).
pub fn allows(scopes: &[String], route: &Route) -> bool {
    let rank = |a: &str| match a {
        "read" => 0,
        "write" => 1,
        _ => 2,
    };
    scopes.iter().any(|s| {
        let (res, act) = s.split_once(':').unwrap_or((s.as_str(), ""));
        (res == "*" || res == route.resource) && rank(act) >= rank(route.action)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_paths() {
        let p = &ROUTES[route_index("GET", "/v1/patients/{id}/records")];
        assert_eq!(p.path(42), "/v1/patients/42/records");
        assert_eq!(p.text(), "GET /v1/patients/{id}/records");
        assert_eq!(ROUTES[route_index("GET", "/v1/inventory/{sku}")].path(7), "/v1/inventory/SKU-00007");
        for role in &ROLES {
            for (m, t, _) in role.routes {
                assert!(ROUTES.iter().any(|x| x.method == *m && x.template == *t), "{m} {t}");
            }
        }
    }

    #[test]
    fn networks_are_distinct_and_formatted() {
        let mut n = Networks::default();
        let mut rng = Rng::new(1);
        let nets: BTreeSet<Net> = (0..500).map(|_| n.draw(Pool::Home, &mut rng)).collect();
        assert_eq!(nets.len(), 500);
        assert_eq!(Net::V4([10, 1, 2]).addr(4), "10.1.2.5");
        assert_eq!(Net::V4([10, 1, 2]).text(), "10.1.2.0/24");
        assert_eq!(Net::V6([0x2a02, 0x1234, 0x5]).text(), "2a02:1234:5::/48");
        let a = Net::V6([0x2a02, 0x1234, 0x5]).addr(0xabcd_0000_0000_0001);
        assert_eq!(detect::net::network(&a, 24, 48).as_deref(), Some("2a02:1234:5::/48"));
    }

    #[test]
    fn scopes_allow() {
        let s = vec!["orders:write".to_owned()];
        assert!(allows(&s, &ROUTES[route_index("GET", "/v1/orders/{id}")]));
        assert!(!allows(&s, &ROUTES[route_index("GET", "/v1/customers/{id}")]));
    }
}
