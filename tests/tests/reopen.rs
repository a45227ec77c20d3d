//! Engine + sled journal + real file-system steps in one process: the run is cut off after
//! every possible number of journal operations, the sled journal is closed and reopened, and
//! recovery (`engine::decide`) brings the tree to exactly before or after.

use engine::{
    decide, drive, Decision, DriveOptions, Event, Finish, Limits, Machine, Record, RunId,
};
use std::collections::BTreeMap;
use std::path::Path;
use steps::{Env, FsScript};

/// Fails every journal operation after the first `budget` ones, like a process that died.
struct Cut<'a> {
    store: &'a mut journal::Store,
    budget: usize,
}

impl Cut<'_> {
    fn spend(&mut self) -> Result<(), engine::BoxError> {
        if self.budget == 0 {
            return Err("cut".into());
        }
        self.budget -= 1;
        Ok(())
    }
}

impl engine::Journal for Cut<'_> {
    fn append(&mut self, record: &Record) -> Result<(), engine::BoxError> {
        self.spend()?;
        engine::Journal::append(self.store, record)
    }
    fn sync(&mut self) -> Result<(), engine::BoxError> {
        self.spend()?;
        engine::Journal::sync(self.store)
    }
}

const SCRIPT: &str = r#"
[[step]]
op = "copy_tree"
from = "incoming/2"
to = "releases/2"
[[step]]
op = "write_file"
path = "shared/.env"
contents = "B=2\n"
pivot = true
[[step]]
op = "switch_link"
link = "current"
target = "releases/2"
"#;

fn scaffold(root: &Path) {
    std::fs::create_dir_all(root.join("incoming/2/sub")).unwrap();
    std::fs::create_dir_all(root.join("releases/1")).unwrap();
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::write(root.join("incoming/2/a"), "a2").unwrap();
    std::fs::write(root.join("incoming/2/sub/b"), "b2").unwrap();
    std::fs::write(root.join("incoming/2/c"), "c2").unwrap();
    std::fs::write(root.join("shared/.env"), "B=1\n").unwrap();
    std::os::unix::fs::symlink("releases/1", root.join("current")).unwrap();
}

fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "journal" || rel == "cache" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    walk(root, root, &mut out);
    out
}

#[test]
fn cut_after_every_journal_operation_then_reopen_and_recover() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let script = FsScript::from_toml(SCRIPT).unwrap();
    let limits = Limits::default();
    let (before, after) = {
        let dir = tempfile::tempdir().unwrap();
        scaffold(dir.path());
        let before = tree(dir.path());
        let mut store = journal::Store::open(&dir.path().join("journal")).unwrap();
        let inst = steps::Installation::open(dir.path()).unwrap();
        let plan = steps::PlanSpec::FsScript(script.clone())
            .plan(&Env::new(&inst, RunId(1)))
            .unwrap();
        let mut m = Machine::new(RunId(1), plan.meta.clone(), limits);
        let f = rt
            .block_on(drive(
                &mut m,
                Event::Start,
                &plan.steps,
                &mut store,
                DriveOptions::default(),
            ))
            .unwrap();
        assert_eq!(f, Finish::Finished(engine::Outcome::Committed));
        (before, tree(dir.path()))
    };
    let mut cuts = 0;
    for budget in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        scaffold(root);
        let env = Env::new(&steps::Installation::open(root).unwrap(), RunId(1));
        let plan = steps::PlanSpec::FsScript(script.clone())
            .plan(&env)
            .unwrap();
        let finished = {
            let mut store = journal::Store::open(&root.join("journal")).unwrap();
            let mut cut = Cut {
                store: &mut store,
                budget,
            };
            let mut m = Machine::new(RunId(1), plan.meta.clone(), limits);
            rt.block_on(drive(
                &mut m,
                Event::Start,
                &plan.steps,
                &mut cut,
                DriveOptions::default(),
            ))
            .is_ok()
        };
        if finished {
            break;
        }
        cuts += 1;
        // Reopen the journal, as a new process would, and apply the policy until done.
        let mut store = journal::Store::open(&root.join("journal")).unwrap();
        let outcome = loop {
            let records = store.read_run(RunId(1)).unwrap();
            assert!(records.damage.is_empty());
            if records.records.is_empty() {
                break None;
            }
            let event = match decide(&records.records, limits).unwrap() {
                Decision::Finished { outcome } => break Some(outcome),
                Decision::Resume => Event::Resume { forced: false },
                Decision::Rollback => Event::Rollback { forced: false },
                Decision::Stuck { reason, .. } => panic!("stuck: {reason}"),
            };
            let plan = steps::build(&plan.meta.id, &plan.meta.spec, &env).unwrap();
            let mut m = Machine::from_records(&records.records, limits).unwrap();
            rt.block_on(drive(
                &mut m,
                event,
                &plan.steps,
                &mut store,
                DriveOptions::default(),
            ))
            .unwrap();
        };
        let got = tree(root);
        match outcome {
            Some(engine::Outcome::Committed) => assert_eq!(got, after, "budget {budget}"),
            Some(engine::Outcome::RolledBack) | None => assert_eq!(got, before, "budget {budget}"),
            Some(other) => panic!("budget {budget}: {other:?}"),
        }
    }
    assert!(cuts >= 12, "only {cuts} cut points");
}
