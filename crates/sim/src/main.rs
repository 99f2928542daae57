//! `sim`: the evaluation harness's command line (docs/evaluation.md).
//!
//! `generate` writes a trace (NDJSON events and a labels file), `score` runs detection over an
//! event file or scores findings made elsewhere, and `eval` does both for one seed in one
//! command, with the generator in a child process so that the memory measured is detection's.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use detect::DetectConfig;
use sim::{SimConfig, measure, score, wire};

#[derive(Parser)]
#[command(name = "sim", about = "Simulated API-token traffic with labelled misuse, and a scorer for detection")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a trace: events as NDJSON (PRODUCT.md schema) and a labels file.
    Generate {
        #[command(flatten)]
        trace: TraceArgs,
        /// Where the events go (`-` for standard output).
        #[arg(long, default_value = "-")]
        events: String,
        /// Where the labels go (JSON).
        #[arg(long)]
        labels: PathBuf,
    },
    /// Score detection against a trace's labels: run the detectors over `--events`, or read
    /// findings produced elsewhere (`tokentrail detect --format json|ndjson`) with `--findings`.
    Score {
        /// The labels file of the trace.
        #[arg(long)]
        labels: PathBuf,
        /// NDJSON events to run the detectors over (`-` for standard input).
        #[arg(long, conflicts_with = "findings")]
        events: Option<String>,
        /// Findings to score instead (a JSON array or NDJSON).
        #[arg(long)]
        findings: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Generate a trace and score detection over it, measuring throughput and memory.
    Eval {
        #[command(flatten)]
        trace: TraceArgs,
        #[command(flatten)]
        out: OutArgs,
    },
}

#[derive(Args, Clone)]
struct TraceArgs {
    /// Seed: the same seed gives the same trace.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tokens in the population.
    #[arg(long, default_value_t = 50)]
    tokens: usize,
    /// Weeks of traffic, warm-up included.
    #[arg(long, default_value_t = 3)]
    weeks: u32,
    /// Days of warm-up (baselines form; no injections; its findings are counted apart).
    #[arg(long, default_value_t = 8)]
    warmup_days: u32,
    /// Injections of each misuse kind.
    #[arg(long, default_value_t = 2)]
    per_type: usize,
}

impl TraceArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            tokens: self.tokens,
            weeks: self.weeks,
            warmup_days: self.warmup_days,
            per_type: self.per_type,
            ..SimConfig::default()
        }
    }

    fn to_args(&self) -> Vec<String> {
        [
            ("--seed", self.seed.to_string()),
            ("--tokens", self.tokens.to_string()),
            ("--weeks", self.weeks.to_string()),
            ("--warmup-days", self.warmup_days.to_string()),
            ("--per-type", self.per_type.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }
}

#[derive(Args)]
struct OutArgs {
    /// False positives to list one by one.
    #[arg(long, default_value_t = 40)]
    list: usize,
    /// Also write the findings (NDJSON) here.
    #[arg(long)]
    findings_out: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Generate { trace, events, labels } => generate(&trace, &events, &labels),
        Cmd::Score { labels, events, findings, out } => {
            if let Some(path) = findings {
                let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                let findings = wire::read_findings(BufReader::new(file))
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("reading findings from {}", path.display()))?;
                let labels = read_labels(&labels)?;
                report(&labels, &findings, None, &out)
            } else if let Some(events) = events {
                let m = if events == "-" {
                    run_detection(std::io::stdin().lock())?
                } else {
                    let file = File::open(&events).with_context(|| format!("opening {events}"))?;
                    run_detection(BufReader::with_capacity(1 << 20, file))?
                };
                let labels = read_labels(&labels)?;
                report(&labels, &m.findings, Some(&m), &out)
            } else {
                bail!("give --events (to run the detectors) or --findings (to score findings made elsewhere)")
            }
        }
        Cmd::Eval { trace, out } => eval(&trace, &out),
    }
}

fn generate(trace: &TraceArgs, events: &str, labels: &PathBuf) -> Result<()> {
    let mut w: Box<dyn Write> = if events == "-" {
        Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, File::create(events).with_context(|| format!("creating {events}"))?))
    };
    let mut failed = None;
    let l = sim::stream(&trace.config(), |e| {
        if failed.is_none()
            && let Err(err) = wire::write_event(&mut w, &e)
        {
            failed = Some(err);
        }
    });
    if let Some(err) = failed {
        return Err(err).context("writing events");
    }
    w.flush().context("writing events")?;
    let text = serde_json::to_string_pretty(&wire::labels_json(&l)).context("encoding labels")?;
    std::fs::write(labels, text).with_context(|| format!("writing {}", labels.display()))?;
    Ok(())
}

fn read_labels(path: &PathBuf) -> Result<sim::Labels> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    wire::parse_labels(&v).map_err(anyhow::Error::msg).with_context(|| format!("reading labels {}", path.display()))
}

fn run_detection(r: impl BufRead) -> Result<measure::Measured> {
    measure::detect_ndjson(r, &DetectConfig::default()).map_err(anyhow::Error::msg).context("reading events")
}

fn report(
    labels: &sim::Labels,
    findings: &[detect::Finding],
    m: Option<&measure::Measured>,
    out: &OutArgs,
) -> Result<()> {
    if let Some(path) = &out.findings_out {
        let mut w = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
        for f in findings {
            serde_json::to_writer(&mut w, &wire::finding_json(f))?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    let s = score::score(labels, findings);
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", score::render(labels, &s, out.list))?;
    if let Some(m) = m {
        writeln!(stdout)?;
        write!(stdout, "{}", measure::render(m, labels.tokens))?;
    }
    Ok(())
}

fn eval(trace: &TraceArgs, out: &OutArgs) -> Result<()> {
    let labels_path =
        std::env::temp_dir().join(format!("tokentrail-sim-{}-{}.labels.json", std::process::id(), trace.seed));
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = Command::new(exe)
        .arg("generate")
        .args(trace.to_args())
        .args(["--events", "-", "--labels"])
        .arg(&labels_path)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the generator")?;
    let stdout = child.stdout.take().context("the generator's output")?;
    let m = run_detection(BufReader::with_capacity(1 << 20, stdout));
    let status = child.wait().context("waiting for the generator")?;
    let m = m?;
    if !status.success() {
        bail!("the generator failed ({status})");
    }
    let labels = read_labels(&labels_path)?;
    let _ = std::fs::remove_file(&labels_path);
    report(&labels, &m.findings, Some(&m), out)
}
