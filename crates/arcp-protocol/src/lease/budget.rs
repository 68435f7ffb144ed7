//! Budget counters (spec §9.6): exact decimals per currency, decremented by `cost.*`
//! metrics whose unit is a budgeted currency.

use super::Lease;
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use std::collections::BTreeMap;

/// What a metric did to the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Not a charge: not a `cost.*` metric, a `cost.budget.*` telemetry metric, or a
    /// job without budgets.
    NotACharge,
    /// Charged; the currency's remaining amount after it.
    Charged {
        /// The currency charged.
        currency: String,
        /// What is left (may be negative: the reference runtime lets the last charge
        /// overshoot; the next authority-bearing call is then refused).
        remaining: Decimal,
    },
    /// Refused, and why (the counters are unchanged).
    Refused(String),
}

/// A job's budget counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    remaining: BTreeMap<String, Decimal>,
}

impl Budget {
    /// Counters initialised from the lease's `cost.budget`.
    /// Fuel is not among them: wasmtime meters it in the store (see `sandbox`).
    pub fn new(lease: &Lease) -> Budget {
        let mut remaining = lease.budgets();
        remaining.remove(super::FUEL);
        Budget { remaining }
    }

    /// Whether any budget applies (no `cost.budget` = no enforcement).
    pub fn is_enforced(&self) -> bool {
        !self.remaining.is_empty()
    }

    /// The remaining amounts.
    pub fn remaining(&self) -> &BTreeMap<String, Decimal> {
        &self.remaining
    }

    /// The first currency whose counter reached zero, if any.
    pub fn exhausted(&self) -> Option<&str> {
        self.remaining
            .iter()
            .find(|(_, left)| **left <= Decimal::ZERO)
            .map(|(c, _)| c.as_str())
    }

    /// Applies a metric to the counters.
    pub fn charge_metric(&mut self, name: &str, value: f64, unit: Option<&str>) -> Charge {
        if !name.starts_with("cost.") || name.starts_with("cost.budget.") || !self.is_enforced() {
            return Charge::NotACharge;
        }
        let Some(unit) = unit else {
            return Charge::Refused(format!("cost metric {name:?} has no unit (currency)"));
        };
        match Decimal::from_f64(value) {
            Some(amount) => self.charge(unit, amount),
            None => Charge::Refused(format!(
                "cost metric {name:?} has an invalid amount {value}"
            )),
        }
    }

    /// Whether the job has a budget in `currency`.
    pub fn has(&self, currency: &str) -> bool {
        self.remaining.contains_key(currency)
    }

    /// Charges an exact amount in `currency`.
    pub fn charge(&mut self, currency: &str, amount: Decimal) -> Charge {
        if amount < Decimal::ZERO {
            return Charge::Refused(format!("a charge of {amount} {currency} is negative"));
        }
        let Some(left) = self.remaining.get_mut(currency) else {
            return Charge::Refused(format!("this job has no budget in {currency:?}"));
        };
        // Charges go on after a budget is spent (metrics are not refused), so the
        // counter may run past `Decimal::MIN`: it saturates there.
        *left = left.saturating_sub(amount);
        Charge::Charged {
            currency: currency.to_owned(),
            remaining: *left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    fn budget(v: serde_json::Value) -> Budget {
        Budget::new(&Lease::from_request(Some(v.as_object().unwrap())).unwrap())
    }

    #[test]
    fn charges_are_exact_to_the_cent() {
        let mut b = budget(json!({"cost.budget": ["USD:0.30"]}));
        for _ in 0..3 {
            assert!(matches!(
                b.charge_metric("cost.inference", 0.1, Some("USD")),
                Charge::Charged { .. }
            ));
        }
        // 0.1 three times is exactly 0.30 in decimal (it is not in binary floating point).
        assert_eq!(b.remaining()["USD"], Decimal::ZERO);
        assert_eq!(b.exhausted(), Some("USD"));
    }

    #[test]
    fn telemetry_and_unbudgeted_metrics_are_not_charges() {
        let mut b = budget(json!({"cost.budget": ["USD:1"]}));
        assert_eq!(
            b.charge_metric("latency", 5.0, Some("ms")),
            Charge::NotACharge
        );
        assert_eq!(
            b.charge_metric("cost.budget.remaining", 0.5, Some("USD")),
            Charge::NotACharge
        );
        assert!(matches!(
            b.charge_metric("cost.x", 1.0, Some("EUR")),
            Charge::Refused(_)
        ));
        assert!(matches!(
            b.charge_metric("cost.x", -1.0, Some("USD")),
            Charge::Refused(_)
        ));
        assert!(matches!(
            b.charge_metric("cost.x", 1.0, None),
            Charge::Refused(_)
        ));
        assert_eq!(b.remaining()["USD"], Decimal::from_str("1").unwrap());
        let mut none = budget(json!({}));
        assert_eq!(
            none.charge_metric("cost.x", 1.0, Some("USD")),
            Charge::NotACharge
        );
    }

    #[test]
    fn charges_past_the_decimal_range_saturate_instead_of_overflowing() {
        // Found while writing the fuzz target (input in
        // `fuzz/regressions/charges-past-the-decimal-range.json`): `Decimal`'s `-=`
        // panics on overflow, and nothing stops a plugin (or the `spender` agent,
        // from its client's input) from emitting charges after the budget is spent.
        let mut b = budget(json!({"cost.budget": ["USD:1"]}));
        for _ in 0..3 {
            assert!(matches!(
                b.charge_metric("cost.x", 7.9e28, Some("USD")),
                Charge::Charged { .. }
            ));
        }
        assert_eq!(b.remaining()["USD"], Decimal::MIN);
        assert_eq!(b.exhausted(), Some("USD"));
        assert!(matches!(
            b.charge("USD", Decimal::MAX),
            Charge::Charged { remaining, .. } if remaining == Decimal::MIN
        ));
    }

    #[test]
    fn the_last_charge_may_overshoot_and_then_the_budget_is_exhausted() {
        let mut b = budget(json!({"cost.budget": ["USD:0.25"]}));
        assert!(b.exhausted().is_none());
        b.charge_metric("cost.a", 0.2, Some("USD"));
        assert!(b.exhausted().is_none());
        b.charge_metric("cost.a", 0.2, Some("USD"));
        assert_eq!(b.remaining()["USD"], Decimal::from_str("-0.15").unwrap());
        assert_eq!(b.exhausted(), Some("USD"));
    }
}
