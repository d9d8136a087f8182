//! The findings the daemon keeps up to date as events commit
//! (`findings::live`) against the reference, `findings::plans_and_findings`
//! (everything recomputed from the store): over random flows (plans
//! declared, replaced and closed; calls planned and unplanned; task calls
//! with and without completions; refused HTTP requests; server requests;
//! incomplete calls; idle timeouts; a policy) they must give the same plans
//! and findings in the same order, after every commit, at every clock
//! reading, through every page size; and a state replayed from the journal
//! must equal the state that followed the commits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::Sealer;
use intentproof_core::{AttributeValue, ErrorInfo, ExecutionEvent, format_rfc3339_millis};
use intentproof_findings::live::{LiveFindings, MAX_PAGE};
use intentproof_findings::{
    COMPLETED_ACTION, FindingRow, PLAN_CLOSE_ACTION, PlanRow, plans_and_findings,
};
use intentproof_policy::verification::{PLAN_DECLARE_ACTION, Policy, PolicyFormat, check_policy};
use intentproof_store::{EventMeta, Incoming, Store, StoreOptions};
use serde_json::json;

const IDLE: Duration = Duration::from_secs(60);

/// splitmix64: a seeded generator, so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const POLICY: &str = r#"
policy_id: test.a-needs-b
tenant_id: local
name: a needs b
scope:
  any_event_action_in: [mcp.s.a, mcp.s.b]
  ignore_flows_with_no_match: true
rules:
  - id: b-ok
    type: required
    severity: high
    action: mcp.s.b
    min: 1
    where: { status: ok }
  - id: one-a
    type: cardinality
    severity: critical
    action: mcp.s.a
    max: 1
"#;

fn policy() -> Policy {
    check_policy("test.yaml", POLICY.as_bytes(), PolicyFormat::Yaml).unwrap()
}

/// Builds one random flow's events.
struct Flows {
    rng: Rng,
    clock: SystemTime,
    plans: Vec<(String, String)>,
    calls: Vec<(String, String)>,
    next_id: usize,
}

const CORRELATIONS: [&str; 3] = ["c-0", "c-1", "c-2"];
const CALLS: [&str; 6] = [
    "mcp.s.a",
    "mcp.s.b",
    "mcp.s.c",
    "http.r.GET./x",
    "http.r.POST./y",
    "sdk.work",
];

fn attributes(pairs: &[(&str, String)]) -> intentproof_core::Attributes {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), AttributeValue::String(v.clone())))
        .collect()
}

fn failure(name: &str) -> ErrorInfo {
    ErrorInfo {
        name: name.into(),
        message: "it failed".into(),
        stack: None,
    }
}

impl Flows {
    fn event(&mut self) -> ExecutionEvent {
        // Time moves by 0 (ties) to 40 s, now and then past the idle time.
        let step = if self.rng.chance(8) {
            90_000
        } else {
            self.rng.below(4) as u64 * 10_000
        };
        self.clock += Duration::from_millis(step);
        // Now and then an event reports an earlier time than the last one
        // (clocks of different processes): the latest time, not the last
        // event's, is a correlation's last activity.
        let at = if self.rng.chance(10) {
            format_rfc3339_millis(self.clock - Duration::from_secs(30))
        } else {
            format_rfc3339_millis(self.clock)
        };
        let mut correlation = (*self.rng.pick(&CORRELATIONS)).to_owned();
        self.next_id += 1;
        let n = self.next_id;
        let builder = match self.rng.below(100) {
            0..=11 => {
                let plan_id = format!("plan-{n}");
                let steps: Vec<_> = (0..1 + self.rng.below(3))
                    .map(|_| json!({"action": self.rng.pick(&CALLS[..4])}))
                    .collect();
                self.plans.push((correlation.clone(), plan_id.clone()));
                let b = ExecutionEvent::builder(format!("intent {n}"), PLAN_DECLARE_ACTION)
                    .inputs(json!({"intent": format!("intent {n}"), "steps": steps}))
                    .output(json!({"plan_id": plan_id}));
                if self.rng.chance(10) {
                    b.error(failure("Refused"))
                } else {
                    b
                }
            }
            12..=19 => {
                let target = match self.plans.is_empty() || self.rng.chance(15) {
                    true => "plan-none".to_owned(),
                    false => self.rng.pick(&self.plans).1.clone(),
                };
                let mut inputs = json!({"plan_id": target});
                if self.rng.chance(40) {
                    inputs["reason"] = json!("session_ended");
                }
                ExecutionEvent::builder("close", PLAN_CLOSE_ACTION).inputs(inputs)
            }
            20..=27 if !self.calls.is_empty() => {
                let (call_correlation, call) = self.rng.pick(&self.calls).clone();
                if self.rng.chance(85) {
                    correlation = call_correlation;
                }
                let b = ExecutionEvent::builder("done", COMPLETED_ACTION)
                    .attributes(attributes(&[("intentproof.call.event_id", call)]));
                if self.rng.chance(40) {
                    b.error(failure("TaskFailed"))
                } else {
                    b
                }
            }
            28..=31 => ExecutionEvent::builder(
                "probe",
                *self.rng.pick(&["http.r.refused", "http.refused"]),
            )
            .error(failure("Refused")),
            32..=35 => ExecutionEvent::builder("ask", "mcp.s.elicitation.create"),
            36..=39 => ExecutionEvent::builder("gave up", *self.rng.pick(&CALLS[..3]))
                .error(failure("IncompleteCall"))
                .attributes(attributes(&[(
                    "intentproof.plan.id",
                    format!("plan-{}", n / 2),
                )])),
            40..=42 => ExecutionEvent::builder("start", "intentproof.call.started"),
            _ => {
                let action = *self.rng.pick(&CALLS);
                let mut b = ExecutionEvent::builder(format!("call {n}"), action);
                if self.rng.chance(25) {
                    b = b.attributes(attributes(&[("mcp.task.id", format!("t-{n}"))]));
                }
                if self.rng.chance(25) {
                    b = b.error(failure("Boom"));
                }
                b
            }
        };
        let event = builder
            .correlation_id(correlation)
            .timing(at.clone(), at, 0)
            .build();
        if !event.action.starts_with("intentproof.") {
            self.calls.push((
                event.correlation_id.clone().unwrap_or_default(),
                event.id.clone(),
            ));
        }
        event
    }
}

