//! ttload: a small open-loop HTTP/1.1 load generator for fixed-rate latency measurements.
//!
//! Why not wrk: plain wrk is closed-loop (each connection sends its next request only after the
//! previous answer), so it measures throughput, not the latency at a given rate, and it hides
//! stalls (coordinated omission). Debian 12 packages neither wrk2 nor oha, and `hey -q` is
//! closed-loop too. This tool sends on a fixed schedule: request i is due at `start + i / rate`;
//! it goes out on any idle keep-alive connection (requests wait in order when all are busy), and
//! its latency is measured from when it was *due*, so a stall is charged to every request queued
//! behind it, as wrk2 and `oha --latency-correction` do.
//!
//! One thread, non-blocking sockets and a busy-polling epoll loop (no timers: the schedule is
//! checked on every pass), so that sends leave on time and answers are seen within a microsecond
//! or two; it keeps its CPU (the load generator's) fully busy by design. std only: epoll is
//! declared here. Requests are rendered once from a template, one per token, and rotated.
//!
//! Usage:
//!   ttload --addr 127.0.0.1:8080 --rate 5000 --duration 5 [--conns 64] [--method GET]
//!          [--path /items/1] [--header 'Authorization: Bearer {token}']... [--body '...{token}...']
//!          [--tokens FILE]
//! Prints one line: `sent=N ok=N errors=N rate=R p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=..
//! backlog_max=N status=200:N,...`.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

unsafe extern "C" {
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
    fn epoll_wait(epfd: i32, events: *mut EpollEvent, maxevents: i32, timeout: i32) -> i32;
}
const EPOLL_CLOEXEC: i32 = 0x80000;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLLIN: u32 = 0x1;

struct Args {
    addr: String,
    rate: f64,
    duration: f64,
    conns: usize,
    method: String,
    path: String,
    headers: Vec<String>,
    body: Option<String>,
    tokens: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8080".into(),
        rate: 1000.0,
        duration: 5.0,
        conns: 64,
        method: "GET".into(),
        path: "/".into(),
        headers: Vec::new(),
        body: None,
        tokens: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| die(&format!("{k} needs a value")));
        match k.as_str() {
            "--addr" => a.addr = v(),
            "--rate" => a.rate = v().parse().unwrap_or_else(|_| die("--rate: a number")),
            "--duration" => a.duration = v().parse().unwrap_or_else(|_| die("--duration: seconds")),
            "--conns" => a.conns = v().parse().unwrap_or_else(|_| die("--conns: a count")),
            "--method" => a.method = v(),
            "--path" => a.path = v(),
            "--header" => a.headers.push(v()),
            "--body" => a.body = Some(v()),
            "--tokens" => {
                let f = v();
                let text = std::fs::read_to_string(&f).unwrap_or_else(|e| die(&format!("{f}: {e}")));
                a.tokens = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
            }
            _ => die(&format!("unknown argument {k}")),
        }
    }
    if a.tokens.is_empty() {
        a.tokens.push(String::new());
    }
    if a.rate <= 0.0 || a.duration <= 0.0 || a.conns == 0 {
        die("--rate, --duration and --conns must be positive");
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("ttload: {msg}");
    std::process::exit(2)
}

fn render(a: &Args) -> Vec<Vec<u8>> {
    a.tokens
        .iter()
        .map(|t| {
            let mut r = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", a.method, a.path, a.addr);
            for h in &a.headers {
                r.push_str(&h.replace("{token}", t));
                r.push_str("\r\n");
            }
            match &a.body {
                Some(b) => {
                    let b = b.replace("{token}", t);
                    r.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()));
                }
                None => r.push_str("\r\n"),
            }
            r.into_bytes()
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Parsed {
    /// Not complete yet.
    More,
    /// A whole response: its status and whether the server closes the connection.
    Done(u16, bool),
    /// Not HTTP.
    Bad,
}

fn parse(buf: &[u8]) -> Parsed {
    let Some(p) = find(buf, b"\r\n\r\n") else { return Parsed::More };
    let head_end = p + 4;
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else { return Parsed::Bad };
    let Some(status) = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()) else { return Parsed::Bad };
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    for line in head.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse().unwrap_or(0);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.to_ascii_lowercase().contains("close");
        }
    }
    if chunked {
        // Small bodies only: the response ends at the zero-length chunk.
        return match find(&buf[head_end..], b"0\r\n\r\n") {
            Some(_) => Parsed::Done(status, close),
            None => Parsed::More,
        };
    }
    if buf.len() >= head_end + length { Parsed::Done(status, close) } else { Parsed::More }
}

struct Conn {
    stream: Option<TcpStream>,
    /// When the request in flight was due.
    due: Option<Instant>,
    buf: Vec<u8>,
}

struct Load {
    epfd: i32,
    addr: String,
}

