//! Sessions: taking the installation lock, opening the journal, starting a run or attaching to
//! an unfinished one, and the housekeeping after a run ends.

use crate::exit::{self, coded};
use anyhow::Context;
use engine::{DriveOptions, Event, Finish, Ledger, Limits, Machine, Mode, Outcome, Plan, RunId};
use steps::{Installation, PlanSpec};

struct Silent;

impl engine::Observer for Silent {
    fn progress(&mut self, _event: engine::Progress<'_>) {}
}
use journal::{Holder, Lock, RunLog, Store};

/// The engine limits molt runs with.
pub const LIMITS: Limits = Limits {
    max_attempts: 5,
    undo_retries: 2,
};

/// Open the journal for reading only (no installation lock). A running upgrade keeps the
/// journal open, in which case the error names the holder.
pub fn open_for_reading(inst: &Installation) -> anyhow::Result<Store> {
    open_store(inst)
}

fn open_store(inst: &Installation) -> anyhow::Result<Store> {
    Store::open(&inst.journal_dir()).map_err(|e| journal_refusal(inst, e))
}

/// A journal error as the exit code and words the operator gets.
pub fn journal_refusal(inst: &Installation, e: journal::Error) -> anyhow::Error {
    match e {
        journal::Error::Busy { .. } => {
            let who = match Lock::holder(&inst.lock_path()) {
                Ok(Some(held)) => held.to_string(),
                _ => "another process has the journal open".to_string(),
            };
            coded(exit::LOCKED, format!("installation is busy: {who}"))
        }
        // Kept as the source so `molt status` can tell "newer" from "damaged".
        e @ journal::Error::NewerFormat { .. } => {
            anyhow::Error::new(e).context(exit::Coded {
                code: exit::JOURNAL,
                message: "this molt cannot read the journal".into(),
            })
        }
        e @ (journal::Error::Open { .. }
        | journal::Error::Sled { .. }
        | journal::Error::Diverged { .. }) => coded(
            exit::JOURNAL,
            format!(
                "{e}; the journal's files are left as they are. `molt recover` (or `molt journal salvage`) rebuilds it from what is readable; `molt status` shows what is on disk"
            ),
        ),
        e @ journal::Error::Unsalvageable { .. } => coded(exit::JOURNAL, e.to_string()),
        e => anyhow::Error::new(e),
    }
}

/// Take the installation lock for `command`, or say who holds it (exit 3).
pub fn lock(inst: &Installation, command: &str) -> anyhow::Result<Lock> {
    match Lock::acquire(&inst.lock_path(), &Holder::this_process(command))? {
        Ok(lock) => Ok(lock),
        Err(held) => Err(coded(exit::LOCKED, held.to_string())),
    }
}

/// Open the journal, salvaging it first when it needs it (the caller holds the
/// installation lock); what the salvage did is said on stderr.
pub fn open_salvaging(inst: &Installation) -> anyhow::Result<Store> {
    let (store, report) =
        journal::open_salvaging(&inst.journal_dir()).map_err(|e| journal_refusal(inst, e))?;
    if let Some(s) = report {
        eprintln!("{}", describe_salvage(&s));
    }
    Ok(store)
}

/// One paragraph on what a salvage kept and dropped.
pub fn describe_salvage(s: &journal::Salvaged) -> String {
    let mut out = format!(
        "the damaged journal was salvaged: {} runs rebuilt ({} records; from {}), the damaged one kept as {}",
        s.kept.len(),
        s.kept.iter().map(|(_, n)| n).sum::<usize>(),
        s.sources
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.kept_aside.display()
    );
    for (run, why) in &s.dropped {
        out.push_str(&format!(
            "\n  finished run {run} left out of the new journal: {why}"
        ));
    }
    out
}

/// A run's records, refusing any damage.
pub fn trusted_records(store: &Store, run: RunId) -> anyhow::Result<RunLog> {
    let log = store.read_run(run)?;
    if !log.damage.is_empty() {
        let list: Vec<String> = log.damage.iter().map(|d| d.to_string()).collect();
        return Err(coded(
            exit::JOURNAL,
            format!(
                "run {run} has damaged journal records ({}); molt will not act on it. `molt journal show {run}` prints what is readable",
                list.join("; ")
            ),
        ));
    }
    Ok(log)
}

/// The latest run and its ledger, when the latest run is not terminal.
pub fn unfinished(store: &Store) -> anyhow::Result<Option<(RunId, Ledger)>> {
    let Some(run) = store.runs()?.last().copied() else {
        return Ok(None);
    };
    let log = trusted_records(store, run)?;
    let ledger = Ledger::replay(&log.records).map_err(|e| journal_error(run, e))?;
    Ok(ledger.terminal.is_none().then_some((run, ledger)))
}

/// Map an engine error about a stored run to the journal exit code.
pub fn journal_error(run: RunId, e: engine::Error) -> anyhow::Error {
    coded(exit::JOURNAL, format!("run {run}: {e}"))
}

/// The lock plus the journal: what every command that changes something holds.
pub struct Session {
    pub inst: Installation,
    pub store: Store,
    /// Told when each step begins and ends (progress lines, `--json` events).
    pub observer: Option<Box<dyn engine::Observer>>,
    _lock: Lock,
}

impl Session {
    pub fn open(inst: &Installation, command: &str) -> anyhow::Result<Session> {
        Session::open_with(inst, command, false)
    }

