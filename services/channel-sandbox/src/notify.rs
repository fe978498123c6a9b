//! Notification delivery: POST a channel's notification to the merchant's `notify_url`
//! until it is acknowledged or the channel's retry schedule is exhausted.
//!
//! Each notification runs in its own tokio task; every attempt is recorded so tests and
//! the inspection API can show what the merchant was sent and how it answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paywire_domain::PayChannel;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::faults::NotifyPlan;

const MIN: u64 = 60;
const HOUR: u64 = 3600;

/// A retry schedule from its waits in seconds.
const fn schedule<const N: usize>(secs: [u64; N]) -> [Duration; N] {
    let mut waits = [Duration::ZERO; N];
    let mut i = 0;
    while i < N {
        waits[i] = Duration::from_secs(secs[i]);
        i += 1;
    }
    waits
}

/// WeChat Pay's retry intervals after a failed delivery: 15s, 15s, 30s, 3m, 10m, 20m,
/// 30m, 30m, 30m, 60m, 3h, 3h, 3h, 6h, 6h (24h4m in all; reference §1.6).
pub const WECHAT_RETRY_SCHEDULE: [Duration; 15] = schedule([
    15,
    15,
    30,
    3 * MIN,
    10 * MIN,
    20 * MIN,
    30 * MIN,
    30 * MIN,
    30 * MIN,
    HOUR,
    3 * HOUR,
    3 * HOUR,
    3 * HOUR,
    6 * HOUR,
    6 * HOUR,
]);

/// Alipay's retry intervals after a failed delivery: 4m, 10m, 10m, 1h, 2h, 6h, 15h
/// (1 notification + 7 retries, 24h24m in all; reference §2.5).
pub const ALIPAY_RETRY_SCHEDULE: [Duration; 7] = schedule([
    4 * MIN,
    10 * MIN,
    10 * MIN,
    HOUR,
    2 * HOUR,
    6 * HOUR,
    15 * HOUR,
]);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifySettings {
    /// An answer slower than this counts as a failure (WeChat: 5 s).
    pub timeout_ms: u64,
    /// Divides the retry intervals, so tests see a day of retries in milliseconds.
    pub time_compression: f64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            timeout_ms: 5000,
            time_compression: 1.0,
        }
    }
}

/// Produces fresh signature headers for the body at each attempt (a retry hours later
/// must carry a current timestamp to pass the merchant's clock-skew check).
pub type SignHeaders = Arc<dyn Fn(&[u8]) -> Vec<(String, String)> + Send + Sync>;

/// One notification to deliver.
pub struct Outgoing {
    pub id: String,
    pub channel: PayChannel,
    pub event_type: String,
    pub url: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub sign: SignHeaders,
    /// The channel's rule for "the merchant has it", from status and body.
    pub acknowledged: fn(u16, &[u8]) -> bool,
    /// Waits before each retry; its length is the number of retries.
    pub schedule: &'static [Duration],
    /// Injected faults (see `faults`); bad signatures are already in `body`/`sign`.
    pub plan: NotifyPlan,
}

paywire_platform::debug_fields!(Outgoing {
    id,
    channel,
    event_type,
    url
});

/// WeChat Pay: HTTP 200 or 204 is success, whatever the body says.
pub fn wechat_acknowledged(status: u16, _body: &[u8]) -> bool {
    matches!(status, 200 | 204)
}

/// Alipay: the body must be exactly the seven characters `success`.
pub fn alipay_acknowledged(status: u16, body: &[u8]) -> bool {
    status == 200 && body == b"success"
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub number: u32,
    pub at: DateTime<Utc>,
    /// The merchant's HTTP status, if it answered in time.
    pub status: Option<u16>,
    /// Transport failure or timeout.
    pub error: Option<String>,
    pub acknowledged: bool,
    /// Set when fault injection shaped this attempt (`drop_first`, `duplicate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub channel: PayChannel,
    pub event_type: String,
    pub url: String,
    pub attempts: Vec<Attempt>,
    pub acknowledged: bool,
    /// No further attempt will be made (acknowledged, schedule exhausted, or dropped).
    pub finished: bool,
    /// Dropped by fault injection: never sent.
    pub dropped: bool,
}