impl Load {
    fn connect(&self, i: usize) -> Option<TcpStream> {
        let s = TcpStream::connect(&self.addr).ok()?;
        s.set_nodelay(true).ok()?;
        s.set_nonblocking(true).ok()?;
        let mut ev = EpollEvent { events: EPOLLIN, data: i as u64 };
        // SAFETY: a valid epoll fd, a valid socket fd and a pointer to a live event struct.
        if unsafe { epoll_ctl(self.epfd, EPOLL_CTL_ADD, s.as_raw_fd(), &raw mut ev) } != 0 {
            return None;
        }
        Some(s)
    }
}

fn send(s: &mut TcpStream, mut req: &[u8]) -> bool {
    while !req.is_empty() {
        match s.write(req) {
            Ok(0) => return false,
            Ok(n) => req = &req[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(_) => return false,
        }
    }
    true
}

fn main() {
    let a = parse_args();
    let reqs = render(&a);
    // SAFETY: plain system call.
    let epfd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
    if epfd < 0 {
        die("epoll_create1 failed");
    }
    let load = Load { epfd, addr: a.addr.clone() };
    let mut conns: Vec<Conn> = (0..a.conns)
        .map(|i| Conn {
            stream: Some(load.connect(i).unwrap_or_else(|| die(&format!("cannot connect to {}", a.addr)))),
            due: None,
            buf: Vec::with_capacity(4096),
        })
        .collect();
    let mut idle: Vec<usize> = (0..a.conns).rev().collect();
    let mut backlog: VecDeque<Instant> = VecDeque::new();
    let (mut lat_ns, mut status): (Vec<u64>, BTreeMap<u16, u64>) = (Vec::new(), BTreeMap::new());
    let (mut sent, mut errors, mut backlog_max, mut slot) = (0u64, 0u64, 0usize, 0u64);
    let total = (a.rate * a.duration).round() as u64;
    let gap = 1e9 / a.rate;
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + Duration::from_secs_f64(a.duration) + Duration::from_secs(10);
    let mut events = [EpollEvent { events: 0, data: 0 }; 256];
    let mut chunk = [0u8; 65536];
    let mut in_flight = 0usize;
    loop {
        let now = Instant::now();
        // Requests that are due join the backlog, in order.
        while slot < total {
            let due = start + Duration::from_nanos((slot as f64 * gap) as u64);
            if due > now {
                break;
            }
            backlog.push_back(due);
            slot += 1;
        }
        backlog_max = backlog_max.max(backlog.len());
        // Send what is due on idle connections.
        while let (Some(&due), Some(&i)) = (backlog.front(), idle.last()) {
            let c = &mut conns[i];
            if c.stream.is_none() {
                c.stream = load.connect(i);
            }
            let Some(s) = c.stream.as_mut() else {
                errors += 1;
                backlog.pop_front();
                sent += 1;
                continue;
            };
            let req = &reqs[(sent as usize) % reqs.len()];
            sent += 1;
            backlog.pop_front();
            if send(s, req) {
                idle.pop();
                c.due = Some(due);
                c.buf.clear();
                in_flight += 1;
            } else {
                errors += 1;
                c.stream = None;
            }
        }
        if slot >= total && backlog.is_empty() && in_flight == 0 {
            break;
        }
        if now > deadline {
            errors += in_flight as u64;
            break;
        }
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe { epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, 0) };
        for ev in &events[..n.max(0) as usize] {
            let i = ev.data as usize;
            let c = &mut conns[i];
            let Some(s) = c.stream.as_mut() else { continue };
            let mut broken = false;
            loop {
                match s.read(&mut chunk) {
                    Ok(0) => {
                        broken = true;
                        break;
                    }
                    Ok(k) => c.buf.extend_from_slice(&chunk[..k]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            let mut close = broken;
            if let Some(due) = c.due {
                match parse(&c.buf) {
                    Parsed::Done(code, server_closes) => {
                        lat_ns.push(due.elapsed().as_nanos() as u64);
                        *status.entry(code).or_default() += 1;
                        c.due = None;
                        in_flight -= 1;
                        idle.push(i);
                        close |= server_closes;
                    }
                    Parsed::Bad => {
                        errors += 1;
                        c.due = None;
                        in_flight -= 1;
                        idle.push(i);
                        close = true;
                    }
                    Parsed::More if broken => {
                        errors += 1;
                        c.due = None;
                        in_flight -= 1;
                        idle.push(i);
                    }
                    Parsed::More => {}
                }
            }
            if close {
                c.stream = None; // dropping it closes the socket and leaves the epoll set
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(a.duration);
    lat_ns.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat_ns.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (lat_ns.len() - 1) as f64).round() as usize;
        lat_ns[i] as f64 / 1000.0
    };
    let ok = lat_ns.len() as u64;
    let status: Vec<String> = status.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "sent={sent} ok={ok} errors={errors} rate={:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} backlog_max={backlog_max} status={}",
        ok as f64 / elapsed,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        lat_ns.last().map_or(f64::NAN, |&n| n as f64 / 1000.0),
        status.join(",")
    );
}