    /// Like [`Session::open`], but a damaged journal is first salvaged (under the lock) into
    /// a fresh one: what `molt recover` does, so an unattended boot-time recovery is not
    /// stranded by a few damaged bytes.
    pub fn open_salvaging(inst: &Installation, command: &str) -> anyhow::Result<Session> {
        Session::open_with(inst, command, true)
    }

    fn open_with(inst: &Installation, command: &str, salvaging: bool) -> anyhow::Result<Session> {
        let lock = lock(inst, command)?;
        let store = if salvaging {
            open_salvaging(inst)?
        } else {
            open_store(inst)?
        };
        let session = Session {
            inst: inst.clone(),
            store,
            observer: None,
            _lock: lock,
        };
        session.sweep_scratch()?;
        Ok(session)
    }

    /// Start a new run of `spec`, refusing while another run is unfinished.
    pub async fn start(&mut self, spec: PlanSpec) -> anyhow::Result<RunReport> {
        self.start_with(|_| spec).await
    }

    /// Start a new run of the plan `spec` makes for the new run's id.
    pub async fn start_with(
        &mut self,
        spec: impl FnOnce(RunId) -> PlanSpec,
    ) -> anyhow::Result<RunReport> {
        if let Some((run, ledger)) = unfinished(&self.store)? {
            return Err(coded(
                exit::INCOMPLETE,
                format!(
                    "run {run} ({}) is unfinished; `molt resume` or `molt rollback` it first ({})",
                    ledger.plan.id,
                    describe_position(&ledger)
                ),
            ));
        }
        let run = self.store.next_run_id()?;
        let env = steps::Env::new(&self.inst, run);
        let plan = spec(run).plan(&env).context("cannot build the plan")?;
        let mut machine = Machine::new(run, plan.meta.clone(), LIMITS);
        self.drive(&mut machine, Event::Start, &plan, Mode::Resume, false)
            .await
    }