fn all_findings(live: &LiveFindings, now: SystemTime, limit: usize) -> Vec<FindingRow> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = live.findings(now, cursor.as_deref(), limit).unwrap();
        assert!(page.rows.len() <= limit);
        out.extend(page.rows);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

fn all_plans(live: &LiveFindings, now: SystemTime, limit: usize) -> Vec<PlanRow> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = live.plans(now, cursor.as_deref(), limit, None).unwrap();
        out.extend(page.rows);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

fn assert_same(
    case: u64,
    live: &LiveFindings,
    store: &Store,
    now: SystemTime,
    policies: &[Policy],
) {
    let (plans, findings) = plans_and_findings(store, IDLE, now, policies).unwrap();
    let got = all_findings(live, now, MAX_PAGE);
    assert_eq!(got, findings, "case {case}: findings at {now:?}");
    assert_eq!(
        all_plans(live, now, MAX_PAGE),
        plans,
        "case {case}: plans at {now:?}"
    );
    // Small pages give the same rows.
    assert_eq!(
        all_findings(live, now, 3),
        findings,
        "case {case}: paged findings"
    );
    assert_eq!(all_plans(live, now, 2), plans, "case {case}: paged plans");
    // Each correlation's plans, asked by correlation.
    for correlation in CORRELATIONS {
        let mine: Vec<PlanRow> = plans
            .iter()
            .filter(|p| p.correlation_id == correlation)
            .cloned()
            .collect();
        let page = live.plans(now, None, MAX_PAGE, Some(correlation)).unwrap();
        assert_eq!(page.rows, mine, "case {case}: plans of {correlation}");
    }
}

