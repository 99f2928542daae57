//! How long finding the route for a request takes, with a policy of 200 routes: the index
//! (`Policy::resolve`) against a linear scan over the routes measured in the same run.
//!
//! Run with `cargo bench -p policy --bench matching`. It prints nanoseconds per request for both
//! and their ratio; nothing asserts on time (tests never do).

#![allow(clippy::print_stdout, reason = "a benchmark program reports on stdout")]

use std::hint::black_box;
use std::time::Instant;

use policy::Policy;

/// 39 resources with five routes each, and five more: 200 routes.
fn policy_text() -> String {
    let mut text = String::new();
    let mut route = |method: &str, path: &str, resource: &str, action: &str| {
        text.push_str(&format!(
            "[[route]]\nmethod = {method}\npath = \"{path}\"\nresource = \"{resource}\"\naction = \"{action}\"\nsensitivity = [\"pii\"]\n\n"
        ));
    };
    for r in 0..39 {
        let res = format!("resource{r}");
        route("\"GET\"", &format!("/v1/{res}"), &res, "read");
        route("\"POST\"", &format!("/v1/{res}"), &res, "write");
        route("[\"GET\", \"HEAD\"]", &format!("/v1/{res}/{{id}}"), &res, "read");
        route("[\"PUT\", \"PATCH\", \"DELETE\"]", &format!("/v1/{res}/{{id}}"), &res, "write");
        route("\"GET\"", &format!("/v1/{res}/{{id}}/items/{{item}}"), &res, "read");
    }
    route("\"GET\"", "/v1/resource7/search", "resource7", "read");
    route("\"GET\"", "/static/*", "static", "read");
    route("\"*\"", "/v1/admin/*", "api", "admin");
    route("\"GET\"", "/", "root", "read");
    route("\"GET\"", "/v1/{collection}/{id}/history/*", "history", "read");
    text
}

/// A deterministic mix: exact hits, parameters, wildcards, misses, query strings, refused paths.
fn requests() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..1000 {
        let r = next(45);
        let id = next(100_000);
        let (method, path) = match next(12) {
            0 => ("GET", format!("/v1/resource{r}")),
            1 => ("POST", format!("/v1/resource{r}")),
            2 | 3 => ("GET", format!("/v1/resource{r}/{id}")),
            4 => ("DELETE", format!("/v1/resource{r}/{id}")),
            5 => ("GET", format!("/v1/resource{r}/{id}/items/{}?expand=all", next(50))),
            6 => ("GET", format!("/static/css/site-{id}.css")),
            7 => ("PATCH", format!("/v1/admin/users/{id}")),
            8 => ("GET", format!("/v1/resource{r}/{id}/history/2026/11")),
            9 => ("GET", "/v1/resource7/search?q=smith".to_owned()),
            10 => ("GET", format!("/v2/unknown/{id}")),
            _ => ("GET", format!("/v1/resource{r}/../admin/{id}")),
        };
        out.push((method, path));
    }
    out
}

/// Nanoseconds per call of `f` over every request, best of a few rounds.
fn measure(requests: &[(&str, String)], mut f: impl FnMut(&str, &str) -> usize) -> f64 {
    let rounds = 25;
    let repeat = 50;
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut sink = 0;
        for _ in 0..repeat {
            for (method, path) in requests {
                sink += f(black_box(method), black_box(path));
            }
        }
        black_box(sink);
        let ns = start.elapsed().as_nanos() as f64 / (repeat * requests.len()) as f64;
        best = best.min(ns);
    }
    best
}

fn main() {
    let policy = Policy::parse(&policy_text(), "bench.toml").expect("the benchmark policy parses");
    assert_eq!(policy.routes().len(), 200);
    let requests = requests();
    let matched = requests.iter().filter(|(m, p)| policy.resolve(m, p).is_some()).count();

    let index = measure(&requests, |method, path| policy.resolve(method, path).map_or(0, |m| m.route().line()));
    let with_params = measure(&requests, |method, path| {
        policy.resolve(method, path).map_or(0, |m| m.params().map(|(_, v)| v.len()).sum::<usize>() + m.text().len())
    });
    // The baseline: the first route in file order whose method and template match. It is not even
    // correct (it ignores precedence), only a floor for what scanning the routes costs.
    let scan = measure(&requests, |method, path| {
        policy
            .routes()
            .iter()
            .find(|r| r.methods().contains(method) && r.template().matches(path))
            .map_or(0, |r| r.line())
    });

    println!("policy: {} routes; requests: {} ({} matched)", policy.routes().len(), requests.len(), matched);
    println!("index (Policy::resolve):             {index:8.1} ns/match");
    println!("index + reading params and text:     {with_params:8.1} ns/match");
    println!("baseline (linear scan, first match): {scan:8.1} ns/match");
    println!("ratio scan/index:                    {:8.1}x", scan / index);
}
