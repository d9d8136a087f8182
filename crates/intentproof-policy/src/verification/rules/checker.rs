//! Lint helpers for a rule's `spec`: each kind's `lint` checks its fields
//! through a [`Checker`], which words every problem as `<rule>: <message>`.

use std::fmt;

use serde_json::{Map, Value};

use super::super::policy::kind;
use super::super::time::parse_iso8601_duration;

/// Checks the fields of one rule's `spec`, collecting problems.
pub(crate) struct Checker<'a> {
    /// The rule, as messages name it: `rule "r1" (required)` or `rules[2]`.
    pub(super) at: &'a str,
    pub(super) spec: &'a Map<String, Value>,
    pub(super) problems: &'a mut Vec<String>,
}

impl<'a> Checker<'a> {
    /// A checker of `spec` for the rule `at`, adding to `problems`.
    pub(crate) fn new(
        at: &'a str,
        spec: &'a Map<String, Value>,
        problems: &'a mut Vec<String>,
    ) -> Checker<'a> {
        Checker { at, spec, problems }
    }

    pub(super) fn problem(&mut self, message: impl fmt::Display) {
        self.problems.push(format!("{}: {message}", self.at));
    }

    pub(super) fn string(&mut self, key: &str, required: bool) -> Option<String> {
        match self.spec.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.problem(format_args!("spec.{key} is empty"));
                None
            }
            Some(other) => {
                self.problem(format_args!(
                    "spec.{key} must be a string, not {}",
                    kind(other)
                ));
                None
            }
            None => {
                if required {
                    self.problem(format_args!("spec.{key} is missing"));
                }
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, key: &str) {
        if let Some(v) = self.spec.get(key)
            && !v.is_boolean()
        {
            self.problem(format_args!("spec.{key} must be true or false, not {v}"));
        }
    }

    pub(super) fn count(&mut self, key: &str) -> Option<u64> {
        let v = self.spec.get(key)?;
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                self.problem(format_args!(
                    "spec.{key} must be a non-negative integer, not {v}"
                ));
                None
            }
        }
    }

    pub(super) fn min_le_max(&mut self, min: Option<u64>, max: Option<u64>) {
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            self.problem(format_args!(
                "spec.min ({min}) is greater than spec.max ({max})"
            ));
        }
    }

    pub(super) fn one_of(&mut self, key: &str, allowed: &[&str]) {
        if let Some(v) = self.spec.get(key)
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            self.problem(format_args!(
                "spec.{key} {v} is not one of {}",
                allowed.join(", ")
            ));
        }
    }

    pub(super) fn duration(&mut self, key: &str) -> Option<i128> {
        let v = self.spec.get(key)?;
        match v.as_str().and_then(parse_iso8601_duration) {
            Some(d) => Some(d),
            None => {
                self.problem(format_args!(
                    "spec.{key} {v} is not an ISO 8601 duration (write e.g. PT15M, PT30S, P1D)"
                ));
                None
            }
        }
    }

    pub(super) fn predicate(&mut self, key: &str) {
        if let Some(v) = self.spec.get(key) {
            check_predicate(&format!("spec.{key}"), v, self.at, self.problems);
        }
    }

    pub(super) fn allowed(&mut self, keys: &[&str]) {
        for k in self.spec.keys() {
            if !keys.contains(&k.as_str()) {
                self.problem(format_args!(
                    "spec.{k} is not a field of this category (known: {}); it would be ignored",
                    keys.join(", ")
                ));
            }
        }
    }
}

pub(super) fn check_predicate(field: &str, v: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(p) = v.as_object() else {
        problems.push(format!("{at}: {field} must be an object, not {}", kind(v)));
        return;
    };
    if !p.contains_key("status") && !p.contains_key("attribute") {
        problems.push(format!("{at}: {field} needs status or attribute"));
    }
    if let Some(s) = p.get("status")
        && !matches!(s.as_str(), Some("ok" | "error"))
    {
        problems.push(format!("{at}: {field}.status {s} is not ok or error"));
    }
    if let Some(a) = p.get("attribute")
        && a.as_str().is_none_or(|a| a.is_empty())
    {
        problems.push(format!(
            "{at}: {field}.attribute must be a non-empty attribute name"
        ));
    }
    if let Some(list) = p.get("in") {
        match list.as_array() {
            Some(a) if !a.is_empty() && a.iter().all(|x| !x.is_array() && !x.is_object()) => {}
            _ => problems.push(format!(
                "{at}: {field}.in must be a non-empty list of scalar values"
            )),
        }
    }
    if let Some(e) = p.get("equals")
        && (e.is_array() || e.is_object())
    {
        problems.push(format!("{at}: {field}.equals must be a scalar value"));
    }
    if p.contains_key("equals") && p.contains_key("in") {
        problems.push(format!("{at}: {field} gives both equals and in; keep one"));
    }
    if (p.contains_key("equals") || p.contains_key("in")) && !p.contains_key("attribute") {
        problems.push(format!(
            "{at}: {field} has equals/in but no attribute to compare"
        ));
    }
    for k in p.keys() {
        if !matches!(k.as_str(), "status" | "attribute" | "equals" | "in") {
            problems.push(format!(
                "{at}: {field}.{k} is not a predicate field (status, attribute, equals, in)"
            ));
        }
    }
}