pub struct Notifier {
    client: reqwest::Client,
    timeout: Duration,
    time_compression: f64,
    /// Deliveries run on the runtime that built the sandbox, not on an actix worker's,
    /// so they outlive the request that triggered them.
    runtime: tokio::runtime::Handle,
    records: Mutex<HashMap<String, DeliveryRecord>>,
    /// Reordered notifications waiting for the next one to go out first.
    held: Mutex<Vec<oneshot::Sender<()>>>,
    reorder_hold: Duration,
}

paywire_platform::debug_fields!(Notifier {
    timeout,
    time_compression
});

impl Notifier {
    /// Must be called inside a tokio runtime.
    pub fn new(settings: &NotifySettings, reorder_hold: Duration) -> anyhow::Result<Self> {
        let c = settings.time_compression;
        anyhow::ensure!(
            c.is_finite() && c >= 1.0,
            "notify.time_compression must be a finite number >= 1, got {c}"
        );
        anyhow::ensure!(settings.timeout_ms > 0, "notify.timeout_ms must be > 0");
        let client = reqwest::Client::builder()
            // WeChat Pay sends `Wechatpay-Signature`, not `wechatpay-signature`.
            .http1_title_case_headers()
            .build()?;
        Ok(Self {
            client,
            timeout: Duration::from_millis(settings.timeout_ms),
            time_compression: c,
            runtime: tokio::runtime::Handle::try_current()?,
            records: Mutex::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
            reorder_hold,
        })
    }

    /// The real interval divided by `time_compression`.
    pub fn compressed(&self, interval: Duration) -> Duration {
        interval.div_f64(self.time_compression)
    }

    /// Starts delivering `out` in the background; returns its id.
    pub fn dispatch(self: &Arc<Self>, out: Outgoing) -> String {
        let id = out.id.clone();
        self.lock().insert(
            id.clone(),
            DeliveryRecord {
                id: id.clone(),
                channel: out.channel,
                event_type: out.event_type.clone(),
                url: out.url.clone(),
                attempts: Vec::new(),
                acknowledged: false,
                finished: out.plan.drop,
                dropped: out.plan.drop,
            },
        );
        if out.plan.drop {
            tracing::info!(notification_id = %id, "notification dropped by fault injection");
            return id;
        }
        // Registered now, not in the task, so that a later dispatch always overtakes it.
        let hold = out.plan.reorder.then(|| {
            let (tx, rx) = oneshot::channel();
            self.held.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
            rx
        });
        self.runtime.spawn(deliver(self.clone(), out, hold));
        id
    }

    /// Runs `task` on the sandbox's runtime (work that outlives a request).
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    /// Lets every held (reordered) notification go.
    fn release_held(&self) {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        for tx in held {
            let _ = tx.send(());
        }
    }

    pub fn record(&self, id: &str) -> Option<DeliveryRecord> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DeliveryRecord>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note(&self, id: &str, attempt: Attempt, finished: bool) {
        if let Some(record) = self.lock().get_mut(id) {
            record.acknowledged |= attempt.acknowledged;
            record.finished = finished;
            record.attempts.push(attempt);
        }
    }

