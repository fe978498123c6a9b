//! Fault injection: what the real channels do on a bad day, on demand.
//!
//! A [`FaultSpec`] is set globally or for one trade (channel + `out_trade_no`; a trade's
//! spec replaces the global one). Channels ask for a plan at each decision point (a
//! notification about to be sent, an API request, a payment) and every fault that fires
//! is recorded, so tests and the chaos checker can count what was injected.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paywire_domain::PayChannel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::SandboxError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultSettings {
    /// Seed of the RNG behind `probability`: a chaos run can be replayed.
    pub seed: u64,
    /// A `reorder`ed notification waits for the next notification to go out first, but
    /// no longer than this.
    pub reorder_hold_ms: u64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            seed: 0x5eed,
            reorder_hold_ms: 10_000,
        }
    }
}

/// Faults of notifications (payment and refund) sent to the merchant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyFaults {
    /// Never delivered at all.
    pub drop: bool,
    /// The first n attempts are lost on the way (the schedule still runs).
    pub drop_first: u32,
    /// Held this long before the first attempt.
    pub delay_ms: u64,
    /// Sent n more times after it was acknowledged.
    pub duplicate: u32,
    /// Overtaken by the next notification.
    pub reorder: bool,
    /// Signed so that the merchant's verification fails.
    pub bad_signature: bool,
    /// Chance that each of these faults fires; falls back to the spec's `probability`.
    pub probability: Option<f64>,
}

/// Faults of the channel's API answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiFaults {
    /// Answer HTTP 5xx without doing anything.
    pub status_5xx: bool,
    /// Do the work, then hold the answer this long (longer than the client waits).
    pub timeout_ms: u64,
    /// Answer with a signature that does not verify.
    pub bad_signature: bool,
    pub probability: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    pub notify: NotifyFaults,
    /// The payment succeeds but no notification is sent (the merchant must query).
    pub pay_without_notify: bool,
    /// The payment succeeds, no notification is sent and every query (and the close's
    /// answer) shows the trade unpaid: only the day's statement lists it, so only
    /// reconciliation finds the money.
    pub pay_invisible: bool,
    /// Statements (global scope) are served with one byte changed after their hash was
    /// announced: WeChat's SHA1 and Alipay's zip CRC-32 no longer match.
    pub corrupt_statement: bool,
    pub api: ApiFaults,
    /// Chance (0.0–1.0) that each configured fault fires when it could.
    pub probability: f64,
}

impl Default for FaultSpec {
    fn default() -> Self {
        Self {
            notify: NotifyFaults::default(),
            pay_without_notify: false,
            pay_invisible: false,
            corrupt_statement: false,
            api: ApiFaults::default(),
            probability: 1.0,
        }
    }
}