    /// Attach to the unfinished run: `Some(mode)` as the operator asked, `None` for the
    /// recovery policy (`engine::decide`). Returns `None` when there is nothing to do.
    pub async fn attach(
        &mut self,
        mode: Option<Mode>,
        forced: bool,
    ) -> anyhow::Result<Option<RunReport>> {
        let Some(run) = self.store.runs()?.last().copied() else {
            return Ok(None);
        };
        let log = trusted_records(&self.store, run)?;
        let ledger = Ledger::replay(&log.records).map_err(|e| journal_error(run, e))?;
        let requested = mode.is_some();
        let mode = match (mode, &ledger.terminal) {
            (_, Some(Outcome::Committed | Outcome::RolledBack)) => return Ok(None),
            (_, Some(Outcome::Stuck { step, reason })) if !forced => {
                return Err(coded(
                    exit::STUCK,
                    format!(
                        "run {run} is stuck at step {step} ({}): {reason}. Fix the cause, then run `molt resume --force` or `molt rollback --force`",
                        ledger.step_name(*step)
                    ),
                ))
            }
            (Some(m), _) => m,
            (None, _) => match engine::decide_ledger(&ledger, LIMITS) {
                engine::Decision::Finished { .. } => return Ok(None),
                engine::Decision::Resume => Mode::Resume,
                engine::Decision::Rollback => Mode::Rollback,
                engine::Decision::Stuck { step, reason } => {
                    return Err(coded(
                        exit::STUCK,
                        format!(
                            "run {run} would be stuck at step {step} ({}): {reason}. Fix the cause, then `molt resume --force` or `molt rollback --force`",
                            ledger.step_name(step)
                        ),
                    ))
                }
            },
        };
        let env = steps::Env::new(&self.inst, run);
        let plan = steps::build(&ledger.plan.id, &ledger.plan.spec, &env).map_err(|e| {
            let code = match e {
                steps::Error::UnknownPlan { .. } => exit::JOURNAL,
                _ => exit::ERROR,
            };
            coded(code, format!("run {run}: {e}"))
        })?;
        plan.check_matches(&ledger.plan)
            .map_err(|e| journal_error(run, e))?;
        // The ledger was replayed (and validated) above: build the machine from it rather
        // than replaying the records a second time.
        let mut machine = Machine::from_parts(ledger, engine::State::Idle, LIMITS);
        let event = match mode {
            Mode::Resume => Event::Resume { forced },
            Mode::Rollback => Event::Rollback { forced },
        };
        self.drive(&mut machine, event, &plan, mode, requested)
            .await
            .map(Some)
    }

    async fn drive(
        &mut self,
        machine: &mut Machine,
        event: Event,
        plan: &Plan,
        mode: Mode,
        requested: bool,
    ) -> anyhow::Result<RunReport> {
        let run = machine.ledger().run;
        let mut silent = Silent;
        let observer: &mut dyn engine::Observer = match &mut self.observer {
            Some(o) => o.as_mut(),
            None => &mut silent,
        };
        let finish = match engine::drive_observed(
            machine,
            event,
            &plan.steps,
            &mut self.store,
            DriveOptions::default(),
            observer,
        )
        .await
        {
            Ok(f) => f,
            Err(engine::Error::Refused(why)) => return Err(coded(exit::ERROR, why)),
            Err(e @ engine::Error::Journal(_)) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "run {run} stopped: nothing after its last durable record was done; `molt recover` continues it"
                )))
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("run {run}"))),
        };
        if matches!(finish, Finish::Finished(_)) {
            self.remove_scratch(run)?;
        }
        Ok(RunReport {
            run,
            plan: machine.ledger().plan.id.clone(),
            mode,
            requested,
            finish,
            reason: machine.ledger().rollback_reason.clone(),
        })
    }

    fn remove_scratch(&self, run: RunId) -> anyhow::Result<()> {
        let dir = self.inst.scratch(run);
        steps::fsutil::remove_path(&dir)
            .with_context(|| format!("cannot remove scratch directory {}", dir.display()))
    }

    /// Remove scratch directories of runs that are terminal (a crash between the terminal
    /// record and the cleanup leaves one behind).
    fn sweep_scratch(&self) -> anyhow::Result<()> {
        let Ok(entries) = std::fs::read_dir(self.inst.runs_scratch()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let Some(run) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .map(RunId)
            else {
                continue;
            };
            let log = self.store.read_run(run)?;
            let terminal = log.damage.is_empty()
                && Ledger::replay(&log.records).is_ok_and(|l| l.terminal.is_some());
            if terminal {
                self.remove_scratch(run)?;
            }
        }
        Ok(())
    }
}