    /// One POST, bounded by the timeout as a whole (connect, headers and body).
    async fn attempt(&self, out: &Outgoing) -> Result<(u16, Vec<u8>), String> {
        let mut request = self
            .client
            .post(&out.url)
            .header("Content-Type", out.content_type)
            .header("User-Agent", "Paywire-Channel-Sandbox/1.0")
            .body(out.body.clone());
        for (name, value) in (out.sign)(&out.body) {
            request = request.header(name, value);
        }
        let exchange = async {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_vec()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

#[tracing::instrument(skip_all, fields(notification_id = %out.id, channel = %out.channel, event_type = %out.event_type))]
async fn deliver(notifier: Arc<Notifier>, out: Outgoing, hold: Option<oneshot::Receiver<()>>) {
    if let Some(hold) = hold {
        // Released by the next notification's first attempt, or after the hold limit.
        let _ = tokio::time::timeout(notifier.reorder_hold, hold).await;
    }
    if !out.plan.delay.is_zero() {
        tokio::time::sleep(out.plan.delay).await;
    }
    let total = out.schedule.len() + 1;
    for index in 0..total {
        if let Some(wait) = index.checked_sub(1).map(|i| out.schedule[i]) {
            tokio::time::sleep(notifier.compressed(wait)).await;
        }
        let at = Utc::now();
        let lost = index < out.plan.drop_first as usize;
        let (status, error, acknowledged) = if lost {
            (
                None,
                Some("lost on the way (fault injection)".to_owned()),
                false,
            )
        } else {
            match notifier.attempt(&out).await {
                Ok((status, body)) => (Some(status), None, (out.acknowledged)(status, &body)),
                Err(e) => (None, Some(e), false),
            }
        };
        if index == 0 && !out.plan.reorder {
            notifier.release_held();
        }
        let last = acknowledged || index + 1 == total;
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        tracing::info!(
            attempt = number,
            ?status,
            ?error,
            acknowledged,
            "notification attempt"
        );
        notifier.note(
            &out.id,
            Attempt {
                number,
                at,
                status,
                error,
                acknowledged,
                injected: lost.then_some("drop_first"),
            },
            last && (out.plan.duplicate == 0 || !acknowledged),
        );
        if acknowledged {
            send_duplicates(&notifier, &out, number).await;
            return;
        }
    }
    tracing::warn!("notification never acknowledged; giving up");
}

/// The `duplicate` fault: the acknowledged notification again, `plan.duplicate` times.
async fn send_duplicates(notifier: &Notifier, out: &Outgoing, after: u32) {
    let copies = out.plan.duplicate;
    for copy in 1..=copies {
        let at = Utc::now();
        let (status, error, acknowledged) = match notifier.attempt(out).await {
            Ok((status, body)) => (Some(status), None, (out.acknowledged)(status, &body)),
            Err(e) => (None, Some(e), false),
        };
        notifier.note(
            &out.id,
            Attempt {
                number: after + copy,
                at,
                status,
                error,
                acknowledged,
                injected: Some("duplicate"),
            },
            copy == copies,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_schedule_is_fifteen_retries_summing_to_24h4m() {
        assert_eq!(WECHAT_RETRY_SCHEDULE.len(), 15);
        let total: Duration = WECHAT_RETRY_SCHEDULE.iter().sum();
        assert_eq!(total, Duration::from_secs(24 * 3600 + 4 * 60));
    }

    #[test]
    fn alipay_schedule_is_seven_retries_summing_to_24h24m() {
        assert_eq!(ALIPAY_RETRY_SCHEDULE.len(), 7);
        let total: Duration = ALIPAY_RETRY_SCHEDULE.iter().sum();
        assert_eq!(total, Duration::from_secs(24 * 3600 + 24 * 60));
    }

    #[test]
    fn only_exactly_success_acknowledges_an_alipay_notification() {
        assert!(alipay_acknowledged(200, b"success"));
        for body in [&b"fail"[..], b"success\n", b" success", b"SUCCESS", b""] {
            assert!(!alipay_acknowledged(200, body), "{body:?}");
        }
        assert!(!alipay_acknowledged(500, b"success"));
    }

    #[test]
    fn only_200_and_204_acknowledge_a_wechat_notification() {
        assert!(wechat_acknowledged(200, b"{\"code\":\"FAIL\"}"));
        assert!(wechat_acknowledged(204, b""));
        for status in [201, 202, 301, 400, 401, 404, 500, 503] {
            assert!(!wechat_acknowledged(status, b""), "{status}");
        }
    }

    #[tokio::test]
    async fn compression_divides_intervals_and_bad_settings_are_refused() {
        let n = Notifier::new(
            &NotifySettings {
                timeout_ms: 100,
                time_compression: 1000.0,
            },
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(
            n.compressed(Duration::from_secs(15)),
            Duration::from_millis(15)
        );
        for bad in [0.0, 0.5, -1.0, f64::NAN, f64::INFINITY] {
            let s = NotifySettings {
                timeout_ms: 100,
                time_compression: bad,
            };
            assert!(Notifier::new(&s, Duration::ZERO).is_err(), "{bad} accepted");
        }
        let s = NotifySettings {
            timeout_ms: 0,
            time_compression: 1.0,
        };
        assert!(Notifier::new(&s, Duration::ZERO).is_err());
    }
}
