//! Leases: the grammar of a lease request, its validation at submit, the effective
//! lease (request ∩ plugin ceiling), `expires_at` and budget counters (spec §9).
//!
//! Pure code: no I/O, no clocks other than the instant passed in, no knowledge of
//! sessions or wasm. The sandbox asks this module before any authority-bearing
//! operation; this module never performs one.

mod budget;
mod matching;
mod subset;

pub use budget::{Budget, Charge};
pub use matching::{LeaseMatcher, NAME_NAMESPACES, PATH_NAMESPACES, UrlPattern, normalise_path};
pub use subset::check_subset;

use crate::error::ArcpError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The runtime-defined budget currency metered as wasm fuel.
pub const FUEL: &str = "fuel";

/// The namespaces the spec reserves (§9.2).
pub const RESERVED_NAMESPACES: [&str; 7] = [
    "fs.read",
    "fs.write",
    "net.fetch",
    "tool.call",
    "agent.delegate",
    "cost.budget",
    "model.use",
];

/// A validated lease: namespace → patterns, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Lease {
    grants: BTreeMap<String, Vec<String>>,
}

impl Lease {
    /// Parses and validates a `lease_request`. Unknown (non-reserved) namespaces with a
    /// well-formed name are kept but grant nothing this runtime enforces; a malformed
    /// namespace, pattern or amount is `INVALID_REQUEST` naming the offending entry.
    pub fn from_request(request: Option<&Map<String, Value>>) -> Result<Lease, ArcpError> {
        let mut grants = BTreeMap::new();
        let Some(request) = request else {
            return Ok(Lease::default());
        };
        // Per-currency totals of `cost.budget`: each must fit a `Decimal`.
        let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
        for (namespace, patterns) in request {
            if !valid_namespace(namespace) {
                return Err(ArcpError::invalid(format!(
                    "lease_request: malformed namespace {namespace:?}"
                )));
            }
            let Value::Array(items) = patterns else {
                return Err(ArcpError::invalid(format!(
                    "lease_request[{namespace:?}] must be a list of pattern strings"
                )));
            };
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(p) = item else {
                    return Err(ArcpError::invalid(format!(
                        "lease_request[{namespace:?}]: pattern {item} is not a string"
                    )));
                };
                if p.is_empty() || p.len() > 4096 || p.chars().any(char::is_control) {
                    return Err(ArcpError::invalid(format!(
                        "lease_request[{namespace:?}]: malformed pattern {p:?}"
                    )));
                }
                if PATH_NAMESPACES.contains(&namespace.as_str())
                    || NAME_NAMESPACES.contains(&namespace.as_str())
                {
                    matching::compile_pattern(namespace, p)?;
                }
                if namespace == "net.fetch" {
                    UrlPattern::check(p).map_err(|why| {
                        ArcpError::invalid(format!(
                            "lease_request[\"net.fetch\"]: pattern {p:?}: {why}"
                        ))
                    })?;
                }
                if namespace == "cost.budget" {
                    let a = BudgetAmount::parse(p).map_err(|why| {
                        ArcpError::invalid(format!(
                            "lease_request[\"cost.budget\"]: malformed amount {p:?}: {why}"
                        ))
                    })?;
                    let total = totals.entry(a.currency.clone()).or_insert(Decimal::ZERO);
                    *total = total.checked_add(a.amount).ok_or_else(|| {
                        ArcpError::invalid(format!(
                            "lease_request[\"cost.budget\"]: the {} amounts add up to more than {}",
                            a.currency,
                            Decimal::MAX
                        ))
                    })?;
                }
                list.push(p.clone());
            }
            grants.insert(namespace.clone(), list);
        }
        Ok(Lease { grants })
    }

    /// The effective lease: this request restricted to the namespaces a plugin's
    /// ceiling allows (`None` = no ceiling).
    pub fn restricted_to(&self, allowed_namespaces: Option<&[String]>) -> Lease {
        match allowed_namespaces {
            None => self.clone(),
            Some(allowed) => Lease {
                grants: self
                    .grants
                    .iter()
                    .filter(|(ns, _)| allowed.iter().any(|a| a == *ns))
                    .map(|(ns, p)| (ns.clone(), p.clone()))
                    .collect(),
            },
        }
    }

    /// Every namespace and its patterns.
    pub fn grants(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.grants.iter()
    }

    /// The effective lease under a plugin's ceiling (a sidecar's `[ceiling]`): only
    /// namespaces the ceiling names; per namespace the request's patterns the
    /// ceiling covers, plus the ceiling's patterns the request covers (patterns are
    /// compared as equal strings or as literals matched by globs: a glob is never
    /// proven inside another glob); `cost.budget` is the smaller amount per
    /// currency, and a currency only the ceiling names is imposed.
    pub fn within(&self, ceiling: &Lease) -> Result<Lease, ArcpError> {
        let ceiling_matcher = LeaseMatcher::new(ceiling)?;
        let request_matcher = LeaseMatcher::new(self)?;
        let mut grants = BTreeMap::new();
        for (namespace, caps) in &ceiling.grants {
            if namespace == "cost.budget" {
                let mut amounts = ceiling.budgets();
                for (cur, asked) in self.budgets() {
                    amounts
                        .entry(cur)
                        .and_modify(|cap| *cap = (*cap).min(asked));
                }
                let list: Vec<String> = amounts.iter().map(|(c, a)| format!("{c}:{a}")).collect();
                grants.insert(namespace.clone(), list);
                continue;
            }
            let mut list: Vec<String> = self
                .patterns(namespace)
                .iter()
                .filter(|p| subset::covered(ceiling, &ceiling_matcher, namespace, p))
                .cloned()
                .collect();
            for c in caps {
                if !list.contains(c) && subset::covered(self, &request_matcher, namespace, c) {
                    list.push(c.clone());
                }
            }
            if !list.is_empty() {
                grants.insert(namespace.clone(), list);
            }
        }
        Ok(Lease { grants })
    }

    /// The patterns of one namespace.
    pub fn patterns(&self, namespace: &str) -> &[String] {
        self.grants.get(namespace).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The lease as the wire shows it (`{namespace: [patterns]}`).
    pub fn to_wire(&self) -> Map<String, Value> {
        self.grants
            .iter()
            .map(|(ns, p)| (ns.clone(), Value::from(p.clone())))
            .collect()
    }

    /// The fuel budget (`cost.budget: ["fuel:N"]`), a runtime-defined currency
    /// metered by wasmtime itself.
    pub fn fuel(&self) -> Option<u64> {
        self.budgets()
            .get(FUEL)
            .map(|d| rust_decimal::prelude::ToPrimitive::to_u64(&d.trunc()).unwrap_or(u64::MAX))
    }

    /// Initial budget counters from `cost.budget`, summed per currency (a sum past
    /// `Decimal::MAX`, which `from_request` refuses, saturates).
    pub fn budgets(&self) -> BTreeMap<String, Decimal> {
        let mut out = BTreeMap::new();
        for p in self.patterns("cost.budget") {
            if let Ok(a) = BudgetAmount::parse(p) {
                let total = out.entry(a.currency).or_insert(Decimal::ZERO);
                *total = total.saturating_add(a.amount);
            }
        }
        out
    }
}

fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 128
        && ns.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
                && chars
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}

/// A `cost.budget` pattern: `CURRENCY:AMOUNT` (spec §9.6), e.g. `USD:5.00`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetAmount {
    /// Currency or unit name, e.g. `USD`, `fuel`.
    pub currency: String,
    /// A non-negative decimal amount.
    pub amount: Decimal,
}

impl BudgetAmount {
    /// Parses `CURRENCY:AMOUNT`.
    pub fn parse(s: &str) -> Result<BudgetAmount, &'static str> {
        let (currency, amount) = s.split_once(':').ok_or("expected CURRENCY:AMOUNT")?;
        if currency.is_empty()
            || !currency
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err("currency must be letters, digits, '_', '-' or '.'");
        }
        if amount.is_empty() || !amount.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err("amount must be a non-negative decimal number");
        }
        let amount = Decimal::from_str(amount).map_err(|_| "amount is not a decimal number")?;
        Ok(BudgetAmount {
            currency: currency.to_owned(),
            amount,
        })
    }
}

/// Formats budget counters as the reference client expects: `{"USD": "USD:5.00"}`.
pub fn budget_to_wire(budgets: &BTreeMap<String, Decimal>) -> Map<String, Value> {
    budgets
        .iter()
        .map(|(cur, amount)| (cur.clone(), Value::from(format!("{cur}:{amount}"))))
        .collect()
}