/// What a session did, for the report and the exit code.
#[derive(Debug)]
pub struct RunReport {
    pub run: RunId,
    pub plan: String,
    pub mode: Mode,
    /// The operator asked for this mode (not the recovery policy, not a failure).
    pub requested: bool,
    pub finish: Finish,
    pub reason: Option<String>,
}

impl RunReport {
    pub fn exit_code(&self) -> u8 {
        match &self.finish {
            Finish::Finished(Outcome::Committed) => exit::OK,
            Finish::Finished(Outcome::RolledBack)
                if self.requested && self.mode == Mode::Rollback =>
            {
                exit::OK
            }
            Finish::Finished(Outcome::RolledBack) => exit::ROLLED_BACK,
            Finish::Finished(Outcome::Stuck { .. }) => exit::STUCK,
            Finish::Halted(_) => exit::INCOMPLETE,
        }
    }

    pub fn summary(&self) -> String {
        let run = self.run;
        match &self.finish {
            Finish::Finished(Outcome::Committed) => format!("run {run} committed"),
            Finish::Finished(Outcome::RolledBack) => match &self.reason {
                Some(r) => format!("run {run} rolled back: {r}"),
                None => format!("run {run} rolled back"),
            },
            Finish::Finished(Outcome::Stuck { step, reason }) => format!(
                "run {run} is STUCK at step {step}: {reason}; fix the cause, then `molt resume --force` or `molt rollback --force`"
            ),
            Finish::Halted(engine::Halt::ForwardFailed { step, error }) => format!(
                "run {run} stopped: forward-only step {step} failed: {error}; it cannot be rolled back, fix the cause and `molt resume`"
            ),
            Finish::Halted(engine::Halt::UndoFailed { step, error }) => format!(
                "run {run} stopped while rolling back: undo of step {step} keeps failing: {error}; fix the cause and `molt rollback`"
            ),
        }
    }

    /// One word for a notification: committed, rolled_back, stuck, incomplete.
    pub fn outcome_word(&self) -> &'static str {
        match &self.finish {
            Finish::Finished(Outcome::Committed) => "committed",
            Finish::Finished(Outcome::RolledBack) => "rolled_back",
            Finish::Finished(Outcome::Stuck { .. }) => "stuck",
            Finish::Halted(_) => "incomplete",
        }
    }

    /// Why the run did not commit, in full (a stuck step's reason, a halted step's error).
    pub fn failure(&self) -> Option<String> {
        match &self.finish {
            Finish::Finished(Outcome::Committed) => None,
            Finish::Finished(Outcome::Stuck { reason, .. }) => Some(reason.clone()),
            _ => self.reason.clone().or_else(|| Some(self.summary())),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (state, detail) = match &self.finish {
            Finish::Finished(o) => ("finished", serde_json::to_value(o).unwrap_or_default()),
            Finish::Halted(h) => ("halted", serde_json::to_value(h).unwrap_or_default()),
        };
        serde_json::json!({
            "run": self.run.0,
            "plan": self.plan,
            "mode": self.mode,
            "requested": self.requested,
            "state": state,
            "detail": detail,
            "reason": self.reason,
            "summary": self.summary(),
            "exit_code": self.exit_code(),
        })
    }
}

/// "at step 2 (switch current), moving forward" for messages.
pub fn describe_position(ledger: &Ledger) -> String {
    match ledger.direction {
        engine::Direction::Forward => match ledger.next_forward() {
            Some(i) => format!("next: do step {i} ({})", ledger.step_name(i)),
            None => "every step done, not yet committed".into(),
        },
        engine::Direction::Backward => match ledger.next_backward() {
            Some(i) => format!(
                "rolling back, next: undo step {i} ({})",
                ledger.step_name(i)
            ),
            None => "rolling back, every step undone".into(),
        },
    }
}