#[test]
fn live_findings_equal_the_full_recomputation_over_random_flows() {
    let mut checks = 0;
    let mut seen_kinds = std::collections::BTreeSet::new();
    for case in 0..60u64 {
        let mut rng = Rng(case);
        let policies: Vec<Policy> = if rng.chance(50) {
            vec![policy()]
        } else {
            Vec::new()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap());
        let live =
            LiveFindings::replay(Arc::clone(&store), IDLE, Arc::new(policies.clone())).unwrap();
        let start = humantime::parse_rfc3339("2026-03-01T10:00:00Z").unwrap();
        let mut flows = Flows {
            rng: Rng(case ^ 0xABCD),
            clock: start,
            plans: Vec::new(),
            calls: Vec::new(),
            next_id: 0,
        };
        let sealer = Sealer::new(InstanceKey::generate().unwrap());
        let mut now = start;
        let events = 20 + rng.below(40);
        let mut written = 0;
        while written < events {
            let batch: Vec<Incoming> = (0..1 + rng.below(4))
                .map(|_| {
                    let sealed = sealer.seal(&flows.event()).unwrap();
                    Incoming::new(
                        EventMeta::from_v1(&sealed.event, None).unwrap(),
                        serde_json::to_vec(&sealed.event).unwrap(),
                    )
                })
                .collect();
            written += batch.len();
            let outcomes = store.append(batch.clone()).unwrap();
            live.committed(&batch, &outcomes);
            // The clock reads anywhere from the last event to well past
            // the idle time; it never goes back.
            if rng.chance(60) {
                let ahead = Duration::from_secs(rng.below(150) as u64);
                now = now.max(flows.clock + ahead);
                assert_same(case, &live, &store, now, &policies);
                checks += 1;
            }
        }
        for ahead in [0, 30, 61, 600] {
            let at = now.max(flows.clock + Duration::from_secs(ahead));
            assert_same(case, &live, &store, at, &policies);
            now = at;
        }
        // Rebuilt from the journal: the same state.
        let replayed =
            LiveFindings::replay(Arc::clone(&store), IDLE, Arc::new(policies.clone())).unwrap();
        assert_same(case, &replayed, &store, now, &policies);
        for f in all_findings(&live, now, MAX_PAGE) {
            seen_kinds.insert(f.kind);
        }
        checks += 5;
    }
    // The flows reached every kind of finding.
    assert_eq!(
        seen_kinds.into_iter().collect::<Vec<_>>(),
        [
            "failed_step",
            "incomplete_call",
            "incomplete_intent",
            "policy_violation",
            "task_unfinished",
            "unplanned_call"
        ]
    );
    assert!(checks > 300, "{checks}");
}

#[test]
fn nothing_changed_keeps_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap());
    let live = LiveFindings::replay(Arc::clone(&store), IDLE, Arc::new(Vec::new())).unwrap();
    let start = humantime::parse_rfc3339("2026-03-01T10:00:00Z").unwrap();
    let at = format_rfc3339_millis(start);
    let sealer = Sealer::new(InstanceKey::generate().unwrap());
    let first = live.generation(start).unwrap();
    assert_eq!(live.generation(start).unwrap(), first);
    // A task call with no plan: unplanned now, its task unfinished once
    // the correlation is idle; asking again changes nothing.
    let call = ExecutionEvent::builder("pay", "mcp.s.pay")
        .correlation_id("c")
        .attributes(attributes(&[("mcp.task.id", "t-1".into())]))
        .timing(at.clone(), at, 0)
        .build();
    let sealed = sealer.seal(&call).unwrap();
    let batch = vec![Incoming::new(
        EventMeta::from_v1(&sealed.event, None).unwrap(),
        serde_json::to_vec(&sealed.event).unwrap(),
    )];
    let outcomes = store.append(batch.clone()).unwrap();
    live.committed(&batch, &outcomes);
    let after_call = live.generation(start).unwrap();
    assert!(after_call > first);
    assert_eq!(live.generation(start).unwrap(), after_call);
    let kinds = |at| -> Vec<String> {
        live.findings(at, None, 10)
            .unwrap()
            .rows
            .iter()
            .map(|f| f.kind.to_string())
            .collect()
    };
    assert_eq!(kinds(start), ["unplanned_call"]);
    let idle = start + IDLE;
    let when_idle = live.generation(idle).unwrap();
    assert!(when_idle > after_call);
    assert_eq!(live.generation(idle + IDLE).unwrap(), when_idle);
    assert_eq!(kinds(idle), ["task_unfinished", "unplanned_call"]);
    // A cursor this daemon never gave is refused.
    assert_eq!(
        live.findings(idle, Some("zz"), 10).unwrap_err().to_string(),
        "the cursor is not one this daemon gave: pass the next_cursor of an earlier answer, or leave it out to start from the first row"
    );
}