/// Parses and checks `lease_constraints.expires_at`: RFC 3339, UTC with a `Z`
/// suffix, strictly after `now` (spec §9.5).
pub fn parse_expires_at(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ArcpError> {
    if !raw.ends_with('Z') {
        return Err(ArcpError::invalid(format!(
            "lease_constraints.expires_at {raw:?} must be UTC with a 'Z' suffix"
        )));
    }
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|e| {
            ArcpError::invalid(format!(
                "lease_constraints.expires_at {raw:?} is not an RFC 3339 timestamp: {e}"
            ))
        })?
        .with_timezone(&Utc);
    if at <= now {
        return Err(ArcpError::invalid(format!(
            "lease_constraints.expires_at {raw:?} is not in the future"
        )));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_valid_request_round_trips_to_the_wire() {
        let r = req(json!({"fs.read": ["/w/**"], "cost.budget": ["USD:5.00"]}));
        let lease = Lease::from_request(Some(&r)).unwrap();
        assert_eq!(Value::Object(lease.to_wire()), Value::Object(r));
        assert_eq!(lease.budgets()["USD"], Decimal::from_str("5.00").unwrap());
    }

    #[test]
    fn unknown_namespaces_are_kept_malformed_ones_refused() {
        let lease = Lease::from_request(Some(&req(json!({"x.custom": ["a"]})))).unwrap();
        assert_eq!(lease.patterns("x.custom"), ["a"]);
        for bad in [
            json!({"Bad NS": ["a"]}),
            json!({"fs.read": "a"}),
            json!({"fs.read": [1]}),
            json!({"fs.read": [""]}),
            json!({"cost.budget": ["USD"]}),
            json!({"cost.budget": ["USD:-1"]}),
            json!({"cost.budget": ["USD:abc"]}),
        ] {
            let err = Lease::from_request(Some(&req(bad.clone()))).unwrap_err();
            assert_eq!(err.code, crate::error::ErrorCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn budget_amounts_are_exact_decimals_summed_per_currency() {
        let lease = Lease::from_request(Some(&req(
            json!({"cost.budget": ["USD:0.10", "USD:0.20", "EUR:1"]}),
        )))
        .unwrap();
        let b = lease.budgets();
        assert_eq!(b["USD"], Decimal::from_str("0.30").unwrap());
        assert_eq!(budget_to_wire(&b)["USD"], json!("USD:0.30"));
    }

    #[test]
    fn budget_amounts_whose_sum_overflows_are_refused_not_a_panic() {
        // Found while writing the fuzz target (input in
        // `fuzz/regressions/budget-sum-overflows-a-decimal.json`): two amounts in one
        // currency summing past `Decimal::MAX` were accepted, and `budgets()` then
        // panicked ("Addition overflowed") while the runtime built `job.accepted`.
        let max = Decimal::MAX.to_string();
        let err = Lease::from_request(Some(&req(
            json!({"cost.budget": [format!("USD:{max}"), "USD:1"]}),
        )))
        .unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::InvalidRequest);
        assert!(err.message.contains("USD"), "{}", err.message);
        // The largest amount alone, or in different currencies, is fine.
        let lease = Lease::from_request(Some(&req(
            json!({"cost.budget": [format!("USD:{max}"), format!("EUR:{max}")]}),
        )))
        .unwrap();
        assert_eq!(lease.budgets()["USD"], Decimal::MAX);
        // A ceiling (read from a sidecar, not through `from_request`) saturates.
        let mut grants = BTreeMap::new();
        grants.insert(
            "cost.budget".to_owned(),
            vec![format!("USD:{max}"), format!("USD:{max}")],
        );
        let ceiling = Lease { grants };
        assert_eq!(ceiling.budgets()["USD"], Decimal::MAX);
        assert_eq!(
            Lease::default().within(&ceiling).unwrap().budgets()["USD"],
            Decimal::MAX
        );
    }

    #[test]
    fn a_ceiling_intersects_patterns_and_caps_budgets() {
        let request = Lease::from_request(Some(&req(json!({
            "fs.read": ["/docs/a.txt", "/private/x", "/pub/**"],
            "net.fetch": ["https://example.com/**"],
            "cost.budget": ["USD:5.00"]
        }))))
        .unwrap();
        let ceiling = Lease::from_request(Some(&req(json!({
            "fs.read": ["/docs/**", "/pub/readme.md"],
            "cost.budget": ["USD:1.00", "fuel:1000"]
        }))))
        .unwrap();
        let eff = request.within(&ceiling).unwrap();
        assert_eq!(eff.patterns("fs.read"), ["/docs/a.txt", "/pub/readme.md"]);
        assert!(
            eff.patterns("net.fetch").is_empty(),
            "a namespace the ceiling does not name"
        );
        assert_eq!(eff.budgets()["USD"], Decimal::from_str("1.00").unwrap());
        assert_eq!(eff.fuel(), Some(1000), "a ceiling-only currency is imposed");
    }

    #[test]
    fn ceiling_drops_namespaces_the_plugin_may_not_use() {
        let lease = Lease::from_request(Some(&req(
            json!({"fs.read": ["a"], "net.fetch": ["https://b"]}),
        )))
        .unwrap();
        let eff = lease.restricted_to(Some(&["fs.read".to_owned()]));
        assert_eq!(eff.patterns("fs.read"), ["a"]);
        assert!(eff.patterns("net.fetch").is_empty());
    }

    #[test]
    fn expires_at_must_be_utc_z_and_in_the_future() {
        let now = Utc::now();
        let future =
            (now + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert!(parse_expires_at(&future, now).is_ok());
        assert!(parse_expires_at("2000-01-01T00:00:00Z", now).is_err());
        assert!(parse_expires_at("2999-01-01T00:00:00+01:00", now).is_err());
        assert!(parse_expires_at("tomorrow", now).is_err());
    }
}
