//! Benchmark: what the engine and journal cost per transition, as ratios against raw sled in
//! the same process (the machine is shared and noisy; only ratios are meaningful).
//!
//! - `sled`: a raw loop of `insert` + `flush` (sled's own durability: `sync_file_range`).
//! - `sled+fdatasync`: the same plus `fdatasync` of sled's log, which is what the journal's
//!   durability contract requires (power loss, not only a killed process).
//! - `molt`: plans of no-op steps driven by the engine over `journal::Store`; one transition is
//!   one journal record (intent or done). molt is durable against power loss (fdatasync) but
//!   syncs once per side effect: a step's done record and the next step's intent share one.
//!
//! Run: `cargo bench -p tests --bench journal_cost` (optionally `-- ROUNDS TRANSITIONS`).

use async_trait::async_trait;
use engine::{
    drive, DriveOptions, Event, Limits, Machine, Plan, RunId, Step, StepClass, StepCtx, StepError,
};
use std::time::{Duration, Instant};
use tests::median;

struct Noop(usize);

#[async_trait]
impl Step for Noop {
    type Receipt = ();
    fn name(&self) -> String {
        format!("noop {}", self.0)
    }
    fn class(&self) -> StepClass {
        StepClass::Reversible
    }
    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        Ok(())
    }
    async fn undo(&self, _ctx: &StepCtx, _r: Option<()>) -> Result<(), StepError> {
        Ok(())
    }
}

/// A value of the size of a typical journal record.
fn payload(i: u64) -> Vec<u8> {
    format!(
        r#"{{"format":1,"run":1,"seq":{i},"at_ms":1700000000000,"entry":{{"type":"step_done","step":{i},"receipt":null}}}}"#
    )
    .into_bytes()
}

fn raw_sled(n: u64, datasync: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("records").unwrap();
    let log = std::fs::File::open(dir.path().join("db")).unwrap();
    let t = Instant::now();
    for i in 0..n {
        tree.insert(i.to_be_bytes(), payload(i)).unwrap();
        db.flush().unwrap();
        if datasync {
            log.sync_data().unwrap();
        }
    }
    t.elapsed()
}

/// Returns (elapsed, records written).
fn molt(rt: &tokio::runtime::Runtime, n: u64) -> (Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = journal::Store::open(dir.path()).unwrap();
    let steps_per_plan = 50usize;
    let per_plan = 2 * steps_per_plan as u64 + 2; // intents + dones + started + committed
    let plans = n.div_ceil(per_plan);
    let t = Instant::now();
    for p in 0..plans {
        let steps = (0..steps_per_plan)
            .map(|i| Box::new(Noop(i)) as Box<dyn engine::DynStep>)
            .collect();
        let plan = Plan::new("bench", serde_json::Value::Null, steps).unwrap();
        let mut machine = Machine::new(RunId(p + 1), plan.meta.clone(), Limits::default());
        rt.block_on(drive(
            &mut machine,
            Event::Start,
            &plan.steps,
            &mut store,
            DriveOptions::default(),
        ))
        .unwrap();
    }
    (t.elapsed(), plans * per_plan)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(5);
    let n = args.get(1).copied().unwrap_or(1020);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (mut a, mut b, mut m) = (Vec::new(), Vec::new(), Vec::new());
    // Interleave the three so that machine noise hits them alike.
    for _ in 0..rounds {
        a.push(raw_sled(n, false).as_secs_f64() * 1e6 / n as f64);
        b.push(raw_sled(n, true).as_secs_f64() * 1e6 / n as f64);
        let (t, records) = molt(&rt, n);
        m.push(t.as_secs_f64() * 1e6 / records as f64);
    }
    let (a, b, m) = (median(a), median(b), median(m));
    println!(
        "journal_cost: {rounds} rounds of ~{n} transitions, median microseconds per transition"
    );
    println!("  raw sled insert+flush            {a:>9.1} us");
    println!("  raw sled insert+flush+fdatasync  {b:>9.1} us");
    println!("  molt engine+journal (no-op steps){m:>9.1} us");
    println!(
        "  ratio molt / (sled insert+flush)           = {:.2}x  (target <= 1.5x)",
        m / a
    );
    println!(
        "  ratio molt / (sled insert+flush+fdatasync) = {:.2}x  (molt syncs once per side effect, about every 2 records)",
        m / b
    );
    println!(
        "  fdatasync's own cost: {:.2}x raw sled insert+flush",
        b / a
    );
}