/// `GET /v1/findings` pages (limit, cursor), answers "unchanged" to the
/// generation it last gave, refuses a cursor it never gave; the blocking
/// client pages through all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_findings_api_pages_and_says_when_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let config = intentproof_gateway::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        checkpoint_interval_secs: 0,
        ..intentproof_gateway::Config::default()
    };
    let daemon = intentproof_gateway::Daemon::start(config).await.unwrap();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let http = reqwest::Client::new();
    let sealer = Sealer::new(InstanceKey::generate().unwrap());
    let post = |events: Vec<ExecutionEvent>| {
        let body: String = events
            .iter()
            .map(|e| format!("{}\n", sealer.seal(e).unwrap().event))
            .collect();
        http.post(format!("{}/v1/events:batch", daemon.url()))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let call = |n: usize| {
        ExecutionEvent::builder("pay", "mcp.s.pay")
            .correlation_id(format!("c-{n}"))
            .build()
    };
    let answer = post((0..7).map(call).collect()).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let get = |query: String| {
        let request = http
            .get(format!("{}/v1/findings{query}", daemon.url()))
            .bearer_auth(token.trim());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, all) = get(String::new()).await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 7);
    assert_eq!(all["findings"].as_array().unwrap().len(), 7);
    assert!(all.get("next_cursor").is_none(), "{all}");
    let generation = all["generation"].as_u64().unwrap();
    // Three pages of at most 3.
    let mut rows = Vec::new();
    let mut query = "?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = get(query.clone()).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["generation"], generation);
        rows.extend(page["findings"].as_array().unwrap().iter().cloned());
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(&rows, all["findings"].as_array().unwrap());
    // Nothing changed since: a few bytes.
    let (status, same) = get(format!("?since={generation}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        same,
        json!({"findings": [], "generation": generation, "unchanged": true})
    );
    let (status, refused) = get("?cursor=abc".into()).await;
    assert_eq!(status, 400);
    assert_eq!(refused["reason"], "bad_cursor");
    // One more unplanned call: changed.
    let answer = post(vec![call(7)]).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let (_, changed) = get(format!("?since={generation}")).await;
    assert_eq!(changed["findings"].as_array().unwrap().len(), 8);
    assert!(changed["generation"].as_u64().unwrap() > generation);
    // The blocking client follows the cursors.
    let url = daemon.url();
    let paged = tokio::task::spawn_blocking(move || {
        let client =
            intentproof_api::client::DaemonClient::new(&url, token.trim().into(), None).unwrap();
        let (rows, _) = client
            .get_all_pages::<intentproof_api::wire::FindingsPage>(
                &["v1", "findings"],
                &[("limit", "2".into())],
                None,
            )
            .unwrap()
            .unwrap();
        rows
    })
    .await
    .unwrap();
    assert_eq!(serde_json::to_value(&paged).unwrap(), changed["findings"]);
    daemon.stop().await.unwrap();
}

/// A correlation followed only from its first gateway call still counts
/// its earlier events' times: its last activity is the latest of all.
#[test]
fn events_before_a_correlation_is_followed_count_for_its_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default(), &|_| None).unwrap());
    let live = LiveFindings::replay(Arc::clone(&store), IDLE, Arc::new(Vec::new())).unwrap();
    let later = humantime::parse_rfc3339("2026-03-01T10:00:30Z").unwrap();
    let earlier = later - Duration::from_secs(30);
    let sealer = Sealer::new(InstanceKey::generate().unwrap());
    let event = |action: &str, at: SystemTime, task: bool| {
        let at = format_rfc3339_millis(at);
        let mut b = ExecutionEvent::builder("work", action).correlation_id("c");
        if task {
            b = b.attributes(attributes(&[("mcp.task.id", "t-1".into())]));
        }
        let sealed = sealer.seal(&b.timing(at.clone(), at, 0).build()).unwrap();
        Incoming::new(
            EventMeta::from_v1(&sealed.event, None).unwrap(),
            serde_json::to_vec(&sealed.event).unwrap(),
        )
    };
    // An SDK event, then (in another commit) a task call that reports an
    // earlier time.
    for batch in [
        vec![event("sdk.work", later, false)],
        vec![event("mcp.s.pay", earlier, true)],
    ] {
        let outcomes = store.append(batch.clone()).unwrap();
        live.committed(&batch, &outcomes);
    }
    let kinds = |now: SystemTime| -> Vec<(String, String)> {
        let (_, reference) = plans_and_findings(store.as_ref(), IDLE, now, &[]).unwrap();
        let rows = all_findings(&live, now, MAX_PAGE);
        assert_eq!(rows, reference);
        rows.into_iter()
            .map(|f| (f.kind.into_owned(), f.at))
            .collect()
    };
    // Idle counted from the call alone, not from the SDK event: nothing yet.
    assert_eq!(
        kinds(earlier + IDLE),
        [(
            "unplanned_call".to_owned(),
            "2026-03-01T10:00:00.000Z".to_owned()
        )]
    );
    assert_eq!(
        kinds(later + IDLE),
        [
            (
                "task_unfinished".to_owned(),
                "2026-03-01T10:00:30.000Z".to_owned()
            ),
            (
                "unplanned_call".to_owned(),
                "2026-03-01T10:00:00.000Z".to_owned()
            )
        ]
    );
}
