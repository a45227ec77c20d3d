//! Which backups a prune may delete: a pure function of the listing, the policy, the time and
//! the backups that something still needs.

use super::Listed;
use std::collections::BTreeSet;

/// Keep the newest `keep_last` complete backups, and every complete backup younger than
/// `keep_days`. The newest complete backup is always kept, whatever the numbers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: usize,
    pub keep_days: u64,
}

/// The ids to delete, oldest first. `backups` is in any order. `protected` backups (named by
/// an unfinished run, e.g. the one an upgrade in progress would restore) are never deleted;
/// incomplete backups not protected are deleted (they can never be used).
pub fn select(
    backups: &[Listed],
    policy: Policy,
    now_ms: u64,
    protected: &BTreeSet<String>,
) -> Vec<String> {
    let mut complete: Vec<&Listed> = backups.iter().filter(|b| b.state == "complete").collect();
    complete.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    let horizon = now_ms.saturating_sub(policy.keep_days.saturating_mul(86_400_000));
    let mut doomed: Vec<&Listed> = Vec::new();
    for (rank, b) in complete.iter().enumerate() {
        let young = b.created_ms.unwrap_or(0) >= horizon && policy.keep_days > 0;
        if rank == 0 || rank < policy.keep_last || young {
            continue;
        }
        doomed.push(b);
    }
    doomed.extend(backups.iter().filter(|b| b.state != "complete"));
    doomed.retain(|b| !protected.contains(&b.id));
    doomed.sort_by(|a, b| {
        a.created_ms
            .cmp(&b.created_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    doomed.into_iter().map(|b| b.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, created_ms: Option<u64>) -> Listed {
        Listed {
            id: id.into(),
            state: if created_ms.is_some() {
                "complete"
            } else {
                "incomplete"
            },
            created_ms,
            files: 0,
            bytes: 0,
            archived: false,
            paths: vec![],
        }
    }

    const DAY: u64 = 86_400_000;

    #[test]
    fn keeps_last_n_and_young_ones_and_always_the_newest() {
        let now = 100 * DAY;
        let all = vec![
            b("a", Some(10 * DAY)),
            b("b", Some(50 * DAY)),
            b("c", Some(95 * DAY)),
            b("d", Some(99 * DAY)),
            b("x", None),
        ];
        let none = BTreeSet::new();
        let p = |keep_last, keep_days| Policy {
            keep_last,
            keep_days,
        };
        assert_eq!(select(&all, p(2, 0), now, &none), ["x", "a", "b"]);
        assert_eq!(select(&all, p(1, 7), now, &none), ["x", "a", "b"]);
        assert_eq!(select(&all, p(1, 60), now, &none), ["x", "a"]);
        assert_eq!(select(&all, p(0, 0), now, &none), ["x", "a", "b", "c"]);
        assert_eq!(select(&all, p(10, 0), now, &none), ["x"]);
        let prot: BTreeSet<String> = ["a".to_string(), "x".to_string()].into();
        assert_eq!(select(&all, p(0, 0), now, &prot), ["b", "c"]);
        assert!(select(&[], p(0, 0), now, &none).is_empty());
        assert!(select(&[b("only", Some(1))], p(0, 0), now, &none).is_empty());
    }
}
