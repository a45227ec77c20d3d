//! The observer the cli gives the engine: a line per step with its elapsed time on stderr
//! (a spinner while a long step runs on a terminal), or newline-delimited JSON events on stdout
//! with `--json`, for GUIs and fleet tools. It also times the downtime window as the operator
//! sees it: from the start of the step that stops the old release to the end of the one that
//! has a release serving again (verify, or the undo of the stop).

use engine::{Observer, Progress};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Printer {
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    stop_began: Option<Instant>,
    /// The downtime window, once a release serves again.
    pub downtime: Option<Duration>,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            bar: None,
            stop_began: None,
            downtime: None,
        }
    }
}

/// Whether a step stops the old release (the downtime's start) or ends it.
fn is_stop(name: &str) -> bool {
    name.starts_with("stop ")
}

impl Observer for Printer {
    fn progress(&mut self, event: Progress<'_>) {
        match event {
            Progress::Started {
                step,
                name,
                undo,
                attempt,
            } => {
                if !undo && is_stop(name) && self.stop_began.is_none() {
                    self.stop_began = Some(Instant::now());
                }
                if self.json {
                    println!(
                        "{}",
                        serde_json::json!({"event": "step_started", "step": step, "name": name, "undo": undo, "attempt": attempt})
                    );
                } else if std::io::stderr().is_terminal() {
                    let bar = indicatif::ProgressBar::new_spinner();
                    bar.set_message(format!("{}{name}", if undo { "undo " } else { "" }));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bar = Some(bar);
                }
            }
            Progress::Ended {
                step,
                name,
                undo,
                elapsed,
                error,
                receipt,
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let serving = error.is_none()
                    && ((!undo && name.starts_with("verify ")) || (undo && is_stop(name)));
                if serving {
                    if let Some(t) = self.stop_began {
                        self.downtime.get_or_insert(t.elapsed());
                    }
                }
                if self.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "event": "step_ended", "step": step, "name": name, "undo": undo,
                            "elapsed_ms": elapsed.as_millis() as u64, "error": error, "receipt": receipt,
                        })
                    );
                    return;
                }
                let what = if undo {
                    format!("undo {name}")
                } else {
                    name.to_string()
                };
                match error {
                    None => eprintln!("  {:>7.2}s  {what}", elapsed.as_secs_f64()),
                    Some(e) => eprintln!("  {:>7.2}s  {what}: FAILED: {e}", elapsed.as_secs_f64()),
                }
            }
        }
    }
}

/// Byte progress bars for the long steps (download, copies, restore), on a terminal only.
pub struct Bars;

struct Bar(indicatif::ProgressBar);

impl steps::report::Reporter for Bars {
    fn begin(&self, what: &str, total: u64) -> Box<dyn steps::report::Meter> {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_string());
        Box::new(Bar(bar))
    }
}

impl steps::report::Meter for Bar {
    fn set(&self, done: u64) {
        self.0.set_position(done)
    }

    fn inc(&self, delta: u64) {
        self.0.inc(delta)
    }

    fn finish(&self) {
        self.0.finish_and_clear()
    }
}