impl FaultSpec {
    fn validate(&self) -> Result<(), SandboxError> {
        for p in [
            Some(self.probability),
            self.notify.probability,
            self.api.probability,
        ]
        .into_iter()
        .flatten()
        {
            if !(0.0..=1.0).contains(&p) {
                return Err(SandboxError::InvalidFaultSpec(format!(
                    "probability must be within 0.0..=1.0, got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// Where a spec applies: `"global"` or one trade.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    Named(String),
    Trade {
        /// Absent: the trade with this number on either channel.
        #[serde(default)]
        channel: Option<PayChannel>,
        out_trade_no: String,
    },
}

impl Scope {
    fn key(&self) -> Result<Option<TradeKey>, SandboxError> {
        match self {
            Scope::Named(n) if n == "global" => Ok(None),
            Scope::Named(n) => Err(SandboxError::InvalidFaultSpec(format!(
                "scope must be \"global\" or {{\"channel\"?,\"out_trade_no\"}}, got {n:?}"
            ))),
            Scope::Trade {
                channel,
                out_trade_no,
            } => Ok(Some((*channel, out_trade_no.clone()))),
        }
    }
}

/// `PUT /sandbox/admin/faults`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutFaults {
    pub scope: Scope,
    #[serde(default)]
    pub notify: NotifyFaults,
    #[serde(default)]
    pub pay_without_notify: bool,
    #[serde(default)]
    pub pay_invisible: bool,
    #[serde(default)]
    pub corrupt_statement: bool,
    #[serde(default)]
    pub api: ApiFaults,
    #[serde(default = "one")]
    pub probability: f64,
}

fn one() -> f64 {
    1.0
}

impl PutFaults {
    pub fn into_parts(self) -> (Scope, FaultSpec) {
        (
            self.scope,
            FaultSpec {
                notify: self.notify,
                pay_without_notify: self.pay_without_notify,
                pay_invisible: self.pay_invisible,
                corrupt_statement: self.corrupt_statement,
                api: self.api,
                probability: self.probability,
            },
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Drop,
    DropFirst,
    Delay,
    Duplicate,
    Reorder,
    NotifyBadSignature,
    PayWithoutNotify,
    PayInvisible,
    CorruptStatement,
    #[serde(rename = "status_5xx")]
    Status5xx,
    Timeout,
    BadSignature,
}

/// One fault that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultEvent {
    pub at: DateTime<Utc>,
    pub channel: PayChannel,
    /// Absent for a request whose trade could not be told (global faults only).
    pub out_trade_no: Option<String>,
    pub kind: FaultKind,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
}

/// What to do to one notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyPlan {
    pub drop: bool,
    pub drop_first: u32,
    pub delay: Duration,
    pub duplicate: u32,
    pub reorder: bool,
    pub bad_signature: bool,
}

/// What to do to one API answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiPlan {
    pub status_5xx: bool,
    pub timeout: Option<Duration>,
    pub bad_signature: bool,
}

type TradeKey = (Option<PayChannel>, String);

#[derive(Debug)]
struct State {
    global: Option<FaultSpec>,
    trades: HashMap<TradeKey, FaultSpec>,
    events: Vec<FaultEvent>,
    rng: StdRng,
}

#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
    pub reorder_hold: Duration,
}

/// `GET /sandbox/admin/faults`.
#[derive(Debug, Serialize)]
pub struct FaultsView {
    pub global: Option<FaultSpec>,
    pub trades: Vec<TradeFaultsView>,
    pub injected: Vec<FaultEvent>,
}

#[derive(Debug, Serialize)]
pub struct TradeFaultsView {
    pub channel: Option<PayChannel>,
    pub out_trade_no: String,
    pub spec: FaultSpec,
}

impl Faults {
    pub fn new(settings: &FaultSettings) -> Self {
        Self {
            state: Mutex::new(State {
                global: None,
                trades: HashMap::new(),
                events: Vec::new(),
                rng: StdRng::seed_from_u64(settings.seed),
            }),
            reorder_hold: Duration::from_millis(settings.reorder_hold_ms),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, scope: &Scope, spec: FaultSpec) -> Result<(), SandboxError> {
        spec.validate()?;
        let key = scope.key()?;
        let mut state = self.lock();
        match key {
            None => state.global = Some(spec),
            Some(key) => {
                state.trades.insert(key, spec);
            }
        }
        Ok(())
    }

    /// Clears one scope, or everything (specs, not the record of injected faults).
    pub fn clear(&self, scope: Option<&Scope>) -> Result<(), SandboxError> {
        let mut state = self.lock();
        match scope.map(Scope::key).transpose()? {
            None => {
                state.global = None;
                state.trades.clear();
            }
            Some(None) => state.global = None,
            Some(Some(key)) => {
                state.trades.remove(&key);
            }
        }
        Ok(())
    }

    pub fn view(&self) -> FaultsView {
        let state = self.lock();
        let mut trades: Vec<TradeFaultsView> = state
            .trades
            .iter()
            .map(|((channel, otn), spec)| TradeFaultsView {
                channel: *channel,
                out_trade_no: otn.clone(),
                spec: spec.clone(),
            })
            .collect();
        trades.sort_by(|a, b| a.out_trade_no.cmp(&b.out_trade_no));
        FaultsView {
            global: state.global.clone(),
            trades,
            injected: state.events.clone(),
        }
    }

    /// Faults that fired for one trade, oldest first.
    pub fn events_for(&self, channel: PayChannel, out_trade_no: &str) -> Vec<FaultEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.channel == channel && e.out_trade_no.as_deref() == Some(out_trade_no))
            .cloned()
            .collect()
    }

    fn spec(state: &State, channel: PayChannel, out_trade_no: Option<&str>) -> Option<FaultSpec> {
        out_trade_no
            .and_then(|otn| {
                state
                    .trades
                    .get(&(Some(channel), otn.to_owned()))
                    .or_else(|| state.trades.get(&(None, otn.to_owned())))
            })
            .or(state.global.as_ref())
            .cloned()
    }

    /// Runs `decide` with the trade's spec (if any) and a recorder for fired faults.
    fn decide<T: Default>(
        &self,
        channel: PayChannel,
        out_trade_no: Option<&str>,
        notification_id: Option<&str>,
        decide: impl FnOnce(&FaultSpec, &mut dyn FnMut(f64, FaultKind, String) -> bool) -> T,
    ) -> T {
        let mut state = self.lock();
        let Some(spec) = Self::spec(&state, channel, out_trade_no) else {
            return T::default();
        };
        let mut fired = Vec::new();
        let result = {
            let rng = &mut state.rng;
            let mut fire = |p: f64, kind: FaultKind, detail: String| {
                let hit = p >= 1.0 || (p > 0.0 && rng.gen_bool(p));
                if hit {
                    fired.push((kind, detail));
                }
                hit
            };
            decide(&spec, &mut fire)
        };
        let now = Utc::now();
        for (kind, detail) in fired {
            tracing::info!(?kind, %detail, out_trade_no, "fault injected");
            state.events.push(FaultEvent {
                at: now,
                channel,
                out_trade_no: out_trade_no.map(str::to_owned),
                kind,
                detail,
                notification_id: notification_id.map(str::to_owned),
            });
        }
        result
    }

    pub fn notify_plan(
        &self,
        channel: PayChannel,
        out_trade_no: &str,
        notification_id: &str,
    ) -> NotifyPlan {
        self.decide(
            channel,
            Some(out_trade_no),
            Some(notification_id),
            |spec, fire| {
                let n = &spec.notify;
                let p = n.probability.unwrap_or(spec.probability);
                let mut plan = NotifyPlan::default();
                if n.drop && fire(p, FaultKind::Drop, "never delivered".into()) {
                    plan.drop = true;
                    return plan;
                }
                if n.drop_first > 0
                    && fire(
                        p,
                        FaultKind::DropFirst,
                        format!("first {} attempts lost", n.drop_first),
                    )
                {
                    plan.drop_first = n.drop_first;
                }
                if n.delay_ms > 0 && fire(p, FaultKind::Delay, format!("held {} ms", n.delay_ms)) {
                    plan.delay = Duration::from_millis(n.delay_ms);
                }
                if n.duplicate > 0
                    && fire(
                        p,
                        FaultKind::Duplicate,
                        format!("{} extra copies", n.duplicate),
                    )
                {
                    plan.duplicate = n.duplicate;
                }
                if n.reorder && fire(p, FaultKind::Reorder, "sent after the next one".into()) {
                    plan.reorder = true;
                }
                if n.bad_signature
                    && fire(
                        p,
                        FaultKind::NotifyBadSignature,
                        "signature does not verify".into(),
                    )
                {
                    plan.bad_signature = true;
                }
                plan
            },
        )
    }

    pub fn api_plan(&self, channel: PayChannel, out_trade_no: Option<&str>) -> ApiPlan {
        self.decide(channel, out_trade_no, None, |spec, fire| {
            let a = &spec.api;
            let p = a.probability.unwrap_or(spec.probability);
            let mut plan = ApiPlan::default();
            if a.status_5xx && fire(p, FaultKind::Status5xx, "answered 5xx".into()) {
                plan.status_5xx = true;
                return plan;
            }
            if a.timeout_ms > 0
                && fire(
                    p,
                    FaultKind::Timeout,
                    format!("answer held {} ms", a.timeout_ms),
                )
            {
                plan.timeout = Some(Duration::from_millis(a.timeout_ms));
            }
            if a.bad_signature
                && fire(
                    p,
                    FaultKind::BadSignature,
                    "signature does not verify".into(),
                )
            {
                plan.bad_signature = true;
            }
            plan
        })
    }

    /// Whether this payment goes without a notification.
    pub fn pay_without_notify(&self, channel: PayChannel, out_trade_no: &str) -> bool {
        self.decide(channel, Some(out_trade_no), None, |spec, fire| {
            let p = spec.notify.probability.unwrap_or(spec.probability);
            spec.pay_without_notify
                && fire(
                    p,
                    FaultKind::PayWithoutNotify,
                    "paid, no notification".into(),
                )
        })
    }
}

impl Faults {
    /// Whether this payment is hidden from notifications and queries (`pay_invisible`).
    pub fn pay_invisible(&self, channel: PayChannel, out_trade_no: &str) -> bool {
        self.decide(channel, Some(out_trade_no), None, |spec, fire| {
            spec.pay_invisible
                && fire(
                    spec.probability,
                    FaultKind::PayInvisible,
                    "paid, no notification, unpaid to queries".into(),
                )
        })
    }

    /// Whether this statement download is corrupted (`corrupt_statement`, global scope).
    pub fn corrupt_statement(&self, channel: PayChannel) -> bool {
        self.decide(channel, None, None, |spec, fire| {
            spec.corrupt_statement
                && fire(
                    spec.probability,
                    FaultKind::CorruptStatement,
                    "statement changed after its hash".into(),
                )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> Faults {
        Faults::new(&FaultSettings::default())
    }

    fn trade(otn: &str) -> Scope {
        Scope::Trade {
            channel: Some(PayChannel::Alipay),
            out_trade_no: otn.into(),
        }
    }

    #[test]
    fn trade_spec_replaces_global_and_only_fired_faults_are_recorded() {
        let f = faults();
        let global = FaultSpec {
            pay_without_notify: true,
            ..FaultSpec::default()
        };
        f.set(&Scope::Named("global".into()), global).unwrap();
        let mut spec = FaultSpec::default();
        spec.notify.duplicate = 2;
        f.set(&trade("t1"), spec).unwrap();
        assert!(!f.pay_without_notify(PayChannel::Alipay, "t1"));
        assert!(f.pay_without_notify(PayChannel::Alipay, "t2"));
        // A channel-specific scope does not match the other channel.
        assert!(f.pay_without_notify(PayChannel::Wechat, "t1"));
        assert_eq!(f.notify_plan(PayChannel::Alipay, "t1", "n1").duplicate, 2);
        let events = f.events_for(PayChannel::Alipay, "t1");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, FaultKind::Duplicate);
        assert_eq!(events[0].notification_id.as_deref(), Some("n1"));
        f.clear(None).unwrap();
        assert!(!f.pay_without_notify(PayChannel::Alipay, "t2"));
        assert_eq!(f.view().injected.len(), 3);
    }

    #[test]
    fn probability_zero_never_fires_and_seeded_runs_repeat() {
        let f = faults();
        let mut spec = FaultSpec {
            probability: 0.0,
            ..FaultSpec::default()
        };
        spec.api.status_5xx = true;
        f.set(&Scope::Named("global".into()), spec.clone()).unwrap();
        for _ in 0..50 {
            assert_eq!(f.api_plan(PayChannel::Wechat, None), ApiPlan::default());
        }
        spec.probability = 0.5;
        let draws = |f: &Faults| -> Vec<bool> {
            (0..64)
                .map(|_| f.api_plan(PayChannel::Wechat, Some("x")).status_5xx)
                .collect()
        };
        let (a, b) = (faults(), faults());
        a.set(&Scope::Named("global".into()), spec.clone()).unwrap();
        b.set(&Scope::Named("global".into()), spec).unwrap();
        let (da, db) = (draws(&a), draws(&b));
        assert_eq!(da, db);
        assert!(da.iter().any(|x| *x) && da.iter().any(|x| !*x));
    }

    #[test]
    fn bad_specs_are_refused() {
        let f = faults();
        let spec = FaultSpec {
            probability: 1.5,
            ..FaultSpec::default()
        };
        assert!(matches!(
            f.set(&Scope::Named("global".into()), spec),
            Err(SandboxError::InvalidFaultSpec(_))
        ));
        assert!(matches!(
            f.set(&Scope::Named("everything".into()), FaultSpec::default()),
            Err(SandboxError::InvalidFaultSpec(_))
        ));
        let put: Result<PutFaults, _> =
            serde_json::from_value(serde_json::json!({"scope":"global","notify":{"dropp":true}}));
        assert!(put.is_err());
    }
}
