//! `cargo xtask reconcile --date YYYY-MM-DD [--channel c]`: asks the payment gateway's
//! operator-only `POST /internal/reconciliation` (with the operators' credential) to
//! reconcile a day with the channels' statements, and prints its report.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use paywire_contracts::reconciliation::{ReconciliationReport, Resolution, RunReconciliation};
use paywire_domain::PayChannel;
use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::config::DEV_OPERATOR_TOKEN;

use crate::layout;

/// The operators' credential: `PAYWIRE_OPERATOR_TOKEN`, else the development one.
fn operator_token() -> String {
    std::env::var("PAYWIRE_OPERATOR_TOKEN").unwrap_or_else(|_| DEV_OPERATOR_TOKEN.to_owned())
}

/// `PAYWIRE_GATEWAY_INTERNAL_URL`, else the local platform's gateway.
fn gateway() -> String {
    std::env::var("PAYWIRE_GATEWAY_INTERNAL_URL")
        .unwrap_or_else(|_| layout::service("payment-gateway").internal_url())
}

pub async fn run(date: NaiveDate, channel: Option<PayChannel>) -> anyhow::Result<()> {
    let report = request(&gateway(), &operator_token(), date, channel).await?;
    print!("{}", render(&report));
    Ok(())
}

pub async fn request(
    gateway: &str,
    token: &str,
    date: NaiveDate,
    channel: Option<PayChannel>,
) -> anyhow::Result<ReconciliationReport> {
    let url = format!("{gateway}/internal/reconciliation");
    // A statement download and a day's comparison: give it time.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let response = http
        .post(&url)
        .header(SERVICE_TOKEN_HEADER, token)
        .json(&RunReconciliation { date, channel })
        .send()
        .await
        .with_context(|| format!("calling {url} (is the platform up? cargo xtask up)"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("reading the answer of {url}"))
}

fn fen(f: Option<paywire_domain::Fen>) -> String {
    f.map(|f| f.get().to_string()).unwrap_or_else(|| "-".into())
}

/// The report as printed: one block per channel, one line per discrepancy.
pub fn render(report: &ReconciliationReport) -> String {
    let mut out = String::new();
    for run in &report.runs {
        let open = run
            .discrepancies
            .iter()
            .filter(|d| d.resolution == Resolution::Open)
            .count();
        out.push_str(&format!(
            "{} {}: statement {} payments, {} refunds; {} matched; {} discrepancies ({} new, {} open)\n",
            run.channel,
            run.date,
            run.statement_payments,
            run.statement_refunds,
            run.matched,
            run.discrepancies.len(),
            run.found_now,
            open
        ));
        for d in &run.discrepancies {
            let text = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            out.push_str(&format!(
                "  {:<24} {:<22} ours {:>8} fen  channel {:>8} fen  {:<13} {}\n",
                text(serde_json::to_value(d.kind).unwrap_or_default()),
                d.reference,
                fen(d.ours_fen),
                fen(d.channel_fen),
                text(serde_json::to_value(d.resolution).unwrap_or_default()),
                d.detail
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_contracts::reconciliation::{Discrepancy, DiscrepancyKind, ReconciliationRun};
    use paywire_domain::{Fen, PayNo};

    #[test]
    fn the_report_has_a_line_per_channel_and_per_discrepancy() {
        let report = ReconciliationReport {
            runs: vec![ReconciliationRun {
                channel: PayChannel::Wechat,
                date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                statement_payments: 3,
                statement_refunds: 1,
                matched: 2,
                found_now: 1,
                discrepancies: vec![Discrepancy {
                    kind: DiscrepancyKind::PaidNotRecorded,
                    reference: "7001".into(),
                    pay_no: Some(PayNo::from(7001)),
                    refund_no: None,
                    channel_trade_no: Some("4200".into()),
                    ours_fen: Some(Fen::new(1999).unwrap()),
                    channel_fen: Some(Fen::new(1999).unwrap()),
                    detail: "recorded".into(),
                    resolution: Resolution::Recorded,
                    found_at: chrono::Utc::now(),
                }],
            }],
        };
        let text = render(&report);
        assert!(text.starts_with("wechat 2026-12-01: statement 3 payments, 1 refunds; 2 matched; 1 discrepancies (1 new, 0 open)\n"), "{text}");
        assert!(
            text.contains("paid_not_recorded") && text.contains("7001") && text.contains("1999"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn tells_the_operator_to_start_the_platform_when_nothing_listens() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let e = request("http://127.0.0.1:1", "t", date, None)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("cargo xtask up"), "{e:#}");
    }
}
