//! Lease subsetting for delegation (spec §9.4): a child's lease may name nothing
//! its parent's does not cover, and its budget may not exceed what the parent has
//! left.

use super::{Budget, Lease, LeaseMatcher, PATH_NAMESPACES, normalise_path};
use rust_decimal::Decimal;

/// Glob metacharacters: a pattern with none is a literal.
fn is_literal(p: &str) -> bool {
    !p.contains(['*', '?', '[', ']', '{', '}'])
}

/// Whether the parent covers one child pattern of `namespace`: the same pattern, or
/// a literal the parent's globs match.
pub(super) fn covered(
    parent: &Lease,
    matcher: &LeaseMatcher,
    namespace: &str,
    pattern: &str,
) -> bool {
    if parent.patterns(namespace).iter().any(|p| p == pattern) {
        return true;
    }
    if !is_literal(pattern) {
        return false;
    }
    match namespace {
        "net.fetch" => url::Url::parse(pattern).is_ok_and(|u| matcher.allows_url(&u)),
        ns if PATH_NAMESPACES.contains(&ns) => {
            normalise_path(pattern).is_ok_and(|p| matcher.allows(ns, &p))
        }
        ns => matcher.allows(ns, pattern),
    }
}

/// Checks that `child` is a subset of `parent` given the parent's remaining
/// `budget`; the error names the first violation.
pub fn check_subset(
    parent: &Lease,
    matcher: &LeaseMatcher,
    budget: &Budget,
    child: &Lease,
) -> Result<(), String> {
    for (namespace, patterns) in child.grants() {
        if namespace == "cost.budget" {
            continue;
        }
        for p in patterns {
            if !covered(parent, matcher, namespace, p) {
                return Err(format!(
                    "{namespace} {p:?} is not covered by the parent's lease"
                ));
            }
        }
    }
    let child_budget = child.budgets();
    if budget.is_enforced() {
        for (currency, left) in budget.remaining() {
            match child_budget.get(currency) {
                None => {
                    return Err(format!(
                        "the parent has a {currency} budget; the child must ask for one within it"
                    ));
                }
                Some(asked) if asked > left || *left <= Decimal::ZERO => {
                    return Err(format!(
                        "cost.budget {currency}:{asked} exceeds the parent's remaining {left}"
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = child_budget.keys().find(|c| !budget.has(c)) {
            return Err(format!("the parent has no {extra} budget to delegate"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(v: serde_json::Value) -> Lease {
        Lease::from_request(Some(v.as_object().unwrap())).unwrap()
    }

    fn check(
        parent: serde_json::Value,
        spent: &[(&str, &str)],
        child: serde_json::Value,
    ) -> Result<(), String> {
        let parent = lease(parent);
        let matcher = LeaseMatcher::new(&parent).unwrap();
        let mut budget = Budget::new(&parent);
        for (cur, amount) in spent {
            budget.charge(cur, amount.parse().unwrap());
        }
        check_subset(&parent, &matcher, &budget, &lease(child))
    }

    #[test]
    fn narrower_and_equal_grants_pass() {
        let parent = json!({"fs.read": ["/docs/**"], "model.use": ["tier-fast/*"], "net.fetch": ["https://api.example.com/**"], "cost.budget": ["USD:5.00"]});
        assert!(
            check(
                parent.clone(),
                &[],
                json!({"fs.read": ["/docs/**"], "cost.budget": ["USD:5.00"]})
            )
            .is_ok()
        );
        assert!(check(parent.clone(), &[], json!({"fs.read": ["/docs/a.txt"], "model.use": ["tier-fast/small"], "net.fetch": ["https://api.example.com/v1/x"], "cost.budget": ["USD:1"]})).is_ok());
    }

    #[test]
    fn every_widening_is_named() {
        let parent = json!({"fs.read": ["/docs/**"], "model.use": ["tier-fast/*"], "cost.budget": ["USD:5.00"]});
        let cases = [
            (
                json!({"fs.read": ["/etc/passwd"], "cost.budget": ["USD:1"]}),
                "fs.read",
            ),
            (
                json!({"fs.read": ["/**"], "cost.budget": ["USD:1"]}),
                "fs.read",
            ),
            (
                json!({"fs.write": ["/docs/a"], "cost.budget": ["USD:1"]}),
                "fs.write",
            ),
            (
                json!({"model.use": ["tier-slow/big"], "cost.budget": ["USD:1"]}),
                "model.use",
            ),
            (json!({"cost.budget": ["USD:5.01"]}), "exceeds"),
            (json!({}), "must ask"),
            (json!({"cost.budget": ["USD:1", "EUR:1"]}), "EUR"),
        ];
        for (child, needle) in cases {
            let err = check(parent.clone(), &[], child.clone()).unwrap_err();
            assert!(err.contains(needle), "{child}: {err}");
        }
    }

    #[test]
    fn the_budget_limit_is_what_the_parent_has_left() {
        let parent = json!({"cost.budget": ["USD:5.00"]});
        assert!(
            check(
                parent.clone(),
                &[("USD", "3.00")],
                json!({"cost.budget": ["USD:2.00"]})
            )
            .is_ok()
        );
        assert!(
            check(
                parent,
                &[("USD", "3.00")],
                json!({"cost.budget": ["USD:2.01"]})
            )
            .is_err()
        );
    }
}
